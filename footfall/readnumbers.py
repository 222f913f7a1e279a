"""The numbers of Umami's read API: the page's panel functions over a website or a segment, and what the page lacks.

Owns: the segment of a filtered request (the page's collect_filtered, widened by the filters only the API has), the
headline numbers, series, metrics, active visitors, date range and event series of a range, and channels. Every number
the page shows comes from footfall.summary's panel functions; only numbers the page has no function for (minute
buckets, metrics of title, query, hostname, tag, region, city, distinct id, utm_content, utm_term and channel) are
queried here. Imports collector, footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import itertools
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from collector import DAY_SECONDS, EVENT_CUSTOM, EVENT_PAGEVIEW, HOUR_SECONDS, bad_request
from footfall.rollups import AGGREGATION_TABLES, Rollups, aggregate_visits, bucket_of, day_start
from footfall.segments import (
    RollupSource,
    SegmentCache,
    collect_filtered,
    filtered_source,
    kept_days,
    load_filtered,
    segment_source,
)
from footfall.summary import FILTERS, REALTIME_SECONDS, panel_chart, panel_realtime, panel_top, panel_totals

# What the page shows is read with the page's functions (panel_totals, panel_top, panel_chart, panel_realtime) from the
# rollups, or, with filters, from the segment's rollups computed the page's way. Only numbers the page has no function
# for are queried here, and they are counted the way the page counts its own: a pageview in the bucket it happened in, a
# visit (and its attributes) in the bucket it started in, a visitor once per session with a visit that started in it.

#: metrics ``type`` → the page's list (panel_top metric) it reads; the same names set the page's filters
#: (readapi.FILTER_PARAMS).
PAGE_METRICS = {
    "path": "page",
    "url": "page",
    "entry": "entry",
    "exit": "exit",
    "referrer": "referrer",
    "domain": "referrer",
    "utmSource": "utm_source",
    "utmMedium": "utm_medium",
    "utmCampaign": "utm_campaign",
    "country": "country",
    "browser": "browser",
    "os": "os",
    "device": "device",
    "language": "language",
    "screen": "screen",
    "event": "event",
}


#: metrics ``type`` the page has no list for → how this API counts it: pageviews per value of an event column, or visits
#: per value of the session's column or of the visit's landing pageview's.
EVENT_METRICS = {"title": "page_title", "query": "url_query", "hostname": "hostname", "tag": "tag"}
SESSION_METRICS = {"region": "region", "city": "city", "distinctId": "distinct_id"}
LANDING_METRICS = {"utmContent": "utm_content", "utmTerm": "utm_term", "channel": ""}


#: Every metrics ``type``.
METRIC_TYPES = (*PAGE_METRICS, *EVENT_METRICS, *SESSION_METRICS, *LANDING_METRICS)


#: Most buckets one series may have.
MAX_BUCKETS = 20_000


#: Umami ignores events before this (its DEFAULT_RESET_DATE, 2000-01-01) in the date range.
EARLIEST_EVENT = 946_684_800


class Totals(NamedTuple):
    """The headline numbers of a range, as counts (Umami's /stats)."""

    pageviews: int
    visitors: int
    visits: int
    bounces: int
    totaltime: int


class Row(NamedTuple):
    """One metrics row: a value, its count, and for cities and regions their country."""

    x: str
    y: int
    country: str | None = None


class EventRow(NamedTuple):
    """Custom events called ``name`` in the bucket labelled ``t``."""

    name: str
    t: str
    y: int


class Scope(NamedTuple):
    """What a request counts: one website (by key), with or without filters, on the summary's rollups."""

    key: int
    filters: Mapping[str, str]
    shift: int  # the rollup hours' alignment (SummaryReader.shift)
    zone: dt.tzinfo  # the rollups' days (SummaryReader.zone)
    now: float = 0.0  # the time of the request (days that ended before it may be kept: footfall.segments)
    segments: SegmentCache | None = None  # the reader's kept segment days (SummaryReader.segments)


#: panel_top with every row.
ALL_ROWS = 2**62


#: Segment filters only this API has, as a condition keeping candidate visit ``c.visit_key`` (value ?, then the span).
_PAGEVIEW_WITH = (
    "EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = c.visit_key AND e.event_type = 1 AND e.{column} = ? "
    "AND e.created_at >= ? AND e.created_at < ?)"
)
_SESSION_WITH = (
    "ifnull((SELECT s.{column} FROM visit v JOIN session s USING (session_key) WHERE v.visit_key = c.visit_key) = ?, 0)"
)
_LANDING = "(SELECT x.event_key FROM website_event x WHERE x.visit_key = {visit} ORDER BY x.event_type != 1, x.created_at, x.event_key LIMIT 1)"
_LANDING_WITH = (
    "ifnull((SELECT l.{column} FROM website_event l WHERE l.event_key = " + _LANDING.format(visit="c.visit_key") + ") = ?, 0)"
)
EXTRA_FILTERS = {
    "title": _PAGEVIEW_WITH.format(column="page_title"),
    "query": _PAGEVIEW_WITH.format(column="url_query"),
    "hostname": _PAGEVIEW_WITH.format(column="hostname"),
    "tag": _PAGEVIEW_WITH.format(column="tag"),
    "region": _SESSION_WITH.format(column="region"),
    "city": _SESSION_WITH.format(column="city"),
    "distinct_id": _SESSION_WITH.format(column="distinct_id"),
    "utm_content": _LANDING_WITH.format(column="utm_content"),
    "utm_term": _LANDING_WITH.format(column="utm_term"),
}


def collect_segment(
    conn: sqlite3.Connection, website_key: int, start: int, end: int, filters: Mapping[str, str], shift: int
) -> Rollups:
    """Rollup rows of [start, end) for the visits matching every filter: the page's collect_filtered for its filters.

    With filters only this API has, the candidates (visits with an event in the range) are first narrowed by them (a
    visit with such a pageview, like the page's page filter; the session's region, city or distinct id; the landing
    pageview's utm_content or utm_term, like the page's utm filters), then counted by the page's aggregate_visits.
    Either way temp.agg_visit holds the segment's visits afterwards (visit_key, session_key, started_at).
    """
    page = {name: value for name, value in filters.items() if name in FILTERS}
    extra = {name: value for name, value in filters.items() if name not in FILTERS}
    if not extra:
        return collect_filtered(conn, website_key, start, end, page, shift)
    for sql in AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    conn.execute(
        "INSERT OR IGNORE INTO temp.agg_candidate SELECT visit_key FROM website_event "
        "WHERE website_key = ? AND created_at >= ? AND created_at < ?",
        (website_key, start, end),
    )
    for name, value in extra.items():
        condition = EXTRA_FILTERS[name]
        # (a visit's pageview a day either side of the range: as the page's filters, decided on the whole visit)
        params = (value, start - DAY_SECONDS, end + DAY_SECONDS) if condition.startswith("EXISTS") else (value,)
        conn.execute(f"DELETE FROM temp.agg_candidate AS c WHERE NOT {condition}", params)
    rollups, _ = aggregate_visits(conn, shift, lambda key, at: start <= at < end, page, False)
    return rollups


def _source(
    conn: sqlite3.Connection, scope: Scope, start: int, end: int, edges: Sequence[int] = (), visits: bool = False
) -> tuple[RollupSource, bool]:
    """The rollups to read for [start, end) (and its intervals' ``edges``): the site's, or with filters the segment's.

    The segment's are the page's (segment_source: kept closed days, the rest computed now) unless a filter is one only
    this API has, or the caller reads the segment's visits themselves (``visits``: temp.agg_visit then holds those of
    the whole range, and the second value is True).
    """
    if not scope.filters:
        return RollupSource(scope.zone), False
    if visits or set(scope.filters) - set(FILTERS):
        load_filtered(conn, collect_segment(conn, scope.key, start, end, scope.filters, scope.shift))
        return filtered_source(scope.zone), True
    kept = kept_days((start, end), (start, end, *edges), scope.zone, scope.now) if scope.segments is not None else []
    src = segment_source(conn, scope.segments, scope.key, (start, end), kept, scope.filters, scope.shift, scope.zone)
    return src, False


def _total(conn: sqlite3.Connection, src: RollupSource, website_key: int, metric: str, start: int, end: int) -> int:
    """A rollup total (its one value '') over [start, end): the very rows panel_totals makes its rates from."""
    rows = panel_top(conn, src, website_key, metric, start, end, 0, 1)
    return int(rows[0]["count"]) if rows else 0


def stats_numbers(conn: sqlite3.Connection, scope: Scope, start: int, end: int) -> Totals:
    """The page's headline numbers of [start, end), with bounces and total visit time as counts rather than rates."""
    src, _ = _source(conn, scope, start, end)
    totals = panel_totals(conn, src, scope.key, start, end)
    return Totals(
        pageviews=int(totals["pageviews"]),
        visitors=int(totals["visitors"]),
        visits=int(totals["visits"]),
        bounces=_total(conn, src, scope.key, "bounces", start, end),
        totaltime=_total(conn, src, scope.key, "duration", start, end),
    )


def _visit_starts(conn: sqlite3.Connection, website_key: int, start: int, end: int, segment: bool) -> None:
    """Fill temp.api_visit with the visits that started in [start, end) (their first event), in the segment if any."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS api_visit (visit_key INTEGER PRIMARY KEY, session_key INTEGER, started_at INTEGER)"
    )
    conn.execute("DELETE FROM temp.api_visit")
    if segment:
        sql = (
            "INSERT INTO temp.api_visit SELECT visit_key, session_key, started_at FROM temp.agg_visit "
            "WHERE started_at >= ? AND started_at < ?"
        )
        conn.execute(sql, (start, end))
        return
    sql = (
        "INSERT INTO temp.api_visit SELECT e.visit_key, e.session_key, min(e.created_at) FROM website_event e "
        "WHERE e.website_key = ? AND e.created_at >= ? AND e.created_at < ? GROUP BY e.visit_key "
        "HAVING NOT EXISTS (SELECT 1 FROM website_event x WHERE x.visit_key = e.visit_key AND x.created_at < ?)"
    )
    conn.execute(sql, (website_key, start, end, start))


def _in_segment(segment: bool) -> str:
    return " AND e.visit_key IN (SELECT visit_key FROM temp.agg_visit)" if segment else ""


#: Channels as Umami's getChannelMetrics tells them apart (src/lib/constants.ts and src/queries/sql/getChannelMetrics.ts).
SEARCH_DOMAINS = tuple("baidu.com bing.com duckduckgo.com ecosia.org google. msn.com search.brave.com yandex.".split())
SOCIAL_DOMAINS = tuple(
    "bsky.app facebook.com fb.com ig.com instagram.com linkedin. news.ycombinator.com pinterest. reddit. snapchat. t.co "
    "threads.net tiktok. twitter.com x.com".split()
)
EMAIL_DOMAINS = tuple("gmail. hotmail. mail.yahoo. outlook. proton.me protonmail.".split())
SHOPPING_DOMAINS = tuple(
    "alibaba.com aliexpress.com amazon. bestbuy.com ebay.com etsy.com newegg.com target.com walmart.com".split()
)
VIDEO_DOMAINS = ("twitch.", "youtube.")
PAID_AD_PARAMS = tuple(
    "ad_id= aid= dclid= epik= gclid= li_fat_id= msclkid= ob_click_id= pc_id= rdt_cid= scid= ttclid= twclid= "
    "utm_medium=cpc utm_medium=paid utm_medium=paid_social utm_source=google".split()
)


def channel(referrer: str | None, query: str | None, source: str | None, medium: str | None) -> str:
    """A visit's channel from its landing pageview, in Umami's order of rules.

    Differs from Umami on purpose in one way: a visit Umami's rules leave unclassified (it drops those rows) counts as
    'referral' when it came from another site and as 'direct' otherwise, so the channels add up to the visits.
    """
    referrer, query, source, medium = referrer or "", query or "", source or "", medium or ""
    paid = "paid" if any(word in medium for word in ("cp", "ppc", "retargeting", "paid")) else "organic"
    if not referrer and not query:
        return "direct"
    if any(param in query for param in PAID_AD_PARAMS):
        return "paidAds"
    if any(word in medium for word in ("referral", "app", "link")):
        return "referral"
    if "affiliate" in medium:
        return "affiliate"
    if "sms" in medium or "sms" in source:
        return "sms"
    if any(domain in referrer for domain in SEARCH_DOMAINS) or "organic" in medium:
        return paid + "Search"
    if any(domain in referrer for domain in SOCIAL_DOMAINS):
        return paid + "Social"
    if any(domain in referrer for domain in EMAIL_DOMAINS) or "mail" in medium:
        return "email"
    if any(domain in referrer for domain in SHOPPING_DOMAINS) or "shop" in medium:
        return paid + "Shopping"
    if any(domain in referrer for domain in VIDEO_DOMAINS) or "video" in medium:
        return paid + "Video"
    return "referral" if referrer else "direct"


def _ranked(counts: Mapping[Any, int]) -> list[tuple[Any, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def metric_rows(conn: sqlite3.Connection, scope: Scope, kind: str, start: int, end: int, wanted: int) -> list[Row]:
    """The rows of one metrics ``type`` in [start, end), most first (at least ``wanted`` of them when there are)."""
    src, segment = _source(conn, scope, start, end, visits=kind not in PAGE_METRICS)
    if kind in PAGE_METRICS:
        top = panel_top(conn, src, scope.key, PAGE_METRICS[kind], start, end, 0, wanted + 1)  # '' is dropped below
        return [Row(row["value"], int(row["count"])) for row in top if row["value"]]
    if kind in EVENT_METRICS:
        column = EVENT_METRICS[kind]
        sql = (
            f"SELECT e.{column}, count(*) AS n FROM website_event e WHERE e.website_key = ? AND e.created_at >= ? "
            f"AND e.created_at < ? AND e.event_type = {EVENT_PAGEVIEW} AND e.{column} != ''{_in_segment(segment)} "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?"
        )
        return [Row(x, n) for x, n in conn.execute(sql, (scope.key, start, end, wanted))]
    _visit_starts(conn, scope.key, start, end, segment)
    if kind in SESSION_METRICS:
        column = SESSION_METRICS[kind]
        country = "s.country" if kind in ("region", "city") else "NULL"
        sql = (
            f"SELECT s.{column}, {country}, count(*) AS n FROM temp.api_visit v JOIN session s USING (session_key) "
            f"WHERE s.{column} != '' GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT ?"
        )
        return [Row(x, n, place) for x, place, n in conn.execute(sql, (wanted,))]
    sql = (
        "SELECT l.referrer_domain, l.self_referral, l.url_query, l.utm_source, l.utm_medium, l.utm_content, l.utm_term "
        "FROM temp.api_visit v JOIN website_event l ON l.event_key = " + _LANDING.format(visit="v.visit_key")
    )
    counts: collections.Counter[str] = collections.Counter()
    for referrer, self_referral, query, source, medium, content, term in conn.execute(sql):
        if kind == "channel":
            counts[channel(None if self_referral else referrer, query, source, medium)] += 1
        elif value := content if kind == "utmContent" else term:
            counts[value] += 1
    return [Row(x, n) for x, n in _ranked(counts)[:wanted]]


class Buckets(NamedTuple):
    """A series' buckets: their labels (Umami's x), and their edges clipped to the range (one more than labels)."""

    labels: list[str]
    edges: list[int]


def _truncate(t: int, unit: str, zone: dt.tzinfo) -> int:
    if unit == "minute":
        return t - t % 60
    local = dt.datetime.fromtimestamp(t, zone)
    if unit == "hour":
        return int(local.replace(minute=0, second=0, microsecond=0).timestamp())
    day = local.date()
    day = day if unit == "day" else day.replace(day=1) if unit == "month" else dt.date(day.year, 1, 1)
    return day_start(day, zone)


def _after(t: int, unit: str, zone: dt.tzinfo) -> int:
    if unit in ("minute", "hour"):
        step = 60 if unit == "minute" else HOUR_SECONDS
        return max(t + 60, _truncate(t + step, unit, zone))
    day = dt.datetime.fromtimestamp(t, zone).date()
    if unit == "day":
        day += dt.timedelta(days=1)
    elif unit == "month":
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    else:
        day = dt.date(day.year + 1, 1, 1)
    return day_start(day, zone)


def label(t: int, zone: ZoneInfo | None) -> str:
    """A bucket's x as Umami writes it: 'YYYY-MM-DDTHH:MM:00Z' in UTC, local 'YYYY-MM-DD HH:MM:00' in another zone."""
    if zone is None:
        return time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(t))
    return dt.datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:00")


def buckets(start: int, end: int, unit: str, zone: ZoneInfo | None) -> Buckets:
    """The ``unit`` buckets of ``zone`` (UTC for None) that [start, end) touches."""
    tz = zone or dt.timezone.utc
    starts, t = [], _truncate(start, unit, tz)
    while t < end:
        starts.append(t)
        if len(starts) > MAX_BUCKETS:
            raise bad_request(f"that is more than {MAX_BUCKETS:,} buckets of a {unit}; ask for a coarser unit")
        t = _after(t, unit, tz)
    return Buckets([label(t, zone) for t in starts], [max(starts[0], start), *starts[1:], end] if starts else [start])


def _aligned(edges: list[int], shift: int) -> bool:
    """Whether every edge is a rollup hour's start (else the rollups cannot answer: minutes, or a zone :30 off)."""
    return all(bucket_of(t, shift) == t for t in edges)


def _pageviews_per_bucket(conn: sqlite3.Connection, website_key: int, edges: list[int], segment: bool) -> list[int]:
    counts = [0] * (len(edges) - 1)
    intervals = msgspec.json.encode([[i, a, b] for i, (a, b) in enumerate(itertools.pairwise(edges))]).decode()
    sql = (
        "SELECT j.value ->> 0, count(*) FROM json_each(?) j JOIN website_event e ON e.website_key = ? "
        f"AND e.created_at >= j.value ->> 1 AND e.created_at < j.value ->> 2 AND e.event_type = {EVENT_PAGEVIEW}"
        f"{_in_segment(segment)} GROUP BY 1"
    )
    for index, n in conn.execute(sql, (intervals, website_key)):
        counts[index] = n
    return counts


def series_counts(conn: sqlite3.Connection, scope: Scope, edges: list[int]) -> tuple[list[int], list[int]]:
    """Pageviews and visitors per bucket: the page's chart when the edges are rollup hours, else counted the same way
    from the events (a pageview where it happened, a visitor once per bucket with a visit of theirs starting in it)."""
    aligned = _aligned(edges, scope.shift)
    src, segment = _source(conn, scope, edges[0], edges[-1], edges, visits=not aligned)
    if aligned:
        chart = panel_chart(conn, src, scope.key, edges)
        return [int(c["pageviews"]) for c in chart], [int(c["visitors"]) for c in chart]
    pageviews = _pageviews_per_bucket(conn, scope.key, edges, segment)
    _visit_starts(conn, scope.key, edges[0], edges[-1], segment)
    sessions: list[set[int]] = [set() for _ in pageviews]
    for session_key, started in conn.execute("SELECT session_key, started_at FROM temp.api_visit"):
        sessions[bisect.bisect_right(edges, started) - 1].add(session_key)
    return pageviews, [len(s) for s in sessions]


def event_series(conn: sqlite3.Connection, scope: Scope, series: Buckets, limit: int | None) -> list[EventRow]:
    """Custom events per name and bucket (only the ``limit`` most frequent names of the range, when given)."""
    edges = series.edges
    aligned = _aligned(edges, scope.shift)
    src, segment = _source(conn, scope, edges[0], edges[-1], edges, visits=not aligned)
    names = None
    if limit:
        names = {row["value"] for row in panel_top(conn, src, scope.key, "event", edges[0], edges[-1], 0, limit)}
    found: list[tuple[int, str, int]] = []
    if aligned:
        for index, (a, b) in enumerate(itertools.pairwise(edges)):
            found += [
                (index, row["value"], int(row["count"])) for row in panel_top(conn, src, scope.key, "event", a, b, 0, ALL_ROWS)
            ]
    else:
        intervals = msgspec.json.encode([[i, a, b] for i, (a, b) in enumerate(itertools.pairwise(edges))]).decode()
        sql = (
            "SELECT j.value ->> 0, ifnull(e.event_name, ''), count(*) FROM json_each(?) j JOIN website_event e "
            "ON e.website_key = ? AND e.created_at >= j.value ->> 1 AND e.created_at < j.value ->> 2 "
            f"AND e.event_type = {EVENT_CUSTOM}{_in_segment(segment)} GROUP BY 1, 2"
        )
        found = [(index, name, n) for index, name, n in conn.execute(sql, (intervals, scope.key))]
    found.sort(key=lambda row: (row[0], -row[2], row[1]))
    return [EventRow(name, series.labels[i], n) for i, name, n in found if name and (names is None or name in names)]


def active_visitors(conn: sqlite3.Connection, scope: Scope, now: float) -> int:
    """The page's realtime visitors (sessions with any event in the last five minutes), in the segment if filtered."""
    if not scope.filters:
        return int(panel_realtime(conn, scope.key, now)["visitors"])
    since = int(now) - REALTIME_SECONDS
    _source(conn, scope, since, int(now) + HOUR_SECONDS + 1, visits=True)  # timestamps may run up to an hour ahead
    sql = (
        "SELECT count(DISTINCT a.session_key) FROM temp.agg_visit a WHERE EXISTS "
        "(SELECT 1 FROM website_event e WHERE e.visit_key = a.visit_key AND e.created_at >= ?)"
    )
    return int(conn.execute(sql, (since,)).fetchone()[0])


def date_range(conn: sqlite3.Connection, scope: Scope) -> tuple[int | None, int | None]:
    """The first and last event time (since 2000, as Umami), of the segment's visits if filtered."""
    sql = "SELECT min(created_at), max(created_at) FROM website_event WHERE website_key = ? AND created_at >= ?"
    first, last = conn.execute(sql, (scope.key, EARLIEST_EVENT)).fetchone()
    if first is None or not scope.filters:
        return first, last
    _source(conn, scope, first, last + 1, visits=True)
    sql = (
        "SELECT min(e.created_at), max(e.created_at) FROM temp.agg_visit a CROSS JOIN website_event e "
        "ON e.visit_key = a.visit_key WHERE e.created_at >= ?"
    )
    return conn.execute(sql, (EARLIEST_EVENT,)).fetchone()  # type: ignore[no-any-return]


def previous(start: int, end: int, compare: str | None, shift: int) -> tuple[int, int]:
    """The comparison range: as long and right before (prev, the default), or a year earlier (yoy), in whole hours."""
    if compare == "yoy":

        def back(t: int) -> int:
            when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
            day = 28 if when.month == 2 and when.day == 29 else when.day
            return bucket_of(int(when.replace(year=when.year - 1, day=day).timestamp()), shift)

        return back(start), back(end)
    return start - (end - start), start
