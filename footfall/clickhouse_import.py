"""clickhouse_import: `footfall import clickhouse`, Umami's ClickHouse tables back into a footfall file.

Owns: reading website_event, event_data and session_data (and footfall_event and website_performance where present) in
bounded pages and writing them as footfall's websites, sessions, visits, events and data, with website, session and visit
ids unchanged; what footfall_event recorded (NULL versus '', duration, exact vitals) makes a round trip exact.

Imports: collector (connect, prepare_database, transaction, EventRow, strip_www, constants), footfall.clickhouse (tables,
Target) and the stdlib. Never web or app.
"""

from __future__ import annotations

import collections
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from collector import (
    CAMPAIGN_PARAMS,
    EVENT_PERFORMANCE,
    ConfigError,
    EventRow,
    connect,
    prepare_database,
    strip_www,
    transaction,
)
from footfall.clickhouse import DEFAULT_BATCH_SIZE, SESSION_COLUMNS, VITALS, ShipError, Target, existing_columns, quoted

# ------------------------------------------------------------------------------------------------------------------------
# The way back: ClickHouse into a footfall file
# ------------------------------------------------------------------------------------------------------------------------

#: website_event columns read back, in this order.
_READ_COLUMNS = (
    "toString(website_id)",
    "toString(session_id)",
    "toString(visit_id)",
    "toString(event_id)",
    "toUnixTimestamp(created_at)",
    "event_type",
    "event_name",
    "url_path",
    "url_query",
    "referrer_path",
    "referrer_query",
    "referrer_domain",
    "page_title",
    "hostname",
    "tag",
    *CAMPAIGN_PARAMS,
    *SESSION_COLUMNS,
    "distinct_id",
)
_READ_NAMES = (
    "website_id",
    "session_id",
    "visit_id",
    "event_id",
    "created_at",
    "event_type",
    *_READ_COLUMNS[6:],
)
_R = {name: i for i, name in enumerate(_READ_NAMES)}


def _ensure_website(conn: sqlite3.Connection, site: str, websites: dict[str, int], counts: dict[str, int]) -> None:
    """Add the website ``site`` (named after ClickHouse and its id) unless the file has it; ``websites`` maps id → key."""
    if site not in websites:
        cur = conn.execute(
            "INSERT INTO website (website_id, name, created_at) VALUES (?, ?, ?)",
            (site, f"clickhouse {site[:8]}", int(time.time())),
        )
        websites[site] = int(cur.lastrowid or 0)
        counts["websites"] += 1


def _windows(target: Target, where: str, size: int) -> list[tuple[int, int]]:
    """[from, to) ranges of whole hours holding about ``size`` events each, in time order (the primary key's order)."""
    hours = target.rows(
        f"SELECT toUnixTimestamp(toStartOfHour(created_at)) AS h, count() FROM {target.database}.website_event "
        f"WHERE {where} GROUP BY h ORDER BY h"
    )
    windows: list[tuple[int, int]] = []
    start, count = None, 0
    for hour, n in hours:
        hour, n = int(hour), int(n)
        if start is None:
            start = hour
        elif count + n > size:
            windows.append((start, hour))
            start, count = hour, 0
        count += n
    if start is not None:
        windows.append((start, int(hours[-1][0]) + 3600))
    return windows


def _site_filter(website_id: str | None) -> str:
    if website_id is None:
        return "1"
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", website_id):
        raise ConfigError(f"--site must be a website UUID, not {website_id!r}")
    return f"website_id = toUUID('{website_id.lower()}')"


def _next_event_key(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            "SELECT max((SELECT ifnull(max(event_key), 0) FROM website_event), ifnull((SELECT max(CAST(value AS INTEGER)) "
            "FROM setting WHERE name IN ('rollup_event_key', 'ship_event_key')), 0))"
        ).fetchone()[0]
    )


def import_clickhouse(
    db: str,
    target: Target,
    website_id: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    merge: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Read Umami's ClickHouse tables (website_event, event_data, session_data; footfall_event and website_performance
    where present) into the footfall file ``db``, website ids, session ids and visit ids unchanged."""
    db_name = target.database
    if not existing_columns(target, "website_event"):
        raise ShipError(f"{db_name}.website_event does not exist; nothing to import")
    where = _site_filter(website_id)
    has_extra = bool(existing_columns(target, "footfall_event"))
    has_perf = bool(existing_columns(target, "website_performance"))
    counts: collections.Counter[str] = collections.Counter()
    prepare_database(db)
    with contextlib.closing(connect(db)) as conn:
        conn.execute("CREATE TEMP TABLE ch_event (event_id TEXT PRIMARY KEY, event_key INTEGER NOT NULL) WITHOUT ROWID")
        websites: dict[str, int] = dict(conn.execute("SELECT website_id, website_key FROM website").fetchall())
        site_ids = [
            row[0] for row in target.rows(f"SELECT DISTINCT toString(website_id) FROM {db_name}.website_event WHERE {where}")
        ]
        if not merge:
            for site in site_ids:
                key = websites.get(site)
                if (
                    key is not None
                    and conn.execute("SELECT 1 FROM website_event WHERE website_key = ? LIMIT 1", (key,)).fetchone()
                ):
                    raise ConfigError(
                        f"website {site} already has events in {db}; importing again would add them twice "
                        f"(pass --merge to add ClickHouse's events to the ones there)"
                    )
        sessions: dict[str, int] = {}
        visits: dict[str, int] = {}
        with transaction(conn):
            for site in site_ids:
                _ensure_website(conn, site, websites, counts)
        next_key = _next_event_key(conn)  # above every watermark: the rollups and any ship see the imported events
        for low, high in _windows(target, where, batch_size):
            span = f"{where} AND created_at >= toDateTime({low}, 'UTC') AND created_at < toDateTime({high}, 'UTC')"
            rows = target.rows(
                f"SELECT {', '.join(_READ_COLUMNS)} FROM {db_name}.website_event WHERE {span} "
                f"ORDER BY created_at, event_type, event_id"
            )
            extras: dict[str, list[Any]] = {}
            if has_extra:
                for row in target.rows(
                    f"SELECT toString(event_id), duration, {', '.join(VITALS)}, blank FROM {db_name}.footfall_event WHERE {span}"
                ):
                    extras[row[0]] = row[1:]
            perf: dict[tuple[Any, ...], list[Any]] = {}
            if has_perf:
                for row in target.rows(
                    f"SELECT toString(visit_id), url_path, toUnixTimestamp(created_at), "
                    f"{', '.join(f'toFloat64OrNull(toString({v}))' for v in VITALS)} FROM {db_name}.website_performance "
                    f"WHERE {span}"
                ):
                    perf.setdefault(tuple(row[:3]), list(row[3:]))
            with transaction(conn):
                for row in rows:
                    next_key += 1
                    _import_event(conn, row, next_key, websites, sessions, visits, extras, perf)
                    counts["events"] += 1
            if progress is not None:
                progress(len(rows))
        counts.update(_import_event_data(conn, target, where, batch_size))
        counts.update(_import_session_data(conn, target, where, batch_size, websites, sessions))
    return dict(counts)


def _or_null(value: str, name: str, blank: Sequence[str]) -> str | None:
    if value == "":
        return "" if name in blank else None
    return value


def _session_key(
    conn: sqlite3.Connection,
    session_id: str,
    website: int,
    created: int,
    attrs: Sequence[str | None],
    sessions: dict[str, int],
) -> int:
    key = sessions.get(session_id)
    if key is not None:
        return key
    found = conn.execute("SELECT session_key FROM session WHERE session_id = ?", (session_id,)).fetchone()
    if found is None:
        cur = conn.execute(
            "INSERT INTO session (session_id, website_key, browser, os, device, screen, language, country, region, city, "
            "distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (session_id, website, *attrs, created),
        )
        key = int(cur.lastrowid or 0)
    else:
        key = int(found[0])
    if len(sessions) > 100_000:
        sessions.clear()
    sessions[session_id] = key
    return key


def _import_event(
    conn: sqlite3.Connection,
    row: list[Any],
    event_key: int,
    websites: dict[str, int],
    sessions: dict[str, int],
    visits: dict[str, int],
    extras: dict[str, list[Any]],
    perf: dict[tuple[Any, ...], list[Any]],
) -> None:
    get = lambda name: row[_R[name]]  # noqa: E731
    extra = extras.get(get("event_id"))
    blank: Sequence[str] = extra[-1] if extra else ()
    text = lambda name: _or_null(get(name), name, blank)  # noqa: E731
    website = websites[get("website_id")]
    created = int(get("created_at"))
    attrs = [text(c) for c in (*SESSION_COLUMNS, "distinct_id")]
    session = _session_key(conn, get("session_id"), website, created, attrs, sessions)
    visit_id = get("visit_id")
    visit = visits.get(visit_id)
    if visit is None:
        found = conn.execute("SELECT visit_key FROM visit WHERE visit_id = ?", (visit_id,)).fetchone()
        if found is None:
            visit = int(
                conn.execute(
                    "INSERT INTO visit (visit_id, session_key, started_at) VALUES (?, ?, ?)", (visit_id, session, created)
                ).lastrowid
                or 0
            )
        else:
            visit = int(found[0])
        if len(visits) > 100_000:
            visits.clear()
        visits[visit_id] = visit
    kind = int(get("event_type"))
    if extra:
        duration, vitals = extra[0], extra[1:6]
    else:
        duration = None
        vitals = perf.get((visit_id, get("url_path"), created), [None] * 5) if kind == EVENT_PERFORMANCE else [None] * 5
    hostname, referrer = text("hostname"), text("referrer_domain")
    values = EventRow(
        created,
        kind,
        text("event_name"),
        get("url_path"),
        text("url_query"),
        text("referrer_path"),
        text("referrer_query"),
        referrer,
        int(bool(referrer) and referrer == strip_www(hostname)),
        text("page_title"),
        hostname,
        text("tag"),
        *(text(c) for c in CAMPAIGN_PARAMS),
        *vitals,
        duration,
    )
    conn.execute(
        f"INSERT INTO website_event (event_key, website_key, session_key, visit_key, {', '.join(EventRow._fields)}) "
        f"VALUES ({', '.join('?' * (len(EventRow._fields) + 4))})",
        (event_key, website, session, visit, *values),
    )
    conn.execute("INSERT OR REPLACE INTO temp.ch_event (event_id, event_key) VALUES (?, ?)", (get("event_id"), event_key))


def _unix_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _import_event_data(conn: sqlite3.Connection, target: Target, where: str, batch_size: int) -> dict[str, int]:
    """event_data in its sorting key's order, page by page; rows whose event was not imported are skipped."""
    counts: collections.Counter[str] = collections.Counter()
    after = ("00000000-0000-0000-0000-000000000000", "")
    while True:
        rows = target.rows(
            f"SELECT toString(event_id), data_key, data_type, string_value, toFloat64OrNull(toString(number_value)), "
            f"toUnixTimestamp(date_value) FROM {target.database}.event_data WHERE {where} AND "
            f"(event_id, data_key) > (toUUID('{after[0]}'), {quoted([after[1]])}) ORDER BY event_id, data_key "
            f"LIMIT {int(batch_size)}"
        )
        if not rows:
            break
        with transaction(conn):
            for event_id, data_key, data_type, string_value, number_value, date_value in rows:
                found = conn.execute("SELECT event_key FROM temp.ch_event WHERE event_id = ?", (event_id,)).fetchone()
                if found is None:
                    counts["skipped event data without its event"] += 1
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
                    "date_value) VALUES (?,?,?,?,?,?)",
                    (found[0], data_key, int(data_type), string_value, number_value, _unix_or_none(date_value)),
                )
                counts["event data"] += 1
        after = (rows[-1][0], rows[-1][1])
    return dict(counts)


def _import_session_data(
    conn: sqlite3.Connection, target: Target, where: str, batch_size: int, websites: dict[str, int], sessions: dict[str, int]
) -> dict[str, int]:
    """session_data, the newest row per session and key (ReplacingMergeTree keeps old rows until it merges)."""
    counts: collections.Counter[str] = collections.Counter()
    if not existing_columns(target, "session_data"):
        return {}
    after = ("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", "")
    while True:
        rows = target.rows(
            f"SELECT toString(website_id) AS w, toString(session_id) AS s, data_key, argMax(data_type, created_at), "
            f"argMax(string_value, created_at), toFloat64OrNull(toString(argMax(number_value, created_at))), "
            f"toUnixTimestamp(argMax(date_value, created_at)), argMax(distinct_id, created_at), "
            f"toUnixTimestamp(max(created_at)) FROM {target.database}.session_data WHERE {where} AND "
            f"(website_id, session_id, data_key) > (toUUID('{after[0]}'), toUUID('{after[1]}'), {quoted([after[2]])}) "
            f"GROUP BY website_id, session_id, data_key ORDER BY website_id, session_id, data_key LIMIT {int(batch_size)}"
        )
        if not rows:
            break
        with transaction(conn):
            for site, session_id, data_key, data_type, string_value, number_value, date_value, distinct_id, created in rows:
                _ensure_website(conn, site, websites, counts)
                attrs = [None] * len(SESSION_COLUMNS) + [distinct_id or None]
                session = _session_key(conn, session_id, websites[site], int(created), attrs, sessions)
                conn.execute(
                    "INSERT OR REPLACE INTO session_data (session_key, data_key, data_type, string_value, number_value, "
                    "date_value, distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        session,
                        data_key,
                        int(data_type),
                        string_value,
                        number_value,
                        _unix_or_none(date_value),
                        distinct_id or None,
                        int(created),
                    ),
                )
                counts["session data"] += 1
        after = (rows[-1][0], rows[-1][1], rows[-1][2])
    return dict(counts)
