"""A filtered view keeps its closed days (footfall.segments): the kept days give exactly the numbers computed from the
events, stay right when late events, `forget` or a small bound change them, and count a visitor once across days."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
import footfall.ops
import footfall.segments
import footfall.summary
from conftest import CHROME, FIREFOX, AppClient, Clock, flush, open_client
from footfall.rollups import bucket_shift, refresh_rollups
from footfall.segments import SegmentCache
from footfall.summary import Site, build_summary, resolve_range

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
ZONE = "Europe/Berlin"  # local days start at 22:00 UTC in May: days and UTC hours disagree
#: "Now": 2026-05-14 16:00 UTC (18:00 in Berlin).
NOW = dt.datetime(2026, 5, 14, 16, 0, tzinfo=UTC).timestamp()
COUNTRIES = ("DE", "FR", "US")
PAGES = ("/", "/pricing", "/docs", "/blog")


def at(day: int, hour: int, minute: int = 0) -> int:
    """Unix seconds of 2026-05-DAY HOUR:MINUTE UTC."""
    return int(dt.datetime(2026, 5, day, hour, minute, tzinfo=UTC).timestamp())


def visitor(i: int) -> dict[str, str]:
    agent = (FIREFOX, CHROME)[i % 2]
    return {"user-agent": agent, "x-forwarded-for": f"203.0.113.{i + 1}", "cf-ipcountry": COUNTRIES[i % 3]}


def traffic() -> list[tuple[int, int, str, dict[str, Any]]]:
    """(visitor, time, type, payload extras): eight visitors over twelve days, most of them back on several days; visitor
    7's evening visits run past the local midnight; some sign up, some report web vitals."""
    sent = []
    for day in range(2, 15):
        for i in range(8):
            if (day + i) % 3 == 0:
                continue
            start = at(day, 21, 50) if i == 7 else at(day, 6 + i)
            if start >= NOW:
                continue
            referrer = {"referrer": "https://news.example/a"} if (day + i) % 2 else {}
            for n in range(1 + (day * i) % 3):
                page = PAGES[(day + i + n) % len(PAGES)]
                extras = {"url": f"https://site.example{page}", **(referrer if n == 0 else {})}
                sent.append((i, start + 600 * n + (600 if i == 7 and n else 0), "event", extras))
            if (day * i) % 4 == 1:
                sent.append((i, start + 30, "event", {"url": "https://site.example/pricing", "name": "signup"}))
            if (day + i) % 5 == 0:
                vitals = {"lcp": 1000 + 100 * i, "inp": 80, "cls": 0.05, "fcp": 700, "ttfb": 90}
                sent.append((i, start + 5, "performance", {"url": "https://site.example/", **vitals}))
    return sent


async def send(client: AppClient, website: str, i: int, when: int, kind: str, extras: dict[str, Any]) -> None:
    payload = {"website": website, "timestamp": when, "hostname": "site.example", "language": "en-US", **extras}
    response = await client.post("/api/send", json={"type": kind, "payload": payload}, headers=visitor(i))
    assert response.status_code == 200, response.text


@contextlib.asynccontextmanager
async def segment_client(db_path: Path, website: str, clock: Clock) -> AsyncIterator[AppClient]:
    config = collector.Config(db=str(db_path), timezone=ZONE, cdn_geo="cloudflare")
    async with open_client(footfall.app.create_app(config, clock)) as client:
        for i, when, kind, extras in traffic():
            await send(client, website, i, when, kind, extras)
        await flush(client)
        yield client


async def view(client: AppClient, **params: str) -> dict[str, Any]:
    response = await client.get("/api/summary", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def build(conn: Any, website: str, now: float, segments: SegmentCache | None, params: dict[str, str]) -> dict[str, Any]:
    zone = collector.load_zone(ZONE)
    shift = bucket_shift(zone, now)
    refresh_rollups(conn, shift, zone)
    key, name = conn.execute("SELECT website_key, name FROM website WHERE website_id = ?", (website,)).fetchone()
    filters = {k: v for k, v in params.items() if k not in ("period", "start", "end")}
    period = resolve_range(params.get("period"), params.get("start"), params.get("end"), zone, now, shift)
    return build_summary(conn, Site(key, website, name, None), period, filters, now, shift, segments=segments)


def computed(db_path: Path, website: str, now: float, **params: str) -> dict[str, Any]:
    """The same view built in-process on a fresh connection, every hour computed from the events (no kept days)."""
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        return build(conn, website, now, None, params)


NUMBERS = ("totals", "chart", "previous_chart", "lists", "goals", "vitals")


def numbers(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in NUMBERS}


VIEWS = [
    {"period": "7d", "country": "DE"},
    {"period": "30d", "country": "FR"},
    {"period": "30d", "page": "/pricing"},
    {"period": "7d", "referrer": "news.example"},
    {"period": "30d", "event": "signup", "browser": "Firefox"},
    {"period": "7d", "entry": "/docs"},
    {"period": "today", "country": "US"},
    {"period": "yesterday", "page": "/"},
    {"period": "90d", "language": "en-US"},
    {"start": "2026-05-04", "end": "2026-05-10", "country": "DE"},
]


async def test_kept_days_give_the_numbers_computed_from_the_events(db_path: Path, website: str, clock: Clock) -> None:
    """Every view, first shown (its days computed and kept) and shown again (read back), equals the view computed from
    the events alone; a filter everyone matches equals the plain rollups."""
    clock.now = NOW
    async with segment_client(db_path, website, clock) as client:
        for params in VIEWS:
            first = await view(client, website=website, **params)
            again = await view(client, website=website, **params)
            expected = computed(db_path, website, NOW, **params)
            assert numbers(first) == numbers(expected), params
            assert numbers(again) == numbers(expected), params
        everyone = await view(client, website=website, period="30d", language="en-US")
        plain = await view(client, website=website, period="30d")
    assert numbers(everyone) == numbers(plain)
    assert plain["totals"]["visitors"]["value"] == 8 and plain["totals"]["visits"]["value"] > 50


async def test_a_visitor_back_on_many_days_counts_once(db_path: Path, website: str, clock: Clock) -> None:
    """Germany's visitors 0, 3 and 6 come on every day not divisible by three: over the week (its closed days kept by
    a month's view before) they are three visitors of many visits, and three on each day they came."""
    clock.now = NOW
    async with segment_client(db_path, website, clock) as client:
        await view(client, website=website, period="30d", country="DE")  # keeps every closed day of May
        week = await view(client, website=website, period="7d", country="DE")
    zone = collector.load_zone(ZONE)
    days = [dt.datetime.fromtimestamp(point["start"], zone).day for point in week["chart"]]
    assert [point["visitors"] for point in week["chart"]] == [0 if day % 3 == 0 else 3 for day in days]
    assert week["totals"]["visitors"]["value"] == 3
    assert week["totals"]["visits"]["value"] == 3 * sum(day % 3 != 0 for day in days)


async def test_late_events_and_forget_change_kept_days(db_path: Path, website: str, clock: Clock) -> None:
    """An event sent now for a day already kept (a new visit of a known visitor, which also changes the visitor counts
    of the days after it), and a person forgotten, show in the kept view at once."""
    clock.now = NOW
    async with segment_client(db_path, website, clock) as client:
        before = await view(client, website=website, period="30d", country="FR")
        plain = await view(client, website=website, period="30d")  # (its web vitals' whole days remembered)
        vitals = {"lcp": 9000, "inp": 80, "cls": 0.05, "fcp": 700, "ttfb": 90}
        await send(client, website, 4, at(3, 15), "performance", {"url": "https://site.example/", **vitals})
        await send(client, website, 4, at(3, 15), "event", {"url": "https://site.example/late"})  # visitor 4, again
        await send(client, website, 1, at(5, 2), "event", {"url": "https://site.example/late", "id": "person-2"})
        await flush(client)
        late = await view(client, website=website, period="30d", country="FR")
        assert numbers(late) == numbers(computed(db_path, website, NOW, period="30d", country="FR"))
        assert late["totals"]["pageviews"]["value"] == before["totals"]["pageviews"]["value"] + 2
        assert late["totals"]["visits"]["value"] == before["totals"]["visits"]["value"] + 2
        assert late["totals"]["visitors"]["value"] == before["totals"]["visitors"]["value"] + 1  # person-2 is new
        assert ("/late", 2) in [(row["value"], row["count"]) for row in late["lists"]["page"]["rows"]]
        plain_late = await view(client, website=website, period="30d")
        assert numbers(plain_late) == numbers(computed(db_path, website, NOW, period="30d"))
        reports = {row["page"]: row["lcp"]["count"] for row in plain_late["vitals"]}
        assert reports["/"] == {row["page"]: row["lcp"]["count"] for row in plain["vitals"]}["/"] + 1
        forgotten = footfall.ops.forget_person(str(db_path), "person-2")
        assert forgotten["events"] == 1
        after = await view(client, website=website, period="30d", country="FR")
        assert numbers(after) == numbers(computed(db_path, website, NOW, period="30d", country="FR"))
        assert ("/late", 1) in [(row["value"], row["count"]) for row in after["lists"]["page"]["rows"]]


PAGE_VISITS = (
    "SELECT DISTINCT e.website_key, e.url_path, f.started_at, e.visit_key FROM website_event e "
    "JOIN rollup_visit f ON f.visit_key = e.visit_key WHERE e.event_type = 1 ORDER BY 1, 2, 3, 4"
)


async def test_a_page_filter_finds_its_visits_in_the_rollups_and_above_their_watermark(
    db_path: Path, website: str, clock: Clock
) -> None:
    """rollup_visit_page holds each rolled-up visit's pages; a pageview the rollups have not taken in yet still makes its
    visit match a page filter; the next refresh adds it to the table."""
    clock.now = NOW
    zone = collector.load_zone(ZONE)
    shift = bucket_shift(zone, NOW)
    async with segment_client(db_path, website, clock) as client:
        with contextlib.closing(collector.connect(str(db_path))) as conn:
            refresh_rollups(conn, shift, zone)
            assert conn.execute("SELECT * FROM rollup_visit_page ORDER BY 1, 2, 3, 4").fetchall() == (
                conn.execute(PAGE_VISITS).fetchall()
            )
            assert conn.execute("SELECT count(*) FROM rollup_visit_page WHERE url_path = '/pricing'").fetchone()[0] > 10
        # Visitor 6's visit at noon on the 14th, the last one still open, views one more page.
        await send(client, website, 6, at(14, 12, 10), "event", {"url": "https://site.example/new-page"})
        await flush(client)
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        (key,) = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website,)).fetchone()
        mark, top = conn.execute(
            "SELECT (SELECT CAST(value AS INTEGER) FROM setting WHERE name = 'rollup_event_key'), "
            "(SELECT max(event_key) FROM website_event)"
        ).fetchone()
        assert mark < top  # the new pageview is above the rollups' watermark
        footfall.segments.collect_filtered(conn, key, at(14, 0), int(NOW), {"page": "/new-page"}, shift)
        assert conn.execute("SELECT count(*) FROM temp.agg_visit").fetchone()[0] == 1
        refresh_rollups(conn, shift, zone)
        assert conn.execute("SELECT * FROM rollup_visit_page ORDER BY 1, 2, 3, 4").fetchall() == (
            conn.execute(PAGE_VISITS).fetchall()
        )
        assert conn.execute("SELECT count(*) FROM rollup_visit_page WHERE url_path = '/new-page'").fetchone()[0] == 1


def test_a_small_bound_drops_the_least_recent_segments(db_path: Path, website: str) -> None:
    """Kept rows stay within the bound (the segment in use excepted); a dropped segment is computed again, the same."""
    import anyio

    async def load() -> None:
        async with segment_client(db_path, website, Clock(NOW)):
            pass

    anyio.run(load)
    zone = collector.load_zone(ZONE)
    segments = SegmentCache(bucket_shift(zone, NOW), zone, max_rows=150)
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        for country in (*COUNTRIES, "DE", "DE"):
            kept = build(conn, website, NOW, segments, {"period": "30d", "country": country})
            assert numbers(kept) == numbers(computed(db_path, website, NOW, period="30d", country=country))
            assert 150 < segments.rows(conn) < 400  # each country's month is more than the bound: only the one in use stays
            (key,) = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website,)).fetchone()
            kept = [c for c in COUNTRIES if segments.days(conn, segments.segment(conn, key, {"country": c}))]
            assert kept == [country]


def test_a_view_rolled_back_keeps_nothing(db_path: Path, website: str) -> None:
    """A view cut short (its transaction rolled back, as past the summary deadline) leaves no day marked kept without
    its rows: the next view computes them again and gets the numbers right."""
    import anyio

    async def load() -> None:
        async with segment_client(db_path, website, Clock(NOW)):
            pass

    anyio.run(load)
    zone = collector.load_zone(ZONE)
    segments = SegmentCache(bucket_shift(zone, NOW), zone)
    params = {"period": "30d", "country": "DE"}
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        (key,) = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website,)).fetchone()
        conn.execute("BEGIN")
        period = resolve_range("30d", None, None, zone, NOW, bucket_shift(zone, NOW))
        days = footfall.summary.kept_days((period.start, period.end), period.bounds, zone, NOW)
        segment = footfall.summary.keep_segment_days(conn, segments, key, {"country": "DE"}, days, segments.shift, zone)
        assert len(segments.days(conn, segment)) == len(days) > 10
        conn.execute("ROLLBACK")
        segments.sync(conn)
        assert segments.days(conn, segment) == frozenset()
        kept = build(conn, website, NOW, segments, params)
        assert set(days) <= segments.days(conn, segment)  # (and the previous period's)
    assert numbers(kept) == numbers(computed(db_path, website, NOW, **params))


async def test_the_read_api_keeps_and_reads_the_same_days(db_path: Path, website: str, clock: Clock) -> None:
    """Umami's /stats and /metrics with a page filter keep the segment's closed days as the page does, and answer the
    numbers computed from the events, before and after the days are kept."""
    from test_readapi import make_key

    clock.now = NOW
    key = make_key(db_path)
    async with segment_client(db_path, website, clock) as client:
        reader = client.app.state.summary
        start, end = at(4, 22), at(11, 22)  # 2026-05-05 to 2026-05-11 in Berlin, whole local days
        query = {"startAt": str(start * 1000), "endAt": str(end * 1000 - 1), "country": "DE"}
        headers = {"x-umami-api-key": key}
        assert await reader.run(reader.segments.rows) == 0
        answers = []
        for _ in range(2):
            stats = await client.get(f"/api/websites/{website}/stats", params=query, headers=headers)
            paths = await client.get(f"/api/websites/{website}/metrics", params={**query, "type": "path"}, headers=headers)
            assert stats.status_code == paths.status_code == 200, (stats.text, paths.text)
            answers.append((stats.json(), paths.json()))
            assert await reader.run(reader.segments.rows) > 0
    expected = computed(db_path, website, NOW, start=str(start), end=str(end), country="DE")
    for stats, paths in answers:
        totals = {name: cell["value"] for name, cell in expected["totals"].items()}
        assert (stats["pageviews"], stats["visitors"], stats["visits"]) == (
            totals["pageviews"],
            totals["visitors"],
            totals["visits"],
        )
        assert stats["visitors"] == 3
        assert [(row["x"], row["y"]) for row in paths] == [
            (row["value"], row["count"]) for row in expected["lists"]["page"]["rows"]
        ]
