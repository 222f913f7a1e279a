"""ship: `footfall ship clickhouse`, footfall's events into Umami's ClickHouse tables, in key order and batches.

Owns: the mapping of footfall's events (with their session attributes), event data and identify data onto Umami's rows; the
stable event ids (from the install secret and the event key); the shipping position kept in the ``setting`` table (rows
'ship_clickhouse' and 'ship_event_key', written through collector.transaction); --once and --follow.

Imports: collector (connect, transaction, constants), footfall.clickhouse (tables, Target) and the stdlib; the
SQLite file is read with sqlite3. Never web or app.

How a batch is made safe (ClickHouse inserts are not transactional): before inserting events with keys first…last, the
range is written to the position row as pending; after each table's insert is acknowledged, that table is marked done; when
all are, the watermark moves to last and the pending range is cleared, in one SQLite transaction. A restart that finds a
pending range re-reads it and, for every table not marked done, asks ClickHouse which of the batch's rows it already holds
and inserts only the others. Every insert also carries an ``insert_deduplication_token`` made from the rows it holds, so
servers that deduplicate inserts (replicated and cloud tables) drop an identical retry by themselves.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec

from collector import EVENT_PERFORMANCE, ConfigError, connect, transaction
from footfall.clickhouse import (
    BLANKABLE,
    DEFAULT_BATCH_SIZE,
    FOOTFALL_EVENT_COLUMNS,
    MAX_DATETIME,
    MAX_DECIMAL64_4,
    SESSION_COLUMNS,
    TABLES,
    VITALS,
    WEBSITE_EVENT_COLUMNS,
    ShipError,
    Target,
    ensure_schema,
    quoted,
)

#: Seconds between looks for new events with --follow.
DEFAULT_POLL_SECONDS = 5.0

#: Longest wait between retries while ClickHouse cannot be reached (--follow doubles the wait up to this).
MAX_RETRY_SECONDS = 60.0

#: Ids per ``IN (…)`` list when asking ClickHouse which rows it holds (keeps queries under max_query_size).
CHECK_CHUNK = 1000

#: The ``setting`` rows ship keeps: the position per target (JSON) and the highest event key any target acknowledged (the
#: writer never hands out a key at or below it again, so no key names two events).
POSITION_SETTING = "ship_clickhouse"
FLOOR_SETTING = "ship_event_key"

# ------------------------------------------------------------------------------------------------------------------------
# The position in the footfall file
# ------------------------------------------------------------------------------------------------------------------------


class Pending(msgspec.Struct):
    """A batch sent but not yet acknowledged by every table: its key range and the tables that acknowledged it."""

    first: int
    last: int
    done: list[str] = []


class Position(msgspec.Struct):
    """How far one target has been shipped."""

    event_key: int = 0  #: every event up to this key is in ClickHouse
    session_data_at: int = 0  #: identify data written at or after this time is (re)sent on the next pass
    pending: Pending | None = None


def _read_positions(conn: sqlite3.Connection) -> dict[str, Position]:
    row = conn.execute("SELECT value FROM setting WHERE name = ?", (POSITION_SETTING,)).fetchone()
    return {} if row is None else msgspec.json.decode(row[0], type=dict[str, Position])


def load_position(conn: sqlite3.Connection, target_name: str) -> Position:
    return _read_positions(conn).get(target_name, Position())


def save_position(conn: sqlite3.Connection, target_name: str, position: Position) -> None:
    """Store one target's position (and raise the key floor the writer respects), in one transaction."""
    now = int(time.time())
    with transaction(conn):
        positions = _read_positions(conn)
        positions[target_name] = position
        conn.execute(
            "INSERT INTO setting (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            (POSITION_SETTING, msgspec.json.encode(positions).decode(), now),
        )
        floor = max([position.event_key, *(p.pending.last for p in [position] if p.pending)])
        conn.execute(
            "INSERT INTO setting (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)), updated_at = excluded.updated_at",
            (FLOOR_SETTING, str(floor), now),
        )


# ------------------------------------------------------------------------------------------------------------------------
# Reading a batch and turning it into ClickHouse rows
# ------------------------------------------------------------------------------------------------------------------------

#: Where each website_event column comes from in footfall (Umami's column order; event_id is derived, job_id left NULL).
_SOURCES = {
    "website_id": "w.website_id",
    "session_id": "s.session_id",
    "visit_id": "v.visit_id",
    **{name: f"s.{name}" for name in (*SESSION_COLUMNS, "distinct_id")},
    "created_at": "e.created_at",
}
_EVENT_COLUMNS = [name for name, _ in WEBSITE_EVENT_COLUMNS if name not in ("event_id", "job_id")]
_EXPRESSIONS = [_SOURCES.get(name, f"e.{name}") for name in _EVENT_COLUMNS]
_BLANK_MARKS = " || ".join(f"iif({_SOURCES.get(name, f'e.{name}')} = '', '{name},', '')" for name in BLANKABLE)

#: One row per event: its key, the website_event columns in order ('' for NULL text, as ClickHouse keeps it), then what
#: only footfall_event and website_performance hold, and the columns that were '' rather than NULL.
_EVENT_SELECT = f"""
SELECT e.event_key, {
    ", ".join(
        e if e.startswith(("w.", "v.")) or e in ("e.created_at", "e.event_type", "e.url_path") else f"ifnull({e}, '')"
        for e in _EXPRESSIONS
    )
},
       e.duration, {", ".join("e." + c for c in VITALS)}, {_BLANK_MARKS}
  FROM website_event e
  JOIN website w ON w.website_key = e.website_key
  JOIN session s ON s.session_key = e.session_key
  JOIN visit v ON v.visit_key = e.visit_key"""

_AT = {name: i + 1 for i, name in enumerate(_EVENT_COLUMNS)}  # positions in a row of _EVENT_SELECT
_EXTRA_AT = 1 + len(_EVENT_COLUMNS)  # duration, the five vitals, the blank marks


class Batch(NamedTuple):
    """One batch's rows per ClickHouse table, each row with the identity used to tell whether ClickHouse holds it."""

    first: int
    last: int
    events: int
    tables: dict[str, list[tuple[Any, bytes]]]  # table → [(identity, JSON row)]


_encode = msgspec.json.Encoder().encode


def _text(value: str | None) -> str:
    return "" if value is None else value


def _decimal(value: float | None, places: int) -> float | None:
    if value is None or not math.isfinite(value) or abs(value) >= MAX_DECIMAL64_4:
        return None
    return round(value, places)


def _datetime(value: int | None) -> int | None:
    return value if value is not None and 0 <= value <= MAX_DATETIME else None


_NO_VITALS = [None] * len(VITALS)


def event_ids(secret: str) -> Callable[[int], str]:
    """event key → the event's ClickHouse event_id: a name-based UUID (version 5 layout) of SHA-256(install secret, key),
    stable for this file, different in every other file, and not guessable without the secret."""
    base = hashlib.sha256(f"footfall-event:{secret}:".encode())

    def event_id(event_key: int) -> str:
        digest = base.copy()
        digest.update(str(event_key).encode())
        h = digest.hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"

    return event_id


def event_uuid(secret: str, event_key: int) -> str:
    """One event's ClickHouse event_id (see event_ids)."""
    return event_ids(secret)(event_key)


def read_batch(conn: sqlite3.Connection, secret: str, after: int, limit: int, upto: int | None = None) -> Batch | None:
    """Events with keys above ``after`` (up to ``upto``, at most ``limit``) with their data, as rows for each table."""
    with transaction(conn, immediate=False):  # one snapshot: an event and its data rows are committed together
        if upto is None:
            events = conn.execute(_EVENT_SELECT + " WHERE e.event_key > ? ORDER BY e.event_key LIMIT ?", (after, limit))
        else:
            events = conn.execute(
                _EVENT_SELECT + " WHERE e.event_key > ? AND e.event_key <= ? ORDER BY e.event_key", (after, upto)
            )
        events = events.fetchall()
        if not events:
            return None
        first, last = events[0][0], events[-1][0]
        data = conn.execute(
            "SELECT event_key, data_key, data_type, string_value, number_value, date_value FROM event_data "
            "WHERE event_key BETWEEN ? AND ? ORDER BY event_key, data_key",
            (first, last),
        ).fetchall()
    tables: dict[str, list[tuple[Any, bytes]]] = {t.name: [] for t in TABLES if t.name != "session_data"}
    website_event, footfall_event, performance = (
        tables["website_event"],
        tables["footfall_event"],
        tables["website_performance"],
    )
    by_key: dict[int, tuple[str, str, str, str, str, int]] = {}
    at_path, at_name, at_type, at_created = _AT["url_path"], _AT["event_name"], _AT["event_type"], _AT["created_at"]
    ids = event_ids(secret)
    for row in events:
        event_id = ids(row[0])
        website_id, session_id, visit_id, created = row[1], row[2], row[3], row[at_created]
        by_key[row[0]] = (website_id, session_id, event_id, row[at_path], row[at_name], created)
        website_event.append((event_id, _encode([website_id, session_id, visit_id, event_id, *row[4:_EXTRA_AT]])))
        duration, *vitals, marks = row[_EXTRA_AT:]
        if row[at_type] == EVENT_PERFORMANCE:
            perf = [
                website_id,
                session_id,
                visit_id,
                row[at_path],
                *(_decimal(v, 4 if name == "cls" else 1) for name, v in zip(VITALS, vitals)),
                created,
            ]
            performance.append((tuple(perf), _encode(perf)))
        if marks or duration is not None or vitals != _NO_VITALS:
            blank = marks.split(",")[:-1]
            extra = [website_id, event_id, created, duration if duration is None else min(duration, MAX_DATETIME), *vitals]
            footfall_event.append((event_id, _encode([*extra, blank])))
    for event_key, data_key, data_type, string_value, number_value, date_value in data:
        website_id, session_id, event_id, url_path, event_name, created = by_key[event_key]
        values = [string_value, _decimal(number_value, 4), _datetime(date_value), data_type]
        encoded = _encode([website_id, session_id, event_id, url_path, event_name, data_key, *values, created])
        tables["event_data"].append(((event_id, data_key), encoded))
    return Batch(first, last, len(events), tables)


_TABLE_COLUMNS = {t.name: [c for c, _ in t.columns if c != "job_id"] for t in TABLES}
_TABLE_COLUMNS["footfall_event"] = [c for c, _ in FOOTFALL_EVENT_COLUMNS]


def _token(table: str, rows: Sequence[tuple[Any, bytes]]) -> str:
    digest = hashlib.sha256(table.encode())
    for _, encoded in rows:
        digest.update(encoded)
        digest.update(b"\n")
    return f"footfall-{table}-{digest.hexdigest()[:40]}"


def _held(target: Target, table: str, rows: list[tuple[Any, bytes]]) -> collections.Counter[Any]:
    """Which of ``rows`` (by identity) ClickHouse already holds, counted (a batch cut short by a crash may be half in)."""
    held: collections.Counter[Any] = collections.Counter()
    db = target.database
    if table in ("website_event", "footfall_event"):
        ids = [identity for identity, _ in rows]
        for start in range(0, len(ids), CHECK_CHUNK):
            chunk = ids[start : start + CHECK_CHUNK]
            found = target.rows(f"SELECT toString(event_id) FROM {db}.{table} WHERE event_id IN ({quoted(chunk)})")
            held.update(row[0] for row in found)
    elif table == "event_data":
        ids = sorted({identity[0] for identity, _ in rows})
        for start in range(0, len(ids), CHECK_CHUNK):
            chunk = ids[start : start + CHECK_CHUNK]
            found = target.rows(
                f"SELECT toString(event_id), data_key FROM {db}.event_data WHERE event_id IN ({quoted(chunk)})"
            )
            held.update((event_id, data_key) for event_id, data_key in found)
    else:  # website_performance has no id of its own: a row is its visit, page, values and time
        sessions = sorted({identity[1] for identity, _ in rows})
        low, high = min(identity[-1] for identity, _ in rows), max(identity[-1] for identity, _ in rows)
        for start in range(0, len(sessions), CHECK_CHUNK):
            chunk = sessions[start : start + CHECK_CHUNK]
            found = target.rows(
                f"SELECT toString(website_id), toString(session_id), toString(visit_id), url_path, "
                f"{', '.join(f'toFloat64OrNull(toString({v}))' for v in VITALS)}, toUnixTimestamp(created_at) "
                f"FROM {db}.website_performance WHERE session_id IN ({quoted(chunk)}) "
                f"AND created_at >= toDateTime({low}, 'UTC') AND created_at <= toDateTime({high}, 'UTC')"
            )
            held.update(tuple(row) for row in found)
    return held


def _missing(target: Target, table: str, rows: list[tuple[Any, bytes]]) -> list[tuple[Any, bytes]]:
    held = _held(target, table, rows)
    out = []
    for identity, encoded in rows:
        if held[identity] > 0:
            held[identity] -= 1
        else:
            out.append((identity, encoded))
    return out


def send_batch(target: Target, batch: Batch, done: list[str], check: bool, mark: Callable[[str], None]) -> None:
    """Insert each table's rows not yet acknowledged; with ``check``, only those ClickHouse does not hold already."""
    for table in ("event_data", "footfall_event", "website_performance", "website_event"):
        if table in done:
            continue
        rows = batch.tables[table]
        if check and rows:
            rows = _missing(target, table, rows)
        target.insert(table, _TABLE_COLUMNS[table], [encoded for _, encoded in rows], _token(table, rows))
        mark(table)


def _session_data_rows(conn: sqlite3.Connection, since: int, after: tuple[int, str], limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT d.session_key, d.data_key, w.website_id, s.session_id, d.string_value, d.number_value, d.date_value, "
        "d.data_type, d.distinct_id, d.created_at FROM session_data d JOIN session s ON s.session_key = d.session_key "
        "JOIN website w ON w.website_key = s.website_key WHERE d.created_at >= ? AND (d.session_key, d.data_key) > (?, ?) "
        "ORDER BY d.session_key, d.data_key LIMIT ?",
        (since, *after, limit),
    ).fetchall()


def ship_session_data(conn: sqlite3.Connection, target: Target, since: int, batch_size: int) -> tuple[int, int]:
    """Send identify data written since ``since`` into session_data (a ReplacingMergeTree: a row sent twice is one row
    after merges, so a repeat is harmless); the rows sent and the newest created_at seen."""
    sent, newest, after = 0, since, (0, "")
    while rows := _session_data_rows(conn, since, after, batch_size):
        encoded = [
            _encode(
                [
                    website_id,
                    session_id,
                    data_key,
                    string_value,
                    _decimal(number_value, 4),
                    _datetime(date_value),
                    data_type,
                    _text(distinct_id),
                    created,
                ]
            )
            for _, data_key, website_id, session_id, string_value, number_value, date_value, data_type, distinct_id, created in rows
        ]
        target.insert(
            "session_data", _TABLE_COLUMNS["session_data"], encoded, _token("session_data", [(0, e) for e in encoded])
        )
        sent += len(rows)
        newest = max(newest, *(row[-1] for row in rows))
        after = (rows[-1][0], rows[-1][1])
    return sent, newest


# ------------------------------------------------------------------------------------------------------------------------
# Shipping
# ------------------------------------------------------------------------------------------------------------------------


class ShipResult(NamedTuple):
    events: int
    event_data: int
    session_data: int
    seconds: float
    notes: list[str]


def _secret(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM setting WHERE name = 'install_secret'").fetchone()
    if row is None:
        raise ConfigError("the database has no install secret; start footfall on it once (footfall serve)")
    return str(row[0])


def backlog(db: str, target_name: str) -> int:
    """Events not yet shipped to the target."""
    with contextlib.closing(connect(db)) as conn:
        position = load_position(conn, target_name)
        return int(conn.execute("SELECT count(*) FROM website_event WHERE event_key > ?", (position.event_key,)).fetchone()[0])


def ship(
    db: str,
    target: Target,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    check_schema: bool = True,
    wal_autocheckpoint: int = 1000,
) -> ShipResult:
    """Ship every event not yet in ClickHouse, in key order and batches of ``batch_size``, then the new identify data."""
    started = time.monotonic()
    notes = ensure_schema(target) if check_schema else []
    events = data_rows = 0
    # The position rows are written on this connection: under Litestream (wal_autocheckpoint 0) it must not checkpoint.
    with contextlib.closing(connect(db, wal_autocheckpoint=wal_autocheckpoint)) as conn:
        secret = _secret(conn)
        position = load_position(conn, target.name)

        def mark(table: str) -> None:
            assert position.pending is not None
            position.pending.done.append(table)
            save_position(conn, target.name, position)

        while not should_stop():
            recovering = position.pending is not None
            if recovering:  # a batch was cut short: re-read exactly its range and send what ClickHouse lacks
                assert position.pending is not None
                batch = read_batch(conn, secret, position.pending.first - 1, batch_size, upto=position.pending.last)
            else:
                batch = read_batch(conn, secret, position.event_key, batch_size)
            if batch is None:
                if recovering:  # its events were deleted meanwhile (prune, forget): nothing left to send
                    assert position.pending is not None
                    position.event_key, position.pending = max(position.event_key, position.pending.last), None
                    save_position(conn, target.name, position)
                    continue
                break
            if not recovering:
                position.pending = Pending(batch.first, batch.last)
                save_position(conn, target.name, position)
            assert position.pending is not None
            send_batch(target, batch, position.pending.done, recovering, mark)
            position.event_key, position.pending = max(position.event_key, position.pending.last), None
            save_position(conn, target.name, position)
            events += batch.events
            data_rows += len(batch.tables["event_data"])
            if progress is not None:
                progress(batch.events)
        sent = 0
        if not should_stop():
            pass_started = int(time.time())
            sent, newest = ship_session_data(conn, target, position.session_data_at, batch_size)
            # Rows written from now on have created_at ≥ this pass's start (the server's clock), so the next pass sees them.
            position.session_data_at = max(position.session_data_at, min(newest, pass_started))
            save_position(conn, target.name, position)
    return ShipResult(events, data_rows, sent, time.monotonic() - started, notes)


def follow(
    db: str,
    target: Target,
    batch_size: int,
    poll_seconds: float,
    progress: Callable[[int], None] | None,
    should_stop: Callable[[], bool],
    on_error: Callable[[str, float], None],
    sleep: Callable[[float], None] = time.sleep,
    wal_autocheckpoint: int = 1000,
) -> int:
    """Ship, then look for new events every ``poll_seconds`` until ``should_stop()``; ClickHouse outages are retried with
    growing waits (the pending batch makes the retry safe). The events shipped."""
    total, wait, schema_checked = 0, poll_seconds, False
    while not should_stop():
        try:
            result = ship(db, target, batch_size, progress, should_stop, not schema_checked, wal_autocheckpoint)
        except (ShipError, sqlite3.OperationalError) as exc:  # ClickHouse away, or the file locked longer than the timeout
            on_error(str(exc), wait)
            _sleep_unless_stopped(wait, should_stop, sleep)
            wait = min(MAX_RETRY_SECONDS, wait * 2)
            continue
        schema_checked, wait = True, poll_seconds
        total += result.events
        _sleep_unless_stopped(poll_seconds, should_stop, sleep)
    return total


def _sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool], sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        sleep(min(0.2, left))
