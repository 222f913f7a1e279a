"""Operating a database: backup, check, prune, forget, export, stats, as plain functions of a database path.

Owns: what the operating commands do; safe while footfall serves (reads in their own snapshot, deletes in small
transactions). Imports collector, footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from collector import (
    CAMPAIGN_PARAMS,
    DAY_SECONDS,
    HOUR_SECONDS,
    SALT_GRACE_SECONDS,
    ConfigError,
    connect,
    execute_statements,
    load_zone,
    transaction,
)
from footfall.rollups import (
    ROLLUP_BUCKET_SECONDS,
    VITALS,
    bucket_of,
    drop_pruned_rollups,
    hours_cut_by_prune,
    refresh_rollups,
    repair_rollups,
    stored_alignment,
)
from footfall.segments import RollupSource
from footfall.summary import panel_top, panel_totals

# What the operating commands (backup, check, prune, export, forget, stats) do, as plain functions of a database path so
# tests call them directly. They are safe while footfall serves: reads use their own transaction (WAL), deletes go in
# small transactions so ingest never waits long.

#: Events deleted per transaction by prune and retention, so a big delete never holds the write lock for long.
PRUNE_CHUNK_ROWS = 5000


#: Rows fetched at a time by export (memory stays constant whatever the size of the database).
EXPORT_BATCH_ROWS = 1000


#: How long prune and forget wait for the write lock per attempt, in milliseconds (footfall's writer holds it ~20 ms at a
#: time; another program's long transaction may hold it longer).
OPS_BUSY_TIMEOUT_MS = 10_000


#: Attempts at one transaction of prune or forget that finds the database locked, before the command gives up.
OPS_ATTEMPTS = 6


#: Told when a transaction found the database locked and is tried again: (attempt just failed, attempts in all).
Waiting = Callable[[int, int], None]


def retry_locked(fn: Callable[[], Any], waiting: Waiting | None = None, attempts: int | None = None) -> Any:
    """``fn()``, tried again (after a growing pause) while it finds the database locked; one clear error in the end."""
    attempts = OPS_ATTEMPTS if attempts is None else attempts
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == attempts:
                raise ConfigError(
                    f"the database stayed locked for {attempts} tries of {OPS_BUSY_TIMEOUT_MS / 1000:g} s; another "
                    "program holds a long write transaction (a sqlite3 shell?); end it and run this again"
                ) from None
            if waiting is not None:
                waiting(attempt, attempts)
            time.sleep(min(0.25 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


_AGE_RE = re.compile(r"(\d+)\s*([hdw])")


_AGE_UNITS = {"h": HOUR_SECONDS, "d": DAY_SECONDS, "w": 7 * DAY_SECONDS}


def parse_age(text: str) -> int:
    """Seconds in an age like '400d', '12w' or '36h'; ConfigError otherwise."""
    match = _AGE_RE.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{text!r} is not an age like 400d, 12w or 36h")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def backup_database(db: str, dest: Path | str, now: float | None = None) -> Path:
    """An online, consistent copy of ``db`` (VACUUM INTO: one read transaction, so footfall keeps writing meanwhile).

    ``dest`` may be a directory (the copy is named footfall-YYYYMMDDTHHMMSSZ.db in it; a name ending in / is created as
    one) or a file that does not exist yet.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    if str(dest).endswith(("/", os.sep)):
        Path(dest).mkdir(parents=True, exist_ok=True)
    dest = Path(dest)
    target = dest / f"footfall-{stamp}.db" if dest.is_dir() else dest
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another name or a directory")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with contextlib.closing(connect(db)) as conn:
        conn.execute("VACUUM INTO ?", (str(partial),))
    os.replace(partial, target)  # a backup file either is complete or does not exist
    return target


def expire_backups(folder: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete footfall-*.db backups in ``folder`` older than ``keep_days``; return what was deleted."""
    cutoff = (time.time() if now is None else now) - keep_days * DAY_SECONDS
    removed = []
    for path in sorted(folder.glob("footfall-*.db")):
        if path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    return removed


def check_database(db: str, now: float | None = None) -> dict[str, Any]:
    """Integrity, schema version, row counts and salt ages of a database, for `footfall check`."""
    now = time.time() if now is None else now
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = ("website", "session", "visit", "website_event", "event_data", "session_data", "bot_counter", "salt")
        return {
            "integrity": "ok" if integrity == ["ok"] else "; ".join(integrity[:20]),
            "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "rows": {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables},
            "salts": describe_salts(conn.execute("SELECT period, starts_at, ends_at FROM salt ORDER BY starts_at"), now),
        }


def in_words(seconds: float) -> str:
    """A length of time as a person says it: '30 days', '45 hours', '5 minutes', 'less than a minute'."""
    s = max(0, int(seconds))
    for unit, size in (("day", DAY_SECONDS), ("hour", HOUR_SECONDS), ("minute", 60)):
        if s >= 2 * size or (size == 60 and s >= 60):
            return f"{s // size} {unit}{'s' if s // size != 1 else ''}"
    return "less than a minute"


def describe_salts(salts: Iterable[tuple[str, int, int]], now: float) -> list[str]:
    """`footfall check`'s lines about the session salts (period key, start, end): which is in use and for how long."""
    lines, current = [], False
    for key, starts_at, ends_at in salts:
        rotation, _, first_day = key.partition(":")
        label = {"month": f"month {first_day[:7]}", "week": f"week of {first_day}"}.get(rotation, f"{rotation} {first_day}")
        if starts_at <= now < ends_at:
            current = True
            lines.append(f"current salt: {label}, rotates in {in_words(ends_at - now)}")
        elif now < starts_at:
            lines.append(f"next salt: {label}, ready")
        elif now < ends_at + SALT_GRACE_SECONDS:
            lines.append(f"previous salt: {label}, ended {in_words(now - ends_at)} ago, deleted within the hour")
        else:
            lines.append(f"old salt: {label}, ended {in_words(now - ends_at)} ago, deleted when footfall next runs")
    if not current:
        lines.insert(0, "current salt: none yet — `footfall serve` makes one when it starts")
    return lines


def website_key_for(conn: sqlite3.Connection, website_id: str | None) -> int | None:
    if website_id is None:
        return None
    row = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website_id.lower(),)).fetchone()
    if row is None:
        raise ConfigError(f"no website with id {website_id}; `footfall site list` shows the ids")
    return int(row[0])


def prune_statement(cutoff: int, website_key: int | None) -> tuple[str, tuple[Any, ...]]:
    """The DELETE of one chunk of events older than ``cutoff`` (Unix seconds), of one site or all."""
    site_clause = "" if website_key is None else " AND website_key = ?"
    params: tuple[Any, ...] = (cutoff,) if website_key is None else (cutoff, website_key)
    return (
        f"DELETE FROM website_event WHERE event_key IN (SELECT event_key FROM website_event "
        f"WHERE created_at < ?{site_clause} ORDER BY event_key LIMIT {PRUNE_CHUNK_ROWS})",
        params,
    )


#: Visits left without events, then sessions left without visits (their session_data goes with them).
ORPHAN_DELETES = (
    "DELETE FROM visit WHERE NOT EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = visit.visit_key)",
    "DELETE FROM session WHERE NOT EXISTS (SELECT 1 FROM visit v WHERE v.session_key = session.session_key)",
)


def visits_cut_by_prune(conn: sqlite3.Connection, cutoff: int, website_key: int | None) -> list[int]:
    """Before deleting events older than ``cutoff``: the visits that may keep later events, whose start then moves.

    A visit spans at most a day (collector.MAX_VISIT_SECONDS), so those are the visits with an event in the day before it.
    """
    if website_key is None:
        sites = [key for (key,) in conn.execute("SELECT website_key FROM website")]
    else:
        sites = [website_key]
    sql = "SELECT DISTINCT visit_key FROM website_event WHERE website_key = ? AND created_at >= ? AND created_at < ?"
    return [visit for key in sites for (visit,) in conn.execute(sql, (key, cutoff - DAY_SECONDS, cutoff))]


def restart_visits(visit_keys: Sequence[int]) -> list[tuple[str, tuple[Any, ...]]]:
    """Statements that set each visit's started_at back to its first remaining event (after a prune cut through it)."""
    statements = []
    for at in range(0, len(visit_keys), 500):
        chunk = tuple(visit_keys[at : at + 500])
        statements.append(
            (
                "UPDATE visit SET started_at = (SELECT min(e.created_at) FROM website_event e WHERE e.visit_key = "
                f"visit.visit_key) WHERE visit_key IN ({', '.join('?' * len(chunk))}) "
                "AND EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = visit.visit_key)",
                chunk,
            )
        )
    return statements


def prune_chunk(conn: sqlite3.Connection, cutoff: int, website_key: int | None) -> int:
    """Delete up to PRUNE_CHUNK_ROWS events older than ``cutoff`` (Unix seconds) in one transaction; return how many."""
    return execute_statements(conn, [prune_statement(cutoff, website_key)])


def prune_events(
    db: str,
    older_than_s: int,
    website_id: str | None = None,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
    waiting: Waiting | None = None,
) -> dict[str, int]:
    """Delete events older than ``older_than_s`` seconds (of one site, or all), in small transactions, then orphans.

    Each transaction waits for the write lock and is tried again while the database is locked (``waiting`` hears of it).
    """
    cutoff = int((time.time() if now is None else now) - older_than_s)
    with contextlib.closing(connect(db, OPS_BUSY_TIMEOUT_MS)) as conn:
        website_key = website_key_for(conn, website_id)
        repair = retry_locked(lambda: hours_cut_by_prune(conn, cutoff, website_key), waiting)
        cut = retry_locked(lambda: visits_cut_by_prune(conn, cutoff, website_key), waiting)
        total = 0
        while deleted := retry_locked(lambda: prune_chunk(conn, cutoff, website_key), waiting):
            total += deleted
            if progress is not None:
                progress(deleted)

        def orphans() -> tuple[int, int]:
            with transaction(conn):
                visits, sessions = (conn.execute(sql).rowcount for sql in ORPHAN_DELETES)
                for sql, params in restart_visits(cut):
                    conn.execute(sql, params)
            return visits, sessions

        visits, sessions = retry_locked(orphans, waiting)
        retry_locked(lambda: drop_pruned_rollups(conn, cutoff, website_key, repair), waiting)
    return {"events": total, "visits": visits, "sessions": sessions}


def forget_person(db: str, distinct_id: str, website_id: str | None = None, waiting: Waiting | None = None) -> dict[str, int]:
    """Delete everything stored about one distinct id: its sessions, their visits, events and data (privacy requests).

    One transaction, which waits for the write lock and is tried again while the database is locked.
    """
    with contextlib.closing(connect(db, OPS_BUSY_TIMEOUT_MS)) as conn:
        website_key = website_key_for(conn, website_id)
        counts, repair = retry_locked(lambda: _forget(conn, distinct_id, website_key), waiting)
        retry_locked(lambda: repair_rollups(conn, repair), waiting)
    return counts


def _forget(conn: sqlite3.Connection, distinct_id: str, website_key: int | None) -> tuple[dict[str, int], dict[int, set[int]]]:
    """The deletes of forget_person in one transaction; the counts, and the rollup hours the person was counted in."""
    site_clause = "" if website_key is None else " AND website_key = ?"
    params: tuple[Any, ...] = (distinct_id,) if website_key is None else (distinct_id, website_key)
    in_site = "" if website_key is None else " AND session_key IN (SELECT session_key FROM session WHERE website_key = ?)"
    keys = "SELECT session_key FROM forget_keys"
    with transaction(conn):
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS forget_keys (session_key INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM forget_keys")
        conn.execute(f"INSERT INTO forget_keys SELECT session_key FROM session WHERE distinct_id = ?{site_clause}", params)
        conn.execute(
            f"INSERT OR IGNORE INTO forget_keys SELECT session_key FROM session_data WHERE distinct_id = ?{in_site}", params
        )
        alignment = stored_alignment(conn)
        repair: dict[int, set[int]] = collections.defaultdict(set)
        if alignment is not None:  # the hours the person's events were counted in
            sql = f"SELECT DISTINCT website_key, created_at FROM website_event WHERE session_key IN ({keys})"
            for key, at in conn.execute(sql):
                repair[key].add(bucket_of(at, alignment[0]))
        counts = {
            what: conn.execute(f"DELETE FROM {table} WHERE session_key IN ({keys})").rowcount
            for what, table in (
                ("events", "website_event"),
                ("visits", "visit"),
                ("session_data", "session_data"),
                ("sessions", "session"),
            )
        }
    return counts, repair


#: Columns of `footfall export` (the `events` view, without internal keys).
EXPORT_COLUMNS = (
    *("website_id", "session_id", "visit_id", "created_at", "event_kind", "event_name", "url_path", "url_query"),
    *("referrer_domain", "referrer_path", "referrer_query", "self_referral", "page_title", "hostname", "tag"),
    *CAMPAIGN_PARAMS,
    *VITALS,
    "duration",
    *("browser", "os", "device", "screen", "language", "country", "region", "city", "distinct_id"),
)


def export_events(
    db: str, out: Any, fmt: str, website_id: str | None = None, since: int | None = None, until: int | None = None
) -> int:
    """Stream events with their session attributes to the text stream ``out`` as CSV or JSON lines; return the count."""
    import csv

    clauses, params = ["1"], []
    if website_id is not None:
        clauses.append("website_id = ?")
        params.append(website_id.lower())
    if since is not None:
        clauses.append("created_unix >= ?")
        params.append(since)
    if until is not None:
        clauses.append("created_unix < ?")
        params.append(until)
    sql = f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE {' AND '.join(clauses)} ORDER BY event_key"
    count = 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        if website_id is not None:
            website_key_for(conn, website_id)
        cursor = conn.execute(sql, params)
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        while batch := cursor.fetchmany(EXPORT_BATCH_ROWS):
            if writer is not None:
                writer.writerows(batch)
            else:
                out.writelines(msgspec.json.encode(dict(zip(EXPORT_COLUMNS, row))).decode() + "\n" for row in batch)
            count += len(batch)
    return count


def site_stats(db: str, website_id: str | None, period_s: int, now: float | None = None) -> dict[str, Any]:
    """Headline numbers and top pages of the hours covering the last ``period_s`` seconds (`footfall stats`).

    The same functions as the summary page compute them (footfall.summary.panel_totals and panel_top over the rollups,
    brought up to date first, in the alignment the server made them with), so the two never disagree.
    """
    now = time.time() if now is None else now
    with contextlib.closing(connect(db)) as conn:
        website_key = website_key_for(conn, website_id)
        shift, zone_name = stored_alignment(conn) or (0, "UTC")
        zone = load_zone(zone_name)
        refresh_rollups(conn, shift, zone)
        end = bucket_of(int(now), shift) + ROLLUP_BUCKET_SECONDS
        start = bucket_of(int(now - period_s), shift)
        keys = [website_key] if website_key is not None else [k for (k,) in conn.execute("SELECT website_key FROM website")]
        src = RollupSource(zone)
        sums = dict.fromkeys(("visitors", "visits", "pageviews", "bounces", "duration"), 0.0)
        pages: collections.Counter[str] = collections.Counter()
        with transaction(conn, immediate=False):
            for key in keys:
                totals = panel_totals(conn, src, key, start, end)
                for name in ("visitors", "visits", "pageviews"):
                    sums[name] += totals[name]
                sums["bounces"] += totals["bounce_rate"] * totals["visits"]
                sums["duration"] += totals["avg_duration_s"] * totals["visits"]
                pages.update({row["value"]: row["count"] for row in panel_top(conn, src, key, "page", start, end, 0, 10**6)})
    visits = sums["visits"]
    top = sorted(pages.items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        "visitors": int(sums["visitors"]),
        "visits": int(visits),
        "pageviews": int(sums["pageviews"]),
        "views_per_visit": round(sums["pageviews"] / visits, 2) if visits else 0.0,
        "bounce_rate": round(100 * sums["bounces"] / visits, 1) if visits else 0.0,
        "avg_visit_s": round(sums["duration"] / visits) if visits else 0,
        "top_pages": [{"url_path": path, "pageviews": n} for path, n in top],
    }
