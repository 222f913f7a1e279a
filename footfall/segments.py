"""What a summary reads, and a filtered view's rollups: a segment's rows from its visits' facts, its closed days kept.

Owns: RollupSource (the tables a summary reads: the rollups, or a filtered view's), collect_filtered and
aggregate_segment (the rollup rows of the visits matching a filter, from rollup_visit and their events; a visit's visitor
count decided by the session's previous visit in the segment, wherever it lies in time), and SegmentCache: the daily
rollup rows of each segment (a website and a set of filters) for the closed local days a filtered view has asked for,
in temporary tables of the summary reader's connection (SQLite spills them to a file; rows and segments are bounded,
the least recently used going first), kept true to the events: before each use, the days that events written since
reach are dropped (their visits' days and every later day, whose visitor counts a new visit may change), and a prune,
`forget` or rebuild of the rollups (their epoch, or their watermark going back) drops everything. segment_source puts
them together: kept days where a view may read them (kept_days), the rest computed per request.
Imports collector and rollups only.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from collector import DAY_SECONDS, EVENT_CUSTOM, EVENT_PAGEVIEW, transaction
from footfall.rollups import (
    AGGREGATION_TABLES,
    DAILY_TABLES,
    EVENT_FACT_COLUMNS,
    HOURLY_TABLES,
    ROLLUP_BUCKET_SECONDS,
    SESSION_FILTERS,
    VISIT_DIMENSIONS,
    EventFact,
    Rollups,
    VisitFact,
    day_of,
    insert_rollups,
    next_day,
    setting_int,
)

#: Rows kept for all segments together (about 60 bytes each in the temporary file; a month of a page filter on a site of
#: ten million events a month is about 300,000, a country's 50,000).
SEGMENT_CACHE_ROWS = 1_000_000


#: Segments kept at most (each with its days; the least recently used goes first).
SEGMENT_CACHE_SEGMENTS = 256


#: Bytes of remembered results (SegmentCache.remember) kept at most, for all of them together.
REMEMBERED_BYTES = 4 * 1024 * 1024


#: The kept tables: the daily rollup tables with a leading ``segment`` column (temporary: the connection's own).
KEPT_PREFIX = "seg_"


class RollupSource(NamedTuple):
    """The tables a summary reads: the rollups (hourly, and daily for whole days), or a filtered view's.

    A filtered view's hourly tables are temporary ones of the rows computed for it, and its daily ones the kept days of
    its segment (footfall.segments); ``days`` then says which local days the daily tables hold (None: every day).
    """

    zone: dt.tzinfo
    hourly: tuple[str, ...] = HOURLY_TABLES
    daily: tuple[str, ...] | None = DAILY_TABLES
    days: frozenset[int] | None = None
    #: Where a panel may remember what it summed over whole days of the site's daily rollups (kept true by its sync).
    remembered: SegmentCache | None = None

    def parts(self, start: int, end: int) -> list[tuple[tuple[str, ...], str, int, int]]:
        """[start, end) as (tables, time column, from, to) pieces: its whole local days the daily tables hold from them."""
        if self.daily is None or end <= start:
            return [(self.hourly, "hour", start, end)]
        first = day_of(start, self.zone)
        first = first if first == start else next_day(first, self.zone)
        last = day_of(end, self.zone)
        if first >= last:
            return [(self.hourly, "hour", start, end)]
        if self.days is None:
            runs = [(first, last)]
        else:
            days = sorted(d for d in self.days if first <= d < last)
            runs = [(run[0], next_day(run[-1], self.zone)) for run in _contiguous(days, self.zone)]
        pieces: list[tuple[tuple[str, ...], str, int, int]] = [(self.daily, "day", a, b) for a, b in runs]
        at = start
        for a, b in [*runs, (end, end)]:  # the hours between the daily runs
            if at < a:
                pieces.append((self.hourly, "hour", at, a))
            at = b
        return pieces


#: A filtered page's copies of the hourly tables (temporary: the reader connection's own).
FILTERED_PREFIX = "f_"


def filtered_source(zone: dt.tzinfo) -> RollupSource:
    """A filtered page's tables: hourly rows in temporary tables (see load_filtered)."""
    return RollupSource(zone, tuple(f"temp.{FILTERED_PREFIX}{t}" for t in HOURLY_TABLES), None)


#: Filter → (website_event column, extra condition) of the index that finds its candidate visits (schema.sql); the page
#: filters find theirs in rollup_visit_page (_PAGE_VISITS).
_NARROWING = {
    "page": ("url_path", f" AND event_type = {EVENT_PAGEVIEW}"),
    "entry": ("url_path", f" AND event_type = {EVENT_PAGEVIEW}"),
    "exit": ("url_path", f" AND event_type = {EVENT_PAGEVIEW}"),
    "event": ("event_name", f" AND event_type = {EVENT_CUSTOM}"),
    "referrer": ("referrer_domain", ""),
    "utm_source": ("utm_source", ""),
    "utm_medium": ("utm_medium", ""),
    "utm_campaign": ("utm_campaign", ""),
}


def collect_filtered(
    conn: sqlite3.Connection,
    website_key: int,
    start: int,
    end: int,
    filters: Mapping[str, str],
    shift: int,
    side: tuple[int, int, Rollups] | None = None,
    detail_from: int | None = None,
) -> Rollups:
    """Rollup rows of [start, end) for the visits that match every filter (a segment: all numbers are about them).

    Candidates come by key: a filter on a page, event, referrer or UTM value gives the visits with such an event in the
    range or a day either side of it (visits are never that long, and a visit's event after the range can make it
    match), a page's from rollup_visit_page (_PAGE_VISITS), the others' through their event indexes; a session filter
    alone gives the matching sessions' visits that started then; with neither, every visit with an event in the range. The rest is decided on each candidate's stored facts (aggregate_segment), and only
    events and visit starts inside the range are counted; before ``detail_from``, only their totals (a previous
    period's). ``side`` is (from, to, rollups): what falls in [from, to) is also counted there.
    """
    for sql in AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    narrow, params = [], []
    # Each event-level or visit-level filter keeps the visits with a matching event in the span (found through its
    # index); whether the visit really matches (its landing referrer, its last page …) is decided on its facts.
    keyed = [name for name in filters if name in _NARROWING]
    for name in keyed:
        column, condition = _NARROWING[name]
        window = [website_key, filters[name], start - DAY_SECONDS, end + DAY_SECONDS]
        if column == "url_path":
            narrow.append(_PAGE_VISITS)
            params += [*window, setting_int(conn, "rollup_event_key"), *window]
        else:
            narrow.append(
                f"SELECT visit_key FROM website_event WHERE website_key = ? AND {column} = ?{condition} "
                f"AND created_at >= ? AND created_at < ?"
            )
            params += window
    sessions = [(name, value) for name, value in filters.items() if name in SESSION_FILTERS]
    if narrow:  # the visits the indexes give (all of them, for several filters), then the session filters
        matching = "".join(f" AND s.{name} = ?" for name, _ in sessions)
        sql = (
            f"INSERT OR IGNORE INTO temp.agg_candidate SELECT c.visit_key FROM ({' INTERSECT '.join(narrow)}) c "
            + (f"CROSS JOIN visit v ON v.visit_key = c.visit_key CROSS JOIN session s ON s.session_key = v.session_key "
               f"WHERE 1{matching}" if sessions else "")
        )  # fmt: skip
        conn.execute(sql, [*params, *(value for _, value in sessions)])
    elif sessions:  # few sessions match: go from them to their visits, not through every event of the range
        matching = " AND ".join(f"s.{name} = ?" for name, _ in sessions)
        sql = (
            f"INSERT OR IGNORE INTO temp.agg_candidate SELECT v.visit_key FROM session s CROSS JOIN visit v "
            f"ON v.session_key = s.session_key WHERE s.website_key = ? AND {matching} AND v.started_at >= ? "
            f"AND v.started_at < ?"
        )
        conn.execute(sql, [website_key, *(value for _, value in sessions), start - DAY_SECONDS, end])
    else:
        sql = (
            "INSERT OR IGNORE INTO temp.agg_candidate SELECT e.visit_key FROM website_event e WHERE e.website_key = ? "
            "AND e.created_at >= ? AND e.created_at < ?"
        )
        conn.execute(sql, [website_key, start, end])
    return aggregate_segment(conn, shift, start, end, filters, side, detail_from)


#: The visits with a pageview of a page (website, page, visit starts from/to, then the rollups' watermark and website,
#: page, event times from/to): the rolled-up ones by key in rollup_visit_page, and those with events the rollups have
#: not taken in yet among the few events above the watermark (read by key range, not through an index).
_PAGE_VISITS = (
    "SELECT visit_key FROM (SELECT visit_key FROM rollup_visit_page WHERE website_key = ? AND url_path = ? "
    "AND started_at >= ? AND started_at < ? UNION SELECT visit_key FROM website_event NOT INDEXED WHERE event_key > ? "
    f"AND website_key = ? AND url_path = ? AND event_type = {EVENT_PAGEVIEW} AND created_at >= ? AND created_at < ?)"
)


def _temp_table_like(conn: sqlite3.Connection, like: str, name: str) -> str:
    """The CREATE statement of a temporary table ``name`` made like the database's table ``like`` (if not there yet)."""
    (sql,) = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (like,)).fetchone()
    return re.sub(r"^CREATE TABLE \"?\w+\"? *\(", f"CREATE TEMP TABLE IF NOT EXISTS {name} (", sql)


def load_filtered(conn: sqlite3.Connection, rollups: Rollups) -> None:
    """Put a filtered page's rollup rows into the temporary tables filtered_source() names (keyed like the rollups)."""
    for like in HOURLY_TABLES:
        table = FILTERED_PREFIX + like
        conn.execute(_temp_table_like(conn, like, table))
        conn.execute(f"DELETE FROM temp.{table}")
    insert_rollups(conn, rollups, "temp", FILTERED_PREFIX)


#: Days computed in one pass when a segment's missing days are filled (bounds the pass's memory).
SEGMENT_RUN_DAYS = 7


def kept_days(span: tuple[int, int], edges: Iterable[int], zone: dt.tzinfo, now: float) -> list[int]:
    """The local days of ``span`` a filtered view reads from kept rows: over (ended at or before ``now``), and with no edge
    of what the view reads (``edges``: range ends, chart intervals) inside them."""
    first, end = span
    inside = sorted(set(edges))
    days = []
    day = day_of(first, zone)
    day = day if day == first else next_day(day, zone)
    while (following := next_day(day, zone)) <= min(end, now):
        at = bisect.bisect_right(inside, day)
        if at == len(inside) or inside[at] >= following:
            days.append(day)
        day = following
    return days


def keep_segment_days(
    conn: sqlite3.Connection,
    segments: SegmentCache,
    website_key: int,
    filters: Mapping[str, str],
    days: list[int],
    shift: int,
    zone: dt.tzinfo,
) -> int:
    """Compute and keep the segment's ``days`` not kept yet (SEGMENT_RUN_DAYS at a time); return the segment id.

    Outside a transaction each run is one of its own, so a view cut short by its deadline keeps the runs it finished.
    """
    own = not conn.in_transaction
    with transaction(conn, immediate=False) if own else contextlib.nullcontext():
        segments.sync(conn)
        segment = segments.segment(conn, website_key, filters)
        missing = sorted(set(days) - segments.days(conn, segment))
    for at in range(0, len(missing), SEGMENT_RUN_DAYS):
        for run in _contiguous(missing[at : at + SEGMENT_RUN_DAYS], zone):
            with transaction(conn, immediate=False) if own else contextlib.nullcontext():
                if own:  # (another snapshot: what it keeps is true to it)
                    segments.sync(conn)
                    if not set(run) - segments.days(conn, segment):
                        continue
                rows = collect_filtered(conn, website_key, run[0], next_day(run[-1], zone), filters, shift)
                segments.keep(conn, segment, website_key, run, rows)
    return segment


def segment_source(
    conn: sqlite3.Connection,
    segments: SegmentCache | None,
    website_key: int,
    span: tuple[int, int],
    kept: list[int],
    filters: Mapping[str, str],
    shift: int,
    zone: dt.tzinfo,
    side: tuple[int, int, Rollups] | None = None,
    detail_from: int | None = None,
) -> RollupSource:
    """The rollup tables of a filtered view of [span) (call in its snapshot): kept days, and the rest computed now.

    ``kept`` (kept_days' answer for the view) are read from the segment's kept daily rows, computed first where missing
    (keep_segment_days, which a caller may also run before the snapshot). Every other hour of the span is computed from
    the events into the temporary hourly tables, with ``side`` and ``detail_from`` as collect_filtered takes them.
    Without ``segments``, all of the span is computed now (``kept`` must then be empty).
    """
    first, end = span
    if segments is not None:
        segment = keep_segment_days(conn, segments, website_key, filters, kept, shift, zone)
    live = Rollups(shift)
    at = first
    for a, b in [*((run[0], next_day(run[-1], zone)) for run in _contiguous(kept, zone)), (end, end)]:
        if at < a:
            part = side if side is not None and at <= side[0] < a else None
            live.merge(collect_filtered(conn, website_key, at, a, filters, shift, side=part, detail_from=detail_from))
        at = max(at, b)
    load_filtered(conn, live)
    hourly = filtered_source(zone).hourly
    if segments is None:
        return RollupSource(zone, hourly, None)
    return RollupSource(zone, hourly, segments.tables(segment), frozenset(kept))


def _contiguous(days: list[int], zone: dt.tzinfo) -> list[list[int]]:
    """Ordered local midnights as runs of consecutive days."""
    runs: list[list[int]] = []
    for day in days:
        if runs and next_day(runs[-1][-1], zone) == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


class SegmentCache:
    """The kept daily rows of the segments of one summary reader (used from its one worker thread at a time).

    What is kept, and the rollup watermark and epoch it agrees with, live in the temporary tables beside the rows
    (seg_day, seg_state), so a transaction rolled back (a summary past its deadline) takes its changes with it.
    """

    def __init__(
        self, shift: int, zone: dt.tzinfo, max_rows: int = SEGMENT_CACHE_ROWS, max_segments: int = SEGMENT_CACHE_SEGMENTS
    ) -> None:
        self.shift, self.zone, self.max_rows, self.max_segments = shift, zone, max_rows, max_segments
        self._ids: dict[tuple[int, tuple[tuple[str, str], ...]], int] = {}
        self._next = 0  # the last segment id given (ids are never reused)
        self._used = 0  # a clock for "least recently used"
        self._columns: dict[str, list[str]] = {}
        self._conn: sqlite3.Connection | None = None  # the connection whose temporary tables hold them
        #: (website, first day, end, what) → a result over those whole days of the site's own daily rollups, packed.
        self._remembered: collections.OrderedDict[tuple[int, int, int, str], bytes] = collections.OrderedDict()

    def rows(self, conn: sqlite3.Connection) -> int:
        """Rows kept now, for all segments (none before the first sync on ``conn``)."""
        if conn is not self._conn or not conn.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'seg_day'").fetchone():
            return 0
        return int(conn.execute("SELECT ifnull(sum(n), 0) FROM temp.seg_day").fetchone()[0])

    def segment(self, conn: sqlite3.Connection, website_key: int, filters: Mapping[str, str]) -> int:
        """The segment id of a website and filters (the same filters in any order are the same segment)."""
        key = (website_key, tuple(sorted(filters.items())))
        if key not in self._ids:
            if len(self._ids) >= 2 * self.max_segments:  # forget the ids of segments that keep nothing
                kept = {segment for (segment,) in conn.execute("SELECT DISTINCT segment FROM temp.seg_day")}
                self._ids = {k: segment for k, segment in self._ids.items() if segment in kept}
            self._next += 1
            self._ids[key] = self._next
        return self._ids[key]

    def sync(self, conn: sqlite3.Connection) -> None:
        """Drop what events written since the last call may have changed (call in the snapshot the view is read in).

        On another connection than before (a reader reopened), nothing is kept: its temporary tables start empty.
        """
        if conn is not self._conn:
            self._conn, self._columns, self._ids = conn, {}, {}
            self._remembered.clear()
        self._create(conn)
        mark, epoch = setting_int(conn, "rollup_event_key"), setting_int(conn, "rollup_epoch")
        kept_mark, kept_epoch = conn.execute("SELECT mark, epoch FROM temp.seg_state").fetchone()
        if kept_mark is None or epoch != kept_epoch or mark < kept_mark:
            self._drop(conn, None, 0)
            self._remembered.clear()
        elif mark > kept_mark and (self._remembered or conn.execute("SELECT 1 FROM temp.seg_day LIMIT 1").fetchone()):
            # The earliest event of each website's visits that have events written since (the rollup refresh recomputes
            # the same visits' hours: rollups._dirty_hours).
            sql = (
                "SELECT x.website_key, min(x.created_at) FROM website_event x WHERE x.visit_key IN "
                "(SELECT e.visit_key FROM website_event e WHERE e.event_key > ? AND e.event_key <= ?) GROUP BY x.website_key"
            )
            for website_key, earliest in conn.execute(sql, (kept_mark, mark)).fetchall():
                first = day_of(earliest, self.zone)
                self._drop(conn, website_key, first)
                for key in [k for k in self._remembered if k[0] == website_key and k[2] > first]:
                    del self._remembered[key]
        conn.execute("UPDATE temp.seg_state SET mark = ?, epoch = ?", (mark, epoch))

    def remember(self, website_key: int, first: int, end: int, what: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, a result over the whole local days [first, end) of the website's own daily rollups, computed
        once and kept (msgpack-packed, REMEMBERED_BYTES in all) until those days change (see sync, called before)."""
        key = (website_key, first, end, what)
        packed = self._remembered.get(key)
        if packed is None:
            packed = msgspec.msgpack.encode(compute())
            self._remembered[key] = packed
            while sum(map(len, self._remembered.values())) > REMEMBERED_BYTES and len(self._remembered) > 1:
                self._remembered.popitem(last=False)
        self._remembered.move_to_end(key)
        return msgspec.msgpack.decode(packed)

    def days(self, conn: sqlite3.Connection, segment: int) -> frozenset[int]:
        """The days (local midnights) kept for ``segment`` (marks it as just used)."""
        self._used += 1
        conn.execute("UPDATE temp.seg_day SET used = ? WHERE segment = ?", (self._used, segment))
        return frozenset(day for (day,) in conn.execute("SELECT day FROM temp.seg_day WHERE segment = ?", (segment,)))

    def keep(self, conn: sqlite3.Connection, segment: int, website_key: int, days: Iterable[int], rollups: Rollups) -> None:
        """Keep the rows of ``rollups`` (hourly, of exactly ``days``: whole local days) as ``segment``'s daily rows."""
        per_day = dict.fromkeys(days, 0)
        day_of_hour: dict[int, int] = {}
        for table, rows, at in zip(DAILY_TABLES, rollups.rows(), (2, 1, 1, 1)):
            summed: collections.Counter[tuple[Any, ...]] = collections.Counter()
            for row in rows:
                hour = row[at]
                if hour not in day_of_hour:
                    day_of_hour[hour] = day_of(hour, self.zone)
                summed[(*row[:at], day_of_hour[hour], *row[at + 1 : -1])] += row[-1]
            for key in summed:
                per_day[key[at]] = per_day.get(key[at], 0) + 1
            columns = self._columns[table]
            marks = ", ".join("?" * (len(columns) + 1))
            conn.executemany(
                f"INSERT INTO temp.{KEPT_PREFIX}{table} (segment, {', '.join(columns)}) VALUES ({marks})",
                ((segment, *key, n) for key, n in summed.items()),
            )
        self._used += 1
        conn.executemany(
            "INSERT INTO temp.seg_day (segment, website_key, day, n, used) VALUES (?, ?, ?, ?, ?)",
            ((segment, website_key, day, n, self._used) for day, n in per_day.items()),
        )
        while True:  # the least recently used other segment goes while there are too many rows or segments
            rows, segments = conn.execute("SELECT ifnull(sum(n), 0), count(DISTINCT segment) FROM temp.seg_day").fetchone()
            if rows <= self.max_rows and segments <= self.max_segments:
                return
            oldest = conn.execute(
                "SELECT segment FROM temp.seg_day WHERE segment != ? GROUP BY segment ORDER BY max(used) LIMIT 1", (segment,)
            ).fetchone()
            if oldest is None:
                return
            self._drop(conn, None, 0, oldest[0])

    def tables(self, segment: int) -> tuple[str, ...]:
        """The kept rows of ``segment`` as the daily tables' columns, in DAILY_TABLES' order (subqueries: FROM-able)."""
        return tuple(
            f"(SELECT {', '.join(self._columns[table])} FROM temp.{KEPT_PREFIX}{table} WHERE segment = {int(segment)})"
            for table in DAILY_TABLES
        )

    def _create(self, conn: sqlite3.Connection) -> None:
        """The kept tables, made like the daily rollup tables with ``segment`` first in each column list and key (again
        when a rolled-back transaction took them away)."""
        if self._columns and conn.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'seg_state'").fetchone():
            return
        for table in DAILY_TABLES:
            sql = _temp_table_like(conn, table, KEPT_PREFIX + table)
            sql = sql.replace("(", "(segment INTEGER NOT NULL, ", 1).replace("PRIMARY KEY (", "PRIMARY KEY (segment, ", 1)
            conn.execute(sql)
            self._columns[table] = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS temp.{KEPT_PREFIX}rollup_daily_vitals_day ON {KEPT_PREFIX}rollup_daily_vitals "
            "(segment, website_key, day)"
        )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS seg_day (segment INTEGER NOT NULL, website_key INTEGER NOT NULL, "
            "day INTEGER NOT NULL, n INTEGER NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (segment, day))"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS temp.seg_day_website ON seg_day (website_key, day)")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS seg_state (mark INTEGER, epoch INTEGER)")
        conn.execute("DELETE FROM temp.seg_state")  # (a connection that had some, new to this cache: start over)
        conn.execute("INSERT INTO temp.seg_state VALUES (NULL, NULL)")

    def _drop(self, conn: sqlite3.Connection, website_key: int | None, first: int, segment: int | None = None) -> None:
        """Drop the kept days from ``first`` on: of one website's segments, of one segment, or (neither) of all."""
        if segment is not None:
            where, params = "segment = ? AND day >= ?", [segment, first]
        elif website_key is not None:
            where, params = "website_key = ? AND day >= ?", [website_key, first]
        else:
            where, params = "day >= ?", [first]
        sql = f"SELECT segment, min(day) FROM temp.seg_day WHERE {where} GROUP BY segment"
        for dropped, since in conn.execute(sql, params).fetchall():
            for table in DAILY_TABLES:
                conn.execute(f"DELETE FROM temp.{KEPT_PREFIX}{table} WHERE segment = ? AND day >= ?", (dropped, since))
        conn.execute(f"DELETE FROM temp.seg_day WHERE {where}", params)


_VISIT_FACT_COLUMNS = ", ".join(f"f.{name}" for name in VisitFact._fields)


def aggregate_segment(
    conn: sqlite3.Connection,
    shift: int,
    start: int,
    end: int,
    filters: Mapping[str, str],
    side: tuple[int, int, Rollups] | None = None,
    detail_from: int | None = None,
) -> Rollups:
    """Rollup rows of the segment among the visits in temp.agg_candidate, from their facts (rollup_visit) and events.

    The rows aggregate_visits would give for a filtered page, without rebuilding visits: each candidate's fact is read
    by key and the filters on visit and session attributes and on custom events are decided on it; a page filter must
    already hold for every candidate (collect_filtered found them by it). Then only the segment's events in [start, end) are
    read, once, and counted per hour and value in SQL. Visits and events before ``detail_from`` (an hour start) count
    in the totals only; those in ``side``'s [from, to) also go to its rollups (a previous period's last part-hour).
    temp.agg_visit holds the segment's visits afterwards.
    """
    out = Rollups(shift)
    side_from, side_to, side_out = side if side is not None else (0, 0, Rollups(shift))

    def detailed(key: int, at: int) -> bool:
        return detail_from is None or at >= detail_from

    def in_side(key: int, at: int) -> bool:
        return side_from <= at < side_to

    for sql in AGGREGATION_TABLES:
        conn.execute(sql)
    for table in ("agg_visit", "agg_visit_event", "agg_event"):
        conn.execute(f"DELETE FROM temp.{table}")
    where, params = _segment_condition(filters, False)
    sql = (
        f"SELECT {_VISIT_FACT_COLUMNS}, f.event_names FROM temp.agg_candidate c CROSS JOIN rollup_visit f "
        f"ON f.visit_key = c.visit_key WHERE 1{where}"
    )
    pending: list[tuple[int, int, int, int, bool]] = []
    named: list[tuple[int, int, int, str]] = []
    for row in conn.execute(sql, params):
        fact = VisitFact(*row[:-1])
        counted = start <= fact.started_at < end
        if counted:
            out.add_visit(fact, detailed(fact.website_key, fact.started_at))
            if in_side(fact.website_key, fact.started_at):
                side_out.add_visit(fact)
        pending.append((fact.visit_key, fact.website_key, fact.session_key, fact.started_at, counted))
        if row[-1]:
            named.extend((fact.visit_key, fact.session_key, fact.started_at, name) for name in msgspec.json.decode(row[-1]))
    conn.executemany("INSERT INTO temp.agg_visit VALUES (?,?,?,?,?)", pending)
    conn.executemany("INSERT OR IGNORE INTO temp.agg_visit_event VALUES (?,?,?,?)", named)
    conn.execute(
        f"INSERT INTO temp.agg_event SELECT {EVENT_FACT_COLUMNS} FROM temp.agg_visit a CROSS JOIN website_event e "
        f"ON e.visit_key = a.visit_key WHERE e.created_at >= ? AND e.created_at < ?",
        (start, end),
    )
    sql = (
        "SELECT website_key, created_at - (created_at - ?) % ? AS hour, url_path, count(*), created_at >= ? "
        f"AND created_at < ?, created_at >= ? FROM temp.agg_event WHERE event_type = {EVENT_PAGEVIEW} GROUP BY 1, 2, 3, 5, 6"
    )
    params = [shift, ROLLUP_BUCKET_SECONDS, side_from, side_to, start if detail_from is None else detail_from]
    for website_key, hour, url_path, n, in_part, detail in conn.execute(sql, params):
        out.add_pageviews(website_key, hour, url_path, n, bool(detail))
        if in_part:
            side_out.add_pageviews(website_key, hour, url_path, n)
    for row in conn.execute(f"SELECT * FROM temp.agg_event WHERE event_type != {EVENT_PAGEVIEW}"):
        e = EventFact(*row)
        out.add_event(e, detailed(e.website_key, e.created_at))
        if in_side(e.website_key, e.created_at):
            side_out.add_event(e)
    sql = (
        "SELECT e.website_key, e.created_at, e.event_name, d.data_key, d.string_value FROM temp.agg_event e "
        f"CROSS JOIN event_data d ON d.event_key = e.event_key WHERE e.event_type = {EVENT_CUSTOM}"
    )
    for website_key, created_at, name, data_key, value in conn.execute(sql):
        if detailed(website_key, created_at):
            out.add_event_key(website_key, created_at, name, data_key, value)
    _count_segment_visitors(conn, out, filters, (in_side, side_out), detailed)
    return out


def _segment_condition(filters: Mapping[str, str], page: bool) -> tuple[str, list[Any]]:
    """' AND …' keeping the visits of a segment by their fact ``f`` (rollup_visit), and its parameters.

    Visit and session attributes are compared on the fact, a custom event is looked for among its names ('' for one
    without a name, as VisitBuilder keeps them); with ``page``, a pageview of the filter's page is looked for among the
    visit's events (aggregate_segment's candidates have one already: collect_filtered found them by it).
    """
    checks = [(name, value) for name, value in filters.items() if name in VISIT_DIMENSIONS]
    where = "".join(f" AND f.{name} = ?" for name, _ in checks)
    params: list[Any] = [value for _, value in checks]
    if "event" in filters:
        where += " AND EXISTS (SELECT 1 FROM json_each(f.event_names) j WHERE j.value = ?)"
        params.append(filters["event"])
    if page and "page" in filters:
        where += (
            f" AND EXISTS (SELECT 1 FROM website_event x WHERE x.visit_key = f.visit_key AND x.event_type = {EVENT_PAGEVIEW}"
            " AND x.url_path = ?)"
        )
        params.append(filters["page"])
    return where, params


#: The start of the latest visit of the segment in ``a``'s session before ``a`` (any time before: not only among the
#: candidates), or NULL. {where} is _segment_condition's; {also} a further condition on the fact ``f``.
_SEGMENT_PREVIOUS = (
    "(SELECT p.started_at FROM visit p CROSS JOIN rollup_visit f ON f.visit_key = p.visit_key "
    "WHERE p.session_key = a.session_key AND (p.started_at, p.visit_key) < (a.started_at, a.visit_key){where}{also} "
    "ORDER BY p.started_at DESC, p.visit_key DESC LIMIT 1)"
)


def _count_segment_visitors(
    conn: sqlite3.Connection,
    out: Rollups,
    filters: Mapping[str, str],
    side: tuple[Callable[[int, int], bool], Rollups],
    detailed: Callable[[int, int], bool],
) -> None:
    """Visitor and goal-visitor rows of the segment's counted visits (temp.agg_visit, their event names in agg_visit_event).

    A visit's 'since' is the session's previous visit in the segment, wherever it lies in time (by key, through
    idx_visit_session_key_started_at), so the rows of any stretch of days are the same whether it is computed alone or
    as part of a longer one: what lets a filtered view keep closed days (footfall.segments).
    """
    side_counts, side_out = side
    where, params = _segment_condition(filters, True)
    previous = _SEGMENT_PREVIOUS.format(where=where, also="")
    sql = f"SELECT a.website_key, a.started_at, {previous} FROM temp.agg_visit a WHERE a.counted"
    for website_key, started, before in conn.execute(sql, params):
        out.add_visitor(website_key, started, before)
        if side_counts(website_key, started):
            side_out.add_visitor(website_key, started, before)
    also = " AND EXISTS (SELECT 1 FROM json_each(f.event_names) j WHERE j.value = w.event_name)"
    previous = _SEGMENT_PREVIOUS.format(where=where, also=also)
    sql = (
        f"SELECT a.website_key, a.started_at, w.event_name, {previous} FROM temp.agg_visit a "
        "JOIN temp.agg_visit_event w USING (visit_key) WHERE a.counted"
    )
    for website_key, started, name, before in conn.execute(sql, params):
        if detailed(website_key, started):
            out.add_event_visitor(website_key, started, name, before)
