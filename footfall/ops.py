"""Operating a database: backup, check, prune, forget, export, stats, as plain functions of a database path.

Owns: what the operating commands do; safe while footfall serves (reads in their own snapshot, deletes in small
transactions). Imports collector and footfall.rollups.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from collector import DAY_SECONDS, HOUR_SECONDS, ConfigError, connect, execute_statements, transaction
from footfall.rollups import bucket_of, drop_pruned_rollups, hours_cut_by_prune, repair_rollups, stored_alignment

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
            "salts": [
                {"period": period, "age_days": round((now - starts_at) / DAY_SECONDS, 1)}
                for period, starts_at in conn.execute("SELECT period, starts_at FROM salt ORDER BY starts_at")
            ],
        }


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
    "website_id",
    "session_id",
    "visit_id",
    "created_at",
    "event_kind",
    "event_name",
    "url_path",
    "url_query",
    "referrer_domain",
    "referrer_path",
    "referrer_query",
    "self_referral",
    "page_title",
    "hostname",
    "tag",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "gclid",
    "fbclid",
    "msclkid",
    "ttclid",
    "li_fat_id",
    "twclid",
    "lcp",
    "inp",
    "cls",
    "fcp",
    "ttfb",
    "duration",
    "browser",
    "os",
    "device",
    "screen",
    "language",
    "country",
    "region",
    "city",
    "distinct_id",
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
    """Headline numbers and top pages of the last ``period_s`` seconds, read from the public views (`footfall stats`)."""
    now = time.time() if now is None else now
    since = int(now - period_s)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        website_key = website_key_for(conn, website_id)
        site = "" if website_key is None else " AND w.website_key = ?"
        params: tuple[Any, ...] = (since,) if website_key is None else (since, website_key)
        visits_sql = f"""SELECT count(*), count(DISTINCT v.session_key), ifnull(sum(pv), 0),
                                ifnull(sum(pv = 1 AND ce = 0), 0), ifnull(avg(span), 0)
                           FROM (SELECT e.visit_key, sum(e.event_type = 1) AS pv, sum(e.event_type = 2) AS ce,
                                        max(max(e.created_at) - min(e.created_at), ifnull(sum(e.duration), 0) / 1000) AS span
                                   FROM website_event e JOIN website w ON w.website_key = e.website_key
                                  WHERE e.created_at >= ?{site} GROUP BY e.visit_key) AS per_visit
                           JOIN visit v ON v.visit_key = per_visit.visit_key"""
        visits, visitors, pageviews, bounces, duration = conn.execute(visits_sql, params).fetchone()
        top_sql = f"""SELECT e.url_path, count(*) FROM website_event e JOIN website w ON w.website_key = e.website_key
                       WHERE e.created_at >= ?{site} AND e.event_type = 1 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"""
        top = conn.execute(top_sql, params).fetchall()
    return {
        "visitors": visitors,
        "visits": visits,
        "pageviews": pageviews,
        "views_per_visit": round(pageviews / visits, 2) if visits else 0.0,
        "bounce_rate": round(100 * bounces / visits, 1) if visits else 0.0,
        "avg_visit_s": round(duration or 0),
        "top_pages": [{"url_path": path, "pageviews": n} for path, n in top],
    }
