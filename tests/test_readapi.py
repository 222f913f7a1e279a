"""Umami's read API gives exactly the numbers sent, the same as the page's for the same range and filter.

The traffic below is sent through /api/send, as from a proxy on 127.0.0.1 relaying each visitor's address (a small
MaxMind database places them); every expected figure is worked out by hand from it in the comments.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.cli
from conftest import FIREFOX, AppClient, Clock, add_website, assert_api_error, flush, open_client

pytestmark = pytest.mark.anyio

#: The day the traffic happens on (UTC), and the day before it.
DAY = calendar.timegm((2026, 5, 13, 0, 0, 0))
BEFORE = DAY - 86400
#: The clock: 2026-05-14T10:00:00Z.
NOW = DAY + 86400 + 10 * 3600

ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1"
)

#: Visitors: address (placed by the MaxMind database), user agent, language, screen, distinct id.
NZ = ("81.2.69.10", FIREFOX, "en-US", "1920x1080", None)  # Auckland
DE = ("2.16.0.5", ANDROID, "de-DE", "412x915", None)  # Berlin
FR = ("3.0.0.7", IPHONE, "fr-FR", "390x844", "user-3")  # Paris
LATE = ("81.2.69.20", FIREFOX, "en-GB", "1280x720", None)  # Auckland, active right now

HERO = "utm_source=news&utm_medium=email&utm_campaign=spring&utm_content=hero&utm_term=shoes"

#: (visitor, seconds after DAY, kind, path, extra payload)
TRAFFIC: list[tuple[tuple[Any, ...], int, str, str, dict[str, Any]]] = [
    # DE's visit the day before: one bounce.
    (DE, -86400 + 9 * 3600, "view", "/a", {}),
    # NZ, visit 1 at 10:00: /a from a Google search with UTM, then /b, then a signup; tagged t1. 360 s long.
    (NZ, 10 * 3600, "view", "/a?" + HERO, {"referrer": "https://www.google.com/search?q=x", "tag": "t1"}),
    (NZ, 10 * 3600 + 300, "view", "/b", {"tag": "t1"}),
    (NZ, 10 * 3600 + 360, "signup", "/b", {"tag": "t1"}),
    # DE at 11:30: /b from Hacker News, then /c a minute later. 60 s long.
    (DE, 11 * 3600 + 1800, "view", "/b", {"referrer": "https://news.ycombinator.com/item?id=1"}),
    (DE, 11 * 3600 + 1860, "view", "/c", {}),
    # NZ, visit 2 at 15:00: a bounce on /a.
    (NZ, 15 * 3600, "view", "/a", {}),
    # FR at 23:50: /a, then /c after midnight (the next day). 1200 s long.
    (FR, 23 * 3600 + 3000, "view", "/a", {}),
    (FR, 86400 + 600, "view", "/c", {}),
    # LATE, a minute before the clock: active.
    (LATE, 86400 + 10 * 3600 - 60, "view", "/a", {}),
]
TITLES = {"/a": "A", "/b": "B", "/c": "C"}

#: The day's numbers, from TRAFFIC: pageviews NZ 3 + DE 2 + FR 1 (its /c is the next day); visits started that day NZ 2,
#: DE 1, FR 1; visitors NZ, DE, FR; one bounce (NZ's second visit); time 360 + 0 + 60 + 1200 s.
DAY_STATS = {"pageviews": 6, "visitors": 3, "visits": 4, "bounces": 1, "totaltime": 1620}
#: The day before: DE's one-pageview visit.
BEFORE_STATS = {"pageviews": 1, "visitors": 1, "visits": 1, "bounces": 1, "totaltime": 0}


def city_db(path: Path) -> Path:
    """A MaxMind-format City database placing the visitors' networks."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    for network, country, region, city in (
        ("81.2.69.0/24", "NZ", "AUK", "Auckland"),
        ("2.16.0.0/24", "DE", "BE", "Berlin"),
        ("3.0.0.0/24", "FR", "IDF", "Paris"),
    ):
        place = {"country": {"iso_code": country}, "subdivisions": [{"iso_code": region}], "city": {"names": {"en": city}}}
        writer.insert_network(IPSet([network]), place)
    writer.to_db_file(str(path))
    return path


def make_key(db_path: Path, name: str = "tests") -> str:
    result = CliRunner().invoke(footfall.cli.cli, ["api-key", "create", name, "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    return result.output.strip()


async def send_traffic(client: AppClient, website: str) -> None:
    for (ip, agent, language, screen, distinct), offset, kind, path, extra in TRAFFIC:
        payload: dict[str, Any] = {
            "website": website,
            "url": "https://site.example" + path,
            "hostname": "site.example",
            "title": TITLES[path.split("?")[0]],
            "language": language,
            "screen": screen,
            "timestamp": DAY + offset,
            **extra,
        }
        if kind != "view":
            payload["name"] = kind
        if distinct:
            payload["id"] = distinct
        response = await client.post(
            "/api/send", json={"type": "event", "payload": payload}, headers={"user-agent": agent, "x-forwarded-for": ip}
        )
        assert response.status_code == 200, response.text
    await flush(client)


class Api:
    """The read API with an API key, beside the page's JSON twin (loopback, no password: the page answers it)."""

    def __init__(self, client: AppClient, website: str, key: str, db_path: Path) -> None:
        self.client, self.website, self.key, self.db_path = client, website, key, db_path

    async def get(self, where: str, /, **params: Any) -> Any:
        """GET a read API route (a path under this website, or a whole /api/ path) with the key; its 200 JSON."""
        url = f"/api/websites/{self.website}{where}" if not where.startswith("/api/") else where
        response = await self.client.get(url, params=params, headers={"authorization": f"Bearer {self.key}"})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        return response.json()

    async def page(self, start: int, end: int, **filters: str) -> dict[str, Any]:
        response = await self.client.get(
            "/api/summary", params={"website": self.website, "start": str(start), "end": str(end), **filters}
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def span(start: int, end: int) -> dict[str, str]:
    """Umami's startAt/endAt for [start, end) in seconds (endAt is included, so it is the last millisecond)."""
    return {"startAt": str(start * 1000), "endAt": str(end * 1000 - 1)}


@contextlib.asynccontextmanager
async def traffic(db_path: Path, website: str, **settings: Any) -> AsyncIterator[Api]:
    key = make_key(db_path)
    geo = city_db(db_path.with_name("city.mmdb"))
    config = collector.Config(db=str(db_path), geoip_db=str(geo), **settings)
    async with open_client(footfall.app.create_app(config, Clock(NOW))) as client:
        await send_traffic(client, website)
        yield Api(client, website, key, db_path)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One app with TRAFFIC for the module: the tests only read (the one that adds a website removes it again)."""
    db_path = tmp_path_factory.mktemp("readapi") / "footfall.db"
    collector.prepare_database(str(db_path), now=NOW)
    async with traffic(db_path, add_website(db_path)) as found:
        yield found


def page_stats(summary: dict[str, Any]) -> dict[str, Any]:
    """The page's headline numbers in Umami's terms (bounces and total time from its rates)."""
    totals = {name: cell["value"] for name, cell in summary["totals"].items()}
    return {"pageviews": totals["pageviews"], "visitors": totals["visitors"], "visits": totals["visits"]} | {
        "bounce_rate": totals["bounce_rate"],
        "avg_duration_s": totals["avg_duration_s"],
    }


def as_page(stats: dict[str, Any]) -> dict[str, Any]:
    visits = stats["visits"]
    return {
        "pageviews": stats["pageviews"],
        "visitors": stats["visitors"],
        "visits": visits,
        "bounce_rate": round(stats["bounces"] / visits, 4) if visits else 0.0,
        "avg_duration_s": round(stats["totaltime"] / visits, 1) if visits else 0.0,
    }


async def test_stats_are_the_numbers_sent_and_the_pages(api: Api) -> None:
    """/stats of the day: exactly the traffic's numbers, the previous day under comparison, and the page's figures."""
    stats = await api.get("/stats", **span(DAY, DAY + 86400))
    assert stats == {**DAY_STATS, "comparison": BEFORE_STATS}
    assert as_page(stats) == page_stats(await api.page(DAY, DAY + 86400))
    assert as_page(stats["comparison"]) == page_stats(await api.page(BEFORE, DAY))
    yoy = await api.get("/stats", compare="yoy", **span(DAY, DAY + 86400))
    assert yoy["comparison"] == dict.fromkeys(DAY_STATS, 0)  # nothing a year earlier
    dates = await api.get("/stats", startDate="2026-05-13", endDate="2026-05-13T23:59:59.999Z")
    assert dates == stats


async def test_a_range_is_counted_in_whole_hours(api: Api) -> None:
    """startAt/endAt inside an hour widen to it (as the page counts): 10:20–10:40 is the 10:00 hour, NZ's /a and /b."""
    stats = await api.get("/stats", **span(DAY + 10 * 3600 + 1200, DAY + 10 * 3600 + 2400))
    assert stats | {"comparison": None} == {"pageviews": 2, "visitors": 1, "visits": 1, "bounces": 0, "totaltime": 360} | {
        "comparison": None
    }


async def test_pageviews_per_hour_and_day_equal_the_pages_chart(api: Api) -> None:
    """/pageviews by hour: only hours with data, Umami's x; the page's chart of the same day has the same counts."""
    series = await api.get("/pageviews", unit="hour", **span(DAY, DAY + 86400))
    assert series == {
        "pageviews": [
            {"x": "2026-05-13T10:00:00Z", "y": 2},
            {"x": "2026-05-13T11:00:00Z", "y": 2},
            {"x": "2026-05-13T15:00:00Z", "y": 1},
            {"x": "2026-05-13T23:00:00Z", "y": 1},
        ],
        "sessions": [
            {"x": "2026-05-13T10:00:00Z", "y": 1},
            {"x": "2026-05-13T11:00:00Z", "y": 1},
            {"x": "2026-05-13T15:00:00Z", "y": 1},
            {"x": "2026-05-13T23:00:00Z", "y": 1},
        ],
    }
    chart = (await api.page(DAY, DAY + 86400))["chart"]
    by_hour = {time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(c["start"])): c for c in chart}
    assert [p["y"] for p in series["pageviews"]] == [by_hour[p["x"]]["pageviews"] for p in series["pageviews"]]
    assert [p["y"] for p in series["sessions"]] == [by_hour[p["x"]]["visitors"] for p in series["sessions"]]
    assert sum(c["pageviews"] for c in chart) == 6
    days = await api.get("/pageviews", unit="day", **span(BEFORE, DAY + 86400))
    assert days == {
        "pageviews": [{"x": "2026-05-12T00:00:00Z", "y": 1}, {"x": "2026-05-13T00:00:00Z", "y": 6}],
        "sessions": [{"x": "2026-05-12T00:00:00Z", "y": 1}, {"x": "2026-05-13T00:00:00Z", "y": 3}],
    }


async def test_pageviews_by_minute_and_in_other_time_zones(api: Api) -> None:
    """Minutes (an hour's range), Berlin's days (aligned with the rollup hours) and Kolkata's (half an hour off)."""
    minutes = await api.get("/pageviews", unit="minute", **span(DAY + 10 * 3600, DAY + 11 * 3600))
    assert minutes == {
        "pageviews": [{"x": "2026-05-13T10:00:00Z", "y": 1}, {"x": "2026-05-13T10:05:00Z", "y": 1}],
        "sessions": [{"x": "2026-05-13T10:00:00Z", "y": 1}],
    }
    berlin = await api.get("/pageviews", unit="day", timezone="Europe/Berlin", **span(DAY, DAY + 86400))
    # Berlin is UTC+2: everything up to 21:59 UTC is the 13th there; FR's 23:50 is the 14th.
    assert berlin == {
        "pageviews": [{"x": "2026-05-13 00:00:00", "y": 5}, {"x": "2026-05-14 00:00:00", "y": 1}],
        "sessions": [{"x": "2026-05-13 00:00:00", "y": 2}, {"x": "2026-05-14 00:00:00", "y": 1}],
    }
    kolkata = await api.get("/pageviews", unit="day", timezone="Asia/Kolkata", **span(DAY, DAY + 86400))
    # Kolkata is UTC+5:30: its 14th starts at 18:30 UTC on the 13th, so the same split, counted from the events.
    assert kolkata == {
        "pageviews": [{"x": "2026-05-13 00:00:00", "y": 5}, {"x": "2026-05-14 00:00:00", "y": 1}],
        "sessions": [{"x": "2026-05-13 00:00:00", "y": 2}, {"x": "2026-05-14 00:00:00", "y": 1}],
    }
    hours = await api.get("/pageviews", unit="hour", timezone="Asia/Kolkata", **span(DAY + 10 * 3600, DAY + 12 * 3600))
    # NZ's 10:00 and 10:05 UTC are 15:30 and 15:35 there, DE's 11:30 and 11:31 are 17:00 and 17:01.
    assert hours["pageviews"] == [{"x": "2026-05-13 15:00:00", "y": 2}, {"x": "2026-05-13 17:00:00", "y": 2}]


async def test_pageviews_compare_gives_the_previous_range(api: Api) -> None:
    """compare=prev adds the range and the previous one with its own series."""
    series = await api.get("/pageviews", unit="day", compare="prev", **span(DAY, DAY + 86400))
    assert series["startDate"] == "2026-05-13T00:00:00.000Z" and series["endDate"] == "2026-05-13T23:59:59.999Z"
    assert series["compare"] == {
        "pageviews": [{"x": "2026-05-12T00:00:00Z", "y": 1}],
        "sessions": [{"x": "2026-05-12T00:00:00Z", "y": 1}],
        "startDate": "2026-05-12T00:00:00.000Z",
        "endDate": "2026-05-12T23:59:59.999Z",
    }


#: metrics of the day by type, from TRAFFIC (pageviews per path, title, query, hostname and tag; visits per the rest).
DAY_METRICS = {
    "path": [("/a", 3), ("/b", 2), ("/c", 1)],
    "title": [("A", 3), ("B", 2), ("C", 1)],
    "query": [(HERO, 1)],
    "hostname": [("site.example", 6)],
    "tag": [("t1", 2)],
    "entry": [("/a", 3), ("/b", 1)],
    "exit": [("/c", 2), ("/a", 1), ("/b", 1)],
    "referrer": [("google.com", 1), ("news.ycombinator.com", 1)],
    "domain": [("google.com", 1), ("news.ycombinator.com", 1)],
    "utmSource": [("news", 1)],
    "utmMedium": [("email", 1)],
    "utmCampaign": [("spring", 1)],
    "utmContent": [("hero", 1)],
    "utmTerm": [("shoes", 1)],
    "country": [("NZ", 2), ("DE", 1), ("FR", 1)],
    "region": [("NZ-AUK", 2, "NZ"), ("DE-BE", 1, "DE"), ("FR-IDF", 1, "FR")],
    "city": [("Auckland", 2, "NZ"), ("Berlin", 1, "DE"), ("Paris", 1, "FR")],
    "browser": [("Firefox", 2), ("Chrome", 1), ("Safari", 1)],
    "os": [("Linux", 2), ("Android", 1), ("iOS", 1)],
    "device": [("laptop", 2), ("mobile", 2)],  # a 1920x1080 desktop browser is a laptop, as in Umami
    "language": [("en-US", 2), ("de-DE", 1), ("fr-FR", 1)],
    "screen": [("1920x1080", 2), ("390x844", 1), ("412x915", 1)],
    "distinctId": [("user-3", 1)],
    "event": [("signup", 1)],
    # NZ's first visit came from Google (search), DE's from Hacker News (social); NZ's second and FR's are direct.
    "channel": [("direct", 2), ("organicSearch", 1), ("organicSocial", 1)],
}


@pytest.mark.parametrize("kind", list(DAY_METRICS))
async def test_metrics_of_every_type(api: Api, kind: str) -> None:
    """/metrics for every type footfall has data for: the day's exact rows, most first."""
    found = await api.get("/metrics", type=kind, **span(DAY, DAY + 86400))
    assert [tuple(row.values()) for row in found] == DAY_METRICS[kind]
    assert all(set(row) == ({"x", "y", "country"} if kind in ("region", "city") else {"x", "y"}) for row in found)


@pytest.mark.parametrize(
    ("kind", "list_name"),
    [("path", "page"), ("entry", "entry"), ("exit", "exit"), ("referrer", "referrer"), ("country", "country")]
    + [("browser", "browser"), ("device", "device"), ("language", "language"), ("utmSource", "utm_source")],
)
async def test_metrics_equal_the_pages_lists(api: Api, kind: str, list_name: str) -> None:
    """The types the page lists give the page's rows, in its order."""
    found = await api.get("/metrics", type=kind, **span(DAY, DAY + 86400))
    rows = (await api.page(DAY, DAY + 86400))["lists"][list_name]["rows"]
    assert [(r["x"], r["y"]) for r in found] == [(r["value"], r["count"]) for r in rows if r["value"]]


async def test_metrics_limit_offset_and_search(api: Api) -> None:
    """limit and offset page through the rows; search keeps values containing it, in any case."""
    day = span(DAY, DAY + 86400)
    assert await api.get("/metrics", type="path", limit="2", **day) == [{"x": "/a", "y": 3}, {"x": "/b", "y": 2}]
    assert await api.get("/metrics", type="path", limit="2", offset="1", **day) == [{"x": "/b", "y": 2}, {"x": "/c", "y": 1}]
    assert await api.get("/metrics", type="city", search="LIN", **day) == [{"x": "Berlin", "y": 1, "country": "DE"}]
    assert await api.get("/metrics", type="title", search="c", offset="0", **day) == [{"x": "C", "y": 1}]
    assert await api.get("/metrics", type="path", offset="9", **day) == []


async def test_events_series_active_and_daterange(api: Api) -> None:
    """Custom events per hour; visitors of the last five minutes; the first and the last event."""
    events = await api.get("/events/series", timezone="UTC", unit="hour", **span(DAY, DAY + 86400))
    assert events == [{"x": "signup", "t": "2026-05-13T10:00:00Z", "y": 1}]
    berlin = await api.get("/events/series", timezone="Europe/Berlin", unit="day", **span(DAY, DAY + 86400))
    assert berlin == [{"x": "signup", "t": "2026-05-13 00:00:00", "y": 1}]
    assert await api.get("/active") == {"visitors": 1}  # LATE, a minute ago
    assert await api.get("/daterange") == {"startDate": "2026-05-12T09:00:00.000Z", "endDate": "2026-05-14T09:59:00.000Z"}
    assert await api.get("/active", country="DE") == {"visitors": 0}
    assert await api.get("/daterange", country="DE") == {
        "startDate": "2026-05-12T09:00:00.000Z",
        "endDate": "2026-05-13T11:31:00.000Z",
    }


#: Every filter footfall answers: (Umami parameter, value) → the same visits as the page's filter, or {} (everyone).
FILTER_CASES = [
    ("path", "/b", {"page": "/b"}),
    ("url", "/b", {"page": "/b"}),
    ("event", "signup", {"event": "signup"}),
    ("entry", "/b", {"entry": "/b"}),
    ("exit", "/c", {"exit": "/c"}),
    ("referrer", "google.com", {"referrer": "google.com"}),
    ("domain", "news.ycombinator.com", {"referrer": "news.ycombinator.com"}),
    ("utmSource", "news", {"utm_source": "news"}),
    ("utmMedium", "eq.email", {"utm_medium": "email"}),
    ("utmCampaign", "spring", {"utm_campaign": "spring"}),
    ("country", "NZ", {"country": "NZ"}),
    ("browser", "Chrome", {"browser": "Chrome"}),
    ("os", "iOS", {"os": "iOS"}),
    ("device", "mobile", {"device": "mobile"}),
    ("language", "fr-FR", {"language": "fr-FR"}),
    ("screen", "1920x1080", {"screen": "1920x1080"}),
    # Filters the page does not have, each picking the same visits as one it has:
    ("title", "C", {"page": "/c"}),
    ("query", HERO, {"utm_source": "news"}),
    ("hostname", "site.example", {}),
    ("tag", "t1", {"utm_source": "news"}),
    ("region", "DE-BE", {"country": "DE"}),
    ("city", "Auckland", {"country": "NZ"}),
    ("distinctId", "user-3", {"country": "FR"}),
    ("utmContent", "hero", {"utm_source": "news"}),
    ("utmTerm", "eq.shoes", {"utm_source": "news"}),
]


@pytest.mark.parametrize(("name", "value", "page_filter"), FILTER_CASES, ids=[case[0] for case in FILTER_CASES])
async def test_every_filter_works_on_every_endpoint(api: Api, name: str, value: str, page_filter: dict[str, str]) -> None:
    """A filter makes a segment, as on the page: /stats equals the page's filtered numbers, and the other endpoints
    agree with /stats (series and paths add up to its pageviews; events, active and date range are the segment's)."""
    day = span(DAY, DAY + 86400)
    stats = await api.get("/stats", **{name: value}, **day)
    assert as_page(stats) == page_stats(await api.page(DAY, DAY + 86400, **page_filter))
    assert as_page(stats["comparison"]) == page_stats(await api.page(BEFORE, DAY, **page_filter))
    assert stats["visits"] > 0
    series = await api.get("/pageviews", unit="hour", **{name: value}, **day)
    assert sum(p["y"] for p in series["pageviews"]) == stats["pageviews"]
    minutes = await api.get("/pageviews", unit="minute", **{name: value}, **span(DAY + 10 * 3600, DAY + 11 * 3600))
    hourly = await api.get("/pageviews", unit="hour", **{name: value}, **span(DAY + 10 * 3600, DAY + 11 * 3600))
    assert sum(p["y"] for p in minutes["pageviews"]) == sum(p["y"] for p in hourly["pageviews"])
    paths = await api.get("/metrics", type="path", **{name: value}, **day)
    assert sum(r["y"] for r in paths) == stats["pageviews"]
    countries = await api.get("/metrics", type="city", **{name: value}, **day)
    assert sum(r["y"] for r in countries) == stats["visits"]  # every visit here is placed
    entries = await api.get("/metrics", type="entry", **{name: value}, **day)
    page_entries = (await api.page(DAY, DAY + 86400, **page_filter))["lists"]["entry"]["rows"]
    assert [(r["x"], r["y"]) for r in entries] == [(r["value"], r["count"]) for r in page_entries]
    events = await api.get("/events/series", timezone="UTC", **{name: value}, **day)
    page_events = (await api.page(DAY, DAY + 86400, **page_filter))["events"]
    page_events = page_events["rows"] if isinstance(page_events, dict) else page_events
    assert [(e["x"], e["y"]) for e in events] == [(e["value"], e["count"]) for e in page_events]
    assert (await api.get("/active", **{name: value}))["visitors"] in (0, 1)
    dates = await api.get("/daterange", **{name: value})
    assert dates["startDate"] is not None and dates["startDate"] <= dates["endDate"]


async def test_filters_it_cannot_answer_are_refused_by_name(api: Api) -> None:
    """Operators other than equality, lists, numbered or property filters, segments and cohorts: a 400 naming them."""
    day = span(DAY, DAY + 86400)
    url = f"/api/websites/{api.website}/stats"
    headers = {"authorization": f"Bearer {api.key}"}
    cases = [
        ({"country": "neq.DE"}, "country: footfall filters by equality only (eq), not by neq"),
        ({"path": "c./a"}, "path: footfall filters by equality only (eq), not by c"),
        ({"country": "DE,FR"}, "country: footfall filters by one value at a time; 'DE,FR' is a list"),
        ({"browser1": "Chrome"}, "browser1: footfall takes one filter per field"),
        ({"segment": "6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c"}, "footfall cannot answer the segment parameter"),
        ({"cohort": "x"}, "footfall cannot answer the cohort parameter"),
        ({"excludeBounce": "true"}, "footfall cannot answer the excludeBounce parameter"),
        ({"eventType": "1"}, "footfall cannot answer the eventType parameter"),
        ({"match": "any"}, "match=any: footfall combines filters with match=all only"),
        ({"pf_plan": "eq.pro"}, "pf_plan: footfall cannot filter by event or session properties"),
        ({"title": "x" * 501}, "title: a filter value is longer than 500 characters"),
    ]
    for params, message in cases:
        assert_api_error(await api.client.get(url, params={**day, **params}, headers=headers), 400, "bad-request", message)
    assert (await api.client.get(url, params={**day, "match": "all"}, headers=headers)).status_code == 200


async def test_websites_list_and_detail(api: Api) -> None:
    """/api/websites pages active sites by name (search in name or domain); /api/websites/{id}; unknown ids are 404."""
    db_path = api.db_path
    result = CliRunner().invoke(footfall.cli.cli, ["site", "add", "blog", "--domain", "blog.example", "--db", str(db_path)])
    blog = result.output.strip()
    listed = await api.get("/api/websites")
    assert [w["name"] for w in listed["data"]] == ["blog", "default", "test"]
    assert (listed["count"], listed["page"], listed["pageSize"]) == (3, 1, 20) and "search" not in listed
    first = listed["data"][0]
    assert first["id"] == blog and first["domain"] == "blog.example" and first["user"]["username"] == "admin"
    assert first["userId"] == first["createdBy"] == first["user"]["id"]
    paged = await api.get("/api/websites", page="2", pageSize="2")
    assert [w["name"] for w in paged["data"]] == ["test"] and paged["count"] == 3
    found = await api.get("/api/websites", search="BLOG.EX")
    assert [w["id"] for w in found["data"]] == [blog] and found["search"] == "BLOG.EX" and found["count"] == 1
    detail = await api.get(f"/api/websites/{api.website}")
    assert detail["id"] == api.website and detail["name"] == "test" and "user" not in detail
    for missing in ("6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c", "not-a-uuid"):
        response = await api.client.get(
            f"/api/websites/{missing}/stats", params=span(DAY, DAY + 86400), headers={"x-umami-api-key": api.key}
        )
        assert_api_error(response, 404, "not-found", "Website not found.")
    CliRunner().invoke(footfall.cli.cli, ["site", "remove", blog, "--db", str(db_path)])
    assert_api_error(await api.client.get(f"/api/websites/{blog}", headers={"x-umami-api-key": api.key}), 404, "not-found")


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/stats", {}, "Either startAt+endAt or startDate+endDate must be provided"),
        ("/stats", {"startAt": "abc", "endAt": "1"}, "startAt must be Unix milliseconds (a whole number), not 'abc'"),
        ("/stats", {"startAt": "2000", "endAt": "1000"}, "startAt must not be after endAt"),
        ("/stats", {"startAt": "0", "endAt": "99999999999999999"}, "endAt must be before the year 3000"),
        ("/stats", {"startDate": "yesterday", "endDate": "2026-05-13"}, "startDate must be a date or time"),
        ("/stats", {"startAt": "0", "endAt": "1", "compare": "week"}, "compare must be prev or yoy, not 'week'"),
        ("/pageviews", {"startAt": "0", "endAt": "1", "unit": "week"}, "Invalid unit: 'week'"),
        ("/pageviews", {"startAt": "0", "endAt": "1", "timezone": "Mars/Olympus"}, "Invalid timezone: 'Mars/Olympus'"),
        ("/metrics", {"startAt": "0", "endAt": "1"}, "type is required"),
        ("/metrics", {"startAt": "0", "endAt": "1", "type": "planet"}, "type must be one of path, url, entry"),
        ("/metrics", {"startAt": "0", "endAt": "1", "type": "path", "limit": "x"}, "limit must be a whole number"),
        ("/events/series", {"startDate": "2026-05-13", "endDate": "2026-05-14"}, "startAt and endAt"),
        ("/events/series", {"startAt": "0", "endAt": "1"}, "timezone is required"),
        ("/api/websites", {"page": "0"}, "page must be a whole number of at least 1"),
    ],
)
async def test_bad_parameters_are_400_before_the_token_is_looked_at(
    api: Api, path: str, params: dict[str, str], message: str
) -> None:
    """As Umami: bad parameters get 400 even without a token (parameters are checked first), naming the problem."""
    url = path if path.startswith("/api/") else f"/api/websites/{api.website}{path}"
    assert_api_error(await api.client.get(url, params=params), 400, "bad-request", message)
    assert_api_error(
        await api.client.get(url, params=params, headers={"authorization": f"Bearer {api.key}"}), 400, "bad-request", message
    )


async def test_no_token_or_a_bad_one_is_401(api: Api) -> None:
    """Every read route answers 401 Unauthorized without a valid token or key, whatever the header looks like."""
    day = span(DAY, DAY + 86400)
    routes = [
        ("/stats", {}),
        ("/pageviews", {}),
        ("/active", {}),
        ("/daterange", {}),
        ("", {}),
        ("/metrics", {"type": "path"}),
    ]
    for headers in (
        {},
        {"authorization": "Bearer nope"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer None"},
        {"x-umami-api-key": "ffk_nope"},
        {"authorization": api.key},
    ):
        for route, extra in routes:
            response = await api.client.get(f"/api/websites/{api.website}{route}", params={**day, **extra}, headers=headers)
            assert_api_error(response, 401, "unauthorized", "Unauthorized")
        for url in ("/api/websites", "/api/me"):
            assert_api_error(await api.client.get(url, headers=headers), 401, "unauthorized")
        assert_api_error(await api.client.post("/api/auth/verify", headers=headers), 401, "unauthorized")
    # The key in either header, and as the second word after any scheme (Umami does not check the scheme).
    for headers in (
        {"x-umami-api-key": api.key},
        {"authorization": f"Bearer {api.key}"},
        {"authorization": f"Token {api.key}"},
    ):
        assert (await api.client.get(f"/api/websites/{api.website}/active", headers=headers)).status_code == 200


async def test_no_cors_headers_on_any_read_route(api: Api) -> None:
    """Nothing reads the numbers cross-origin: no Access-Control-* header to a simple request or a preflight."""
    day = span(DAY, DAY + 86400)
    routes = ["/api/websites", "/api/me", f"/api/websites/{api.website}"]
    routes += [
        f"/api/websites/{api.website}/{name}" for name in ("stats", "pageviews", "active", "daterange", "events/series")
    ]
    origin = {"origin": "https://evil.example", "x-umami-api-key": api.key}
    for route in [*routes, f"/api/websites/{api.website}/metrics"]:
        answer = await api.client.get(route, params={**day, "type": "path", "timezone": "UTC"}, headers=origin)
        assert answer.status_code == 200, (route, answer.text)
        preflight = await api.client.options(
            route,
            headers={**origin, "access-control-request-method": "GET", "access-control-request-headers": "authorization"},
        )
        for response in (answer, preflight):
            assert not [h for h in response.headers if h.startswith("access-control-")], (route, dict(response.headers))
    login = await api.client.post("/api/auth/login", json={"username": "admin", "password": "x"}, headers=origin)
    assert login.status_code == 401 and "access-control-allow-origin" not in login.headers
