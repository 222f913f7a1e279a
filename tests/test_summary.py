"""The summary's numbers: a known set of events gives exactly the expected totals, lists, chart and comparisons."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
from conftest import CHROME, FIREFOX, AppClient, Clock, assert_api_error, flush, open_client

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
#: "Now" for these tests: 2026-05-14 20:00 UTC, 16:00 in New York (EDT, UTC-4).
NOW = dt.datetime(2026, 5, 14, 20, 0, tzinfo=UTC).timestamp()
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)


def at(day: int, hour: int, minute: int = 0) -> int:
    """Unix seconds of 2026-05-DAY HOUR:MINUTE UTC."""
    return int(dt.datetime(2026, 5, day, hour, minute, tzinfo=UTC).timestamp())


#: (client ip, user agent, country, seconds, kind, url, extra payload) — four visitors, five visits.
#: A: two visits today (the first is not a bounce: two pages and a custom event); B: one bounce today from a newsletter;
#: C: a visit at 03:30 UTC, which is today in UTC but yesterday in New York; D: a bounce yesterday.
EVENTS: list[tuple[str, str, str, int, str, str, dict[str, Any]]] = [
    (
        "203.0.113.1",
        FIREFOX,
        "DE",
        at(14, 13, 0),
        "event",
        "https://site.example/",
        {"referrer": "https://www.news.example/a"},
    ),
    (
        "203.0.113.1",
        FIREFOX,
        "DE",
        at(14, 13, 5),
        "event",
        "https://site.example/pricing",
        {"referrer": "https://site.example/"},
    ),
    (
        "203.0.113.1",
        FIREFOX,
        "DE",
        at(14, 13, 6),
        "event",
        "https://site.example/pricing",
        {"name": "signup", "data": {"plan": "pro"}},
    ),
    ("203.0.113.1", FIREFOX, "DE", at(14, 15, 0), "event", "https://site.example/docs", {}),
    (
        "198.51.100.2",
        CHROME,
        "US",
        at(14, 14, 0),
        "event",
        "https://site.example/?utm_source=newsletter&utm_medium=email&utm_campaign=launch",
        {},
    ),
    (
        "198.51.100.2",
        CHROME,
        "US",
        at(14, 14, 0),
        "performance",
        "https://site.example/",
        {"lcp": 2345, "inp": 120, "cls": 0.3, "fcp": 900, "ttfb": 80},
    ),
    ("192.0.2.3", SAFARI_IOS, "FR", at(14, 3, 30), "event", "https://site.example/", {}),
    ("192.0.2.3", SAFARI_IOS, "FR", at(14, 3, 32), "event", "https://site.example/about", {}),
    ("192.0.2.4", FIREFOX, "FR", at(13, 12, 0), "event", "https://site.example/", {}),
]


async def load_events(client: AppClient, website: str) -> None:
    """Send EVENTS through /api/send, as a proxy on 127.0.0.1 relaying each visitor's address and Cloudflare's country."""
    for ip, agent, country, when, kind, url, extra in EVENTS:
        body = {
            "type": kind,
            "payload": {
                "website": website,
                "url": url,
                "timestamp": when,
                "hostname": "site.example",
                "screen": "1920x1080",
                "language": "en-US",
                **extra,
            },
        }
        response = await client.post(
            "/api/send", json=body, headers={"user-agent": agent, "x-forwarded-for": ip, "cf-ipcountry": country}
        )
        assert response.status_code == 200, response.text
    bot = await client.post(
        "/api/send",
        json={"type": "event", "payload": {"website": website, "url": "/"}},
        headers={"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
    )
    assert bot.json() == {"beep": "boop"}
    await flush(client)


@contextlib.asynccontextmanager
async def summary_client(
    db_path: Path, website: str, timezone: str = "America/New_York", **settings: Any
) -> AsyncIterator[AppClient]:
    config = collector.Config(db=str(db_path), timezone=timezone, cdn_geo="cloudflare", **settings)
    async with open_client(footfall.app.create_app(config, Clock(NOW))) as client:
        await load_events(client, website)
        yield client


async def summary(client: AppClient, **params: str) -> dict[str, Any]:
    response = await client.get("/api/summary", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def totals(body: dict[str, Any]) -> dict[str, Any]:
    return {name: cell["value"] for name, cell in body["totals"].items()}


def top(body: dict[str, Any], metric: str) -> list[tuple[str, int]]:
    return [(row["value"], row["count"]) for row in body["lists"][metric]["rows"]]


async def test_today_in_new_york(db_path: Path, website: str) -> None:
    """Today in New York starts at 04:00 UTC: visitor C (03:30 UTC) belongs to yesterday; A and B make today."""
    async with summary_client(db_path, website) as client:
        body = await summary(client, website=website, period="today")
    assert body["period"]["start"] == at(14, 4) and body["period"]["end"] == at(15, 4)
    assert body["period"]["until"] == at(14, 21)  # the current hour's end: numbers compare like with like
    assert totals(body) == {
        "visitors": 2,
        "visits": 3,
        "pageviews": 4,
        "custom_events": 1,
        "views_per_visit": 1.33,
        "bounce_rate": 0.6667,
        "avg_duration_s": 120.0,
    }
    assert top(body, "page") == [("/", 2), ("/docs", 1), ("/pricing", 1)]
    assert top(body, "entry") == [("/", 2), ("/docs", 1)]
    assert top(body, "exit") == [("/", 1), ("/docs", 1), ("/pricing", 1)]
    # The self-referral to /pricing is not a referrer; visits without one make the "direct" row.
    assert top(body, "referrer") == [("", 2), ("news.example", 1)]
    assert [r.get("direct", False) for r in body["lists"]["referrer"]["rows"]] == [True, False]
    assert body["lists"]["referrer"]["rows"][0]["share"] == 0.6667
    assert top(body, "utm_source") == [("newsletter", 1)]
    assert top(body, "utm_medium") == [("email", 1)]
    assert top(body, "utm_campaign") == [("launch", 1)]
    assert top(body, "country") == [("DE", 2), ("US", 1)]
    assert top(body, "browser") == [("Firefox", 2), ("Chrome", 1)]
    assert top(body, "os") == [("Linux", 2), ("macOS", 1)]
    assert top(body, "device") == [("laptop", 3)]  # desktops with a 1920-pixel screen, as Umami names them
    assert top(body, "language") == [("en-US", 3)]
    assert top(body, "screen") == [("1920x1080", 3)]
    assert body["lists"]["page"]["rows"][0]["share"] == 0.5
    assert [(e["value"], e["count"], [k["key"] for k in e["keys"]]) for e in body["events"]] == [("signup", 1, ["plan"])]
    (signup,) = body["goals"]["rows"]
    assert (signup["visitors"], signup["conversion"]) == (1, 0.5)  # A of the two visitors today
    assert signup["keys"] == [{"key": "plan", "count": 1, "values": [{"value": "pro", "count": 1}]}]
    assert body["bots"] == 1
    assert body["vitals"] == [
        {
            "page": "/",
            "reports": 1,
            "lcp": {"p75": 2300.0, "rating": "good", "count": 1},
            "inp": {"p75": 120.0, "rating": "good", "count": 1},
            "cls": {"p75": 0.3, "rating": "poor", "count": 1},
            "fcp": {"p75": 900.0, "rating": "good", "count": 1},
            "ttfb": {"p75": 80.0, "rating": "good", "count": 1},
        }
    ]


async def test_previous_period_comparison(db_path: Path, website: str) -> None:
    """Today (16:00 in New York) compares with yesterday until 16:00: [04:00, 20:00 UTC) on the 13th holds D only.

    C (03:30 UTC on the 14th) is yesterday evening in New York, after 16:00: not in the comparison.
    """
    async with summary_client(db_path, website) as client:
        body = await summary(client, website=website, period="today")
    assert (body["period"]["previous_start"], body["period"]["previous_end"]) == (at(13, 4), at(13, 20))
    previous = {name: cell["previous"] for name, cell in body["totals"].items()}
    assert previous == {  # by hand: D's one pageview, a bounce of 0 s
        "visitors": 1,
        "visits": 1,
        "pageviews": 1,
        "custom_events": 0,
        "views_per_visit": 1.0,
        "bounce_rate": 1.0,
        "avg_duration_s": 0.0,
    }
    assert body["totals"]["visits"]["change"] == 2.0  # 3 visits against 1
    assert body["totals"]["visitors"]["change"] == 1.0
    assert body["totals"]["custom_events"]["change"] is None  # nothing to compare with


async def test_today_compares_with_yesterday_until_the_same_minute(db_path: Path, website: str) -> None:
    """At 20:30 UTC, today is compared with yesterday until 20:30: an event at 20:10 counts, one at 20:45 does not.

    The half hour is computed from the events; a visitor seen earlier yesterday counts once.
    """
    clock = Clock(NOW + 1800)
    config = collector.Config(db=str(db_path), timezone="UTC")
    async with open_client(footfall.app.create_app(config, clock)) as client:
        sent = [
            ("203.0.113.50", at(13, 9, 0), "/a"),  # E in the morning …
            ("203.0.113.50", at(13, 20, 10), "/b"),  # … and again at 20:10: a second visit, the same visitor
            ("203.0.113.51", at(13, 20, 20), "/c"),  # F at 20:20
            ("203.0.113.52", at(13, 20, 45), "/d"),  # G at 20:45: later in the day than now
            ("203.0.113.53", at(14, 20, 5), "/"),  # today
        ]
        for ip, when, path in sent:
            payload = {"website": website, "url": "https://site.example" + path, "timestamp": when}
            response = await client.post(
                "/api/send", json={"type": "event", "payload": payload}, headers={"user-agent": FIREFOX, "x-forwarded-for": ip}
            )
            assert response.status_code == 200, response.text
        await flush(client)
        body = await summary(client, website=website, period="today")
        assert (body["period"]["previous_start"], body["period"]["previous_end"]) == (at(13, 0), at(13, 20, 30))
        previous = {name: cell["previous"] for name, cell in body["totals"].items()}
        assert (previous["visitors"], previous["visits"], previous["pageviews"]) == (2, 3, 3)
        filtered = await summary(client, website=website, period="today", page="/c")
        assert filtered["totals"]["visits"]["previous"] == 1 and filtered["totals"]["visitors"]["previous"] == 1
        late = await summary(client, website=website, period="today", page="/d")
        assert late["totals"]["visits"]["previous"] == 0


async def test_every_period_compares_with_as_long_before(db_path: Path, website: str) -> None:
    """Yesterday compares with the day before; 7 days with the 7 days before, until the same time of day."""
    async with summary_client(db_path, website) as client:
        yesterday = await summary(client, website=website, period="yesterday")
        week = await summary(client, website=website, period="7d")
    assert (yesterday["period"]["previous_start"], yesterday["period"]["previous_end"]) == (at(12, 4), at(13, 4))
    assert (week["period"]["previous_start"], week["period"]["previous_end"]) == (at(1, 4), at(7, 20))
    assert yesterday["totals"]["visits"]["previous"] == 0 and yesterday["totals"]["visits"]["value"] == 2  # D and C


async def test_same_events_in_utc(db_path: Path, website: str) -> None:
    """In UTC the day boundary moves: C's visit is today, D's yesterday."""
    async with summary_client(db_path, website, timezone="UTC") as client:
        today = await summary(client, website=website, period="today")
        yesterday = await summary(client, website=website, period="yesterday")
    assert totals(today)["visitors"] == 3 and totals(today)["visits"] == 4 and totals(today)["pageviews"] == 6
    assert totals(yesterday)["visitors"] == 1 and totals(yesterday)["pageviews"] == 1


async def test_half_hour_time_zone(db_path: Path, website: str) -> None:
    """Kolkata is UTC+5:30: its hours start at :30 UTC, so its days are exact too (today there: 2026-05-13T18:30Z …)."""
    async with summary_client(db_path, website, timezone="Asia/Kolkata") as client:
        body = await summary(client, website=website, period="today")
    # NOW is 01:30 on 15 May in Kolkata, so today is 15 May: nothing yet. Yesterday (14 May IST) holds everything on 14 May
    # UTC before 18:30 and D's 13 May 12:00 UTC (17:30 IST on the 13th) stays out.
    assert body["period"]["start"] == at(14, 18, 30)
    assert totals(body)["pageviews"] == 0
    async with open_client(
        footfall.app.create_app(collector.Config(db=str(db_path), timezone="Asia/Kolkata"), Clock(NOW))
    ) as c:
        body = await summary(c, website=website, period="yesterday")
    assert body["period"]["start"] == at(13, 18, 30) and body["period"]["end"] == at(14, 18, 30)
    assert totals(body)["visitors"] == 3 and totals(body)["pageviews"] == 6


async def test_chart_hours_and_visitors(db_path: Path, website: str) -> None:
    """Today's chart is hourly; a visitor counts once per interval they visit in."""
    async with summary_client(db_path, website) as client:
        body = await summary(client, website=website, period="today")
    chart = {point["start"]: (point["pageviews"], point["visitors"]) for point in body["chart"]}
    assert len(chart) == 24 and min(chart) == at(14, 4)
    assert chart[at(14, 13)] == (2, 1)
    assert chart[at(14, 14)] == (1, 1)
    assert chart[at(14, 15)] == (1, 1)  # A again: a new interval
    assert sum(pv for pv, _ in chart.values()) == 4


async def test_chart_days_and_period_visitors(db_path: Path, website: str) -> None:
    """7 days: daily points; A visits twice on one day and counts once that day and once in the week."""
    async with summary_client(db_path, website) as client:
        body = await summary(client, website=website, period="7d")
    assert body["period"]["step"] == "day" and len(body["chart"]) == 7
    by_day = {
        dt.datetime.fromtimestamp(p["start"], dt.timezone(dt.timedelta(hours=-4))).date().day: (p["pageviews"], p["visitors"])
        for p in body["chart"]
    }
    assert by_day[14] == (4, 2)
    assert by_day[13] == (3, 2)  # D, and C at 23:30 New York time
    assert totals(body)["visitors"] == 4 and totals(body)["visits"] == 5


async def test_custom_range_dates_are_inclusive(db_path: Path, website: str) -> None:
    """start=2026-05-13&end=2026-05-13 is that whole day in the summary's time zone."""
    async with summary_client(db_path, website) as client:
        body = await summary(client, website=website, start="2026-05-13", end="2026-05-13")
        assert body["period"]["name"] == "custom"
        assert (body["period"]["start"], body["period"]["end"]) == (at(13, 4), at(14, 4))
        assert totals(body)["pageviews"] == 3
        unix = await summary(client, website=website, start=str(at(14, 13)), end=str(at(14, 14)))
        assert totals(unix)["pageviews"] == 2
        for params, message in (
            ({"start": "2026-05-13"}, "together"),
            ({"start": "2026-05-14", "end": "2026-05-13"}, "after"),
            ({"period": "forever"}, "period must be"),
            ({"start": "yesterday", "end": "x"}, "neither"),
            ({"start": "\u00b3", "end": "6"}, "neither"),
            ({"start": "\u0661" * 4 + "-01-01", "end": "1"}, "neither"),
        ):
            response = await client.get("/api/summary", params={"website": website, **params})
            assert_api_error(response, 400, "bad-request", message)


async def test_filters_make_a_segment(db_path: Path, website: str) -> None:
    """A filter keeps the visits that match it, and every number is about those visits."""
    async with summary_client(db_path, website) as client:
        germany = await summary(client, website=website, period="today", country="DE")
        pricing = await summary(client, website=website, period="today", page="/pricing")
        newsletter = await summary(client, website=website, period="today", utm_source="newsletter", browser="Chrome")
        nobody = await summary(client, website=website, period="today", country="DE", browser="Chrome")
    assert totals(germany) == {
        "visitors": 1,
        "visits": 2,
        "pageviews": 3,
        "custom_events": 1,
        "views_per_visit": 1.5,
        "bounce_rate": 0.5,
        "avg_duration_s": 180.0,
    }
    assert germany["filters"] == {"country": "DE"}
    assert top(pricing, "page") == [("/", 1), ("/pricing", 1)]  # what else the visits that saw /pricing looked at
    assert totals(pricing)["visits"] == 1
    assert totals(newsletter)["visits"] == 1 and top(newsletter, "entry") == [("/", 1)]
    assert totals(nobody)["visits"] == 0 and nobody["chart"] and all(p["pageviews"] == 0 for p in nobody["chart"])


async def test_keyed_filters_decide_on_the_whole_visit(db_path: Path, website: str) -> None:
    """Filters found through an index still mean what the lists mean: a referrer is the landing page's, an exit page the
    last one, an event any in the visit; combined with a session filter, both must hold."""
    async with summary_client(db_path, website) as client:
        news = await summary(client, website=website, period="today", referrer="news.example")
        self_referred = await summary(client, website=website, period="today", referrer="site.example")
        exits = await summary(client, website=website, period="today", exit="/pricing")
        signup = await summary(client, website=website, period="today", event="signup")
        both = await summary(client, website=website, period="today", event="signup", country="US")
    assert totals(news)["visits"] == 1 and top(news, "page") == [("/", 1), ("/pricing", 1)]  # A's first visit
    assert totals(self_referred)["visits"] == 0  # the self-referral on /pricing is not a visit's referrer
    assert top(exits, "exit") == [("/pricing", 1)] and totals(exits)["pageviews"] == 2
    assert totals(signup)["custom_events"] == 1 and totals(signup)["visits"] == 1 and top(signup, "entry") == [("/", 1)]
    assert totals(both)["visits"] == 0


async def test_filtered_numbers_match_unfiltered_for_a_filter_everyone_matches(db_path: Path, website: str) -> None:
    """The filtered path (computed on the fly) and the rollups agree when the filter keeps every visit."""
    async with summary_client(db_path, website) as client:
        plain = await summary(client, website=website, period="7d")
        everyone = await summary(client, website=website, period="7d", language="en-US")
        assert plain["totals"] == everyone["totals"]
        assert plain["chart"] == everyone["chart"]
        assert plain["lists"] == everyone["lists"]
        for period in ("today", "yesterday"):  # previous periods with visits in them (counted as totals only)
            plain = await summary(client, website=website, period=period)
            everyone = await summary(client, website=website, period=period, language="en-US")
            assert plain["totals"] == everyone["totals"] and plain["previous_chart"] == everyone["previous_chart"]
            assert plain["lists"] == everyone["lists"] and plain["goals"] == everyone["goals"]
            assert period == "yesterday" or plain["totals"]["visits"]["previous"] == 1  # D, yesterday morning


async def test_realtime(db_path: Path, website: str) -> None:
    """Visitors of the last five minutes and the page each was last on."""
    async with summary_client(db_path, website) as client:
        for ip, path, seconds_ago in (("203.0.113.9", "/a", 400), ("203.0.113.9", "/b", 60), ("203.0.113.10", "/b", 10)):
            body = {"type": "event", "payload": {"website": website, "url": path, "timestamp": int(NOW) - seconds_ago}}
            await client.post("/api/send", json=body, headers={"user-agent": FIREFOX, "x-forwarded-for": ip})
        await flush(client)
        body = await summary(client, website=website, period="today")
    assert body["realtime"] == {"visitors": 2, "pages": [{"value": "/b", "count": 2}]}


async def test_realtime_honours_the_filters(db_path: Path, website: str) -> None:
    """'Right now' counts only the active visits that match: by page (anywhere in the visit) and by country."""
    async with summary_client(db_path, website) as client:
        for ip, country, path, seconds_ago in (
            ("203.0.113.9", "DE", "/a", 200),
            ("203.0.113.9", "DE", "/b", 60),
            ("203.0.113.10", "FR", "/b", 10),
            ("203.0.113.11", "FR", "/c", 30),
        ):
            body = {"type": "event", "payload": {"website": website, "url": path, "timestamp": int(NOW) - seconds_ago}}
            headers = {"user-agent": FIREFOX, "x-forwarded-for": ip, "cf-ipcountry": country}
            await client.post("/api/send", json=body, headers=headers)
        await flush(client)
        everyone = await summary(client, website=website, period="today")
        saw_a = await summary(client, website=website, period="today", page="/a")
        french = await summary(client, website=website, period="today", country="FR")
    assert everyone["realtime"]["visitors"] == 3
    assert saw_a["realtime"] == {"visitors": 1, "pages": [{"value": "/b", "count": 1}]}  # where that visitor is now
    assert french["realtime"] == {"visitors": 2, "pages": [{"value": "/b", "count": 1}, {"value": "/c", "count": 1}]}


async def test_unknown_website_and_filter_limits(db_path: Path, website: str) -> None:
    """A website id that is not ours gets 400 'Website not found.'; an overlong filter value gets 400."""
    async with summary_client(db_path, website) as client:
        response = await client.get("/api/summary", params={"website": "00000000-0000-4000-8000-000000000000"})
        assert_api_error(response, 400, "bad-request", "Website not found.")
        response = await client.get("/api/summary", params={"website": website, "page": "/" + "x" * 600})
        assert_api_error(response, 400, "bad-request", "longer than 500")
