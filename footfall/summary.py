"""summary."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import math
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import aiosqlite
import msgspec

from collector import DAY_SECONDS, EVENT_CUSTOM, EVENT_PAGEVIEW, bad_request, connect, load_zone, unavailable
from footfall.rollups import (
    AGGREGATION_TABLES,
    ROLLUP_BUCKET_SECONDS,
    SESSION_FILTERS,
    VISIT_DIMENSIONS,
    VITALS,
    Rollups,
    aggregate_visits,
    bucket_of,
    bucket_shift,
    day_of,
    day_start,
    next_day,
    refresh_rollups,
)

# One function per panel, each a query on the rollups (or, for realtime and bots, on website_event and bot_counter). A
# filtered page computes the same rollup rows for the matching visits into temporary tables and runs the same queries.

#: Rows in each top list.
SUMMARY_LIST_LIMIT = 10


#: "Realtime" looks back this far, in seconds.
REALTIME_SECONDS = 300


#: Period presets: key → label.
PERIODS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "12m": "Last 12 months",
}


#: What a list or a filter can be about; each is a query parameter of the page (e.g. ?country=DE).
FILTERS = ("page", "event", *VISIT_DIMENSIONS)


#: Web-vital thresholds (good up to the first, poor above the second), as web.dev defines them.
VITAL_THRESHOLDS = {"lcp": (2500, 4000), "inp": (200, 500), "cls": (0.1, 0.25), "fcp": (1800, 3000), "ttfb": (800, 1800)}


_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class SummaryRange(NamedTuple):
    """The period a summary covers: [start, end) for the chart, [start, until) for the numbers, in Unix seconds."""

    name: str  # a PERIODS key, or 'custom'
    label: str
    start: int
    end: int
    until: int  # end, or the end of the current hour while the period is still running
    step: str  # 'hour' or 'day': the chart's intervals
    bounds: list[int]  # the chart's interval starts, then its end
    zone: dt.tzinfo

    @property
    def previous(self) -> tuple[int, int]:
        """The period of the same length right before this one (what the changes compare with)."""
        return self.start - (self.until - self.start), self.start


def _parse_day_or_time(text: str, zone: dt.tzinfo, inclusive_end: bool) -> int:
    """Unix seconds from 'YYYY-MM-DD' (that day's start in ``zone``, or the next day's for an inclusive end) or seconds."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise bad_request(f"{text!r} is not a date") from None
        return day_start(day + dt.timedelta(days=1) if inclusive_end else day, zone)
    if re.fullmatch(r"[0-9]{1,12}", text):  # ASCII digits only: str.isdigit() also takes '³'
        return int(text)
    raise bad_request(f"{text[:40]!r} is neither a date (YYYY-MM-DD) nor Unix seconds")


def resolve_range(
    period: str | None, start: str | None, end: str | None, zone: dt.tzinfo, now: float, shift: int
) -> SummaryRange:
    """The period of a summary request: a preset, or start and end (dates inclusive, or Unix seconds with end exclusive)."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    current_hour_end = bucket_of(int(now), shift) + ROLLUP_BUCKET_SECONDS
    if start or end:
        if not (start and end):
            raise bad_request("start and end go together")
        name, label = "custom", ""
        a, b = _parse_day_or_time(start, zone, False), _parse_day_or_time(end, zone, True)
        if b <= a:
            raise bad_request("end must be after start")
        if b - a > 3 * 366 * DAY_SECONDS:
            raise bad_request("a summary covers at most three years")
    else:
        name = period or "30d"
        if name not in PERIODS:
            raise bad_request(f"period must be one of {', '.join(PERIODS)}")
        label = PERIODS[name]
        tomorrow = day_start(today + dt.timedelta(days=1), zone)
        if name == "today":
            a, b = day_start(today, zone), tomorrow
        elif name == "yesterday":
            a, b = day_start(today - dt.timedelta(days=1), zone), day_start(today, zone)
        elif name == "24h":
            a, b = current_hour_end - DAY_SECONDS, current_hour_end
        elif name == "12m":
            month = today.year * 12 + today.month - 1 - 11
            a, b = day_start(dt.date(month // 12, month % 12 + 1, 1), zone), tomorrow
        else:
            a, b = day_start(today - dt.timedelta(days=int(name[:-1]) - 1), zone), tomorrow
    a, b = bucket_of(a, shift), bucket_of(b - 1, shift) + ROLLUP_BUCKET_SECONDS
    if name == "custom":
        first, last = (dt.datetime.fromtimestamp(t, zone) for t in (a, b - 1))
        label = f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"
    step = "hour" if b - a <= 2 * DAY_SECONDS else "day"
    if step == "hour":
        bounds = list(range(a, b, ROLLUP_BUCKET_SECONDS))
    else:
        day, bounds = dt.datetime.fromtimestamp(a, zone).date(), []
        while (at := bucket_of(day_start(day, zone), shift)) < b:
            bounds.append(max(at, a))
            day += dt.timedelta(days=1)
    until = max(a, min(b, current_hour_end))
    return SummaryRange(name, label, a, b, until, step, [*bounds, b], zone)


class RollupSource(NamedTuple):
    """The tables a summary reads: the rollups (hourly, and daily for whole days), or a filtered page's temporary ones."""

    zone: dt.tzinfo
    hourly: tuple[str, str, str] = ("rollup", "rollup_visitors", "rollup_vitals")
    daily: tuple[str, str, str] | None = ("rollup_daily", "rollup_daily_visitors", "rollup_daily_vitals")

    def parts(self, start: int, end: int) -> list[tuple[tuple[str, str, str], str, int, int]]:
        """[start, end) as (tables, time column, from, to) pieces: its whole local days from the daily tables, if any."""
        if self.daily is not None and end > start:
            first = day_of(start, self.zone)
            first = first if first == start else next_day(first, self.zone)
            last = day_of(end, self.zone)
            if first < last:
                pieces = [(self.daily, "day", first, last)]
                pieces += [(self.hourly, "hour", a, b) for a, b in ((start, first), (last, end)) if a < b]
                return pieces
        return [(self.hourly, "hour", start, end)]


def filtered_source(zone: dt.tzinfo) -> RollupSource:
    """A filtered page's tables: hourly rows in temporary tables (see load_filtered)."""
    return RollupSource(zone, ("temp.f_rollup", "temp.f_rollup_visitors", "temp.f_rollup_vitals"), None)


def _union(
    src: RollupSource, start: int, end: int, table: int, columns: str, where: str, params: Sequence[Any], by_time: bool = True
) -> tuple[str, list[Any]]:
    """One SELECT over all pieces of [start, end): ``where`` applies to each piece, and the pieces are UNION ALL-ed.

    ``by_time=False`` keeps SQLite from picking the daily tables' day index over their primary key (a page's web vitals).
    """
    selects, values = [], []
    for tables, column, a, b in src.parts(start, end):
        plus = "+" if column == "day" and not by_time else ""
        selects.append(f"SELECT {columns} FROM {tables[table]} WHERE {where} AND {plus}{column} >= ? AND {plus}{column} < ?")
        values += [*params, a, b]
    return " UNION ALL ".join(selects), values


def panel_totals(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int) -> dict[str, float]:
    """Visitors, visits, pageviews, custom events, views per visit, bounce rate and average visit length of [start, end)."""
    sums = dict.fromkeys(("pageviews", "events", "visits", "bounces", "duration"), 0)
    inner, params = _union(
        src,
        start,
        end,
        0,
        "metric, n",
        "website_key = ? AND metric IN ('pageviews', 'events', 'visits', 'bounces', 'duration')",
        [website_key],
    )
    sums.update(conn.execute(f"SELECT metric, sum(n) FROM ({inner}) GROUP BY metric", params).fetchall())
    inner, params = _union(src, start, end, 1, "n", "website_key = ? AND since < ?", [website_key, start])
    visitors = conn.execute(f"SELECT ifnull(sum(n), 0) FROM ({inner})", params).fetchone()[0]
    visits = sums["visits"]
    return {
        "visitors": visitors,
        "visits": visits,
        "pageviews": sums["pageviews"],
        "custom_events": sums["events"],
        "views_per_visit": round(sums["pageviews"] / visits, 2) if visits else 0.0,
        "bounce_rate": round(sums["bounces"] / visits, 4) if visits else 0.0,
        "avg_duration_s": round(sums["duration"] / visits, 1) if visits else 0.0,
    }


def panel_chart(conn: sqlite3.Connection, src: RollupSource, website_key: int, bounds: list[int]) -> list[dict[str, int]]:
    """Pageviews and visitors per chart interval (bounds: interval starts, then the end)."""
    pageviews = [0] * (len(bounds) - 1)
    visitors = [0] * (len(bounds) - 1)
    pieces: dict[tuple[tuple[str, str, str], str], list[tuple[int, int, int, int]]] = collections.defaultdict(list)
    for index, (a, b) in enumerate(itertools.pairwise(bounds)):
        for tables, column, x, y in src.parts(a, b):
            pieces[(tables, column)].append((index, x, y, a))
    for (tables, column), intervals in pieces.items():
        encoded = msgspec.json.encode(intervals).decode()
        sql = (
            f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[0]} r ON r.website_key = ? AND "
            f"r.metric = 'pageviews' AND r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 GROUP BY 1"
        )
        for index, n in conn.execute(sql, (encoded, website_key)):
            pageviews[index] += n
        sql = (
            f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[1]} r ON r.website_key = ? AND "
            f"r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 AND r.since < j.value ->> 3 GROUP BY 1"
        )
        for index, n in conn.execute(sql, (encoded, website_key)):
            visitors[index] += n
    return [{"start": a, "pageviews": p, "visitors": v} for a, p, v in zip(bounds, pageviews, visitors)]


def panel_top(
    conn: sqlite3.Connection,
    src: RollupSource,
    website_key: int,
    metric: str,
    start: int,
    end: int,
    total: int,
    limit: int = SUMMARY_LIST_LIMIT,
) -> list[dict[str, Any]]:
    """The most frequent values of one metric in [start, end), with their share of ``total``."""
    inner, params = _union(src, start, end, 0, "value, n", "website_key = ? AND metric = ?", [website_key, metric])
    sql = f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT ?"
    rows = conn.execute(sql, [*params, limit]).fetchall()
    return [{"value": value, "count": n, "share": round(n / total, 4) if total else 0.0} for value, n in rows]


def panel_events(
    conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int, total: int
) -> list[dict[str, Any]]:
    """Custom events by name, each with its three most common data keys."""
    events = panel_top(conn, src, website_key, "event", start, end, total)
    for event in events:
        prefix = msgspec.json.encode([event["value"]]).decode()[:-1] + ","
        inner, params = _union(
            src,
            start,
            end,
            0,
            "value, n",
            "website_key = ? AND metric = 'event_key' AND substr(value, 1, ?) = ?",
            [website_key, len(prefix), prefix],
        )
        rows = conn.execute(f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT 3", params)
        event["keys"] = [{"key": msgspec.json.decode(value)[1], "count": n} for value, n in rows]
    return events


def _vital_rating(metric: str, value: float) -> str:
    good, poor = VITAL_THRESHOLDS[metric]
    return "good" if value <= good else "poor" if value > poor else "needs-improvement"


def panel_vitals(
    conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int, limit: int = SUMMARY_LIST_LIMIT
) -> list[dict[str, Any]]:
    """p75 of each web vital for the pages with most performance reports (nearest rank over two-figure histograms)."""
    pages = []
    for top in panel_top(conn, src, website_key, "reports", start, end, 0, limit):
        inner, params = _union(
            src,
            start,
            end,
            2,
            "metric, bin, n",
            "website_key = ? AND url_path = ?",
            [website_key, top["value"]],
            by_time=False,
        )
        histograms: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        for metric, value, n in conn.execute(
            f"SELECT metric, bin, sum(n) FROM ({inner}) GROUP BY metric, bin ORDER BY metric, bin", params
        ):
            histograms[metric].append((value, n))
        row: dict[str, Any] = {"page": top["value"], "reports": top["count"]}
        for metric in VITALS:
            bins = histograms.get(metric)
            row[metric] = None
            if bins:
                count = sum(n for _, n in bins)
                rank, seen = math.ceil(0.75 * count), 0
                for value, n in bins:
                    seen += n
                    if seen >= rank:
                        row[metric] = {"p75": value, "rating": _vital_rating(metric, value), "count": count}
                        break
        pages.append(row)
    return pages


def panel_realtime(conn: sqlite3.Connection, website_key: int, now: float) -> dict[str, Any]:
    """Visitors active in the last five minutes, and the page each was last on."""
    since = int(now) - REALTIME_SECONDS
    visitors = conn.execute(
        "SELECT count(DISTINCT session_key) FROM website_event WHERE website_key = ? AND created_at >= ?", (website_key, since)
    ).fetchone()[0]
    sql = (
        "SELECT url_path, count(*) AS c FROM (SELECT session_key, url_path, max(created_at) FROM website_event "
        "WHERE website_key = ? AND created_at >= ? AND event_type = 1 GROUP BY session_key) "
        "GROUP BY url_path ORDER BY c DESC, url_path LIMIT ?"
    )
    pages = [{"value": path, "count": n} for path, n in conn.execute(sql, (website_key, since, SUMMARY_LIST_LIMIT))]
    return {"visitors": visitors, "pages": pages}


def panel_bots(conn: sqlite3.Connection, website_key: int, start: int, end: int) -> int:
    """Requests refused as bots in the UTC days that [start, end) touches (bot_counter counts per UTC day)."""
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (start, max(start, end - 1)))
    sql = "SELECT ifnull(sum(hits), 0) FROM bot_counter WHERE website_key = ? AND day >= ? AND day <= ?"
    return int(conn.execute(sql, (website_key, first, last)).fetchone()[0])


def collect_filtered(
    conn: sqlite3.Connection, website_key: int, start: int, end: int, filters: Mapping[str, str], shift: int
) -> Rollups:
    """Rollup rows of [start, end) for the visits that match every filter (a segment: all numbers are about them).

    Candidates are the visits with an event in the range, or, with a filter on a session attribute, the matching sessions'
    visits that started in the range or the day before it (visits are never that long); a page or event filter narrows
    them to visits with such an event in the same span. The rest is decided visit by visit, and only events and visit
    starts inside the range are counted.
    """
    for sql in AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    narrow, params = [], []
    for name, column, kind in (("page", "url_path", EVENT_PAGEVIEW), ("event", "ifnull(event_name, '')", EVENT_CUSTOM)):
        if name in filters:
            narrow.append(
                f" AND {{visit}} IN (SELECT visit_key FROM website_event WHERE website_key = ? AND created_at >= ? "
                f"AND created_at < ? AND event_type = {kind} AND {column} = ?)"
            )
            params += [website_key, start - DAY_SECONDS, end, filters[name]]
    sessions = [(name, value) for name, value in filters.items() if name in SESSION_FILTERS]
    if sessions:  # few sessions match: go from them to their visits, not through every event of the range
        matching = " AND ".join(f"s.{name} = ?" for name, _ in sessions)
        sql = (
            f"INSERT OR IGNORE INTO temp.agg_candidate SELECT v.visit_key FROM session s CROSS JOIN visit v "
            f"ON v.session_key = s.session_key WHERE s.website_key = ? AND {matching} AND v.started_at >= ? "
            f"AND v.started_at < ?" + "".join(n.format(visit="v.visit_key") for n in narrow)
        )
        conn.execute(sql, [website_key, *(value for _, value in sessions), start - DAY_SECONDS, end, *params])
    else:
        sql = (
            "INSERT OR IGNORE INTO temp.agg_candidate SELECT e.visit_key FROM website_event e WHERE e.website_key = ? "
            "AND e.created_at >= ? AND e.created_at < ?" + "".join(n.format(visit="e.visit_key") for n in narrow)
        )
        conn.execute(sql, [website_key, start, end, *params])
    rollups, _ = aggregate_visits(conn, shift, lambda key, at: start <= at < end, filters, False)
    return rollups


def load_filtered(conn: sqlite3.Connection, rollups: Rollups) -> None:
    """Put a filtered page's rollup rows into the temporary tables filtered_source() names."""
    for table, like in (
        ("f_rollup", "rollup"),
        ("f_rollup_visitors", "rollup_visitors"),
        ("f_rollup_vitals", "rollup_vitals"),
    ):
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} AS SELECT * FROM main.{like} WHERE 0")
        conn.execute(f"DELETE FROM temp.{table}")
    counts, visitors, vitals = rollups.rows()
    conn.executemany("INSERT INTO temp.f_rollup (website_key, metric, hour, value, n) VALUES (?,?,?,?,?)", counts)
    conn.executemany("INSERT INTO temp.f_rollup_visitors (website_key, hour, since, n) VALUES (?,?,?,?)", visitors)
    conn.executemany(
        "INSERT INTO temp.f_rollup_vitals (website_key, hour, metric, url_path, bin, n) VALUES (?,?,?,?,?,?)", vitals
    )


class Site(NamedTuple):
    """A website as the summary shows it."""

    key: int
    id: str
    name: str
    domain: str | None


def _change(current: float, previous: float) -> float | None:
    return round((current - previous) / previous, 4) if previous else None


def build_summary(
    conn: sqlite3.Connection, site: Site, period: SummaryRange, filters: Mapping[str, str], now: float, shift: int
) -> dict[str, Any]:
    """Everything the summary page shows, as plain data (the JSON twin returns exactly this)."""
    src = RollupSource(period.zone)
    previous_start, previous_end = period.previous
    conn.execute("BEGIN")  # one snapshot for every panel
    try:
        if filters:  # the same rollup rows for the matching visits, in this connection's own temporary tables
            load_filtered(
                conn, collect_filtered(conn, site.key, min(previous_start, period.start), period.end, filters, shift)
            )
            src = filtered_source(period.zone)
        totals = panel_totals(conn, src, site.key, period.start, period.until)
        before = panel_totals(conn, src, site.key, previous_start, previous_end)
        lists: dict[str, dict[str, Any]] = {}
        for metric in ("page", *VISIT_DIMENSIONS):
            total = totals["pageviews"] if metric == "page" else totals["visits"]
            lists[metric] = {"total": total, "rows": panel_top(conn, src, site.key, metric, period.start, period.until, total)}
        summary = {
            "website": {"id": site.id, "name": site.name, "domain": site.domain},
            "period": {
                "name": period.name,
                "label": period.label,
                "timezone": str(period.zone),
                "step": period.step,
                "start": period.start,
                "end": period.end,
                "until": period.until,
                "previous_start": previous_start,
                "previous_end": previous_end,
            },
            "filters": dict(filters),
            "totals": {
                name: {"value": value, "previous": before[name], "change": _change(value, before[name])}
                for name, value in totals.items()
            },
            "chart": panel_chart(conn, src, site.key, period.bounds),
            "lists": lists,
            "events": panel_events(conn, src, site.key, period.start, period.until, totals["custom_events"]),
            "vitals": panel_vitals(conn, src, site.key, period.start, period.until),
            "realtime": panel_realtime(conn, site.key, now),
            "bots": panel_bots(conn, site.key, period.start, period.until),
        }
    finally:
        conn.execute("COMMIT")
    return summary


async def list_sites(reader: aiosqlite.Connection) -> list[Site]:
    """Active websites, by name."""
    sql = "SELECT website_key, website_id, name, domain FROM website WHERE deleted_at IS NULL ORDER BY name, website_id"
    async with reader.execute(sql) as cur:
        return [Site(*row) for row in await cur.fetchall()]


async def shared_site(reader: aiosqlite.Connection, token: str) -> int | None:
    """The website a share token shows, if the link exists."""
    async with reader.execute("SELECT website_key FROM share_link WHERE token = ?", (token,)) as cur:
        row = await cur.fetchone()
    return None if row is None else int(row[0])


class SummaryReader:
    """The summary's own connection: rollup refreshes and summary reads run on it in a worker thread, one at a time."""

    def __init__(
        self, db: str, busy_timeout_ms: int, timezone: str, clock: Callable[[], float], wal_autocheckpoint: int = 1000
    ) -> None:
        self.db = db
        self.busy_timeout_ms = busy_timeout_ms
        self.wal_autocheckpoint = wal_autocheckpoint  # the rollup refreshes write: they checkpoint as the writer does
        self.clock = clock
        #: The summary's time zone and the alignment of its hours (rollup_shift).
        self.zone = load_zone(timezone)
        self.shift = bucket_shift(self.zone, clock())
        self.lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open the connection (the database exists: the collector prepared it)."""
        self._conn = await asyncio.to_thread(connect, self.db, self.busy_timeout_ms, True, self.wal_autocheckpoint)

    async def close(self) -> None:
        """Close the connection once the summary running now (if any) is done."""
        async with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(connection)`` in a worker thread, after any other summary work; 503 while shutting down."""
        async with self.lock:
            conn = self._conn
            if conn is None:
                raise unavailable("footfall is shutting down; try again shortly.")
            return await asyncio.to_thread(fn, conn)

    async def refresh(self) -> int:
        """Bring the rollups up to date (the writer goes on meanwhile); the events taken in."""
        return await self.run(lambda conn: refresh_rollups(conn, self.shift, self.zone))  # type: ignore[no-any-return]

    async def summary(self, site: Site, period: SummaryRange, filters: Mapping[str, str]) -> dict[str, Any]:
        """The numbers of one summary page, from rollups brought up to date first."""
        now = self.clock()

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            refresh_rollups(conn, self.shift, self.zone)
            return build_summary(conn, site, period, filters, now, self.shift)

        return await self.run(job)  # type: ignore[no-any-return]
