"""Umami's read API (v3): login and tokens, websites, stats, pageviews, metrics, active visitors, date range, event series.

Owns: the /api/auth/*, /api/me, /api/websites and /api/websites/{id}/* routes, their parameters (checked before the
token, as Umami does), who a request is (login token or API key), and Umami-shaped answers: the msgspec Structs the
OpenAPI document is built from. The numbers come from footfall.readnumbers (a filter's closed days kept first, as the
page keeps them: footfall.segments). Imports collector, footfall.auth, footfall.readnumbers, footfall.rollups,
footfall.segments and footfall.summary.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import Request, Response, get, post, route

from collector import (
    MAX_URL_CHARS,
    UUID_RE,
    ApiError,
    Collection,
    bad_request,
    collection_of,
    json_response,
    origin_of,
    transaction,
    umami_uuid,
)
from footfall.auth import Login, auth_of, bearer_token
from footfall.readnumbers import (
    ALL_ROWS,
    EXTRA_FILTERS,
    METRIC_TYPES,
    PAGE_METRICS,
    Buckets,
    Scope,
    active_visitors,
    buckets,
    date_range,
    event_series,
    metric_rows,
    previous,
    series_counts,
    stats_numbers,
)
from footfall.rollups import ROLLUP_BUCKET_SECONDS, bucket_of, refresh_rollups
from footfall.segments import keep_segment_days, kept_days
from footfall.summary import FILTERS, reader_of

# How a request goes: its query string is checked first (400, as Umami's parseRequest does), then the token or API key
# (401), then the website (404). The numbers are read on the summary's own connection, after the same rollup refresh a
# page view does, in one read snapshot. Ranges are widened to whole rollup hours (the page counts in those too), so a
# range asked of this API and the same range on the page give the same figures; see the README for where footfall's
# definitions differ from Umami's and why.

###############################################################################################################################
# Answers
###############################################################################################################################
# Field names and types are Umami's (tests/test_readapi_shapes.py holds Umami's recorded answers against them).


class LoginRequest(msgspec.Struct):
    """The body of POST /api/auth/login."""

    username: str
    password: str


class User(msgspec.Struct):
    """footfall's one user: whoever knows the page's password (or holds an API key), an admin in Umami's terms."""

    id: str
    username: str
    role: str
    createdAt: str
    isAdmin: bool
    teams: list[dict[str, str]]


class LoginResponse(msgspec.Struct):
    """POST /api/auth/login: a token for ``Authorization: Bearer``, and the user."""

    token: str
    user: User


class ApiKeyRef(msgspec.Struct):
    """The API key a request came with (its name; the key itself is never shown again)."""

    id: str
    name: str


class Me(msgspec.Struct, omit_defaults=True):
    """GET /api/me: who the request is, and how it authenticated ('session' or 'api-key')."""

    user: User
    authType: str
    apiKey: ApiKeyRef | None = None


class Ok(msgspec.Struct):
    """POST /api/auth/logout."""

    ok: bool


class WebsiteOwner(msgspec.Struct):
    """The owner Umami lists with each website."""

    username: str
    id: str


class Website(msgspec.Struct, omit_defaults=True):
    """A website as Umami describes it (footfall has no teams, resets or replays: those are always null or false)."""

    id: str
    name: str
    domain: str | None
    resetAt: str | None
    userId: str
    teamId: str | None
    createdBy: str
    createdAt: str
    updatedAt: str | None
    deletedAt: str | None
    replayEnabled: bool
    replayConfig: dict[str, Any] | None
    shareId: str | None
    user: WebsiteOwner | None = None


class WebsitePage(msgspec.Struct, omit_defaults=True):
    """GET /api/websites: one page of websites, by name."""

    data: list[Website]
    count: int
    page: int
    pageSize: int
    search: str | None = None


class StatsNumbers(msgspec.Struct):
    """The headline numbers of a range."""

    pageviews: int
    visitors: int
    visits: int
    bounces: int
    totaltime: int


class Stats(msgspec.Struct):
    """GET …/stats: the range's numbers, and the comparison range's under ``comparison``."""

    pageviews: int
    visitors: int
    visits: int
    bounces: int
    totaltime: int
    comparison: StatsNumbers


class Point(msgspec.Struct):
    """One bucket of a series: its start (x) and count (y)."""

    x: str
    y: int


class SeriesCompare(msgspec.Struct):
    """The comparison range's series."""

    pageviews: list[Point]
    sessions: list[Point]
    startDate: str
    endDate: str


class Series(msgspec.Struct, omit_defaults=True):
    """GET …/pageviews: pageviews and visitors per bucket (buckets without any are left out)."""

    pageviews: list[Point]
    sessions: list[Point]
    startDate: str | None = None
    endDate: str | None = None
    compare: SeriesCompare | None = None


class Metric(msgspec.Struct, omit_defaults=True):
    """One row of GET …/metrics: a value (x) and its count (y); city and region rows carry their country."""

    x: str
    y: int
    country: str | None = None


class Active(msgspec.Struct):
    """GET …/active."""

    visitors: int


class DateRange(msgspec.Struct):
    """GET …/daterange: the first and last event (null for a website without any)."""

    startDate: str | None
    endDate: str | None


class EventPoint(msgspec.Struct):
    """One row of GET …/events/series: custom events called x in the bucket starting at t."""

    x: str
    t: str
    y: int


###############################################################################################################################
# Parameters
###############################################################################################################################
#: Bucket sizes of a series, finest first (Umami's).
UNITS = ("minute", "hour", "day", "month", "year")


#: What ``compare`` may ask for: the range right before, or the same range a year earlier.
COMPARES = ("prev", "yoy")


#: Umami's filter parameters footfall answers → the filter they set: the page's lists are the page's own filters (the
#: page's code makes the segment), the rest only this API has (see collect_segment). ``url`` is Umami v2's ``path``.
FILTER_PARAMS = {
    **PAGE_METRICS,
    "title": "title",
    "query": "query",
    "hostname": "hostname",
    "tag": "tag",
    "region": "region",
    "city": "city",
    "distinctId": "distinct_id",
    "utmContent": "utm_content",
    "utmTerm": "utm_term",
}


assert set(FILTER_PARAMS.values()) == set(FILTERS) | set(EXTRA_FILTERS)


#: Umami's filter parameters footfall cannot answer: each is a 400 that names it (never ignored).
UNANSWERED_PARAMS = ("segment", "cohort", "eventType", "excludeBounce", "match")


#: Umami's filter operators (``country=neq.DE``); footfall answers equality only.
OPERATORS = ("eq", "neq", "s", "ns", "c", "dnc", "re", "nre", "t", "f", "gt", "lt", "gte", "lte", "bf", "af")


#: Rows of a metrics answer when ``limit`` is not given (Umami's), and the most one may ask for.
DEFAULT_METRIC_LIMIT = 500
MAX_METRIC_LIMIT = 10_000


#: Websites per page when ``pageSize`` is not given (Umami's DEFAULT_PAGE_SIZE).
DEFAULT_PAGE_SIZE = 20


#: Latest instant a range may reach: 3000-01-01T00:00:00Z in milliseconds (no event is later; dates stay dates).
MAX_INSTANT_MS = 32_503_680_000_000


_DIGITS = re.compile(r"[0-9]{1,17}")
_OPERATOR = re.compile(rf"({'|'.join(OPERATORS)})\.(.*)", re.DOTALL)


def query_params(request: Request) -> dict[str, str]:
    """The query string as Umami reads it (``Object.fromEntries``: the last of repeated keys wins)."""
    return dict(request.query_params.items())


def _millis(name: str, text: str) -> int:
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise bad_request(f"{name} must be Unix milliseconds (a whole number), not {text[:40]!r}")
    value = int(text)
    if value > MAX_INSTANT_MS:
        raise bad_request(f"{name} must be before the year 3000")
    return value


def _instant(name: str, text: str) -> int:
    """Milliseconds from a startDate/endDate: Unix milliseconds, or an ISO 8601 date or time (UTC unless it says)."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        return _millis(name, text)
    try:
        when = dt.datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        value = int(when.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise bad_request(
            f"{name} must be a date or time like 2026-05-01 or 2026-05-01T10:00:00Z, not {text[:40]!r}"
        ) from None
    if not 0 <= value <= MAX_INSTANT_MS:
        raise bad_request(f"{name} must be between 1970 and the year 3000")
    return value


class Asked(NamedTuple):
    """The range a request asked for, in Unix milliseconds, both ends included (as Umami's ``between``)."""

    start_ms: int
    end_ms: int


def asked_range(params: Mapping[str, str], dates: bool = True) -> Asked:
    """startAt+endAt (Unix ms), else startDate+endDate; 400 when neither pair is complete or start is after end."""
    found = {name: params[name] for name in ("startAt", "endAt") if params.get(name)}
    values = {name: _millis(name, text) for name, text in found.items()}
    if dates:
        values.update({name: _instant(name, params[name]) for name in ("startDate", "endDate") if params.get(name)})
    for first, last in (("startAt", "endAt"), ("startDate", "endDate")):
        if first in values and last in values:
            if values[first] > values[last]:
                raise bad_request(f"{first} must not be after {last}")
            return Asked(values[first], values[last])
    if not dates:
        raise bad_request("startAt and endAt (Unix milliseconds) are required")
    raise bad_request("Either startAt+endAt or startDate+endDate must be provided")


def whole_hours(asked: Asked, shift: int) -> tuple[int, int]:
    """The asked range as [start, end) in Unix seconds, widened to whole rollup hours (as the page's custom ranges)."""
    start, end = asked.start_ms // 1000, asked.end_ms // 1000 + 1
    return bucket_of(start, shift), bucket_of(end - 1, shift) + ROLLUP_BUCKET_SECONDS


def _calendar_months(start_ms: int, end_ms: int) -> int:
    a, b = (time.gmtime(t // 1000) for t in (start_ms, end_ms))
    return (b.tm_year - a.tm_year) * 12 + b.tm_mon - a.tm_mon


def minimum_unit(asked: Asked) -> str:
    """The finest unit Umami allows for a range (getMinimumUnit): minutes up to an hour, hours up to 30 days, days up to
    seven calendar months, months up to two years, then years."""
    span = asked.end_ms - asked.start_ms
    if span // 60_000 <= 60:
        return "minute"
    if span // 3_600_000 <= 30 * 24:
        return "hour"
    months = _calendar_months(asked.start_ms, asked.end_ms)
    return "day" if months <= 6 else "month" if months <= 24 else "year"


def pick_unit(params: Mapping[str, str], asked: Asked) -> str:
    """``unit`` if it is allowed for the range, else the finest one allowed (Umami's getRequestDateRange); 400 if unknown."""
    unit = params.get("unit")
    if unit is not None and unit not in UNITS:
        raise bad_request(f"Invalid unit: {unit[:20]!r} (one of {', '.join(UNITS)})")
    least = minimum_unit(asked)
    allowed = UNITS[UNITS.index("month" if least == "year" else least) :]
    return unit if unit in allowed else least


def pick_zone(params: Mapping[str, str], required: bool = False) -> ZoneInfo | None:
    """The IANA ``timezone`` of a series; None means UTC (labels then end in Z). 400 if it is not a time zone."""
    name = params.get("timezone")
    if not name:
        if required:
            raise bad_request("timezone is required (an IANA name such as Europe/Berlin or UTC)")
        return None
    if name.upper() == "UTC":
        return None
    try:
        if len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad_request(f"Invalid timezone: {name[:64]!r}") from None


def pick_compare(params: Mapping[str, str]) -> str | None:
    compare = params.get("compare")
    if compare is not None and compare not in COMPARES:
        raise bad_request(f"compare must be prev or yoy, not {compare[:20]!r}")
    return compare


def pick_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The filters of a request (footfall's names), checked: equality with one value each, nothing footfall cannot do."""
    filters: dict[str, str] = {}
    for key, value in params.items():
        base = key.rstrip("0123456789")
        if key in FILTER_PARAMS:
            match = _OPERATOR.fullmatch(value)
            operator, text = (match.group(1), match.group(2)) if match else ("eq", value)
            if operator != "eq":
                raise bad_request(f"{key}: footfall filters by equality only (eq), not by {operator}")
            if "," in text:
                raise bad_request(f"{key}: footfall filters by one value at a time; {text[:40]!r} is a list")
            if len(text) > MAX_URL_CHARS:
                raise bad_request(f"{key}: a filter value is longer than {MAX_URL_CHARS} characters")
            if text:
                filters[FILTER_PARAMS[key]] = text
        elif key == "match":
            if value != "all":  # every filter must hold: that is how footfall combines them
                raise bad_request(f"match={value[:20]}: footfall combines filters with match=all only")
        elif key in UNANSWERED_PARAMS:
            raise bad_request(f"footfall cannot answer the {key} parameter")
        elif base != key and (base in FILTER_PARAMS or base in UNANSWERED_PARAMS):
            raise bad_request(f"{key}: footfall takes one filter per field (no {base}1, {base}2, …)")
        elif key.startswith("pf_") or re.fullmatch(r"[es]pf[0-9]+", key):
            raise bad_request(f"{key}: footfall cannot filter by event or session properties")
    return filters


def _whole_number(params: Mapping[str, str], name: str, default: int, least: int = 0) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text.strip()) or int(text) < least:
        raise bad_request(f"{name} must be a whole number of at least {least}, not {text[:20]!r}")
    return int(text)


def _search(params: Mapping[str, str]) -> str | None:
    search = params.get("search") or None
    if search is not None and len(search) > MAX_URL_CHARS:
        raise bad_request(f"search is longer than {MAX_URL_CHARS} characters")
    return search


###############################################################################################################################
# Requests
###############################################################################################################################
T = TypeVar("T")


#: Every answer of this API: nobody caches the numbers.
NO_STORE = {"Cache-Control": "no-store"}


def iso(t: float | None) -> str | None:
    """A JSON date as JavaScript writes one: 'YYYY-MM-DDTHH:MM:SS.mmmZ' (UTC)."""
    if t is None:
        return None
    whole = int(t // 1)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int(round((t - whole) * 1000)):03d}Z"


def _answer(body: Any) -> Response:
    return json_response(body, headers=NO_STORE)


async def who(request: Request) -> Login:
    """The login session or API key a request carries (Bearer token, or x-umami-api-key); 401 without a valid one."""
    found = await auth_of(request).bearer(request.headers, collection_of(request).clock())
    if found is None:
        raise ApiError(401, "unauthorized", "Unauthorized")
    return found


def user_id(collection: Collection) -> str:
    """The id of footfall's one user: stable for an install, derived from its secret."""
    return umami_uuid("footfall api user", secret=collection.secret)


async def the_user(request: Request) -> User:
    """footfall's one user (created when the database was)."""
    collection = collection_of(request)
    assert collection.reader is not None
    async with collection.reader.execute("SELECT updated_at FROM setting WHERE name = 'install_secret'") as cur:
        row = await cur.fetchone()
    created = iso(row[0] if row else 0)
    assert created is not None
    return User(user_id(collection), collection.config.api_username, "admin", created, True, [])


class SiteRow(NamedTuple):
    key: int
    id: str
    name: str
    domain: str | None
    created_at: int
    share: str | None


async def _sites(request: Request, website_id: str | None = None) -> list[SiteRow]:
    reader = collection_of(request).reader
    assert reader is not None
    sql = (
        "SELECT w.website_key, w.website_id, w.name, w.domain, w.created_at, l.token FROM website w "
        "LEFT JOIN share_link l ON l.website_key = w.website_key WHERE w.deleted_at IS NULL"
    )
    params: tuple[Any, ...] = ()
    if website_id is not None:
        sql, params = sql + " AND w.website_id = ?", (website_id,)
    async with reader.execute(sql + " ORDER BY w.name, w.website_id", params) as cur:
        return [SiteRow(*row) for row in await cur.fetchall()]


async def the_site(request: Request) -> SiteRow:
    """The active website the path names; 404 for any other id."""
    website_id = str(request.path_params.get("website_id", "")).lower()
    found = await _sites(request, website_id) if UUID_RE.fullmatch(website_id) else []
    if not found:
        raise ApiError(404, "not-found", "Website not found.")
    return found[0]


def _website(site: SiteRow, owner_id: str, username: str, listed: bool) -> Website:
    created = iso(site.created_at)
    assert created is not None
    return Website(
        id=site.id,
        name=site.name,
        domain=site.domain,
        resetAt=None,
        userId=owner_id,
        teamId=None,
        createdBy=owner_id,
        createdAt=created,
        updatedAt=created,
        deletedAt=None,
        replayEnabled=False,
        replayConfig=None,
        shareId=site.share,
        user=WebsiteOwner(username, owner_id) if listed else None,
    )


async def numbers(
    request: Request,
    site: SiteRow,
    filters: Mapping[str, str],
    fn: Callable[[sqlite3.Connection, Scope], T],
    keep: Sequence[tuple[int, int]] = (),
) -> T:
    """``fn(connection, scope)`` on the summary's connection, after the rollup refresh a page view does, in one snapshot.

    ``keep``: the ranges ``fn`` reads a segment's rollups over (whole ranges, no inner edges); with the page's filters,
    their closed days are computed and kept first, a step at a time, as a page view does (a first request cut short by
    the time limit keeps the steps it finished).
    """
    reader = reader_of(request)
    scope = Scope(site.key, filters, reader.shift, reader.zone, reader.clock(), reader.segments)

    def job(conn: sqlite3.Connection) -> T:
        refresh_rollups(conn, reader.shift, reader.zone)
        if filters and not set(filters) - set(FILTERS):
            for span in keep:
                days = kept_days(span, span, reader.zone, scope.now)
                keep_segment_days(conn, reader.segments, site.key, filters, days, reader.shift, reader.zone)
        with transaction(conn, immediate=False):
            return fn(conn, scope)

    return await reader.run(job)  # type: ignore[no-any-return]


async def post_auth_login(request: Request) -> Response:
    """POST /api/auth/login {"username", "password"}: a token (a login session) and the user; 401 if either is wrong."""
    try:
        body = msgspec.json.decode(await request.body(), type=LoginRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise bad_request(f"username and password are required: {exc}") from None
    collection, auth = collection_of(request), auth_of(request)
    address = origin_of(request).client(None, collection.policy).address
    right_name = hmac.compare_digest(body.username.encode(), collection.config.api_username.encode())
    token = await auth.log_in(body.password, address, collection.clock(), "api", right_name)
    if token is None:
        message = (
            "Incorrect username and/or password." if auth.password_hash else "Set a password with `footfall password` first."
        )
        raise ApiError(401, "incorrect-username-password", message)
    return _answer(LoginResponse(token, await the_user(request)))


async def auth_verify(request: Request) -> Response:
    """POST (or GET) /api/auth/verify: the user, when the token is good."""
    await who(request)
    return _answer(await the_user(request))


async def get_me(request: Request) -> Response:
    """GET /api/me: the user, and whether the request came with a login token or an API key."""
    login = await who(request)
    key = ApiKeyRef(login.digest[:16], login.name) if login.kind == "api-key" else None
    return _answer(Me(await the_user(request), login.kind, key))


async def post_auth_logout(request: Request) -> Response:
    """POST /api/auth/logout: end the login session the token belongs to (an API key stays until revoked)."""
    login = await who(request)
    if login.kind == "session":
        await auth_of(request).close_session(bearer_token(request.headers))
    return _answer(Ok(True))


async def get_websites(request: Request) -> Response:
    """GET /api/websites?page=&pageSize=&search=: the active websites by name, a page at a time."""
    params = query_params(request)
    page = _whole_number(params, "page", 1, least=1)
    size = _whole_number(params, "pageSize", DEFAULT_PAGE_SIZE, least=1)
    search = _search(params)
    await who(request)
    sites = await _sites(request)
    if search:
        needle = search.casefold()
        sites = [s for s in sites if needle in s.name.casefold() or needle in (s.domain or "").casefold()]
    collection = collection_of(request)
    owner, username = user_id(collection), collection.config.api_username
    shown = [_website(s, owner, username, True) for s in sites[(page - 1) * size : page * size]]
    return _answer(WebsitePage(shown, len(sites), page, size, search))


async def get_website(request: Request) -> Response:
    """GET /api/websites/{id}."""
    await who(request)
    site = await the_site(request)
    collection = collection_of(request)
    return _answer(_website(site, user_id(collection), collection.config.api_username, False))


async def get_active(request: Request) -> Response:
    """GET /api/websites/{id}/active: visitors with any event in the last five minutes."""
    filters = pick_filters(query_params(request))
    await who(request)
    site = await the_site(request)
    now = reader_of(request).clock()
    return _answer(Active(await numbers(request, site, filters, lambda conn, scope: active_visitors(conn, scope, now))))


def _range_request(request: Request, shift: int) -> tuple[dict[str, str], Asked, int, int]:
    params = query_params(request)
    asked = asked_range(params)
    pick_unit(params, asked)
    pick_zone(params)
    start, end = whole_hours(asked, shift)
    return params, asked, start, end


async def get_stats(request: Request) -> Response:
    """GET /api/websites/{id}/stats: pageviews, visitors, visits, bounces, totaltime, and the comparison range's."""
    params, _, start, end = _range_request(request, reader_of(request).shift)
    compare, filters = pick_compare(params), pick_filters(params)
    await who(request)
    site = await the_site(request)
    before = previous(start, end, compare, reader_of(request).shift)

    def job(conn: sqlite3.Connection, scope: Scope) -> Stats:
        now, then = stats_numbers(conn, scope, start, end), stats_numbers(conn, scope, *before)
        return Stats(*now, comparison=StatsNumbers(*then))

    return _answer(await numbers(request, site, filters, job, keep=[(start, end), before]))


async def get_pageviews(request: Request) -> Response:
    """GET /api/websites/{id}/pageviews: pageviews and visitors (Umami's "sessions") per ``unit`` in ``timezone``."""
    shift = reader_of(request).shift
    params, asked, start, end = _range_request(request, shift)
    unit, zone, compare, filters = pick_unit(params, asked), pick_zone(params), pick_compare(params), pick_filters(params)
    current = buckets(start, end, unit, zone)
    before = previous(start, end, compare, shift) if compare else None
    earlier = buckets(*before, unit, zone) if before else None
    await who(request)
    site = await the_site(request)

    def points(conn: sqlite3.Connection, scope: Scope, series: Buckets) -> tuple[list[Point], list[Point]]:
        pageviews, visitors = series_counts(conn, scope, series.edges)
        pairs = zip(series.labels, pageviews, visitors)
        rows = list(pairs)
        return [Point(x, p) for x, p, _ in rows if p], [Point(x, v) for x, _, v in rows if v]

    def job(conn: sqlite3.Connection, scope: Scope) -> Series:
        pageviews, sessions = points(conn, scope, current)
        if before is None or earlier is None:
            return Series(pageviews, sessions)
        then = points(conn, scope, earlier)
        return Series(
            pageviews,
            sessions,
            iso(start),
            iso(end - 0.001),
            SeriesCompare(then[0], then[1], iso(before[0]) or "", iso(before[1] - 0.001) or ""),
        )

    return _answer(await numbers(request, site, filters, job))


async def get_metrics(request: Request) -> Response:
    """GET /api/websites/{id}/metrics?type=…: the values of one type, most first (limit, offset, search)."""
    params, _, start, end = _range_request(request, reader_of(request).shift)
    kind = params.get("type")
    if kind not in METRIC_TYPES:
        raise bad_request(f"type must be one of {', '.join(METRIC_TYPES)}" if kind else "type is required")
    limit = min(_whole_number(params, "limit", DEFAULT_METRIC_LIMIT), MAX_METRIC_LIMIT)
    offset = _whole_number(params, "offset", 0)
    search, filters = _search(params), pick_filters(params)
    await who(request)
    site = await the_site(request)
    wanted = ALL_ROWS if search else offset + limit

    def job(conn: sqlite3.Connection, scope: Scope) -> list[Metric]:
        rows = metric_rows(conn, scope, kind, start, end, wanted)
        if search:
            needle = search.casefold()
            rows = [row for row in rows if needle in row.x.casefold()]
        return [Metric(*row) for row in rows[offset : offset + limit]]

    keep = [(start, end)] if kind in PAGE_METRICS else []  # (the others count the segment's visits themselves)
    return _answer(await numbers(request, site, filters, job, keep=keep))


async def get_daterange(request: Request) -> Response:
    """GET /api/websites/{id}/daterange: when the first and the last event happened."""
    filters = pick_filters(query_params(request))
    await who(request)
    site = await the_site(request)
    first, last = await numbers(request, site, filters, date_range)
    return _answer(DateRange(iso(first), iso(last)))


async def get_event_series(request: Request) -> Response:
    """GET /api/websites/{id}/events/series: custom events per name and ``unit`` (startAt, endAt and timezone required)."""
    shift = reader_of(request).shift
    params = query_params(request)
    asked = asked_range(params, dates=False)
    unit, zone = pick_unit(params, asked), pick_zone(params, required=True)
    limit = _whole_number(params, "limit", 0) or None
    filters = pick_filters(params)
    series = buckets(*whole_hours(asked, shift), unit, zone)
    await who(request)
    site = await the_site(request)
    rows = await numbers(request, site, filters, lambda conn, scope: event_series(conn, scope, series, limit))
    return _answer([EventPoint(*row) for row in rows])


def readapi_routes() -> list[Any]:
    """The read API's handlers (no CORS: nothing reads the numbers cross-origin)."""
    website = "/api/websites/{website_id:str}"
    return [
        post("/api/auth/login", status_code=200, request_max_body_size=4096)(post_auth_login),
        route("/api/auth/verify", http_method=["GET", "POST"], status_code=200)(auth_verify),
        post("/api/auth/logout", status_code=200, request_max_body_size=4096)(post_auth_logout),
        get("/api/me")(get_me),
        get(["/api/websites", "/api/me/websites"])(get_websites),
        get(website)(get_website),
        get(website + "/active")(get_active),
        get(website + "/stats")(get_stats),
        get(website + "/pageviews")(get_pageviews),
        get(website + "/metrics")(get_metrics),
        get(website + "/daterange")(get_daterange),
        get(website + "/events/series")(get_event_series),
    ]
