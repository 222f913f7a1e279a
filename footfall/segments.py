"""A filtered view's rollups: a segment's rows from its visits' facts, and its closed days computed once and kept.

Owns: aggregate_segment (the rollup rows of the visits matching a filter, from rollup_visit and their events, a visit's
visitor count decided by the session's previous visit in the segment, wherever it lies), and SegmentCache, the daily rollup rows of each segment (a website and a set of filters) for the closed local days a
filtered view has asked for, in temporary tables of the summary reader's connection (SQLite spills them to a file; the
rows are bounded, and the least recently used segment goes first), and keeping them true to the events: before each use
the days that events written since reach are dropped (their visits' days and every later day, whose visitor counts a new
visit may change), and a prune, `forget` or rebuild of the rollups (their epoch, or their watermark going back) drops
everything. Which days a view may take from here, and computing what is missing, is footfall.summary's segment_source.
Imports collector and rollups only.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from collector import EVENT_CUSTOM, EVENT_PAGEVIEW
from footfall.rollups import (
    AGGREGATION_TABLES,
    DAILY_TABLES,
    EVENT_FACT_COLUMNS,
    ROLLUP_BUCKET_SECONDS,
    VISIT_DIMENSIONS,
    EventFact,
    Rollups,
    VisitFact,
    day_of,
    dirty_hours,
    setting_int,
)

#: Rows kept for all segments together (about 60 bytes each in the temporary file; a month of a page filter on a site of
#: ten million events a month is about 300,000, a country's 50,000).
SEGMENT_CACHE_ROWS = 1_000_000


#: Segments kept at most (each with its days; the least recently used goes first).
SEGMENT_CACHE_SEGMENTS = 256


#: The kept tables: the daily rollup tables with a leading ``segment`` column (temporary: the connection's own).
KEPT_PREFIX = "seg_"


class SegmentCache:
    """The kept daily rows of the segments of one summary reader (used from its one worker thread at a time)."""

    def __init__(
        self, shift: int, zone: dt.tzinfo, max_rows: int = SEGMENT_CACHE_ROWS, max_segments: int = SEGMENT_CACHE_SEGMENTS
    ) -> None:
        self.shift, self.zone, self.max_rows, self.max_segments = shift, zone, max_rows, max_segments
        self._ids: dict[tuple[int, tuple[tuple[str, str], ...]], int] = {}
        self._next = 0
        self._website: dict[int, int] = {}  # segment → its website
        self._days: dict[int, set[int]] = {}  # segment → the local midnights of the days kept
        self._rows: collections.OrderedDict[int, int] = collections.OrderedDict()  # segment → rows kept, least recent first
        self._columns: dict[str, list[str]] = {}
        self._mark: int | None = None  # the rollups' watermark and epoch the kept rows agree with
        self._epoch: int | None = None
        self._conn: sqlite3.Connection | None = None  # the connection whose temporary tables hold them

    @property
    def rows(self) -> int:
        """Rows kept now, for all segments."""
        return sum(self._rows.values())

    def segment(self, website_key: int, filters: Mapping[str, str]) -> int:
        """The segment id of a website and filters (the same filters in any order are the same segment)."""
        key = (website_key, tuple(sorted(filters.items())))
        if key not in self._ids:
            if len(self._ids) >= 2 * self.max_segments:  # forget the ids of segments that keep nothing
                self._ids = {k: segment for k, segment in self._ids.items() if segment in self._rows}
                self._website = {segment: self._website[segment] for segment in self._ids.values()}
            self._next += 1
            self._ids[key] = self._next
            self._website[self._next] = website_key
        return self._ids[key]

    def sync(self, conn: sqlite3.Connection) -> None:
        """Drop what events written since the last call may have changed (call in the snapshot the view is read in).

        On another connection than before (a reader reopened), nothing is kept: its temporary tables start empty.
        """
        if conn is not self._conn:
            self._conn, self._columns, self._mark = conn, {}, None
            self._ids, self._website, self._days, self._rows = {}, {}, {}, collections.OrderedDict()
        self._create(conn)
        mark, epoch = setting_int(conn, "rollup_event_key"), setting_int(conn, "rollup_epoch")
        if self._mark is None or epoch != self._epoch or mark < self._mark:
            self._drop(conn, {segment: None for segment in self._days})
        elif mark > self._mark and self._days:
            earliest = {
                key: day_of(min(hours), self.zone) for key, hours in dirty_hours(conn, self._mark, mark, self.shift).items()
            }
            self._drop(conn, {segment: earliest[key] for segment, key in self._website.items() if key in earliest})
        self._mark, self._epoch = mark, epoch

    def missing(self, segment: int, days: Iterable[int]) -> list[int]:
        """The days (local midnights) of ``days`` not kept for ``segment``, in order."""
        kept = self._days.get(segment, set())
        return sorted(day for day in days if day not in kept)

    def keep(self, conn: sqlite3.Connection, segment: int, days: Iterable[int], rollups: Rollups) -> None:
        """Keep the rows of ``rollups`` (hourly, of exactly ``days``: whole local days) as ``segment``'s daily rows."""
        hourly = rollups.rows()
        total = 0
        day_of_hour: dict[int, int] = {}
        for table, rows, at in zip(DAILY_TABLES, hourly, (2, 1, 1, 1)):
            summed: collections.Counter[tuple[Any, ...]] = collections.Counter()
            for row in rows:
                hour = row[at]
                if hour not in day_of_hour:
                    day_of_hour[hour] = day_of(hour, self.zone)
                summed[(*row[:at], day_of_hour[hour], *row[at + 1 : -1])] += row[-1]
            columns = self._columns[table]
            marks = ", ".join("?" * (len(columns) + 1))
            conn.executemany(
                f"INSERT INTO temp.{KEPT_PREFIX}{table} (segment, {', '.join(columns)}) VALUES ({marks})",
                ((segment, *key, n) for key, n in summed.items()),
            )
            total += len(summed)
        self._days.setdefault(segment, set()).update(days)
        self._rows[segment] = self._rows.get(segment, 0) + total
        self._rows.move_to_end(segment)
        while (self.rows > self.max_rows or len(self._rows) > self.max_segments) and len(self._rows) > 1:
            oldest = next(iter(self._rows))
            self._drop(conn, {oldest: None})

    def days(self, segment: int) -> frozenset[int]:
        """The days kept for ``segment`` (marks it as just used)."""
        if segment in self._rows:
            self._rows.move_to_end(segment)
        return frozenset(self._days.get(segment, ()))

    def tables(self, segment: int) -> tuple[str, ...]:
        """The kept rows of ``segment`` as the daily tables' columns, in DAILY_TABLES' order (subqueries: FROM-able)."""
        return tuple(
            f"(SELECT {', '.join(self._columns[table])} FROM temp.{KEPT_PREFIX}{table} WHERE segment = {int(segment)})"
            for table in DAILY_TABLES
        )

    def _create(self, conn: sqlite3.Connection) -> None:
        """The kept tables, made like the daily rollup tables with ``segment`` first in each column list and key."""
        if self._columns:
            return
        for table in DAILY_TABLES:
            (sql,) = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
            sql = re.sub(r"^CREATE TABLE \"?\w+\"? *\(", f"CREATE TEMP TABLE IF NOT EXISTS {KEPT_PREFIX}{table} (", sql)
            sql = sql.replace("(", "(segment INTEGER NOT NULL, ", 1).replace("PRIMARY KEY (", "PRIMARY KEY (segment, ", 1)
            conn.execute(sql)
            conn.execute(f"DELETE FROM temp.{KEPT_PREFIX}{table}")  # a reader reopened on a connection that had some
            self._columns[table] = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS temp.{KEPT_PREFIX}rollup_daily_vitals_day ON {KEPT_PREFIX}rollup_daily_vitals "
            "(segment, website_key, day)"
        )

    def _drop(self, conn: sqlite3.Connection, drops: Mapping[int, int | None]) -> None:
        """Drop kept days: segment → the first day dropped (None: all of them)."""
        for segment, first in drops.items():
            days = self._days.get(segment, set())
            gone = {day for day in days if first is None or day >= first}
            if not gone:
                continue
            for table in DAILY_TABLES:
                conn.execute(
                    f"DELETE FROM temp.{KEPT_PREFIX}{table} WHERE segment = ? AND day >= ?",
                    (segment, min(gone)),
                )
            days -= gone
            if days:
                (left,) = conn.execute(
                    f"SELECT (SELECT count(*) FROM temp.{KEPT_PREFIX}rollup_daily WHERE segment = ?1) + "
                    f"(SELECT count(*) FROM temp.{KEPT_PREFIX}rollup_daily_visitors WHERE segment = ?1) + "
                    f"(SELECT count(*) FROM temp.{KEPT_PREFIX}rollup_daily_vitals WHERE segment = ?1) + "
                    f"(SELECT count(*) FROM temp.{KEPT_PREFIX}rollup_daily_event_visitors WHERE segment = ?1)",
                    (segment,),
                ).fetchone()
                self._rows[segment] = left
            else:
                self._days.pop(segment, None)
                self._rows.pop(segment, None)


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
    already hold for every candidate (the page index found them). Then only the segment's events in [start, end) are
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
    visit's events (aggregate_segment's candidates have one already: the page index found them).
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
