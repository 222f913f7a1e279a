"""The summary's numbers: ranges, filters, one function per panel, ``build_summary``, and the SummaryReader.

Owns: every number the page and /api/summary show, read from the rollups (or the events, for realtime and bots), and
the reader connection they run on. Imports collector and footfall.rollups.
"""

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
from litestar import Request

from collector import DAY_SECONDS, bad_request, connect, load_zone, transaction, unavailable
from footfall.rollups import (
    AGGREGATION_TABLES,
    DAILY_TABLES,
    ROLLUP_BUCKET_SECONDS,
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
from footfall.segments import (
    RollupSource,
    SegmentCache,
    collect_filtered,
    keep_segment_days,
    kept_days,
    segment_source,
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


#: The span a summary's start and end must lie in: 1970-01-01 to 2999-12-31 (UTC), far inside what dates, time zones
#: and the previous period's arithmetic can represent (9999-12-31 or year 1 made them overflow).
FIRST_SUMMARY_DAY, LAST_SUMMARY_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)


_LAST_SUMMARY_SECONDS = int(dt.datetime(3000, 1, 1, tzinfo=dt.timezone.utc).timestamp())


_OUT_OF_RANGE = f"start and end must lie between {FIRST_SUMMARY_DAY} and {LAST_SUMMARY_DAY}"


#: (headline key, label) in the order the page, the report and the CSV show them.
HEADLINES = (
    ("visitors", "Visitors"),
    ("visits", "Visits"),
    ("pageviews", "Pageviews"),
    ("views_per_visit", "Views per visit"),
    ("bounce_rate", "Bounce rate"),
    ("avg_duration_s", "Visit duration"),
)


class SummaryRange(NamedTuple):
    """The period a summary covers: [start, end) for the chart, [start, until) for the numbers, in Unix seconds."""

    name: str  # a PERIODS key, or 'custom'
    label: str
    start: int
    end: int
    until: int  # end, or the end of the current hour while the period is still running
    step: str  # 'hour', 'day', 'week' or 'month': the chart's intervals
    bounds: list[int]  # the chart's interval starts, then its end
    zone: dt.tzinfo
    #: What the changes compare with: the period as long right before, ending at the same time of day (while the period
    #: is running, "now" a period ago: at 09:00, today compares with yesterday until 09:00).
    previous_start: int = 0
    previous_end: int = 0
    previous_bounds: list[int] = []  # the chart's intervals a period earlier (the previous period's line)

    @property
    def previous(self) -> tuple[int, int]:
        return self.previous_start, self.previous_end


def _chart_bounds(a: int, b: int, zone: dt.tzinfo, shift: int) -> tuple[str, list[int]]:
    """Chart intervals of [a, b) by its length: hours up to 2 days, days up to 3 months, weeks up to a year, then months."""
    span = b - a
    if span <= 2 * DAY_SECONDS:
        return "hour", list(range(a, b, ROLLUP_BUCKET_SECONDS))
    step = "day" if span <= 92 * DAY_SECONDS else "week" if span <= 366 * DAY_SECONDS else "month"
    day, bounds = dt.datetime.fromtimestamp(a, zone).date(), [a]
    while True:
        if step == "day":
            day += dt.timedelta(days=1)
        elif step == "week":
            day += dt.timedelta(days=7 - day.weekday())  # weeks start on Monday
        else:
            day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        at = bucket_of(day_start(day, zone), shift)
        if at >= b:
            return step, bounds
        bounds.append(at)


def _back(t: int, days: int, zone: dt.tzinfo) -> int:
    """The same local time of day ``days`` days before Unix time ``t``."""
    return int((dt.datetime.fromtimestamp(t, zone) - dt.timedelta(days=days)).timestamp())


def _parse_day_or_time(text: str, zone: dt.tzinfo, inclusive_end: bool) -> int:
    """Unix seconds from 'YYYY-MM-DD' (that day's start in ``zone``, or the next day's for an inclusive end) or seconds."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise bad_request(f"{text!r} is not a date") from None
        if not FIRST_SUMMARY_DAY <= day <= LAST_SUMMARY_DAY:
            raise bad_request(_OUT_OF_RANGE)
        return day_start(day + dt.timedelta(days=1) if inclusive_end else day, zone)
    if re.fullmatch(r"[0-9]{1,20}", text):  # ASCII digits only: str.isdigit() also takes '³'
        if int(text) > _LAST_SUMMARY_SECONDS:
            raise bad_request(_OUT_OF_RANGE)
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
    first, last = (dt.datetime.fromtimestamp(t, zone) for t in (a, b - 1))
    if name == "custom":
        label = f"{first:%Y-%m-%d}" if first.date() == last.date() else f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"
    step, bounds = _chart_bounds(a, b, zone, shift)
    until = max(a, min(b, current_hour_end))
    # The previous period: as long, right before (whole local days back for a period of whole days); while this one runs,
    # it ends "now" a period ago, so a morning compares with the previous morning.
    days = (last.date() - first.date()).days + 1
    whole_days = a == day_of(a, zone) and b == next_day(day_of(b - 1, zone), zone)

    def back(t: int) -> int:
        return _back(t, days, zone) if whole_days else t - (b - a)

    previous_start = back(a)
    previous_end = min(a, max(previous_start, back(int(now)))) if now < b else a
    previous_bounds = [back(t) for t in bounds] + [a]
    return SummaryRange(name, label, a, b, until, step, [*bounds, b], zone, previous_start, previous_end, previous_bounds)


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


#: The sums the totals are made of (rollup metrics with value ''), and visitors.
_SUMS = ("pageviews", "events", "visits", "bounces", "duration")


def _sums(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int) -> dict[str, int]:
    sums = dict.fromkeys((*_SUMS, "visitors"), 0)
    if end <= start:
        return sums
    metrics = ", ".join(f"'{m}'" for m in _SUMS)
    inner, params = _union(
        src, start, end, 0, "metric, n", f"website_key = ? AND metric IN ({metrics}) AND value = ''", [website_key]
    )
    sums.update(conn.execute(f"SELECT metric, sum(n) FROM ({inner}) GROUP BY metric", params).fetchall())
    inner, params = _union(src, start, end, 1, "n", "website_key = ? AND since < ?", [website_key, start])
    sums["visitors"] = conn.execute(f"SELECT ifnull(sum(n), 0) FROM ({inner})", params).fetchone()[0]
    return sums


def _totals(sums: Mapping[str, int]) -> dict[str, float]:
    visits = sums["visits"]
    return {
        "visitors": sums["visitors"],
        "visits": visits,
        "pageviews": sums["pageviews"],
        "custom_events": sums["events"],
        "views_per_visit": round(sums["pageviews"] / visits, 2) if visits else 0.0,
        "bounce_rate": round(sums["bounces"] / visits, 4) if visits else 0.0,
        "avg_duration_s": round(sums["duration"] / visits, 1) if visits else 0.0,
    }


def panel_totals(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int) -> dict[str, float]:
    """Visitors, visits, pageviews, custom events, views per visit, bounce rate and average visit length of [start, end)."""
    return _totals(_sums(conn, src, website_key, start, end))


def panel_previous_totals(
    conn: sqlite3.Connection,
    src: RollupSource,
    website_key: int,
    start: int,
    end: int,
    filters: Mapping[str, str],
    shift: int,
    part: Rollups | None = None,
) -> dict[str, float]:
    """panel_totals of [start, end) where ``end`` may fall inside an hour (yesterday until this time of day).

    The whole hours come from ``src``; the part of the last hour before ``end`` is computed from its events, counted as
    the rollups count (visits in the hour they start, a visitor at their first visit since ``start``).
    """
    hour = bucket_of(end, shift)
    if hour == end or hour < start:
        return panel_totals(conn, src, website_key, start, end)
    sums = _sums(conn, src, website_key, start, hour)
    if part is None:  # (a filtered page computes ``part`` in its own pass: see build_summary)
        # From the visits' stored facts, as a segment is (no filters: every visit); their visitor counts are decided by
        # each session's previous visit wherever it lies, so only the part-hour's visits are read.
        part = collect_filtered(conn, website_key, hour, end, filters, shift, detail_from=end)  # (totals only)
    for (key, metric, _, value), n in part.counts.items():
        if key == website_key and value == "" and metric in _SUMS:
            sums[metric] += n
    sums["visitors"] += sum(n for (key, _, since), n in part.visitors.items() if key == website_key and since < start)
    return _totals(sums)


def panel_chart(conn: sqlite3.Connection, src: RollupSource, website_key: int, bounds: list[int]) -> list[dict[str, int]]:
    """Pageviews and visitors per chart interval (bounds: interval starts, then the end)."""
    pageviews = [0] * (len(bounds) - 1)
    visitors = [0] * (len(bounds) - 1)
    pieces: dict[tuple[tuple[str, ...], str], list[tuple[int, int, int, int]]] = collections.defaultdict(list)
    for index, (a, b) in enumerate(itertools.pairwise(bounds)):
        for tables, column, x, y in src.parts(a, b):
            pieces[(tables, column)].append((index, x, y, a))
    for (tables, column), intervals in pieces.items():
        encoded = msgspec.json.encode(intervals).decode()
        sql = (
            f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[0]} r ON r.website_key = ? AND "
            f"r.metric = 'pageviews' AND r.value = '' AND r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 GROUP BY 1"
        )
        for index, n in conn.execute(sql, (encoded, website_key)):
            pageviews[index] += n
        sql = (
            f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[1]} r ON r.website_key = ? AND "
            f"r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 AND r.since < j.value ->> 3 GROUP BY 1"
        )
        for index, n in conn.execute(sql, (encoded, website_key)):
            visitors[index] += n
    return [
        {"start": a, "end": b, "pageviews": p, "visitors": v}
        for (a, b), p, v in zip(itertools.pairwise(bounds), pageviews, visitors)
    ]


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


def panel_list(
    conn: sqlite3.Connection, src: RollupSource, website_key: int, metric: str, start: int, end: int, total: int, limit: int
) -> dict[str, Any]:
    """One list of the page: its top ``limit`` rows, whether there are more, and for referrers a 'direct' row.

    The direct row (``"direct": true``, value '') counts the visits without a referrer: all visits minus those with one.
    """
    rows = panel_top(conn, src, website_key, metric, start, end, total, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if metric == "referrer":
        inner, params = _union(src, start, end, 0, "n", "website_key = ? AND metric = 'referrer'", [website_key])
        referred = conn.execute(f"SELECT ifnull(sum(n), 0) FROM ({inner})", params).fetchone()[0]
        if total - referred > 0:
            direct = {"value": "", "count": total - referred, "share": round((total - referred) / total, 4), "direct": True}
            rows.append(direct)
            rows.sort(key=lambda r: -r["count"])  # stable: the direct row goes after equal counts
            if len(rows) > limit:
                more = True
                rows = rows[:limit]
    return {"total": total, "rows": rows, "more": more}


#: Data keys shown per custom event, and values per key.
EVENT_KEYS_SHOWN = 5
EVENT_VALUES_SHOWN = 5


def panel_events(
    conn: sqlite3.Connection,
    src: RollupSource,
    website_key: int,
    start: int,
    end: int,
    total: int,
    visitors: int,
    limit: int = SUMMARY_LIST_LIMIT,
) -> dict[str, Any]:
    """Custom events (goals) by name: count, share of custom events, unique visitors, conversion rate (those visitors ÷
    all visitors), and their most common data keys, each with its most common values."""
    events = panel_top(conn, src, website_key, "event", start, end, total, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    inner, params = _union(src, start, end, 3, "event_name, n", "website_key = ? AND since < ?", [website_key, start])
    uniques = dict(conn.execute(f"SELECT event_name, sum(n) FROM ({inner}) GROUP BY event_name", params).fetchall())
    for event in events:
        event["visitors"] = uniques.get(event["value"], 0)
        event["conversion"] = round(event["visitors"] / visitors, 4) if visitors else 0.0
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
        sql = f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT ?"
        event["keys"] = [
            {"key": key, "count": n, "values": _event_values(conn, src, website_key, start, end, event["value"], key)}
            for key, n in (
                (msgspec.json.decode(v)[1], n) for v, n in conn.execute(sql, [*params, EVENT_KEYS_SHOWN]).fetchall()
            )
        ]
    return {"total": total, "rows": events, "more": more}


def _event_values(
    conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int, name: str, key: str
) -> list[dict[str, Any]]:
    prefix = msgspec.json.encode([name, key]).decode()[:-1] + ","
    inner, params = _union(
        src,
        start,
        end,
        0,
        "value, n",
        "website_key = ? AND metric = 'event_value' AND substr(value, 1, ?) = ?",
        [website_key, len(prefix), prefix],
    )
    sql = f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT ?"
    return [{"value": msgspec.json.decode(v)[2], "count": n} for v, n in conn.execute(sql, [*params, EVENT_VALUES_SHOWN])]


def _vital_rating(metric: str, value: float) -> str:
    good, poor = VITAL_THRESHOLDS[metric]
    return "good" if value <= good else "poor" if value > poor else "needs-improvement"


def panel_vitals(
    conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int, limit: int = SUMMARY_LIST_LIMIT
) -> list[dict[str, Any]]:
    """p75 of each web vital for the pages with most performance reports (nearest rank over two-figure histograms)."""
    pages = []
    tops = panel_top(conn, src, website_key, "reports", start, end, 0, limit)
    if not tops:
        return pages
    # All the pages in one pass over each piece (an hourly piece is read by time once, not once per page); the whole days
    # of the site's daily rollups are summed once and remembered until they change (a month is 130,000 rows at 10M).
    paths = [top["value"] for top in tops]
    marks = ", ".join("?" * len(paths))
    counts: collections.Counter[tuple[str, str, float]] = collections.Counter()
    for tables, column, a, b in src.parts(start, end):
        plus = "+" if column == "day" else ""  # (a page's histograms over many days are one range of the key)
        sql = (
            f"SELECT url_path, metric, bin, sum(n) FROM {tables[2]} WHERE website_key = ? AND url_path IN ({marks}) "
            f"AND {plus}{column} >= ? AND {plus}{column} < ? GROUP BY url_path, metric, bin"
        )
        params = [website_key, *paths, a, b]

        def piece(sql: str = sql, params: list[Any] = params) -> list[tuple[str, str, float, int]]:
            return conn.execute(sql, params).fetchall()

        if column == "day" and tables == DAILY_TABLES and src.remembered is not None:
            rows = src.remembered.remember(website_key, a, b, "vitals " + msgspec.json.encode(paths).decode(), piece)
        else:
            rows = piece()
        for url_path, metric, value, n in rows:
            counts[(url_path, metric, value)] += n
    histograms: dict[tuple[str, str], list[tuple[float, int]]] = collections.defaultdict(list)
    for (url_path, metric, value), n in sorted(counts.items()):
        histograms[(url_path, metric)].append((value, n))
    for top in tops:
        row: dict[str, Any] = {"page": top["value"], "reports": top["count"]}
        for metric in VITALS:
            bins = histograms.get((top["value"], metric))
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


def panel_realtime(
    conn: sqlite3.Connection, website_key: int, now: float, filters: Mapping[str, str] | None = None, shift: int = 0
) -> dict[str, Any]:
    """Visitors active in the last five minutes, and the page each was last on; with filters, only in matching visits."""
    since = int(now) - REALTIME_SECONDS
    only = ""
    if filters:  # the visits active now that match (decided on the whole visit, as the other panels do)
        for sql in AGGREGATION_TABLES:
            conn.execute(sql)
        conn.execute("DELETE FROM temp.agg_candidate")
        conn.execute(
            "INSERT OR IGNORE INTO temp.agg_candidate SELECT visit_key FROM website_event WHERE website_key = ? "
            "AND created_at >= ?",
            (website_key, since),
        )
        aggregate_visits(conn, shift, lambda key, at: True, filters, False)
        only = " AND visit_key IN (SELECT visit_key FROM temp.agg_visit)"
    visitors = conn.execute(
        f"SELECT count(DISTINCT session_key) FROM website_event WHERE website_key = ? AND created_at >= ?{only}",
        (website_key, since),
    ).fetchone()[0]
    sql = (
        "SELECT url_path, count(*) AS c FROM (SELECT session_key, url_path, max(created_at) FROM website_event "
        f"WHERE website_key = ? AND created_at >= ? AND event_type = 1{only} GROUP BY session_key) "
        "GROUP BY url_path ORDER BY c DESC, url_path LIMIT ?"
    )
    pages = [{"value": path, "count": n} for path, n in conn.execute(sql, (website_key, since, SUMMARY_LIST_LIMIT))]
    return {"visitors": visitors, "pages": pages}


def panel_bots(conn: sqlite3.Connection, website_key: int, start: int, end: int) -> int:
    """Requests refused as bots in the UTC days that [start, end) touches (bot_counter counts per UTC day)."""
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (start, max(start, end - 1)))
    sql = "SELECT ifnull(sum(hits), 0) FROM bot_counter WHERE website_key = ? AND day >= ? AND day <= ?"
    return int(conn.execute(sql, (website_key, first, last)).fetchone()[0])


class Site(NamedTuple):
    """A website as the summary shows it."""

    key: int
    id: str
    name: str
    domain: str | None


def _change(current: float, previous: float) -> float | None:
    return round((current - previous) / previous, 4) if previous else None


#: Rows of a list when it is shown whole ("show all", CSV export).
FULL_LIST_LIMIT = 1000


#: The lists of the page: rollup metric → what its share is of ('pageviews' or 'visits').
LISTS = ("page", *VISIT_DIMENSIONS)


def build_summary(
    conn: sqlite3.Connection,
    site: Site,
    period: SummaryRange,
    filters: Mapping[str, str],
    now: float,
    shift: int,
    full: str | None = None,
    segments: SegmentCache | None = None,
) -> dict[str, Any]:
    """Everything the summary page shows, as plain data (the JSON twin returns exactly this).

    Lists hold their top SUMMARY_LIST_LIMIT rows ("more" says whether there are others); the list named ``full`` (or
    every list, for 'all') holds up to FULL_LIST_LIMIT. A filtered view keeps its closed days in ``segments``, if given.
    """
    src = RollupSource(period.zone, remembered=segments)
    previous_start, previous_end = period.previous
    span = (min(previous_start, period.start), period.end)
    edges = (period.start, period.until, previous_start, previous_end, bucket_of(previous_end, shift))
    edges += (*period.bounds, *period.previous_bounds)
    kept: list[int] = []
    if filters and segments is not None:  # the closed days first, each run committed (a long first view keeps them)
        kept = kept_days(span, edges, period.zone, now)
        keep_segment_days(conn, segments, site.key, filters, kept, shift, period.zone)
    with transaction(conn, immediate=False):  # one snapshot for every panel
        if segments is not None:
            segments.sync(conn)  # (what it keeps or remembers, true to the events of this snapshot)
        part = None
        if filters:  # the same rollup rows for the matching visits: kept closed days, and the rest computed now
            cut = bucket_of(previous_end, shift)  # (in the same pass, the previous period's last part-hour)
            side = None
            if cut != previous_end and cut >= previous_start:
                part = Rollups(shift)
                side = (cut, previous_end, part)
            src = segment_source(
                conn, segments, site.key, span, kept, filters, shift, period.zone, side=side, detail_from=period.start
            )
        totals = panel_totals(conn, src, site.key, period.start, period.until)
        before = panel_previous_totals(conn, src, site.key, previous_start, previous_end, filters, shift, part)

        def limit(name: str) -> int:
            return FULL_LIST_LIMIT if full in (name, "all") else SUMMARY_LIST_LIMIT

        lists: dict[str, dict[str, Any]] = {}
        for metric in LISTS:
            total = totals["pageviews"] if metric == "page" else totals["visits"]
            lists[metric] = panel_list(conn, src, site.key, metric, period.start, period.until, total, limit(metric))
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
            "previous_chart": panel_chart(conn, src, site.key, period.previous_bounds),
            "lists": lists,
            "goals": panel_events(
                conn,
                src,
                site.key,
                period.start,
                period.until,
                int(totals["custom_events"]),
                int(totals["visitors"]),
                limit("event"),
            ),
            "vitals": panel_vitals(conn, src, site.key, period.start, period.until, limit("vitals")),
            "realtime": panel_realtime(conn, site.key, now, filters, shift),
            "bots": panel_bots(conn, site.key, period.start, period.until),
        }
    summary["events"] = summary["goals"]["rows"]
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


#: A summary waits at most this long for the work running before it on the summary connection, in seconds; then 503.
SUMMARY_QUEUE_SECONDS = 5.0
#: Page cache of the summary's connection, in KiB (bounded: one connection).
SUMMARY_CACHE_KIB = 65536


#: Page cache while upkeep refreshes the rollups in the background, in KiB. A refresh reads each new page about once, so a
#: big cache buys it little (6,000 events of 50 data keys: 2.2 s with 64 MB, 2.6 s with 8 MB) and, filled, would hold
#: the server at twice its idle size just after a burst of batches.
REFRESH_CACHE_KIB = 8192


#: Events a summary request's own rollup refresh takes in at a time (the background refresh takes larger rounds).
SUMMARY_REFRESH_ROUND_EVENTS = 50_000


#: SQLite virtual-machine steps between two looks at a summary's deadline (a look costs ~0.1 µs; 10,000 steps ~1 ms).
_DEADLINE_CHECK_STEPS = 10_000


def reader_of(request: Request) -> SummaryReader:
    """The SummaryReader a request is served by (the app keeps it on ``app.state``)."""
    return request.app.state.summary  # type: ignore[no-any-return]


class SummaryReader:
    """The summary's own connection: rollup refreshes and summary reads run on it in a worker thread, one at a time.

    A summary never waits behind another for more than SUMMARY_QUEUE_SECONDS, and never computes for more than
    ``timeout`` seconds (SQLite's progress handler interrupts it); either way it answers 503 with what to do.
    """

    def __init__(
        self,
        db: str,
        busy_timeout_ms: int,
        timezone: str,
        clock: Callable[[], float],
        timeout: float = 20.0,
        wal_autocheckpoint: int = 1000,
    ) -> None:
        self.db = db
        self.busy_timeout_ms = busy_timeout_ms
        self.wal_autocheckpoint = wal_autocheckpoint  # the rollup refreshes write: they checkpoint as the writer does
        self.clock = clock
        #: The summary's time zone and the alignment of its hours (rollup_shift).
        self.zone = load_zone(timezone)
        self.shift = bucket_shift(self.zone, clock())
        #: Longest a summary may compute (--summary-timeout), in seconds.
        self.timeout = timeout
        self.lock = asyncio.Lock()
        #: A filtered view's closed days, kept on the connection (its temporary tables).
        self.segments = SegmentCache(self.shift, self.zone)
        self.runs = 0  #: jobs run on the connection since start (upkeep releases its page cache after new ones)
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open the connection (the database exists: the collector prepared it)."""
        self._conn = await asyncio.to_thread(connect, self.db, self.busy_timeout_ms, True, self.wal_autocheckpoint)
        # A filtered page reads the events of its visits at random: keep more of the file's pages than SQLite's 2 MB.
        self._conn.execute(f"PRAGMA cache_size = -{SUMMARY_CACHE_KIB}")

    async def close(self) -> None:
        """Close the connection once the summary running now (if any) is done."""
        async with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def run(self, fn: Callable[[sqlite3.Connection], Any], timeout: float | None = None) -> Any:
        """``fn(connection)`` in a worker thread, after any other summary work; 503 while shutting down.

        With ``timeout`` (a summary request) it waits at most SUMMARY_QUEUE_SECONDS for its turn and runs at most
        ``timeout`` seconds, else 503; without (upkeep) it waits and runs as long as it takes.
        """
        try:
            await asyncio.wait_for(self.lock.acquire(), None if timeout is None else SUMMARY_QUEUE_SECONDS)
        except asyncio.TimeoutError:
            raise unavailable("Another summary is still being computed; try again in a few seconds.") from None
        try:
            conn = self._conn
            if conn is None:
                raise unavailable("footfall is shutting down; try again shortly.")
            self.runs += 1
            if timeout is None:
                return await asyncio.to_thread(fn, conn)
            return await asyncio.to_thread(_run_with_deadline, conn, fn, time.monotonic() + timeout)
        except sqlite3.OperationalError as exc:
            if timeout is None or "interrupt" not in str(exc):
                raise
            raise unavailable(
                f"This summary took longer than {timeout:g} s to compute; choose a shorter period or fewer filters, "
                "or try again in a moment."
            ) from None
        finally:
            self.lock.release()

    async def refresh(self) -> int:
        """Bring the rollups up to date (the writer goes on meanwhile); the events taken in."""

        def job(conn: sqlite3.Connection) -> int:
            conn.execute(f"PRAGMA cache_size = -{REFRESH_CACHE_KIB}")
            try:
                taken = refresh_rollups(conn, self.shift, self.zone)
                with transaction(conn, immediate=False):  # what the kept days lose, now, in small steps
                    self.segments.sync(conn)
                return taken
            finally:
                conn.execute(f"PRAGMA cache_size = -{SUMMARY_CACHE_KIB}")

        return await self.run(job)  # type: ignore[no-any-return]

    async def summary(
        self, site: Site, period: SummaryRange, filters: Mapping[str, str], full: str | None = None
    ) -> dict[str, Any]:
        """The numbers of one summary page, from rollups brought up to date first."""
        now = self.clock()

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            # In small rounds, each committed with its watermark: a refresh cut short by the deadline keeps its progress.
            refresh_rollups(conn, self.shift, self.zone, SUMMARY_REFRESH_ROUND_EVENTS)
            return build_summary(conn, site, period, filters, now, self.shift, full, self.segments)

        return await self.run(job, self.timeout)  # type: ignore[no-any-return]


def _run_with_deadline(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], deadline: float) -> Any:
    """``fn(conn)``, interrupted (sqlite3.OperationalError 'interrupted') once ``time.monotonic()`` passes ``deadline``.

    Whatever it wrote in transactions it finished stays (a refresh goes on from there next time); the rest rolls back.
    """
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _DEADLINE_CHECK_STEPS)
    try:
        return fn(conn)
    finally:
        conn.set_progress_handler(None, 0)
        if conn.in_transaction:  # interrupted between statements of a transaction: end it
            conn.execute("ROLLBACK")
