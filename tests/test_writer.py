"""The writer: group commits, nothing acknowledged lost, bounded queue, and recovery from a busy, full or bad database."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import collector
import footfall.app
from conftest import FIREFOX, AppClient, Clock, assert_api_error, hit, open_client, rows

pytestmark = pytest.mark.anyio


async def post(client: AppClient, website: str, path: str = "/", agent: str = FIREFOX):  # type: ignore[no-untyped-def]
    return await client.post("/api/send", json=hit(website, url=path), headers={"User-Agent": agent})


async def test_concurrent_events_are_all_stored(db_path: Path, clock: Clock, website: str) -> None:
    """1,000 concurrent events: every one is acknowledged, and after shutdown exactly 1,000 rows are there."""
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        responses = await asyncio.gather(*(post(client, website, f"/p{i}", f"{FIREFOX} n/{i}") for i in range(1000)))
        commits = client.app.state.collection.writer.commits
    assert [r.status_code for r in responses] == [200] * 1000
    assert rows(db_path, "SELECT count(*), count(DISTINCT url_path), count(DISTINCT session_key) FROM website_event") == [
        (1000, 1000, 1000)
    ]
    assert commits < 1000  # grouped: many events per transaction


@contextlib.contextmanager
def write_lock(db_path: Path):  # type: ignore[no-untyped-def]
    """Hold the database's write lock from another connection, as a person in a long sqlite3 transaction would."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_full_queue_answers_503_and_loses_nothing(db_path: Path, clock: Clock, website: str) -> None:
    """With the writer stuck behind a lock, requests beyond write_queue_max get 503 + Retry-After; the queued ones land."""
    config = collector.Config(db=str(db_path), batch_max_items=1, write_queue_max=2, busy_timeout_ms=20000)
    async with open_client(footfall.app.create_app(config, clock)) as client:
        writer = client.app.state.collection.writer
        with write_lock(db_path):
            waiting = [asyncio.create_task(post(client, website, f"/q{i}")) for i in range(2)]
            while writer.pending < 2:
                await asyncio.sleep(0.01)
            refused = await post(client, website, "/refused")
            assert_api_error(refused, 503, "service-unavailable", "overloaded")
            assert refused.headers["retry-after"] == "1"
        assert [(await t).status_code for t in waiting] == [200, 200]
        assert (await post(client, website, "/after")).status_code == 200
    assert rows(db_path, "SELECT url_path FROM website_event ORDER BY 1") == [("/after",), ("/q0",), ("/q1",)]


async def test_locked_database_answers_503_then_recovers(db_path: Path, clock: Clock, website: str) -> None:
    """A lock held past the busy timeout and retries gives 503; once released footfall writes again by itself."""
    config = collector.Config(db=str(db_path), busy_timeout_ms=50)
    async with open_client(footfall.app.create_app(config, clock)) as client:
        with write_lock(db_path):
            assert_api_error(await post(client, website, "/locked"), 503, "service-unavailable", "cannot be written")
        assert (await post(client, website, "/free")).status_code == 200
    assert rows(db_path, "SELECT url_path FROM website_event") == [("/free",)]


async def test_full_disk_answers_503_then_recovers(db_path: Path, clock: Clock, website: str) -> None:
    """'database or disk is full' (PRAGMA max_page_count) gives 503; when space returns, writes resume."""
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        writer = client.app.state.collection.writer
        assert (await post(client, website, "/before")).status_code == 200

        def cap(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await writer.call(cap)
        filler = "/" + "f" * 400
        answers = []
        for i in range(200):  # fill the last free pages until a write no longer fits
            answers.append(await post(client, website, filler, f"{FIREFOX} fill/{i}"))
            if answers[-1].status_code != 200:
                break
        assert_api_error(answers[-1], 503, "service-unavailable", "full")
        stored_while_full = len(answers) - 1

        def uncap(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA max_page_count = 1073741823")

        await writer.call(uncap)
        assert (await post(client, website, "/after")).status_code == 200
    assert rows(db_path, "SELECT count(*) FROM website_event WHERE url_path = ?", (filler,)) == [(stored_while_full,)]
    assert rows(db_path, "SELECT count(*) FROM website_event WHERE url_path IN ('/before', '/after')") == [(2,)]


async def test_a_row_that_cannot_commit_fails_only_its_own_request(db_path: Path, clock: Clock, website: str) -> None:
    """When one job in a group commit violates a constraint, the others are still committed and acknowledged."""
    collector.prepare_database(str(db_path))
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON website_event WHEN NEW.url_path = '/poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        paths = ["/good-1", "/poison", "/good-2", "/good-3"]
        answers = await asyncio.gather(*(post(client, website, p, f"{FIREFOX} c/{i}") for i, p in enumerate(paths)))
    assert [r.status_code for r in answers] == [200, 500, 200, 200]
    assert_api_error(answers[1], 500, "server-error", "Server error")
    assert rows(db_path, "SELECT url_path FROM website_event ORDER BY 1") == [("/good-1",), ("/good-2",), ("/good-3",)]


async def test_closed_writer_refuses_with_503(db_path: Path, website: str) -> None:
    """After close() the writer answers 503 rather than accepting what it would never write."""
    collector.prepare_database(str(db_path))
    writer = collector.EventWriter(str(db_path), 5000, 10)
    await writer.start()
    await writer.close()
    await writer.close()  # idempotent
    with pytest.raises(collector.ApiError) as caught:
        await writer.submit([])
    assert caught.value.status == 503


async def test_read_only_database_answers_503_then_recovers(db_path: Path, clock: Clock, website: str) -> None:
    """'attempt to write a readonly database' gives 503 with Retry-After; once writable again, writes resume."""
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        writer = client.app.state.collection.writer

        def read_only(conn: sqlite3.Connection, on: bool) -> None:
            conn.execute(f"PRAGMA query_only = {int(on)}")

        await writer.call(lambda conn: read_only(conn, True))
        refused = await post(client, website, "/while-read-only")
        assert_api_error(refused, 503, "service-unavailable", "readonly")
        assert refused.headers["retry-after"] == "1"
        await writer.call(lambda conn: read_only(conn, False))
        assert (await post(client, website, "/writable")).status_code == 200
    assert rows(db_path, "SELECT url_path FROM website_event") == [("/writable",)]


async def test_every_row_shape_in_one_commit_keeps_its_values_and_order(db_path: Path, clock: Clock, website: str) -> None:
    """Plain pageviews, campaign URLs, performance reports and a custom event in one batch (written by shape-specific
    INSERTs): each row holds exactly its values, in the batch's order."""
    items = [
        hit(website, url="/plain"),
        hit(website, url="/utm?utm_source=news&gclid=g1"),
        hit(website, type_="performance", url="/perf", lcp=1200.5, cls=0.1, duration=5000),
        hit(website, url="/plain2", name="signup"),
        hit(website, url="/utm2?utm_campaign=launch"),
    ]
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        answer = await client.post("/api/batch", json=items, headers={"User-Agent": FIREFOX})
        assert answer.json()["processed"] == 5, answer.text
    assert rows(
        db_path,
        "SELECT url_path, event_type, event_name, utm_source, utm_campaign, gclid, lcp, cls, duration"
        " FROM website_event ORDER BY event_key",
    ) == [
        ("/plain", 1, None, None, None, None, None, None, None),
        ("/utm", 1, None, "news", None, "g1", None, None, None),
        ("/perf", 5, None, None, None, None, 1200.5, 0.1, 5000),
        ("/plain2", 2, "signup", None, None, None, None, None, None),
        ("/utm2", 1, None, None, "launch", None, None, None, None),
    ]


def body_of(website: str, path: str, size: int) -> bytes:
    """An /api/send body of exactly ``size`` bytes (the title pads it)."""
    import msgspec

    base = msgspec.json.encode(hit(website, url=path, title=""))
    return base.replace(b'"title":""', b'"title":"' + b"t" * (size - len(base)) + b'"')


async def test_queue_bounded_by_bytes_answers_503_past_the_limit(db_path: Path, clock: Clock, website: str) -> None:
    """Bodies whose events wait for the writer may add up to write_queue_max_bytes: one byte more gets 503 +
    Retry-After and is not stored; a body that fits exactly is accepted, and every accepted event lands."""
    limit = 3000
    config = collector.Config(
        db=str(db_path), max_body_bytes=limit, batch_max_bytes=limit, write_queue_max_bytes=limit, busy_timeout_ms=20000
    )
    headers = {"User-Agent": FIREFOX, "Content-Type": "application/json"}
    async with open_client(footfall.app.create_app(config, clock)) as client:
        writer = client.app.state.collection.writer
        with write_lock(db_path):
            first = asyncio.create_task(client.post("/api/send", content=body_of(website, "/first", 1800), headers=headers))
            while writer.pending_bytes < 1800:
                await asyncio.sleep(0.01)
            over = await client.post("/api/send", content=body_of(website, "/over", 1201), headers=headers)
            assert_api_error(over, 503, "service-unavailable", "overloaded")
            assert over.headers["retry-after"] == "1"
            batch = [hit(website, url="/over-batch")]
            assert_api_error(await client.post("/api/batch", json=batch * 30, headers=headers), 503, "service-unavailable")
            fits = asyncio.create_task(client.post("/api/send", content=body_of(website, "/fits", 1200), headers=headers))
            while writer.pending_bytes < limit:
                await asyncio.sleep(0.01)
            assert writer.pending_bytes == limit
        assert [(await t).status_code for t in (first, fits)] == [200, 200]
        assert writer.pending_bytes == 0
        assert (await client.post("/api/send", content=body_of(website, "/after", 2999), headers=headers)).status_code == 200
    stored = sorted(path for (path,) in rows(db_path, "SELECT url_path FROM website_event"))
    assert stored == ["/after", "/first", "/fits"]


def test_queue_bytes_must_hold_a_full_body(db_path: Path) -> None:
    """A write_queue_max_bytes smaller than the largest body footfall accepts is refused at start, naming the fix."""
    with pytest.raises(collector.ConfigError, match="write_queue_max_bytes must be at least batch_max_bytes"):
        collector.load_config({"db": str(db_path), "write_queue_max_bytes": "1000"}, {})
    assert collector.load_config({"write_queue_max_bytes": str(2**20)}, {}).write_queue_max_bytes == 2**20


async def test_wal_starts_over_while_readers_never_pause(
    db_path: Path, clock: Clock, website: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two readers whose transactions always overlap keep PASSIVE checkpoints from ever finishing (the WAL grew past a
    gigabyte in a 30-minute soak); past WAL_SIZE_LIMIT_BYTES the writer starts the WAL over, and every event lands."""
    monkeypatch.setattr(collector, "WAL_SIZE_LIMIT_BYTES", 1 << 20)
    monkeypatch.setattr(collector, "WAL_CHECK_SECONDS", 0.0)
    stop = threading.Event()

    def reader(delay: float) -> None:
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            time.sleep(delay)
            while not stop.is_set():
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM website_event").fetchone()
                time.sleep(0.02)  # the other reader starts before this one ends: there is never a moment without one
                conn.execute("COMMIT")

    wal = Path(f"{db_path}-wal")
    headers = {"User-Agent": FIREFOX}
    batch = [hit(website, url=f"/p{i}", data={f"k{j}": "v" * 40 for j in range(10)}) for i in range(500)]
    largest = 0
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        readers = [threading.Thread(target=reader, args=(delay,)) for delay in (0.0, 0.01)]
        for thread in readers:
            thread.start()
        try:
            for _ in range(12):
                assert (await client.post("/api/batch", json=batch, headers=headers)).status_code == 200
                largest = max(largest, wal.stat().st_size)
        finally:
            stop.set()
            for thread in readers:
                thread.join()
        restarts = client.app.state.collection.writer.wal_restarts
    assert restarts >= 2
    assert largest < 4 << 20  # a batch or two past the limit at most; without the restart it only grows (~13 MB here)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(6000,)]


async def test_a_reader_that_stays_is_asked_less_and_less_often(
    db_path: Path, clock: Clock, website: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read transaction left open (someone's sqlite3 shell) keeps every RESTART from finishing: the writer waits twice
    as long after each failed one instead of stalling every commit, and starts the WAL over once the reader is gone."""
    monkeypatch.setattr(collector, "WAL_SIZE_LIMIT_BYTES", 1 << 20)
    monkeypatch.setattr(collector, "WAL_CHECK_SECONDS", 0.05)
    monkeypatch.setattr(collector, "WAL_RESTART_WAIT_MS", 20)
    headers = {"User-Agent": FIREFOX}
    batch = [hit(website, url=f"/p{i}", data={f"k{j}": "v" * 40 for j in range(10)}) for i in range(500)]
    async with open_client(footfall.app.create_app(collector.Config(db=str(db_path)), clock)) as client:
        writer = client.app.state.collection.writer
        shell = sqlite3.connect(db_path, isolation_level=None)
        shell.execute("BEGIN")
        shell.execute("SELECT count(*) FROM website_event").fetchone()
        began = time.monotonic()
        while time.monotonic() - began < 1.5:
            assert (await client.post("/api/batch", json=batch, headers=headers)).status_code == 200
        # 0.05 s, then 0.1, 0.2, 0.4, 0.8 …: a handful of attempts in 1.5 s, not one per commit
        assert 1 <= writer.wal_busy <= 6 and writer.wal_restarts == 0
        shell.execute("COMMIT")
        shell.close()
        began = time.monotonic()
        while writer.wal_restarts == 0 and time.monotonic() - began < 10:
            assert (await client.post("/api/batch", json=batch[:10], headers=headers)).status_code == 200
            await asyncio.sleep(0.05)
        assert writer.wal_restarts == 1


def test_the_checkpointer_reads_the_frames_waiting_in_the_wal_index(db_path: Path) -> None:
    """Checkpointer.waiting_frames, read from the -shm file's header, is what SQLite itself reports: every frame of a WAL
    nobody has checkpointed (PRAGMA wal_checkpoint's log count), then none once a checkpoint has copied them."""
    from footfall.checkpoint import Checkpointer

    collector.prepare_database(str(db_path))
    checkpointer = Checkpointer(str(db_path), 5000, 1000)
    with contextlib.closing(collector.connect(str(db_path), wal_autocheckpoint=0)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert checkpointer.waiting_frames() == 0
        for n in range(20):
            with collector.transaction(conn):
                conn.execute("INSERT INTO setting (name, value, updated_at) VALUES (?, ?, 0)", (f"k{n}", "v" * 3000))
        waiting = checkpointer.waiting_frames()
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, waiting) == (0, frames) and frames >= 20
        assert copied == frames and checkpointer.waiting_frames() == 0
    asyncio.run(checkpointer.close())
