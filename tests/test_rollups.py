"""The summary rollups always equal a rebuild from the events, and the public views' numbers, whatever happened since."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.upkeep
import footfall.app
import footfall.ops
import footfall.rollups
import footfall.summary
from conftest import FIREFOX, T0, AppClient, Clock, flush, open_client, rows

pytestmark = pytest.mark.anyio

PAGES = ["/", "/pricing", "/docs", "/blog/a", "/blog/b"]
REFERRERS = ["", "https://news.example/x", "https://www.search.example/?q=1", "https://site.example/self"]


def random_batch(rng: random.Random, website: str, base: float, size: int) -> list[dict[str, Any]]:
    """Hits from 30 people over ~6 hours around ``base``, some out of order, with custom and performance events."""
    items = []
    for _ in range(size):
        when = int(base + rng.randint(-3 * 3600, 3 * 3600))
        kind = rng.choices(["pageview", "custom", "performance"], [6, 2, 1])[0]
        payload: dict[str, Any] = {
            "website": website,
            "hostname": "site.example",
            "timestamp": when,
            "url": "https://site.example" + rng.choice(PAGES) + rng.choice(["", "?utm_source=mail"]),
            "referrer": rng.choice(REFERRERS),
            "id": f"person-{rng.randint(1, 30)}",
            "language": rng.choice(["en-US", "de-DE"]),
            "screen": rng.choice(["390x844", "1920x1080"]),
        }
        if kind == "custom":
            payload.update(name=rng.choice(["signup", "play"]), data={"plan": rng.choice(["a", "b"]), "n": 1})
        if kind == "performance":
            payload.update(lcp=rng.uniform(100, 6000), inp=rng.uniform(10, 800), cls=rng.uniform(0, 0.5))
        if rng.random() < 0.2:
            payload["duration"] = rng.randint(0, 90_000)
        items.append({"type": "performance" if kind == "performance" else "event", "payload": payload})
    return items


def snapshot(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rows(db_path, f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4") for table in footfall.rollups.ROLLUP_TABLES}


def rebuilt(db_path: Path, shift: int, zone: str = "UTC") -> dict[str, list[tuple[Any, ...]]]:
    """The rollups recomputed from nothing, in a copy of the database."""
    copy = db_path.with_name("rebuilt.db")
    with contextlib.closing(sqlite3.connect(db_path)) as source, contextlib.closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    with contextlib.closing(collector.connect(str(copy))) as conn:
        footfall.rollups.reset_rollups(conn, shift, collector.load_zone(zone))
        footfall.rollups.refresh_rollups(conn, shift, collector.load_zone(zone))
    result = snapshot(copy)
    copy.unlink()
    return result


async def send_batches(client: AppClient, website: str, rng: random.Random, count: int, base: float) -> None:
    for _ in range(count):
        response = await client.post("/api/batch", json=random_batch(rng, website, base, 40), headers={"user-agent": FIREFOX})
        assert response.status_code == 200 and response.json()["errors"] == 0, response.text
        await flush(client)
        await client.app.state.summary.refresh()


def reference(db_path: Path, website: str, start: int, end: int) -> dict[str, Any]:
    """The summary's numbers for [start, end) as a person would compute them from the public views."""
    iso = [
        collector.dt.datetime.fromtimestamp(t, collector.dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (start, end)
    ]
    visits = rows(
        db_path,
        "SELECT count(*), count(DISTINCT session_id), ifnull(sum(pageviews = 1 AND custom_events = 0), 0), "
        "ifnull(sum(duration_s), 0) FROM visits WHERE website_id = ? AND started_at >= ? AND started_at < ?",
        (website, *iso),
    )[0]
    pageviews = rows(
        db_path,
        "SELECT count(*) FROM pageviews WHERE website_id = ? AND created_unix >= ? AND created_unix < ?",
        (website, start, end),
    )[0][0]
    pages = rows(
        db_path,
        "SELECT url_path, count(*) FROM pageviews WHERE website_id = ? AND created_unix >= ? "
        "AND created_unix < ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        (website, start, end),
    )
    entry = rows(
        db_path,
        "SELECT url_path, count(*) FROM (SELECT visit_id, url_path, min(created_unix * 1e9 + event_key) "
        "FROM pageviews WHERE website_id = ? GROUP BY visit_id) AS firsts "
        "JOIN visits USING (visit_id) WHERE started_at >= ? AND started_at < ? "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        (website, *iso),
    )
    return {
        "visits": visits[0],
        "visitors": visits[1],
        "bounces": visits[2],
        "duration": visits[3],
        "pageviews": pageviews,
        "pages": [tuple(r) for r in pages],
        "entry": [tuple(r) for r in entry],
    }


def from_rollups(db_path: Path, website: str, start: int, end: int) -> dict[str, Any]:
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        key = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website,)).fetchone()[0]
        src = footfall.summary.RollupSource(collector.dt.timezone.utc)
        totals = footfall.summary.panel_totals(conn, src, key, start, end)
        bounces, duration = (
            conn.execute(
                f"SELECT ifnull(sum(n), 0) FROM rollup WHERE website_key = ? AND metric = '{m}' AND hour >= ? AND hour < ?",
                (key, start, end),
            ).fetchone()[0]
            for m in ("bounces", "duration")
        )
        pages = footfall.summary.panel_top(conn, src, key, "page", start, end, 1)
        entry = footfall.summary.panel_top(conn, src, key, "entry", start, end, 1)
    return {
        "visits": totals["visits"],
        "visitors": totals["visitors"],
        "bounces": bounces,
        "duration": duration,
        "pageviews": totals["pageviews"],
        "pages": [(r["value"], r["count"]) for r in pages],
        "entry": [(r["value"], r["count"]) for r in entry],
    }


def assert_visits_start_at_their_first_event(db_path: Path) -> None:
    """visit.started_at is its first event's time (the visitor counts rely on it), whatever order events came in."""
    stale = rows(
        db_path,
        "SELECT count(*) FROM visit v WHERE started_at != (SELECT min(created_at) FROM website_event e "
        "WHERE e.visit_key = v.visit_key)",
    )
    assert stale == [(0,)]


async def test_incremental_rollups_equal_a_rebuild_and_the_views(db_path: Path, website: str) -> None:
    """Batches with out-of-order timestamps, refreshed after each: the rollups equal a rebuild and the views' numbers."""
    rng = random.Random(4)
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), Clock(T0 + 6 * 3600))) as client:
        await send_batches(client, website, rng, 12, T0)
    assert_visits_start_at_their_first_event(db_path)
    assert snapshot(db_path) == rebuilt(db_path, 0)
    assert len(snapshot(db_path)["rollup_vitals"]) > 0
    for start, end in (
        (int(T0) - 4 * 3600, int(T0) + 4 * 3600),
        (int(T0), int(T0) + 3600),
        (int(T0) - 86400, int(T0) + 86400),
    ):
        assert from_rollups(db_path, website, start, end) == reference(db_path, website, start, end)


async def test_rollups_survive_prune_and_forget(db_path: Path, website: str) -> None:
    """After a prune and a forget (which deletes the newest events), rollups equal a rebuild, and new events still count."""
    rng = random.Random(5)
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), Clock(T0 + 6 * 3600))) as client:
        await send_batches(client, website, rng, 6, T0)
    newest = rows(db_path, "SELECT distinct_id FROM events ORDER BY event_key DESC LIMIT 1")[0][0]
    footfall.ops.prune_events(str(db_path), 0, now=T0 - 3600 + 1234)  # cut through visits, mid-hour
    assert rows(db_path, "SELECT count(*) FROM website_event WHERE created_at < ?", (int(T0) - 3600 + 1234,)) == [(0,)]
    assert_visits_start_at_their_first_event(db_path)
    assert snapshot(db_path) == rebuilt(db_path, 0)
    footfall.ops.forget_person(str(db_path), newest)
    assert snapshot(db_path) == rebuilt(db_path, 0)
    before = rows(db_path, "SELECT ifnull(sum(n), 0) FROM rollup WHERE metric = 'pageviews'")[0][0]
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), Clock(T0 + 6 * 3600))) as client:
        body = {"type": "event", "payload": {"website": website, "url": "/after-forget", "timestamp": int(T0)}}
        assert (await client.post("/api/send", json=body, headers={"user-agent": FIREFOX})).status_code == 200
        await flush(client)
        await client.app.state.summary.refresh()
    assert rows(db_path, "SELECT ifnull(sum(n), 0) FROM rollup WHERE metric = 'pageviews'")[0][0] == before + 1
    assert snapshot(db_path) == rebuilt(db_path, 0)


async def test_retention_keeps_rollups_exact(db_path: Path, website: str) -> None:
    """The server's daily retention drops old rollup hours and repairs the hour it cut through."""
    rng = random.Random(6)
    clock = Clock(T0 + 6 * 3600)
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        await send_batches(client, website, rng, 6, T0)
        with contextlib.closing(collector.connect(str(db_path))) as conn:
            conn.execute("UPDATE website SET retention_days = 1 WHERE website_id = ?", (website,))
        clock.advance(86400 - 5 * 3600 - 600)  # the cutoff falls at T0 + 50 min
        assert await footfall.upkeep.apply_retention(client.app.state.collection, client.app.state.summary, clock()) > 0
    assert rows(db_path, "SELECT min(hour) FROM rollup")[0][0] >= int(T0)
    assert_visits_start_at_their_first_event(db_path)
    assert snapshot(db_path) == rebuilt(db_path, 0)


async def test_changing_time_zone_realigns_the_rollups(db_path: Path, website: str) -> None:
    """Moving to a half-hour zone rebuilds every rollup hour on :30 boundaries."""
    rng = random.Random(7)
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), Clock(T0 + 6 * 3600))) as client:
        await send_batches(client, website, rng, 3, T0)
    assert {h % 3600 for (h,) in rows(db_path, "SELECT hour FROM rollup")} == {0}
    config = collector.Config(db=str(db_path), timezone="Asia/Kolkata")
    async with open_client(footfall.app.create_app(config, Clock(T0 + 6 * 3600))) as client:
        await client.app.state.summary.refresh()
    assert {h % 3600 for (h,) in rows(db_path, "SELECT hour FROM rollup")} == {1800}
    assert snapshot(db_path) == rebuilt(db_path, 1800, "Asia/Kolkata")


def test_vital_bins_have_two_significant_figures() -> None:
    """The web-vitals histograms keep two significant figures."""
    assert [footfall.rollups.vital_bin(v) for v in (2345, 0.137, 88, 5.9, 0, 60_000, 0.001234)] == [
        2300,
        0.14,
        88,
        5.9,
        0,
        60_000,
        0.0012,
    ]


def test_bucket_alignment() -> None:
    """Hours start on the zone's offset: :00 for Berlin, :30 for Kolkata, :45 for Kathmandu."""
    for zone, shift in (("Europe/Berlin", 0), ("Asia/Kolkata", 1800), ("Asia/Kathmandu", 2700), ("America/St_Johns", 1800)):
        assert footfall.rollups.bucket_shift(collector.load_zone(zone), T0) == shift
    assert footfall.rollups.bucket_of(int(T0) + 1799, 1800) == int(T0) - 1800
    assert footfall.rollups.bucket_of(int(T0) + 1800, 1800) == int(T0) + 1800


async def test_goal_visitors_and_data_values_match_the_views(db_path: Path, website: str) -> None:
    """Visitors per custom event and the counts of each data value equal what the public views say, for several ranges."""
    rng = random.Random(9)
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), Clock(T0 + 6 * 3600))) as client:
        await send_batches(client, website, rng, 8, T0)
    assert snapshot(db_path) == rebuilt(db_path, 0)
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        key = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website,)).fetchone()[0]
        src = footfall.summary.RollupSource(collector.dt.timezone.utc)
        for start, end in ((int(T0) - 4 * 3600, int(T0) + 4 * 3600), (int(T0), int(T0) + 3600)):
            iso = [
                collector.dt.datetime.fromtimestamp(t, collector.dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                for t in (start, end)
            ]
            visitors = footfall.summary.panel_totals(conn, src, key, start, end)["visitors"]
            goals = footfall.summary.panel_events(conn, src, key, start, end, 1, int(visitors))
            expected = rows(
                db_path,
                "SELECT c.event_name, count(DISTINCT v.session_id) FROM (SELECT DISTINCT visit_id, event_name FROM custom_events "
                "WHERE website_id = ?) c JOIN visits v USING (visit_id) WHERE v.started_at >= ? AND v.started_at < ? "
                "GROUP BY 1 ORDER BY 1",
                (website, *iso),
            )
            assert sorted((g["value"], g["visitors"]) for g in goals["rows"]) == expected
            assert expected and all(g["conversion"] == round(g["visitors"] / visitors, 4) for g in goals["rows"])
            for goal in goals["rows"]:
                for data_key in goal["keys"]:
                    values = rows(
                        db_path,
                        "SELECT string_value, count(*) FROM custom_events WHERE website_id = ? AND event_name = ? "
                        "AND data_key = ? AND created_unix >= ? AND created_unix < ? GROUP BY 1 ORDER BY 2 DESC, 1",
                        (website, goal["value"], data_key["key"], start, end),
                    )
                    assert [(v["value"], v["count"]) for v in data_key["values"]] == values


async def test_rollups_of_an_older_footfall_are_rebuilt(db_path: Path, website: str) -> None:
    """Rollups made before data values and goal visitors were kept (no rollup_version) are rebuilt like a fresh database."""
    rng = random.Random(10)
    config = collector.Config(db=str(db_path))
    async with open_client(footfall.app.create_app(config, Clock(T0 + 6 * 3600))) as client:
        await send_batches(client, website, rng, 3, T0)
    with contextlib.closing(collector.connect(str(db_path))) as conn:  # what an older footfall left behind
        conn.execute("DELETE FROM rollup WHERE metric = 'event_value'")
        conn.execute("DELETE FROM rollup_daily WHERE metric = 'event_value'")
        conn.execute("DELETE FROM rollup_event_visitors")
        conn.execute("DELETE FROM rollup_daily_event_visitors")
        conn.execute("DELETE FROM setting WHERE name = 'rollup_version'")
    async with open_client(footfall.app.create_app(config, Clock(T0 + 6 * 3600))) as client:
        await client.app.state.summary.refresh()
    after = snapshot(db_path)
    assert after == rebuilt(db_path, 0)
    assert after["rollup_event_visitors"] and any(row[1] == "event_value" for row in after["rollup"])


async def test_data_values_counted_by_sqlite_read_as_pythons(client: AppClient, website: str, db_path: Path) -> None:
    """The refresh counts data keys and values in SQLite (bounded memory); its rows are the ones Python's count makes:
    quotes, backslashes, control characters, emoji, numbers, a value past EVENT_VALUE_CHARS and a nameless event."""
    values = ['say "hi"', "back\\slash", "tab\tnew\nline\x01", "émoji 😀\u2028", "x" * 150, 12.5, True, ""]
    items = [
        {"type": "event", "payload": {"website": website, "url": "/v", "timestamp": T0 + n, "id": "p",
                                      **({"name": "pick"} if n % 2 else {}), "data": {"v": value, f"k{n % 3}": n}}}
        for n, value in enumerate(values * 3)
    ]  # fmt: skip
    response = await client.post("/api/batch", json=items, headers={"user-agent": FIREFOX})
    assert response.status_code == 200 and response.json()["errors"] == 0, response.text
    await flush(client)
    await client.app.state.summary.refresh()
    stored = rows(db_path, "SELECT * FROM rollup WHERE metric IN ('event_key', 'event_value') ORDER BY 1, 2, 3, 4")
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        hours = {key: {footfall.rollups.bucket_of(T0, 0)} for (key,) in conn.execute("SELECT website_key FROM website")}
        with collector.transaction(conn, immediate=False):
            in_sql, _ = footfall.rollups.collect_rollups(conn, hours, 0)  # fills temp.agg_candidate with the hour's visits
            python_rows, _ = footfall.rollups.aggregate_visits(conn, 0, lambda key, at: True, {}, True)  # counted in Python
    assert in_sql.event_counts_in_sql and not python_rows.event_counts_in_sql
    expected = sorted(row for row in python_rows.rows()[0] if row[1] in ("event_key", "event_value"))
    assert len(stored) == len(expected) > len(values)
    assert stored == expected
