"""`footfall ship clickhouse` and `footfall import clickhouse` against an in-process chDB (no server needed).

The footfall file is filled through the real collection API (/api/batch on the ASGI app): pageviews, custom events with
typed data, performance reports and identify calls on two sites over six days. Everything is compared with what the
footfall file itself says: its tables, its public views and its /api/summary numbers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
from conftest import ROOT, T0, Clock, add_website, open_client, rows
from footfall import clickhouse, ship
from footfall.clickhouse_import import import_clickhouse
from footfall.ops import forget_person

try:
    import chdb  # noqa: F401 - the tests run ClickHouse in-process
except ImportError:
    if os.environ.get("CI"):
        raise AssertionError("chdb is missing: .ci/run installs the test extra (pip install -e '.[test]')") from None
    pytest.skip("chdb not installed: pip install -e '.[test]'", allow_module_level=True)

AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36 "
    "Edg/141.0.0.0",
)
#: Public address blocks the embedded country data knows (only written into payload.ip; nothing is ever sent there).
PREFIXES = ("8.8", "81.2", "5.9", "1.1", "200.160")
PAGES = ("/", "/pricing", "/docs/start", "/blog/é-accents", "/about#team", "/search")
REFERRERS = (None, "https://www.google.com/search?q=x", "https://news.ycombinator.com/item?id=1", "")
#: The first day of events: six days ending the day before the pinned clock (2026-05-14).
START = T0 - 6 * 86400 - 10 * 3600
DAYS = 6
EVENTS = 12_000


def mixed_items(websites: list[str], count: int, seed: int, start: float = START, days: int = DAYS) -> list[dict[str, Any]]:
    """/api/batch items: visits of 1-5 pageviews, some custom events with every data type, performance reports and
    identify calls; empty strings where a tracker sends them (titles, screens, languages, tags)."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    while len(items) < count:
        site = rng.choice(websites)
        at = int(start + rng.randrange(days) * 86400 + rng.randrange(8 * 3600, 20 * 3600))
        visitor = rng.randrange(count // 6 + 1)
        base: dict[str, Any] = {
            "website": site,
            "ip": f"{PREFIXES[visitor % len(PREFIXES)]}.{visitor // 256 % 256}.{visitor % 256}",
            "userAgent": AGENTS[visitor % len(AGENTS)],
            "hostname": "example.com",
            "screen": rng.choice(["1920x1080", "390x844", ""]),
            "language": rng.choice(["en-US", "de-DE", ""]),
        }
        if visitor % 5 == 0:
            base["id"] = f"user-{visitor}"
        pages = rng.randrange(1, 6)
        for n in range(pages):
            path = rng.choice(PAGES)
            query = rng.choice(["", "?utm_source=news&utm_medium=email&utm_campaign=spring", "?gclid=abc&ttclid=t1", "?q=x"])
            view = {
                **base,
                "url": f"https://example.com{path}{query}",
                "title": rng.choice(["Home", "", "Prices — ünïcode"]),
                "timestamp": at + n * 40,
            }
            referrer = rng.choice(REFERRERS) if n == 0 else "https://example.com/"
            if referrer is not None:
                view["referrer"] = referrer
            if rng.random() < 0.2:
                view["tag"] = rng.choice(["a", ""])
            items.append({"type": "event", "payload": view})
            if rng.random() < 0.35:
                data = {
                    "plan": rng.choice(["pro", "free"]),
                    "price": rng.choice([9.99, 19, 0.5]),
                    "ok": rng.random() < 0.5,
                    "when": "2026-05-10T12:00:00.000Z",
                    "tags": ["x", 1],
                    "nested": {"level": 2},
                }
                name = rng.choice(["signup", "click", "download"])
                items.append({"type": "event", "payload": {**view, "name": name, "data": data, "timestamp": at + n * 40 + 5}})
            if rng.random() < 0.15:
                vitals = {
                    "lcp": round(rng.uniform(200, 5000), 2),
                    "inp": rng.choice([None, 120.5]),
                    "cls": round(rng.random() / 3, 5),
                    "fcp": 900.0,
                    "ttfb": 80.25,
                    "duration": rng.randrange(100, 90000),
                }
                perf = {**base, "url": f"https://example.com{path}", **vitals, "timestamp": at + n * 40 + 10}
                items.append({"type": "performance", "payload": perf})
        if rng.random() < 0.1:
            data = {"plan": "pro", "seats": rng.randrange(1, 50)}
            items.append({"type": "identify", "payload": {**base, "data": data, "timestamp": at + pages * 40}})
    return items[:count]


def send(db: Path, items: list[dict[str, Any]], wal_autocheckpoint: int = 1000) -> None:
    """Post ``items`` to /api/batch of an in-process footfall on ``db``; every one must be accepted."""

    async def run() -> None:
        config = collector.Config(db=str(db), wal_autocheckpoint=wal_autocheckpoint)
        async with open_client(footfall.app.create_app(config, Clock())) as client:
            for start in range(0, len(items), 500):
                response = await client.post("/api/batch", json=items[start : start + 500], headers={"User-Agent": AGENTS[0]})
                assert response.status_code == 200, response.text
                body = response.json()
                assert not body.get("errors"), body["details"][:1]

    asyncio.run(run())


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A footfall file with EVENTS mixed items on two sites (built once; tests work on copies)."""
    db = tmp_path_factory.mktemp("source") / "footfall.db"
    collector.prepare_database(str(db), now=T0)
    sites = [add_website(db, "one"), add_website(db, "two")]
    send(db, mixed_items(sites, EVENTS, seed=7))
    return db, sites


@pytest.fixture
def db(source: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A copy of the source file for one test."""
    copy = tmp_path / "footfall.db"
    with contextlib.closing(sqlite3.connect(source[0])) as src, contextlib.closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    return copy


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chDB directory of this test process (chDB opens one directory per process); each test has its own database."""
    return tmp_path_factory.mktemp("chdb")


_databases = itertools.count()


@pytest.fixture
def target(warehouse: Path) -> Iterator[clickhouse.Target]:
    opened = clickhouse.open_target(None, str(warehouse), f"t{next(_databases)}", os.environ)
    try:
        yield opened
    finally:
        opened.close()


def ch(target: clickhouse.Target, sql: str) -> list[list[Any]]:
    return target.rows(sql.replace("DB.", f"{target.database}."))


def footfall_event_ids(db: Path) -> dict[str, int]:
    """event_id → event_key for every event of the file, as ship derives them."""
    secret = rows(db, "SELECT value FROM setting WHERE name = 'install_secret'")[0][0]
    return {ship.event_uuid(secret, key): key for (key,) in rows(db, "SELECT event_key FROM website_event")}


def assert_exactly_shipped(db: Path, target: clickhouse.Target) -> None:
    """ClickHouse holds every event of the file once (no gap, no duplicate), and each event's data rows once."""
    expected = footfall_event_ids(db)
    shipped = [row[0] for row in ch(target, "SELECT toString(event_id) FROM DB.website_event")]
    duplicates = [i for i, n in collections.Counter(shipped).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} events shipped twice"
    assert set(shipped) == set(expected), (
        f"{len(set(expected) - set(shipped))} missing, {len(set(shipped) - set(expected))} extra"
    )
    data = ch(target, "SELECT toString(event_id), data_key FROM DB.event_data")
    assert len(data) == len(set(map(tuple, data))), "event data rows shipped twice"
    assert len(data) == rows(db, "SELECT count(*) FROM event_data")[0][0]
    perf = ch(target, "SELECT count() FROM DB.website_performance")[0][0]
    assert int(perf) == rows(db, "SELECT count(*) FROM website_event WHERE event_type = 5")[0][0]


def test_ship_gives_equal_counts_per_type_and_event_data_rows(db: Path, target: clickhouse.Target) -> None:
    """10 k+ mixed events: the same count per event type and per custom event name, the same event data rows, typed."""
    result = ship.ship(str(db), target, batch_size=2500)
    total = rows(db, "SELECT count(*) FROM website_event")[0][0]
    assert total >= 10_000
    assert result.events == total
    assert result.event_data == rows(db, "SELECT count(*) FROM event_data")[0][0]
    assert "created t" in result.notes[0] and result.notes[-1].endswith("website_event_stats_hourly and its materialized view")
    assert ch(target, "SELECT event_type, count() FROM DB.website_event GROUP BY 1 ORDER BY 1") == [
        list(row) for row in rows(db, "SELECT event_type, count(*) FROM website_event GROUP BY 1 ORDER BY 1")
    ]
    assert ch(target, "SELECT event_name, count() FROM DB.website_event WHERE event_type = 2 GROUP BY 1 ORDER BY 1") == [
        list(row)
        for row in rows(db, "SELECT event_name, count(*) FROM custom_events WHERE data_key = 'plan' GROUP BY 1 ORDER BY 1")
    ]
    # Every data row, with Umami's types: 1 string, 2 number (Decimal64(4)), 3 boolean, 4 date, 5 array.
    secret = rows(db, "SELECT value FROM setting WHERE name = 'install_secret'")[0][0]
    want = sorted(
        [ship.event_uuid(secret, key), data_key, data_type, string_value, number_value, date_value]
        for key, data_key, data_type, string_value, number_value, date_value in rows(
            db, "SELECT event_key, data_key, data_type, string_value, number_value, date_value FROM event_data"
        )
    )
    got = sorted(
        ch(
            target,
            "SELECT toString(event_id), data_key, data_type, string_value, toFloat64OrNull(toString(number_value)), "
            "toUnixTimestamp(date_value) FROM DB.event_data",
        )
    )
    assert got == want
    assert {row[2] for row in got} == {1, 2, 3, 4, 5}
    assert_exactly_shipped(db, target)


def test_ship_fills_session_columns_visit_url_referrer_campaign_and_title(db: Path, target: clickhouse.Target) -> None:
    """Each website_event row carries its event's own columns and its session's attributes as footfall has them."""
    ship.ship(str(db), target)
    secret = rows(db, "SELECT value FROM setting WHERE name = 'install_secret'")[0][0]
    columns = [
        *("website_id", "session_id", "visit_id", "hostname", *clickhouse.SESSION_COLUMNS, "url_path", "url_query"),
        *("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "referrer_path", "referrer_query"),
        *("referrer_domain", "page_title", "gclid", "fbclid", "msclkid", "ttclid", "li_fat_id", "twclid", "event_type"),
        *("event_name", "tag", "distinct_id", "created_unix"),
    ]
    want = {
        ship.event_uuid(secret, row[0]): ["" if v is None else v for v in row[1:]]
        for row in rows(db, f"SELECT event_key, {', '.join(columns)} FROM events")
    }
    as_text = {"website_id": "toString(website_id)", "session_id": "toString(session_id)", "visit_id": "toString(visit_id)"}
    expressions = [as_text.get(c, "toUnixTimestamp(created_at)" if c == "created_unix" else c) for c in columns]
    got = {row[0]: row[1:] for row in ch(target, f"SELECT toString(event_id), {', '.join(expressions)} FROM DB.website_event")}
    assert got == want
    # The attributes are really there: every event has a browser, os and device, and countries were located.
    filled = ch(
        target,
        "SELECT countIf(browser = ''), countIf(os = ''), countIf(device = ''), countIf(country != '') FROM DB.website_event",
    )
    assert filled[0][:3] == [0, 0, 0] and filled[0][3] > 0
    assert ch(
        target, "SELECT countIf(utm_source = 'news'), countIf(gclid = 'abc'), countIf(distinct_id != '') FROM DB.website_event"
    )[0] == [
        rows(db, "SELECT count(*) FROM events WHERE utm_source = 'news'")[0][0],
        rows(db, "SELECT count(*) FROM events WHERE gclid = 'abc'")[0][0],
        rows(db, "SELECT count(*) FROM events WHERE distinct_id IS NOT NULL")[0][0],
    ]


def test_identify_data_goes_to_session_data(db: Path, target: clickhouse.Target) -> None:
    """Identify data lands in session_data with its session, type and distinct id; a later identify replaces it there."""
    ship.ship(str(db), target)
    want = sorted(
        list(row)
        for row in rows(
            db,
            "SELECT s.session_id, d.data_key, d.data_type, d.string_value, ifnull(d.distinct_id, '') FROM session_data d "
            "JOIN session s ON s.session_key = d.session_key",
        )
    )
    assert len(want) > 50
    got = sorted(
        ch(target, "SELECT toString(session_id), data_key, data_type, string_value, distinct_id FROM DB.session_data FINAL")
    )
    assert got == want
    session_id, site, person = rows(
        db,
        "SELECT s.session_id, w.website_id, s.distinct_id FROM session_data d JOIN session s USING (session_key) "
        "JOIN website w USING (website_key) WHERE s.distinct_id IS NOT NULL AND d.data_key = 'plan' LIMIT 1",
    )[0]
    item = {"type": "identify", "payload": {"website": site, "id": person, "data": {"plan": "enterprise"}}}
    send(db, [item])
    ship.ship(str(db), target)
    assert ch(
        target, f"SELECT string_value FROM DB.session_data FINAL WHERE session_id = '{session_id}' AND data_key = 'plan'"
    ) == [["enterprise"]]


def test_hourly_stats_view_counts_what_was_shipped(db: Path, target: clickhouse.Target) -> None:
    """Umami's materialized view fills website_event_stats_hourly: its views add up to the pageviews, its visits to the
    visits (allow_dimensions_outside_sorting_key lets current ClickHouse create the table)."""
    ship.ship(str(db), target, batch_size=3000)
    views, visits = ch(target, "SELECT sum(views), uniqExact(visit_id) FROM DB.website_event_stats_hourly")[0]
    assert int(views) == rows(db, "SELECT count(*) FROM pageviews")[0][0]
    assert int(visits) == rows(db, "SELECT count(DISTINCT visit_key) FROM website_event")[0][0]
    setting = ch(
        target,
        "SELECT engine_full LIKE '%allow_dimensions_outside_sorting_key = 1%' FROM system.tables "
        "WHERE database = 'DB' AND name = 'website_event_stats_hourly'".replace("'DB'", f"'{target.database}'"),
    )
    assert setting == [[1]]


def test_shipping_twice_adds_nothing_and_100_new_events_ship_as_100_rows(
    db: Path, target: clickhouse.Target, source: tuple[Path, list[str]]
) -> None:
    first = ship.ship(str(db), target)
    before = int(ch(target, "SELECT count() FROM DB.website_event")[0][0])
    again = ship.ship(str(db), target)
    assert (again.events, again.event_data) == (0, 0)
    assert int(ch(target, "SELECT count() FROM DB.website_event")[0][0]) == before == first.events
    fresh = [item for item in mixed_items(source[1], 150, seed=99, start=T0 - 30 * 3600, days=1) if item["type"] != "identify"]
    send(db, fresh[:100])  # 100 events (identify calls write no event row)
    new = ship.ship(str(db), target)
    assert new.events == 100
    assert int(ch(target, "SELECT count() FROM DB.website_event")[0][0]) == before + 100
    assert_exactly_shipped(db, target)


def test_keys_of_forgotten_events_are_never_reused(
    db: Path, target: clickhouse.Target, source: tuple[Path, list[str]]
) -> None:
    """After `footfall forget` deletes the newest, already shipped events, new events get new keys (so new event ids):
    ship sends them instead of taking them for the deleted ones."""
    site = source[1][0]
    person = [
        {"type": "event", "payload": {"website": site, "url": f"/mine/{i}", "id": "leaver", "ip": "8.8.8.8"}} for i in range(5)
    ]
    send(db, person)
    ship.ship(str(db), target)
    shipped = int(ch(target, "SELECT count() FROM DB.website_event")[0][0])
    floor = rows(db, "SELECT max(event_key) FROM website_event")[0][0]
    assert forget_person(str(db), "leaver")["events"] == 5
    send(db, [{"type": "event", "payload": {"website": site, "url": f"/after/{i}", "ip": "8.8.4.4"}} for i in range(5)])
    assert [key for (key,) in rows(db, "SELECT event_key FROM website_event WHERE url_path LIKE '/after/%'")] == [
        floor + n for n in range(1, 6)
    ]
    assert ship.ship(str(db), target).events == 5
    assert int(ch(target, "SELECT count() FROM DB.website_event")[0][0]) == shipped + 5
    assert ch(target, "SELECT count() FROM DB.website_event WHERE url_path LIKE '/after/%'") == [[5]]


def test_ship_unit_verifies(tmp_path: Path) -> None:
    """systemd/footfall-ship-clickhouse.service (ship --follow beside footfall) passes systemd-analyze verify."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs systemd with apt-get")
    text = (ROOT / "systemd" / "footfall-ship-clickhouse.service").read_text()
    assert "ship clickhouse --follow" in text
    unit = tmp_path / "footfall-ship-clickhouse.service"
    unit.write_text(text.replace("/usr/local/bin/footfall", str(Path(sys.executable).with_name("footfall"))))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "footfall" not in result.stderr, result.stderr


def test_ship_leaves_checkpoints_to_litestream_when_told(tmp_path: Path, target: clickhouse.Target) -> None:
    """Beside Litestream (wal_autocheckpoint 0) ship's own writes, its position rows, never checkpoint the WAL into the
    database file; by default they do, as every SQLite connection does past 1000 WAL pages."""
    db = tmp_path / "wal.db"
    collector.prepare_database(str(db), now=T0)
    site = add_website(db)
    event = {"type": "event", "payload": {"website": site, "url": "/", "ip": "8.8.8.8"}}
    with contextlib.closing(collector.connect(str(db), wal_autocheckpoint=0)) as keeper:  # holds the WAL open, unmerged
        keeper.execute("CREATE TABLE filler (x BLOB)")
        keeper.executemany("INSERT INTO filler VALUES (randomblob(4000))", [()] * 1500)
        size = db.stat().st_size
        for checkpoints in (0, 1000):
            send(db, [event], wal_autocheckpoint=0)  # footfall under Litestream: no checkpoint of its own
            assert ship.ship(str(db), target, wal_autocheckpoint=checkpoints).events == 1
            if checkpoints == 0:
                assert db.stat().st_size == size  # the 1,500 pages are still only in the WAL
        assert db.stat().st_size > size + 1500 * 4000  # by default ship's commit checkpointed them into the file


class FlakyClient:
    """The real chDB client, failing on chosen inserts: after inserting only a part of the rows (a connection cut
    mid-insert) or before inserting anything (ClickHouse down). Stands in for a crash between two steps of a batch."""

    def __init__(self, client: Any, fail_on: set[int], partial: bool) -> None:
        self.client, self.fail_on, self.partial, self.inserts = client, fail_on, partial, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def raw_insert(self, table: str, column_names: list[str], insert_block: bytes, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import OperationalError

        self.inserts += 1
        if self.inserts in self.fail_on:
            if self.partial:
                lines = insert_block.split(b"\n")
                self.client.raw_insert(table, column_names, b"\n".join(lines[: len(lines) // 2]), **kwargs)
            raise OperationalError("Error HTTPConnectionPool: Read timed out (simulated)")
        return self.client.raw_insert(table, column_names, insert_block, **kwargs)


@pytest.mark.parametrize("partial", [False, True], ids=["before-insert", "mid-insert"])
def test_crash_mid_batch_resumes_without_gaps_or_duplicates(db: Path, target: clickhouse.Target, partial: bool) -> None:
    """Ship dies at inserts 3, 6, 11 and 17 (of 4 tables × 6 batches); each rerun starts afresh from the stored position.
    In the end ClickHouse holds every event exactly once."""
    real = target.client
    flaky = FlakyClient(real, {3, 6, 11, 17}, partial)
    failures = 0
    for _attempt in range(10):
        restarted = clickhouse.Target(flaky, target.database, target.name)  # a new process: only the file remembers
        try:
            ship.ship(str(db), restarted, batch_size=2000)
            break
        except clickhouse.ShipError as exc:
            assert str(exc) == "ClickHouse: Read timed out"
            failures += 1
            pending = json.loads(rows(db, "SELECT value FROM setting WHERE name = 'ship_clickhouse'")[0][0])[target.name]
            assert pending["pending"] is not None  # the cut batch is remembered, with the tables that acknowledged it
    assert failures == 4
    assert_exactly_shipped(db, target)
    # The writer never reuses a shipped key, even after the newest events are deleted (forget, prune).
    floor = int(rows(db, "SELECT value FROM setting WHERE name = 'ship_event_key'")[0][0])
    assert floor == rows(db, "SELECT max(event_key) FROM website_event")[0][0]


def test_follow_rides_out_an_outage(db: Path, target: clickhouse.Target) -> None:
    """--follow keeps going when ClickHouse is unreachable for a while, then ships everything exactly once."""
    flaky = FlakyClient(target.client, {2, 3, 4}, partial=False)
    errors: list[tuple[str, float]] = []
    expected = rows(db, "SELECT count(*) FROM website_event")[0][0]

    def should_stop() -> bool:  # stop once everything is there (a real --follow runs until SIGTERM)
        try:
            return int(ch(target, "SELECT count() FROM DB.website_event")[0][0]) >= expected
        except clickhouse.ShipError:  # the table is not created yet
            return False

    total = ship.follow(
        str(db),
        clickhouse.Target(flaky, target.database, target.name),
        batch_size=4000,
        poll_seconds=0.01,
        progress=None,
        should_stop=should_stop,
        on_error=lambda message, wait: errors.append((message, wait)),
        sleep=lambda seconds: None,
    )
    assert [message for message, _ in errors] == ["ClickHouse: Read timed out"] * 3
    assert [wait for _, wait in errors] == [0.01, 0.02, 0.04]  # the wait doubles while ClickHouse stays away
    assert total == expected
    assert_exactly_shipped(db, target)


def test_round_trip_gives_the_same_events_view_rows(db: Path, target: clickhouse.Target, tmp_path: Path) -> None:
    """footfall → ClickHouse → a new footfall file: the `events` view has the same rows (all but the file's own integer
    event_key), custom events the same data, and sessions the same identify data."""
    ship.ship(str(db), target, batch_size=5000)
    back = tmp_path / "back.db"
    counts = import_clickhouse(str(back), target, batch_size=3000)
    assert counts["events"] == rows(db, "SELECT count(*) FROM website_event")[0][0]
    columns = [name for (_, name, *_) in rows(db, "PRAGMA table_info(events)") if name != "event_key"]
    view = f"SELECT {', '.join(columns)} FROM events"
    assert collections.Counter(rows(back, view)) == collections.Counter(rows(db, view))
    data = "SELECT session_id, created_at, event_name, data_key, data_type, string_value, number_value, date_value FROM custom_events"
    assert collections.Counter(rows(back, data)) == collections.Counter(rows(db, data))
    identify = (
        "SELECT s.session_id, d.data_key, d.data_type, d.string_value, d.number_value, d.distinct_id FROM session_data d "
        "JOIN session s USING (session_key)"
    )
    assert collections.Counter(rows(back, identify)) == collections.Counter(rows(db, identify))
    assert sorted(rows(back, "SELECT website_id FROM website WHERE name LIKE 'clickhouse %'")) == sorted(
        rows(db, "SELECT website_id FROM website WHERE name IN ('one', 'two')")
    )
    with pytest.raises(collector.ConfigError, match="already has events in .*pass --merge"):
        import_clickhouse(str(back), target)


def test_umami_style_daily_query_equals_footfall_summary(
    db: Path, target: clickhouse.Target, source: tuple[Path, list[str]]
) -> None:
    """Pageviews and visitors per day for one site, asked of website_event as Umami's pageview stats ask it, equal the
    chart of footfall's /api/summary for the same days."""
    ship.ship(str(db), target)
    site = source[1][0]
    first = time.strftime("%Y-%m-%d", time.gmtime(START))
    last = time.strftime("%Y-%m-%d", time.gmtime(START + (DAYS - 1) * 86400))
    umami = ch(
        target,
        f"SELECT toUnixTimestamp(toStartOfDay(created_at, 'UTC')) AS day, count(*) AS pageviews, "
        f"count(DISTINCT session_id) AS visitors FROM DB.website_event WHERE website_id = '{site}' AND event_type = 1 "
        f"AND created_at >= toDateTime('{first} 00:00:00', 'UTC') AND created_at < toDateTime('{last} 00:00:00', 'UTC') + "
        f"INTERVAL 1 DAY GROUP BY day ORDER BY day",
    )

    async def summary() -> dict[str, Any]:
        async with open_client(footfall.app.create_app(collector.Config(db=str(db)), Clock())) as client:
            response = await client.get("/api/summary", params={"website": site, "start": first, "end": last})
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

    chart = asyncio.run(summary())["chart"]
    assert len(chart) == DAYS and len(umami) == DAYS
    assert [[day["start"], day["pageviews"], day["visitors"]] for day in chart] == [[int(d), p, v] for d, p, v in umami]
    assert (
        sum(p for _, p, _ in umami)
        == rows(db, "SELECT count(*) FROM pageviews WHERE website_id = ? AND day BETWEEN ? AND ?", (site, first, last))[0][0]
    )


def test_existing_tables_are_checked(warehouse: Path, db: Path) -> None:
    """Tables that exist are used as they are if they are Umami's, and refused with the difference if not."""
    target = clickhouse.open_target(None, str(warehouse), f"t{next(_databases)}", os.environ)
    try:
        target.command(f"CREATE TABLE {target.database}.website_event (website_id UUID, created_at DateTime) ENGINE = Log")
        with pytest.raises(clickhouse.ShipError) as caught:
            ship.ship(str(db), target)
        message = str(caught.value)
        assert message.startswith(f"{target.database}.website_event exists but is not Umami's (no column session_id;")
        assert "\n" not in message
        assert rows(db, "SELECT count(*) FROM setting WHERE name = 'ship_clickhouse'") == [(0,)]
    finally:
        target.close()


def test_numbers_and_dates_beyond_clickhouse_types_ship_as_text_only(tmp_path: Path, target: clickhouse.Target) -> None:
    """A number Decimal64(4) cannot hold and a date before 1970 keep their text; the typed value is NULL, not an error."""
    db = tmp_path / "edge.db"
    collector.prepare_database(str(db), now=T0)
    site = add_website(db)
    data = {"huge": 1e300, "old": "1969-07-20T20:17:00.000Z", "fine": 1.23456}
    send(db, [{"type": "event", "payload": {"website": site, "url": "/x", "name": "edge", "data": data, "ip": "8.8.8.8"}}])
    ship.ship(str(db), target)
    got = ch(
        target,
        "SELECT data_key, string_value, toFloat64OrNull(toString(number_value)), date_value FROM DB.event_data ORDER BY 1",
    )
    assert got == [
        ["fine", "1.2346", 1.2346, None],
        ["huge", f"{1e300:.4f}", None, None],
        ["old", "1969-07-20T20:17:00.000Z", None, None],
    ]


# ---- the command line --------------------------------------------------------------------------------------------------


def footfall_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_cli_ship_once_then_import(db: Path, tmp_path: Path) -> None:
    """`footfall ship clickhouse --chdb DIR` prints what it shipped and the rate; `footfall import clickhouse` reads it back."""
    total = rows(db, "SELECT count(*) FROM website_event")[0][0]
    data = rows(db, "SELECT count(*) FROM event_data")[0][0]
    identify = rows(db, "SELECT count(*) FROM session_data")[0][0]
    result = footfall_cli("ship", "clickhouse", "--chdb", "wh", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"shipped {total} events, {data} event data rows, {identify} session data rows in ")
    assert line.endswith(" events/s)")
    assert "created umami.website_event\n" in result.stderr
    again = footfall_cli("ship", "clickhouse", "--chdb", "wh", "--once", "--db", str(db), cwd=tmp_path)
    assert again.stdout.startswith("shipped 0 events, 0 event data rows"), again.stdout + again.stderr
    back = footfall_cli("import", "clickhouse", "--chdb", "wh", "--db", "back.db", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == f"{data} event data, {total} events, {identify} session data, 2 websites"
    refused = footfall_cli("import", "clickhouse", "--chdb", "wh", "--db", "back.db", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("footfall: error: website ")
    assert "Traceback" not in refused.stderr


def test_cli_errors_are_one_line(tmp_path: Path, db: Path) -> None:
    closed = footfall_cli("ship", "clickhouse", "--url", "http://127.0.0.1:9", "--db", str(db), cwd=tmp_path)
    assert (closed.returncode, closed.stderr.strip()) == (
        1,
        "footfall: error: cannot connect to ClickHouse at http://127.0.0.1:9: Connection refused",
    )
    scheme = footfall_cli("ship", "clickhouse", "--url", "ftp://example.org", "--db", str(db), cwd=tmp_path)
    assert (scheme.returncode, scheme.stderr.strip()) == (
        1,
        "footfall: error: --url must be http(s)://HOST[:PORT], not 'ftp://example.org'",
    )
    both = footfall_cli("ship", "clickhouse", "--url", "http://x", "--chdb", "y", "--db", str(db), cwd=tmp_path)
    assert (
        both.returncode == 2
        and both.stderr.strip() == "footfall: error: give --url or --chdb, not both — see `footfall ship clickhouse --help`"
    )
    missing = footfall_cli("ship", "clickhouse", "--chdb", "wh", "--db", "nope.db", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "footfall: error: no database at nope.db — start `footfall serve --db nope.db` or pass --db",
    )
    name = footfall_cli("ship", "clickhouse", "--chdb", "wh", "--database", "a-b", "--db", str(db), cwd=tmp_path)
    assert (name.returncode, name.stderr.strip()) == (
        1,
        "footfall: error: --database must be a plain ClickHouse name (letters, digits, _), not 'a-b'",
    )
    for result in (closed, scheme, both, missing, name):
        assert "Traceback" not in result.stderr


def test_cli_ship_killed_mid_run_then_resumed(db: Path, tmp_path: Path) -> None:
    """kill -9 during `ship --follow` (a crash at a random point of a batch), then `ship --once`: no gap, no duplicate."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "footfall",
            "ship",
            "clickhouse",
            "--chdb",
            "wh",
            "--follow",
            "--batch-size",
            "300",
            "--db",
            str(db),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = rows(db, "SELECT value FROM setting WHERE name = 'ship_clickhouse'")
            if found and next(iter(json.loads(found[0][0]).values()))["event_key"] > 2000:
                break
            time.sleep(0.02)
        else:
            pytest.fail("ship made no progress")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    position = next(iter(json.loads(rows(db, "SELECT value FROM setting WHERE name = 'ship_clickhouse'")[0][0]).values()))
    assert position["event_key"] < rows(db, "SELECT max(event_key) FROM website_event")[0][0]  # it really stopped half-way
    resumed = footfall_cli("ship", "clickhouse", "--chdb", "wh", "--db", str(db), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    check = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, str(tmp_path / "wh")], capture_output=True, text=True, timeout=60, check=True
    )
    shipped = json.loads(check.stdout)
    expected = footfall_event_ids(db)
    assert shipped["events"] == len(expected) and shipped["distinct"] == len(expected)
    assert set(shipped["ids"]) == set(expected)
    assert shipped["data"] == shipped["distinct_data"] == rows(db, "SELECT count(*) FROM event_data")[0][0]
    # SIGTERM (systemctl stop) ends --follow cleanly, between batches.
    follower = subprocess.Popen(
        [sys.executable, "-m", "footfall", "ship", "clickhouse", "--chdb", "wh", "--follow", "--poll", "0.2", "--db", str(db)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stderr is not None
    assert follower.stderr.readline().startswith(f"following {db} into chdb:")
    follower.send_signal(signal.SIGTERM)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0 and err.strip().endswith("stopped: shipped 0 events"), err


#: Reads a chDB directory in its own process (this process has its own chDB directory open).
CHECK_SCRIPT = """
import json, sys, clickhouse_connect
c = clickhouse_connect.get_client(interface="chdb", path=sys.argv[1])
ids = [r[0] for r in c.query("SELECT toString(event_id) FROM umami.website_event").result_rows]
data = c.query("SELECT count(), uniqExact(event_id, data_key) FROM umami.event_data").result_rows[0]
print(json.dumps({"events": len(ids), "distinct": len(set(ids)), "ids": ids, "data": data[0], "distinct_data": data[1]}))
"""


def test_modules_import_neither_web_nor_app() -> None:
    """The ClickHouse modules read the file through collector, and of the package only footfall.clickhouse."""
    for name in ("clickhouse", "ship", "clickhouse_import"):
        source = (ROOT / "footfall" / f"{name}.py").read_text()
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        package = [line for line in imports if line.startswith(("from footfall", "import footfall"))]
        assert all(line.startswith("from footfall.clickhouse import") for line in package), imports
