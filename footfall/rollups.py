"""Hourly and daily rollups of the events: what the summary page reads, recomputed (never incremented) from the events.

Owns: the rollup tables' facts, visit building, refresh by watermark, rebuild, and repair after prune or forget.
Imports collector only.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from collector import DAY_SECONDS, EVENT_CUSTOM, EVENT_PAGEVIEW, EVENT_PERFORMANCE, HOUR_SECONDS, load_zone, transaction

# The summary page reads hourly rollups (schema.sql: rollup, rollup_visitors, rollup_vitals). They are recomputed, never
# incremented: every refresh takes the hours touched by events written since the last one (a watermark on event_key), deletes
# those hours' rows and recomputes them from website_event. So a rollup hour is always exactly what its events say, whatever
# order events arrived in, and the same code rebuilds everything (watermark 0), serves a filtered page (the same counts for a
# subset of visits) and repairs the hours a prune or `forget` changed.
#
# A refresh reads in one snapshot, computes in Python, then writes in a short transaction that first checks that nobody
# deleted events meanwhile (prune, retention and forget bump 'rollup_epoch'); if somebody did, it starts over.

#: Rollup granularity, in seconds. Day boundaries of every time zone in use today are whole hours apart from UTC's, or
#: half or three-quarter hours, which the alignment ('rollup_shift') takes care of.
ROLLUP_BUCKET_SECONDS = HOUR_SECONDS


#: The server refreshes rollups this often, in seconds, or less often if a refresh takes over 5% of that (and always right
#: before it renders a summary).
ROLLUP_REFRESH_SECONDS = 10.0


#: Above this many events a second written, background refreshes wait for a quieter moment.
ROLLUP_BUSY_EVENTS_PER_SECOND = 200


#: Events one refresh round reads at most; a rebuild of a big database goes round by round (memory stays bounded).
ROLLUP_ROUND_EVENTS = 250_000


#: Visit attributes the summary lists (visits per value).
VISIT_DIMENSIONS = (
    "entry",
    "exit",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "country",
    "browser",
    "os",
    "device",
    "language",
    "screen",
)


#: Visit attributes that are the session's: a filter on them is decided by a visit's first event.
SESSION_FILTERS = ("country", "browser", "os", "device", "language", "screen")


#: Web vitals, in the order of website_event's columns.
VITALS = ("lcp", "inp", "cls", "fcp", "ttfb")


#: Every metric of the rollup table (their rows are deleted together when an hour is recomputed).
ROLLUP_METRICS = (
    "pageviews",
    "events",
    "visits",
    "bounces",
    "duration",
    "page",
    "event",
    "event_key",
    "event_value",
    "reports",
    *VISIT_DIMENSIONS,
)


def bucket_of(at: int, shift: int) -> int:
    """Start of the rollup hour holding Unix time ``at``; hours start ``shift`` seconds after UTC's."""
    return at - (at - shift) % ROLLUP_BUCKET_SECONDS


#: The hourly rollup tables and their daily sums (in this order: see summary.RollupSource).
HOURLY_TABLES = ("rollup", "rollup_visitors", "rollup_vitals", "rollup_event_visitors")
DAILY_TABLES = ("rollup_daily", "rollup_daily_visitors", "rollup_daily_vitals", "rollup_daily_event_visitors")
#: One row per visit, as the rollups count it (schema.sql): what a filtered summary aggregates instead of the events.
VISIT_FACTS_TABLE = "rollup_visit"
#: The pages each of those visits viewed (schema.sql): how a summary filtered by a page finds its visits.
VISIT_PAGES_TABLE = "rollup_visit_page"
ROLLUP_TABLES = (*HOURLY_TABLES, *DAILY_TABLES, VISIT_PAGES_TABLE, VISIT_FACTS_TABLE)


#: What the rollups hold; a database whose rollups were made by another version is rebuilt (2: event data values and
#: visitors per custom event; 3: rollup_visit, the per-visit facts; 4: rollup_visit_page, their pages).
ROLLUP_VERSION = 4


#: A custom event's data value is counted by its first this many characters (keeps a free-text value's rows bounded).
EVENT_VALUE_CHARS = 100


def day_of(at: int, zone: dt.tzinfo) -> int:
    """The local midnight (Unix seconds) starting the day of ``zone`` that holds Unix time ``at``."""
    return day_start(dt.datetime.fromtimestamp(at, zone).date(), zone)


def next_day(day: int, zone: dt.tzinfo) -> int:
    """The local midnight after the one at ``day`` (days are 23 to 25 hours long where clocks change)."""
    return day_start(dt.datetime.fromtimestamp(day, zone).date() + dt.timedelta(days=1), zone)


def day_start(day: dt.date, zone: dt.tzinfo) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=zone).timestamp())


def bucket_shift(zone: dt.tzinfo, at: float) -> int:
    """The alignment of ``zone``'s hours to UTC's at time ``at``, in seconds (0, 1800 or 2700 for today's zones)."""
    offset = dt.datetime.fromtimestamp(at, dt.timezone.utc).astimezone(zone).utcoffset() or dt.timedelta(0)
    return int(offset.total_seconds()) % ROLLUP_BUCKET_SECONDS


def vital_bin(value: float) -> float:
    """``value`` rounded to two significant figures: the resolution of the web-vitals histograms."""
    if value <= 0:
        return 0.0
    return round(value, 1 - math.floor(math.log10(value)))


class EventFact(NamedTuple):
    """The columns of one event the rollups need."""

    event_key: int
    visit_key: int
    website_key: int
    session_key: int
    created_at: int
    event_type: int
    event_name: str | None
    url_path: str
    referrer_domain: str | None
    self_referral: int
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    duration: int | None
    lcp: float | None
    inp: float | None
    cls: float | None
    fcp: float | None
    ttfb: float | None


EVENT_FACT_COLUMNS = ", ".join(f"e.{name}" for name in EventFact._fields)


class VisitFact(NamedTuple):
    """One visit as the summary counts it (see schema.sql, "Summary page")."""

    visit_key: int
    website_key: int
    session_key: int
    started_at: int
    pageviews: int
    custom_events: int
    duration_s: int
    entry: str | None
    exit: str | None
    referrer: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    country: str | None
    browser: str | None
    os: str | None
    device: str | None
    language: str | None
    screen: str | None


_FIRST_DIMENSION = VisitFact._fields.index(VISIT_DIMENSIONS[0])


assert VisitFact._fields[_FIRST_DIMENSION:] == VISIT_DIMENSIONS


class VisitBuilder:
    """Summarises one visit from its events, fed in time order (created_at, then event_key), without keeping them."""

    __slots__ = (
        "first",
        "attributes",
        "landing",
        "last_page",
        "last_at",
        "pageviews",
        "custom_events",
        "reported_ms",
        "page",
        "event",
        "saw_page",
        "saw_event",
        "names",
    )

    def __init__(
        self, first: EventFact, attributes: Sequence[str | None], page: str | None = None, event: str | None = None
    ) -> None:
        self.first, self.attributes = first, attributes
        self.landing: EventFact | None = None  # the first pageview
        self.last_page: str | None = None
        self.last_at = first.created_at
        self.pageviews = self.custom_events = self.reported_ms = 0
        self.page, self.event = page, event  # filter values to look out for
        self.saw_page = self.saw_event = False
        self.names: set[str] = set()  # the custom events' names

    def add(self, e: EventFact) -> None:
        self.last_at = e.created_at
        self.reported_ms += e.duration or 0
        if e.event_type == EVENT_PAGEVIEW:
            self.pageviews += 1
            if self.landing is None:
                self.landing = e
            self.last_page = e.url_path
            self.saw_page = self.saw_page or e.url_path == self.page
        elif e.event_type == EVENT_CUSTOM:
            self.custom_events += 1
            self.names.add(e.event_name or "")
            self.saw_event = self.saw_event or (e.event_name or "") == self.event

    def fact(self) -> VisitFact:
        first, landing = self.first, self.landing or self.first
        return VisitFact(
            first.visit_key,
            first.website_key,
            first.session_key,
            first.created_at,
            self.pageviews,
            self.custom_events,
            max(self.last_at - first.created_at, self.reported_ms // 1000),
            self.landing.url_path if self.landing else None,
            self.last_page,
            landing.referrer_domain if landing.referrer_domain and not landing.self_referral else None,
            landing.utm_source,
            landing.utm_medium,
            landing.utm_campaign,
            *self.attributes,
        )


class Rollups:
    """Rollup rows being computed for a set of hours: what the three rollup tables will hold for them."""

    def __init__(self, shift: int, keep_facts: bool = False) -> None:
        self.shift = shift
        #: With ``keep_facts``, every visit counted (and its custom event names), for rollup_visit.
        self.facts: list[tuple[VisitFact, str | None]] | None = [] if keep_facts else None
        self.counts: collections.Counter[tuple[int, str, int, str]] = collections.Counter()
        self.visitors: collections.Counter[tuple[int, int, int]] = collections.Counter()
        self.vitals: collections.Counter[tuple[int, int, str, str, float]] = collections.Counter()
        self.event_visitors: collections.Counter[tuple[int, int, str, int]] = collections.Counter()
        #: Whether the counts of the custom events' data keys and values are in temp.agg_event_count (SQLite's memory,
        #: bounded, spilled to a file) rather than in ``counts``: see aggregate_visits(event_counts_in_sql=True).
        self.event_counts_in_sql = False

    def add_pageviews(self, website_key: int, hour: int, url_path: str, n: int, detail: bool = True) -> None:
        """Count ``n`` pageviews of ``url_path`` in the rollup hour starting at ``hour`` (without ``detail``: the total)."""
        self.counts[(website_key, "pageviews", hour, "")] += n
        if detail:
            self.counts[(website_key, "page", hour, url_path)] += n

    def add_event(self, e: EventFact, detail: bool = True) -> None:
        """Count one event in its hour: pageviews and pages, custom events, web vitals (without ``detail``: the totals)."""
        hour = bucket_of(e.created_at, self.shift)
        counts = self.counts
        if e.event_type == EVENT_PAGEVIEW:
            self.add_pageviews(e.website_key, hour, e.url_path, 1, detail)
        elif e.event_type == EVENT_CUSTOM:
            counts[(e.website_key, "events", hour, "")] += 1
            if detail:
                counts[(e.website_key, "event", hour, e.event_name or "")] += 1
        elif e.event_type == EVENT_PERFORMANCE and detail:
            counts[(e.website_key, "reports", hour, e.url_path)] += 1
            for name, value in zip(VITALS, e[-5:]):
                if value is not None:
                    self.vitals[(e.website_key, hour, name, e.url_path, vital_bin(value))] += 1

    def add_event_key(
        self, website_key: int, created_at: int, event_name: str | None, data_key: str, value: str | None = None
    ) -> None:
        """Count one data key of a custom event, and its value (as text, cut to EVENT_VALUE_CHARS)."""
        hour = bucket_of(created_at, self.shift)
        name = event_name or ""
        self.counts[(website_key, "event_key", hour, msgspec.json.encode([name, data_key]).decode())] += 1
        text = (value or "")[:EVENT_VALUE_CHARS]
        self.counts[(website_key, "event_value", hour, msgspec.json.encode([name, data_key, text]).decode())] += 1

    def add_event_visitor(self, website_key: int, started_at: int, event_name: str, previous: int | None) -> None:
        """Count a visit with custom event ``event_name`` by its hour and the hour of the session's previous visit with it."""
        since = 0 if previous is None else bucket_of(previous, self.shift)
        self.event_visitors[(website_key, bucket_of(started_at, self.shift), event_name, since)] += 1

    def add_visit(self, visit: VisitFact, detail: bool = True, names: Iterable[str] = ()) -> None:
        """Count one visit in the hour it started: totals, bounce, duration and (with ``detail``) its attributes.

        ``names`` are its custom events' names (kept with the fact, if facts are kept).
        """
        if self.facts is not None:
            found = sorted(names)
            self.facts.append((visit, msgspec.json.encode(found).decode() if found else None))
        hour = bucket_of(visit.started_at, self.shift)
        key = visit.website_key
        counts = self.counts
        counts[(key, "visits", hour, "")] += 1
        counts[(key, "bounces", hour, "")] += visit.pageviews == 1 and visit.custom_events == 0
        counts[(key, "duration", hour, "")] += visit.duration_s
        if not detail:
            return
        for name, value in zip(VISIT_DIMENSIONS, visit[_FIRST_DIMENSION:]):
            if value:
                counts[(key, name, hour, value)] += 1

    def add_visitor(self, website_key: int, started_at: int, previous: int | None) -> None:
        """Count a visit in rollup_visitors: by its hour and the hour of the session's previous visit (None: none)."""
        since = 0 if previous is None else bucket_of(previous, self.shift)
        self.visitors[(website_key, bucket_of(started_at, self.shift), since)] += 1

    def merge(self, other: Rollups) -> None:
        """Add ``other``'s counts (rows of other hours, or of the same hours for other visits) to these."""
        self.counts.update(other.counts)
        self.visitors.update(other.visitors)
        self.vitals.update(other.vitals)
        self.event_visitors.update(other.event_visitors)

    def rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows for rollup, rollup_visitors, rollup_vitals and rollup_event_visitors (zero counts left out)."""
        return (
            [(*k, n) for k, n in self.counts.items() if n],
            [(*k, n) for k, n in self.visitors.items()],
            [(*k, n) for k, n in self.vitals.items()],
            [(*k, n) for k, n in self.event_visitors.items()],
        )


def _hour_runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs of rollup hours as [start, end) time ranges."""
    runs: list[list[int]] = []
    for hour in sorted(hours):
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + ROLLUP_BUCKET_SECONDS
        else:
            runs.append([hour, hour + ROLLUP_BUCKET_SECONDS])
    return [(a, b) for a, b in runs]


#: Scratch tables of one aggregation (temporary: this connection's own, gone with it).
AGGREGATION_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS agg_candidate (visit_key INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS agg_visit (visit_key INTEGER PRIMARY KEY, website_key INTEGER, session_key INTEGER, "
    "started_at INTEGER, counted INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS agg_session_visit (visit_key INTEGER PRIMARY KEY, session_key INTEGER, started_at INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS agg_visit_event (visit_key INTEGER, session_key INTEGER, started_at INTEGER, "
    "event_name TEXT, PRIMARY KEY (visit_key, event_name))",
    f"CREATE TEMP TABLE IF NOT EXISTS agg_event ({', '.join(EventFact._fields)})",
    "CREATE TEMP TABLE IF NOT EXISTS agg_event_count (website_key INTEGER, metric TEXT, hour INTEGER, value TEXT, n INTEGER)",
)


#: The 'event_value' rows of the counted custom events' data (what Rollups.add_event_key counts, as SQL: json_array
#: writes the same text as msgspec), then the 'event_key' rows summed from them. ?1 is the rollup shift, ?2
#: EVENT_VALUE_CHARS; footfall_counted(website_key, created_at) is the aggregation's predicate.
_EVENT_COUNTS_SQL = (
    "INSERT INTO temp.agg_event_count (website_key, metric, hour, value, n) SELECT e.website_key, 'event_value', "
    f"e.created_at - (e.created_at - ?1) % {ROLLUP_BUCKET_SECONDS} AS h, json_array(ifnull(e.event_name, ''), d.data_key, "
    "substr(ifnull(d.string_value, ''), 1, ?2)) AS v, count(*) FROM temp.agg_visit a CROSS JOIN website_event e "
    "ON e.visit_key = a.visit_key CROSS JOIN event_data d ON d.event_key = e.event_key "
    "WHERE e.event_type = 2 AND footfall_counted(e.website_key, e.created_at) GROUP BY e.website_key, h, v",
    "INSERT INTO temp.agg_event_count (website_key, metric, hour, value, n) SELECT website_key, 'event_key', hour, "
    "json_array(value ->> 0, value ->> 1) AS k, sum(n) FROM temp.agg_event_count WHERE metric = 'event_value' "
    "GROUP BY website_key, hour, k",
)


#: The start of the visit before (op '<', order DESC) or after ('>', ASC) visit ``a`` in its session, among visits with
#: events (an identify alone makes a visit without any).
_NEIGHBOUR = (
    "(SELECT p.started_at FROM visit p WHERE p.session_key = a.session_key AND (p.started_at, p.visit_key) {op} "
    "(a.started_at, a.visit_key) AND EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = p.visit_key) "
    "ORDER BY p.started_at {order}, p.visit_key {order} LIMIT 1)"
)


#: Every event of the candidate visits, visit by visit (the visit_key index gives the order).
_CANDIDATE_EVENTS = (
    f"SELECT {EVENT_FACT_COLUMNS} FROM temp.agg_candidate c CROSS JOIN website_event e ON e.visit_key = c.visit_key "
    f"ORDER BY c.visit_key, e.created_at, e.event_key"
)


#: The session attributes of each candidate visit (read once per visit, not once per event).
_CANDIDATE_SESSIONS = (
    "SELECT v.visit_key, s.country, s.browser, s.os, s.device, s.language, s.screen FROM temp.agg_candidate c "
    "CROSS JOIN visit v ON v.visit_key = c.visit_key CROSS JOIN session s ON s.session_key = v.session_key"
)


_NO_SESSION = (None,) * 6


# (CROSS JOIN fixes the join order: SQLite knows nothing of the temporary table's size and would rather scan every event.)


def _visit_matches(fact: VisitFact, visit: VisitBuilder, filters: Mapping[str, str]) -> bool:
    for name, wanted in filters.items():
        if name == "page":
            if not visit.saw_page:
                return False
        elif name == "event":
            if not visit.saw_event:
                return False
        elif getattr(fact, name) != wanted:
            return False
    return True


def aggregate_visits(
    conn: sqlite3.Connection,
    shift: int,
    counts: Callable[[int, int], bool],
    filters: Mapping[str, str],
    since_among_all: bool,
    covered: Callable[[int, int], bool] | None = None,
    side: tuple[Callable[[int, int], bool], Rollups] | None = None,
    detail: Callable[[int, int], bool] | None = None,
    keep_facts: bool = False,
    event_counts_in_sql: bool = False,
) -> tuple[Rollups, dict[int, set[int]]]:
    """Rollup rows from the visits in temp.agg_candidate (streamed: memory holds counts, not events).

    ``counts(website_key, t)`` says whether an event or a visit start at time t is counted. With ``filters``, only visits
    matching all of them count. A visit's previous visit (for the visitor count) is the session's previous visit of all
    (``since_among_all``: the rollups) or of the matching ones (a filtered page). Returns the rows and the hours outside
    ``covered`` (default: the counted ones) whose visitor count depends on the counted visits (see collect_rollups).
    ``side`` is (predicate, rollups): events and visits counted where that predicate holds also go there, with their
    visitor rows (totals of a part-hour from the same pass); the predicate implies ``counts``. Where ``detail(key, t)``
    is false, only the totals are counted (a filtered page's previous period needs no lists). With ``keep_facts``, the
    rows keep every counted visit's fact (for rollup_visit). With ``event_counts_in_sql`` the custom events' data keys
    and values are counted by SQLite into temp.agg_event_count (insert_rollups copies them): a refresh of 7,000 events of
    50 distinct values each once held 350,000 of them, 120 MB, in Python.
    """
    detailed = detail or (lambda key, at: True)
    side_counts, side_out = side if side is not None else (None, None)
    covered = covered or counts
    out = Rollups(shift, keep_facts)
    conn.execute("DELETE FROM temp.agg_visit")
    conn.execute("DELETE FROM temp.agg_visit_event")
    pending: list[tuple[int, int, int, int, int]] = []
    named: list[tuple[int, int, int, str]] = []  # (visit, session, start, custom event name) of the visits kept
    decided_early = not (set(filters) - set(SESSION_FILTERS))  # session attributes are known from a visit's first row
    page, event = filters.get("page"), filters.get("event")
    builder: VisitBuilder | None = None
    held: list[EventFact] = []  # counted events of the current visit, while its match is undecided

    def finish(visit: VisitBuilder) -> None:
        fact = visit.fact()
        if filters and not decided_early:
            if not _visit_matches(fact, visit, filters):
                held.clear()
                return
            for e in held:
                out.add_event(e, detailed(e.website_key, e.created_at))
                if side_counts is not None and side_counts(e.website_key, e.created_at):
                    side_out.add_event(e)  # type: ignore[union-attr]
            held.clear()
        counted = counts(fact.website_key, fact.started_at)
        if counted:
            out.add_visit(fact, detailed(fact.website_key, fact.started_at), visit.names)
            if side_counts is not None and side_counts(fact.website_key, fact.started_at):
                side_out.add_visit(fact)  # type: ignore[union-attr]
        pending.append((fact.visit_key, fact.website_key, fact.session_key, fact.started_at, counted))
        named.extend((fact.visit_key, fact.session_key, fact.started_at, name) for name in visit.names)
        if len(pending) >= 5000:
            conn.executemany("INSERT INTO temp.agg_visit VALUES (?,?,?,?,?)", pending)
            conn.executemany("INSERT OR IGNORE INTO temp.agg_visit_event VALUES (?,?,?,?)", named)
            pending.clear()
            named.clear()

    skipping = -1  # a visit already known not to match
    sessions = {row[0]: row[1:] for row in conn.execute(_CANDIDATE_SESSIONS)}
    for row in conn.execute(_CANDIDATE_EVENTS):
        e = EventFact(*row)
        if e.visit_key == skipping:
            continue
        if builder is None or e.visit_key != builder.first.visit_key:
            if builder is not None:
                finish(builder)
            builder = VisitBuilder(e, sessions.get(e.visit_key, _NO_SESSION), page, event)
            if filters and decided_early and not _visit_matches(builder.fact(), builder, filters):
                builder, skipping = None, e.visit_key
                continue
        builder.add(e)
        if counts(e.website_key, e.created_at):
            if filters and not decided_early:
                held.append(e)
            else:
                out.add_event(e, detailed(e.website_key, e.created_at))
                if side_counts is not None and side_counts(e.website_key, e.created_at):
                    side_out.add_event(e)  # type: ignore[union-attr]
    if builder is not None:
        finish(builder)
    conn.executemany("INSERT INTO temp.agg_visit VALUES (?,?,?,?,?)", pending)
    conn.executemany("INSERT OR IGNORE INTO temp.agg_visit_event VALUES (?,?,?,?)", named)
    if event_counts_in_sql:
        conn.execute("DELETE FROM temp.agg_event_count")
        conn.create_function("footfall_counted", 2, lambda key, at: bool(counts(key, at) and detailed(key, at)))
        for sql in _EVENT_COUNTS_SQL:
            conn.execute(sql, (shift, EVENT_VALUE_CHARS) if "?1" in sql else ())
        out.event_counts_in_sql = True
    else:
        sql = (
            "SELECT e.website_key, e.created_at, e.event_name, d.data_key, d.string_value FROM temp.agg_visit a "
            "CROSS JOIN website_event e ON e.visit_key = a.visit_key CROSS JOIN event_data d ON d.event_key = e.event_key "
            "WHERE e.event_type = 2"
        )
        for website_key, created_at, name, data_key, value in conn.execute(sql):
            if counts(website_key, created_at) and detailed(website_key, created_at):
                out.add_event_key(website_key, created_at, name, data_key, value)
    return out, _count_visitors(conn, out, shift, since_among_all, covered, side, detailed)


def _count_visitors(
    conn: sqlite3.Connection,
    out: Rollups,
    shift: int,
    since_among_all: bool,
    covered: Callable[[int, int], bool],
    side: tuple[Callable[[int, int], bool], Rollups] | None,
    detailed: Callable[[int, int], bool],
) -> dict[int, set[int]]:
    """Visitor and goal-visitor rows of the visits in temp.agg_visit (their custom event names in temp.agg_visit_event).

    Returns the hours outside ``covered`` whose visitor counts depend on these visits (see aggregate_visits).
    """
    side_counts, side_out = side if side is not None else (None, None)
    follow: dict[int, set[int]] = collections.defaultdict(set)
    if since_among_all:
        # Each counted visit's neighbours among all its session's visits, by start: visit.started_at is the visit's first
        # event's time (the writer keeps it so), and idx_visit_session_key_started_at finds them in a few steps however
        # many visits the session has (a session with 17,505 visits once made every refresh read all of them).
        sql = (
            f"SELECT a.website_key, a.started_at, {_NEIGHBOUR.format(op='<', order='DESC')}, "
            f"{_NEIGHBOUR.format(op='>', order='ASC')} FROM temp.agg_visit a WHERE a.counted"
        )
        # The custom events of the other visits of sessions whose counted visits had any (for visitors per event): only
        # those sessions' visits are read, so a session of thousands of pageview-only visits costs nothing here.
        conn.execute("DELETE FROM temp.agg_session_visit")
        conn.execute(
            "INSERT INTO temp.agg_session_visit SELECT v.visit_key, v.session_key, v.started_at FROM visit v "
            "WHERE v.session_key IN (SELECT x.session_key FROM temp.agg_visit_event x JOIN temp.agg_visit a "
            "USING (visit_key) WHERE a.counted)"
        )
        conn.execute(
            "INSERT OR IGNORE INTO temp.agg_visit_event SELECT DISTINCT sv.visit_key, sv.session_key, sv.started_at, "
            "ifnull(e.event_name, '') FROM temp.agg_session_visit sv CROSS JOIN website_event e ON e.visit_key = sv.visit_key "
            "WHERE e.event_type = 2"
        )
    else:
        sql = (
            "SELECT a.website_key, a.started_at, w.previous, w.next FROM temp.agg_visit a JOIN "
            "(SELECT visit_key, lag(started_at) OVER win AS previous, lead(started_at) OVER win AS next FROM temp.agg_visit "
            "WINDOW win AS (PARTITION BY session_key ORDER BY started_at, visit_key)) w USING (visit_key) WHERE a.counted"
        )
    for website_key, started, previous, following in conn.execute(sql):
        out.add_visitor(website_key, started, previous)
        if side_counts is not None and side_counts(website_key, started):
            side_out.add_visitor(website_key, started, previous)  # type: ignore[union-attr]
        if following is not None and since_among_all and not covered(website_key, following):
            follow[website_key].add(bucket_of(following, shift))
    sql = (
        "SELECT a.website_key, a.started_at, w.event_name, w.previous FROM temp.agg_visit a JOIN (SELECT visit_key, "
        "event_name, lag(started_at) OVER (PARTITION BY session_key, event_name ORDER BY started_at, visit_key) AS previous "
        "FROM temp.agg_visit_event) w USING (visit_key) WHERE a.counted"
    )
    for website_key, started, name, previous in conn.execute(sql):
        if detailed(website_key, started):
            out.add_event_visitor(website_key, started, name, previous)
    return dict(follow)


def collect_rollups(
    conn: sqlite3.Connection, dirty: Mapping[int, set[int]], shift: int, scope: Mapping[int, set[int]] | None = None
) -> tuple[Rollups, dict[int, set[int]]]:
    """Compute the rollup rows of the given hours (website_key → hour starts) from the events.

    Also returns hours outside ``scope`` (the hours being recomputed anyway; default ``dirty``) whose visitor counts depend
    on what changed (the next visit of a session whose visit changed); the caller recomputes those too. That only happens
    when events arrive out of order.
    """
    scope = dirty if scope is None else scope
    for sql in AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    for website_key, hours in dirty.items():
        for start, end in _hour_runs(hours):
            conn.execute(
                "INSERT OR IGNORE INTO temp.agg_candidate SELECT visit_key FROM website_event "
                "WHERE website_key = ? AND created_at >= ? AND created_at < ?",
                (website_key, start, end),
            )
    return aggregate_visits(
        conn,
        shift,
        lambda key, at: bucket_of(at, shift) in dirty.get(key, ()),
        {},
        True,
        lambda key, at: bucket_of(at, shift) in dirty.get(key, ()) or bucket_of(at, shift) in scope.get(key, ()),
        keep_facts=True,
        event_counts_in_sql=True,
    )


def setting_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def set_setting(conn: sqlite3.Connection, name: str, value: object) -> None:
    conn.execute(
        "INSERT INTO setting (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "value = excluded.value, updated_at = excluded.updated_at",
        (name, str(value), int(time.time())),
    )


def store_rollups(conn: sqlite3.Connection, dirty: Mapping[int, set[int]], rollups: Rollups, zone: dt.tzinfo) -> None:
    """Replace the rollup rows of the given hours, then the daily sums of their days (inside the caller's transaction)."""
    metrics = ", ".join(f"'{m}'" for m in ROLLUP_METRICS)
    for website_key, hours in dirty.items():
        for start, end in _hour_runs(hours):
            params = (website_key, start, end)
            conn.execute(
                f"DELETE FROM rollup WHERE website_key = ? AND metric IN ({metrics}) AND hour >= ? AND hour < ?", params
            )
            conn.execute("DELETE FROM rollup_visitors WHERE website_key = ? AND hour >= ? AND hour < ?", params)
            conn.execute("DELETE FROM rollup_vitals WHERE website_key = ? AND hour >= ? AND hour < ?", params)
            conn.execute("DELETE FROM rollup_event_visitors WHERE website_key = ? AND hour >= ? AND hour < ?", params)
            conn.execute(
                "DELETE FROM rollup_visit_page WHERE visit_key IN (SELECT visit_key FROM rollup_visit WHERE website_key = ? "
                "AND started_at >= ? AND started_at < ?)",
                params,
            )
            conn.execute("DELETE FROM rollup_visit WHERE website_key = ? AND started_at >= ? AND started_at < ?", params)
    insert_rollups(conn, rollups, "main")
    marks = ",".join("?" * (len(VisitFact._fields) + 1))
    facts = [(*fact, names) for fact, names in rollups.facts or ()]
    conn.executemany(f"INSERT OR REPLACE INTO rollup_visit VALUES ({marks})", facts)
    _store_visit_pages(conn, [fact[0] for fact in facts])
    for website_key, hours in dirty.items():
        for day in sorted({day_of(hour, zone) for hour in hours}):
            sum_day(conn, website_key, day, next_day(day, zone))


def _store_visit_pages(conn: sqlite3.Connection, visit_keys: list[int]) -> None:
    """Replace the rollup_visit_page rows of these visits (just stored in rollup_visit) with the pages of their events."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS page_visit (visit_key INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.page_visit")
    conn.executemany("INSERT OR IGNORE INTO temp.page_visit VALUES (?)", ((key,) for key in visit_keys))
    conn.execute("DELETE FROM rollup_visit_page WHERE visit_key IN (SELECT visit_key FROM temp.page_visit)")
    conn.execute(
        "INSERT OR IGNORE INTO rollup_visit_page (website_key, url_path, started_at, visit_key) "
        "SELECT f.website_key, e.url_path, f.started_at, f.visit_key FROM temp.page_visit p "
        "CROSS JOIN rollup_visit f ON f.visit_key = p.visit_key CROSS JOIN website_event e ON e.visit_key = p.visit_key "
        f"WHERE e.event_type = {EVENT_PAGEVIEW}"
    )


def insert_rollups(conn: sqlite3.Connection, rollups: Rollups, schema: str, prefix: str = "") -> None:
    """Insert ``rollups``' rows into the hourly tables of ``schema`` (named with ``prefix``: a filtered page's copies)."""
    counts, visitors, vitals, event_visitors = rollups.rows()
    t = [f"{schema}.{prefix}{table}" for table in HOURLY_TABLES]
    conn.executemany(f"INSERT INTO {t[0]} (website_key, metric, hour, value, n) VALUES (?,?,?,?,?)", counts)
    conn.executemany(f"INSERT INTO {t[1]} (website_key, hour, since, n) VALUES (?,?,?,?)", visitors)
    conn.executemany(f"INSERT INTO {t[2]} (website_key, hour, metric, url_path, bin, n) VALUES (?,?,?,?,?,?)", vitals)
    conn.executemany(f"INSERT INTO {t[3]} (website_key, hour, event_name, since, n) VALUES (?,?,?,?,?)", event_visitors)
    if rollups.event_counts_in_sql:
        conn.execute(f"INSERT INTO {t[0]} (website_key, metric, hour, value, n) SELECT * FROM temp.agg_event_count")


def sum_day(conn: sqlite3.Connection, website_key: int, day: int, end: int) -> None:
    """Recompute one website's daily rollup rows of the day [day, end) from its hourly rows."""
    metrics = ", ".join(f"'{m}'" for m in ROLLUP_METRICS)
    conn.execute(f"DELETE FROM rollup_daily WHERE website_key = ? AND metric IN ({metrics}) AND day = ?", (website_key, day))
    conn.execute("DELETE FROM rollup_daily_visitors WHERE website_key = ? AND day = ?", (website_key, day))
    conn.execute("DELETE FROM rollup_daily_vitals WHERE website_key = ? AND day = ?", (website_key, day))
    conn.execute("DELETE FROM rollup_daily_event_visitors WHERE website_key = ? AND day = ?", (website_key, day))
    params = (day, website_key, day, end)
    conn.execute(
        f"INSERT INTO rollup_daily (website_key, metric, day, value, n) SELECT website_key, metric, ?, value, sum(n) "
        f"FROM rollup WHERE website_key = ? AND metric IN ({metrics}) AND hour >= ? AND hour < ? "
        f"GROUP BY metric, value",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_daily_visitors (website_key, day, since, n) SELECT website_key, ?, since, sum(n) "
        "FROM rollup_visitors WHERE website_key = ? AND hour >= ? AND hour < ? GROUP BY since",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_daily_vitals (website_key, day, metric, url_path, bin, n) SELECT website_key, ?, metric, "
        "url_path, bin, sum(n) FROM rollup_vitals WHERE website_key = ? AND hour >= ? AND hour < ? "
        "GROUP BY metric, url_path, bin",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_daily_event_visitors (website_key, day, event_name, since, n) SELECT website_key, ?, event_name, "
        "since, sum(n) FROM rollup_event_visitors WHERE website_key = ? AND hour >= ? AND hour < ? GROUP BY event_name, since",
        params,
    )


def _dirty_hours(conn: sqlite3.Connection, after: int, upto: int, shift: int) -> dict[int, set[int]]:
    """Hours to recompute for events with keys in (after, upto]: theirs, and every hour their visits have events in."""
    dirty: dict[int, set[int]] = collections.defaultdict(set)
    sql = (
        "SELECT DISTINCT x.website_key, x.created_at FROM website_event x WHERE x.visit_key IN "
        "(SELECT e.visit_key FROM website_event e WHERE e.event_key > ? AND e.event_key <= ?)"
    )
    for website_key, created_at in conn.execute(sql, (after, upto)):
        dirty[website_key].add(bucket_of(created_at, shift))
    return dirty


def recompute_hours(
    conn: sqlite3.Connection, dirty: Mapping[int, set[int]], shift: int, scope: Mapping[int, set[int]] | None = None
) -> tuple[Rollups, dict[int, set[int]]]:
    """Collect the given hours plus the hours their changes reach outside ``scope`` (see collect_rollups); return them and
    all the hours collected."""
    hours = {k: set(v) for k, v in dirty.items()}
    while True:
        rollups, follow = collect_rollups(conn, hours, shift, scope)
        if not follow:
            return rollups, hours
        for website_key, more in follow.items():
            hours.setdefault(website_key, set()).update(more)


#: Hours recomputed in one read-then-write step of a refresh (bounds its memory: a rebuild goes two days at a time).
ROLLUP_CHUNK_HOURS = 48


def _chunks(hours: Mapping[int, set[int]], size: int = ROLLUP_CHUNK_HOURS) -> Iterable[dict[int, set[int]]]:
    for website_key, found in hours.items():
        ordered = sorted(found)
        for at in range(0, len(ordered), size):
            yield {website_key: set(ordered[at : at + size])}


def _all_hours(conn: sqlite3.Connection, shift: int) -> dict[int, set[int]]:
    hours: dict[int, set[int]] = collections.defaultdict(set)
    sql = "SELECT DISTINCT website_key, created_at - (created_at - ?) % ? FROM website_event"
    for website_key, hour in conn.execute(sql, (shift, ROLLUP_BUCKET_SECONDS)):
        hours[website_key].add(hour)
    return hours


def _zone_name(zone: dt.tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def refresh_rollups(
    conn: sqlite3.Connection, shift: int, zone: dt.tzinfo = dt.timezone.utc, round_events: int = ROLLUP_ROUND_EVENTS
) -> int:
    """Bring the rollups up to date with website_event; return how many events were new to them.

    Safe beside a running footfall (the writer may commit between steps) and against concurrent deletes (epoch check).
    If ``shift`` or ``zone`` differ from what the rollups were made with, or they were made by another ROLLUP_VERSION (a
    database from an older footfall), every rollup is rebuilt.
    """
    seen = 0
    while True:
        with transaction(conn, immediate=False):
            aligned = (
                stored_alignment(conn) == (shift, _zone_name(zone)) and setting_int(conn, "rollup_version") == ROLLUP_VERSION
            )
            mark, epoch = setting_int(conn, "rollup_event_key"), setting_int(conn, "rollup_epoch")
            # The writer never reuses a key at or below the mark (EventWriter.commit_batch), so keys above it are new.
            top = conn.execute("SELECT ifnull(max(event_key), 0) FROM website_event").fetchone()[0]
            upto = top if mark == 0 else min(top, mark + round_events)
            dirty = {}
            if aligned and top > mark:
                dirty = _all_hours(conn, shift) if mark == 0 else _dirty_hours(conn, mark, upto, shift)
        if not aligned:
            reset_rollups(conn, shift, zone)
            continue
        if top <= mark:
            return seen
        if not all(_refresh_chunk(conn, chunk, dirty, shift, zone, mark, epoch) for chunk in _chunks(dirty)):
            continue  # somebody deleted events or refreshed meanwhile: start over
        with transaction(conn):
            untouched = _rollups_untouched(conn, mark, epoch)
            if untouched:
                set_setting(conn, "rollup_event_key", upto)
        if untouched:
            seen += upto - mark


def _rollups_untouched(conn: sqlite3.Connection, mark: int, epoch: int) -> bool:
    """Whether nobody refreshed the rollups or deleted events since a refresh read ``mark`` and ``epoch``."""
    return setting_int(conn, "rollup_event_key") == mark and setting_int(conn, "rollup_epoch") == epoch


def _refresh_chunk(
    conn: sqlite3.Connection,
    chunk: Mapping[int, set[int]],
    scope: Mapping[int, set[int]],
    shift: int,
    zone: dt.tzinfo,
    mark: int,
    epoch: int,
) -> bool:
    """Recompute some hours of ``scope`` in one snapshot, then store them unless somebody changed the rollups meanwhile."""
    with transaction(conn, immediate=False):
        rollups, hours = recompute_hours(conn, chunk, shift, scope)
    with transaction(conn):
        untouched = _rollups_untouched(conn, mark, epoch)
        if untouched:
            store_rollups(conn, hours, rollups, zone)
    return untouched


def reset_rollups(conn: sqlite3.Connection, shift: int, zone: dt.tzinfo = dt.timezone.utc) -> None:
    """Drop every rollup row; the next refresh recomputes them all (hours aligned by ``shift``, days in ``zone``)."""
    with transaction(conn):
        for table in ROLLUP_TABLES:
            conn.execute(f"DELETE FROM {table}")
        set_setting(conn, "rollup_shift", shift)
        set_setting(conn, "rollup_zone", _zone_name(zone))
        set_setting(conn, "rollup_version", ROLLUP_VERSION)
        set_setting(conn, "rollup_event_key", 0)
        set_setting(conn, "rollup_epoch", setting_int(conn, "rollup_epoch") + 1)


def stored_alignment(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The (shift, zone name) the rollups were made with; None before the first refresh."""
    found = dict(conn.execute("SELECT name, value FROM setting WHERE name IN ('rollup_shift', 'rollup_zone')").fetchall())
    if len(found) < 2:
        return None
    return int(found["rollup_shift"]), found["rollup_zone"]


def hours_cut_by_prune(conn: sqlite3.Connection, cutoff: int, website_key: int | None) -> dict[int, set[int]]:
    """Before deleting events older than ``cutoff``: the hours whose rollups change beyond the ones dropped whole.

    That is the hour holding the cutoff, and the hours of the later events of visits the cutoff splits (visits with an
    event in the day before it), whose start moves.
    """
    alignment = stored_alignment(conn)
    if alignment is None:
        return {}
    shift = alignment[0]
    sites = [website_key] if website_key is not None else [k for (k,) in conn.execute("SELECT website_key FROM website")]
    hours: dict[int, set[int]] = {}
    sql = (
        "SELECT DISTINCT created_at FROM website_event WHERE website_key = ? AND created_at >= ? AND visit_key IN "
        "(SELECT visit_key FROM website_event WHERE website_key = ? AND created_at >= ? AND created_at < ?)"
    )
    for key in sites:
        found = {bucket_of(cutoff, shift)}
        found.update(bucket_of(at, shift) for (at,) in conn.execute(sql, (key, cutoff, key, cutoff - DAY_SECONDS, cutoff)))
        hours[key] = found
    return hours


def drop_pruned_rollups(
    conn: sqlite3.Connection, cutoff: int, website_key: int | None, repair: Mapping[int, set[int]]
) -> None:
    """After deleting events older than ``cutoff``: drop the rollup hours and days before it and recompute ``repair``."""
    alignment = stored_alignment(conn)
    if alignment is not None:
        first_hour, first_day = bucket_of(cutoff, alignment[0]), day_of(cutoff, load_zone(alignment[1]))
        site = "" if website_key is None else " AND website_key = ?"
        with transaction(conn):
            for table in ROLLUP_TABLES:
                column, first = ("day", first_day) if "daily" in table else ("hour", first_hour)
                column = "started_at" if table in (VISIT_FACTS_TABLE, VISIT_PAGES_TABLE) else column
                conn.execute(
                    f"DELETE FROM {table} WHERE {column} < ?{site}", (first,) if website_key is None else (first, website_key)
                )
    repair_rollups(conn, repair)


def rollup_epoch_bump() -> tuple[str, tuple[Any, ...]]:
    """The statement that tells a refresh in flight that events were deleted (run in the deleting transaction)."""
    return (
        "INSERT INTO setting (name, value, updated_at) VALUES ('rollup_epoch', '1', 0) ON CONFLICT (name) DO UPDATE "
        "SET value = CAST(value AS INTEGER) + 1",
        (),
    )


def repair_rollups(conn: sqlite3.Connection, dirty: Mapping[int, set[int]]) -> None:
    """Recompute the given hours after events were deleted from them (prune, retention, forget), in one transaction."""
    with transaction(conn):
        alignment = stored_alignment(conn)
        if alignment is not None:
            rollups, hours = recompute_hours(conn, dirty, alignment[0])
            store_rollups(conn, hours, rollups, load_zone(alignment[1]))
        conn.execute(*rollup_epoch_bump())
