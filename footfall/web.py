"""The summary page over HTTP: the page, share links, its JSON twin, login and logout, static files.

Owns: page routes, who may see what (Viewer), the template context and chart geometry, page security headers. Imports
collector, footfall.auth, footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from collector import (
    DAY_SECONDS,
    HOUR_SECONDS,
    ApiError,
    Asset,
    Collection,
    asset_path,
    bad_request,
    make_asset,
    origin_of,
    serve_asset,
)
from footfall.auth import SESSION_COOKIE, PageAuth, is_https, is_local_browser, is_same_origin, safe_next
from footfall.rollups import VITALS
from footfall.summary import FILTERS, PERIODS, Site, SummaryRange, SummaryReader, list_sites, resolve_range, shared_site


def _collection(request: Request) -> Collection:
    return request.app.state.collection  # type: ignore[no-any-return]


def _summary(request: Request) -> SummaryReader:
    return request.app.state.summary  # type: ignore[no-any-return]


def _auth(request: Request) -> PageAuth:
    return request.app.state.auth  # type: ignore[no-any-return]


#: Headers on every summary response: no script may run, nothing may frame it, nothing leaks in Referer, nothing is cached.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


#: Titles of the summary's lists and of the filters they set.
LIST_TITLES = {
    "page": ("Pages", "Pageviews"),
    "entry": ("Entry pages", "Visits"),
    "exit": ("Exit pages", "Visits"),
    "referrer": ("Referrers", "Visits"),
    "utm_source": ("UTM sources", "Visits"),
    "utm_medium": ("UTM mediums", "Visits"),
    "utm_campaign": ("UTM campaigns", "Visits"),
    "country": ("Countries", "Visits"),
    "browser": ("Browsers", "Visits"),
    "os": ("Operating systems", "Visits"),
    "device": ("Devices", "Visits"),
    "language": ("Languages", "Visits"),
    "screen": ("Screen sizes", "Visits"),
}


FILTER_LABELS = {
    "page": "Page",
    "event": "Event",
    "entry": "Entry page",
    "exit": "Exit page",
    "referrer": "Referrer",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    "country": "Country",
    "browser": "Browser",
    "os": "OS",
    "device": "Device",
    "language": "Language",
    "screen": "Screen",
}


HEADLINES = (
    ("visitors", "Visitors"),
    ("visits", "Visits"),
    ("pageviews", "Pageviews"),
    ("views_per_visit", "Views per visit"),
    ("bounce_rate", "Bounce rate"),
    ("avg_duration_s", "Visit duration"),
)


class Viewer(NamedTuple):
    """Who is looking, and at what: the sites they may see and the path the page lives at."""

    sites: list[Site]
    base: str  # '/' or '/share/TOKEN'
    logged_in: bool


class Denied(Exception):
    """No access to the summary: why ('login', 'no-password' or 'not-found')."""


async def _viewer(request: Request, token: str | None) -> Viewer:
    reader = _collection(request).reader
    assert reader is not None
    sites = await list_sites(reader)
    if token is not None:
        website_key = await shared_site(reader, token)
        if website_key is None:
            raise Denied("not-found")
        return Viewer([s for s in sites if s.key == website_key], f"/share/{token}", False)
    auth = _auth(request)
    if auth.password_hash:
        if await auth.session(request.cookies.get(SESSION_COOKIE), "page", _summary(request).clock()) is not None:
            return Viewer(sites, "/", True)
        raise Denied("login")
    if is_local_browser(request):
        return Viewer(sites, "/", False)
    raise Denied("no-password")


def _summary_request(request: Request, viewer: Viewer, reader: SummaryReader) -> tuple[Site, SummaryRange, dict[str, str]]:
    params = request.query_params
    website = (params.get("website") or "").lower()
    site = next((s for s in viewer.sites if s.id == website), None) if website else (viewer.sites or [None])[0]
    if site is None:
        raise bad_request("Website not found.")
    filters = {name: params[name] for name in FILTERS if params.get(name)}
    if any(len(value) > 500 for value in filters.values()):
        raise bad_request("a filter value is longer than 500 characters")
    period = resolve_range(
        params.get("period"), params.get("start"), params.get("end"), reader.zone, reader.clock(), reader.shift
    )
    return site, period, filters


async def _busiest_site(reader: SummaryReader, sites: list[Site], period: SummaryRange) -> Site:
    """The site with the most visitors in ``period``: the one `/` opens on (ties: 'default', then the first by name)."""
    from collector import transaction
    from footfall.rollups import refresh_rollups
    from footfall.summary import RollupSource, panel_totals

    def visitors(conn: Any) -> list[int]:
        refresh_rollups(conn, reader.shift, reader.zone)
        with transaction(conn, immediate=False):
            src = RollupSource(reader.zone)
            return [int(panel_totals(conn, src, s.key, period.start, period.until)["visitors"]) for s in sites]

    counts = await reader.run(visitors)
    return max(zip(counts, sites), key=lambda pair: (pair[0], pair[1].name == "default"))[1]


def _page(name: str, context: dict[str, Any], status: int = 200, **headers: str) -> Template:
    return Template(
        template_name=name,
        context=context,
        status_code=status,
        headers={**PAGE_HEADERS, **headers},
        media_type="text/html",  # Litestar adds "; charset=utf-8"
    )


def _denied_page(request: Request, reason: str) -> Response[Any] | Template:
    if reason == "login":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(path="/login?" + urlencode({"next": target}), status_code=303, headers=PAGE_HEADERS)
    if reason == "not-found":
        return _page("message.html", {"title": "Not found", "message": "This share link does not exist (any more)."}, 404)
    return _page(
        "message.html",
        {
            "title": "Set a password first",
            "command": "footfall password",
            "message": "The summary is only shown on this machine until it has a password. Set one "
            "with the command below, then log in.",
        },
        403,
    )


async def get_summary_page(request: Request) -> Response[Any] | Template:
    """GET / : the summary page of one website (private)."""
    return await _summary_page(request, None)


async def get_share_page(request: Request) -> Response[Any] | Template:
    """GET /share/TOKEN : the summary page of the one website this share link shows."""
    return await _summary_page(request, request.path_params["token"])


async def _summary_page(request: Request, token: str | None) -> Response[Any] | Template:
    reader = _summary(request)
    try:
        viewer = await _viewer(request, token)
    except Denied as denied:
        return _denied_page(request, str(denied))
    if not viewer.sites:
        return _page(
            "message.html",
            {
                "title": "No websites",
                "command": "footfall site add NAME",
                "message": "There is no website to show yet. Add one:",
            },
        )
    try:
        site, period, filters = _summary_request(request, viewer, reader)
    except ApiError as exc:
        return _page("message.html", {"title": "Cannot show that", "message": exc.message}, exc.status)
    if token is None and len(viewer.sites) > 1 and not request.query_params.get("website"):
        site = await _busiest_site(reader, viewer.sites, period)  # every link on the page then keeps it (website=…)
    try:
        summary = await reader.summary(site, period, filters)
    except ApiError as exc:  # a summary too slow to compute (503)
        return _page("message.html", {"title": "Cannot show that", "message": exc.message}, exc.status, **exc.headers)
    return _page("summary.html", page_context(summary, viewer, site, period, filters, request.app.state.country_names))


async def get_summary_json(request: Request) -> Response:
    """GET /api/summary?website=…&period=…|start=…&end=…[&share=…][&country=…]: the summary page's numbers as JSON."""
    reader = _summary(request)
    try:
        viewer = await _viewer(request, request.query_params.get("share"))
    except Denied as denied:
        reason = str(denied)
        if reason == "not-found":
            raise ApiError(404, "not-found", "Share link not found.") from None
        if reason == "login":
            raise ApiError(401, "unauthorized", "Log in first (POST /login), or use a share link.") from None
        raise ApiError(403, "forbidden", "Set a password with `footfall password` to read the summary remotely.") from None
    site, period, filters = _summary_request(request, viewer, reader)
    summary = await reader.summary(site, period, filters)
    return Response(content=msgspec.json.encode(summary), media_type="application/json", headers={"Cache-Control": "no-store"})


async def get_login(request: Request) -> Response[Any] | Template:
    """GET /login: the login form."""
    if not _auth(request).password_hash:
        return Redirect(path="/", status_code=303, headers=PAGE_HEADERS)
    return _page("login.html", {"next": safe_next(request.query_params.get("next")), "error": None})


async def post_login(request: Request) -> Response[Any] | Template:
    """POST /login (urlencoded or multipart form): check the password; on success start a session and go to ``next``."""
    auth, collection = _auth(request), _collection(request)
    if not is_same_origin(request):
        return _page("message.html", {"title": "Refused", "message": "Log in from footfall's own login page."}, 403)
    form = await request.form()
    target = safe_next(form.get("next"))
    address = origin_of(request).client(None, collection.policy).address
    try:
        token = await auth.log_in(form.get("password"), address, collection.clock(), "page")
    except ApiError as exc:
        if exc.status != 429:
            raise
        return _page(
            "login.html", {"next": target, "error": "Too many attempts. Wait a minute and try again."}, 429, **exc.headers
        )
    if token is None:
        return _page("login.html", {"next": target, "error": "Wrong password."}, 403)
    response = Redirect(path=target, status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=auth.max_age_seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request, collection.policy),
    )
    return response


async def post_logout(request: Request) -> Response[Any] | Template:
    """POST /logout: end the session (its cookie is refused from now on, copies included) and drop the cookie."""
    if not is_same_origin(request):
        return _page("message.html", {"title": "Refused", "message": "Log out from footfall's own pages."}, 403)
    await _auth(request).close_session(request.cookies.get(SESSION_COOKIE))
    response = Redirect(path="/login", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


#: The summary's static files: name → media type.
STATIC_FILES = {"footfall.css": "text/css", "favicon.svg": "image/svg+xml"}


def load_static_files() -> dict[str, Asset]:
    """Read STATIC_FILES from the assets, gzipped and tagged once."""
    return {
        name: make_asset(asset_path("summary.css" if name == "footfall.css" else name).read_bytes(), media_type)
        for name, media_type in STATIC_FILES.items()
    }


async def get_static(request: Request) -> Response:
    """GET /static/footfall.css and /static/favicon.svg (also at /favicon.ico): revalidated by ETag."""
    found: Asset | None = request.app.state.static.get(request.path_params.get("name", "favicon.svg"))
    if found is None:
        raise ApiError(404, "not-found", "Not found")
    return serve_asset(request, found, {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


def page_routes() -> list[Any]:
    """The page's handlers: summary, share links, its JSON twin, login and logout, static files."""
    return [
        get("/", include_in_schema=False)(get_summary_page),
        get("/share/{token:str}", include_in_schema=False)(get_share_page),
        get("/api/summary")(get_summary_json),
        get("/login", include_in_schema=False)(get_login),
        post("/login", include_in_schema=False, status_code=303, request_max_body_size=4096)(post_login),
        post("/logout", include_in_schema=False, status_code=303, request_max_body_size=4096)(post_logout),
        get(["/static/{name:str}", "/favicon.ico"], include_in_schema=False)(get_static),
    ]


def _compact(n: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{n:g}"


def format_duration(seconds: float) -> str:
    """'1h 02m', '3m 05s' or '42s'."""
    s = int(round(seconds))
    if s >= HOUR_SECONDS:
        return f"{s // HOUR_SECONDS}h {s % HOUR_SECONDS // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def format_headline(name: str, value: float) -> str:
    if name == "bounce_rate":
        return f"{value * 100:.0f}%"
    if name == "avg_duration_s":
        return format_duration(value)
    if name == "views_per_visit":
        return f"{value:.2f}"
    return f"{int(value):,}"


def _nice_top(peak: int) -> int:
    """A round axis maximum at or above ``peak`` (1, 2, 5 × a power of ten, then split in four)."""
    peak = max(peak, 4)
    magnitude = 10 ** math.floor(math.log10(peak))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude * 4 >= peak and (step * magnitude) == int(step * magnitude):
            return int(step * magnitude * 4)
    return int(10 * magnitude * 4)


def chart_geometry(chart: list[dict[str, int]], period: SummaryRange) -> dict[str, Any]:
    """Coordinates for the server-side SVG chart: bars (pageviews) with inner bars (visitors), axes and hover titles."""
    width, height, left, right, top, bottom = 960, 240, 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling = _nice_top(max((p["pageviews"] for p in chart), default=0))
    slot = plot_w / max(1, len(chart))
    bars, labels = [], []
    every = max(1, math.ceil(len(chart) / 8))
    for i, point in enumerate(chart):
        when = dt.datetime.fromtimestamp(point["start"], period.zone)
        if period.step == "hour":
            name = f"{when:%a %d %b %H:%M}" if period.end - period.start > DAY_SECONDS else f"{when:%H:%M}"
        else:
            name = f"{when:%a %d %b %Y}"
        x = left + i * slot
        pv_h = point["pageviews"] / ceiling * plot_h
        vi_h = point["visitors"] / ceiling * plot_h
        bars.append(
            {
                "x": round(x + slot * 0.1, 1),
                "w": round(max(slot * 0.8, 1), 1),
                "y": round(top + plot_h - pv_h, 1),
                "h": round(pv_h, 1),
                "vx": round(x + slot * 0.3, 1),
                "vw": round(max(slot * 0.4, 1), 1),
                "vy": round(top + plot_h - vi_h, 1),
                "vh": round(vi_h, 1),
                "title": f"{name}: {point['pageviews']:,} pageviews, {point['visitors']:,} visitors",
            }
        )
        if i % every == 0:
            text = f"{when:%H:%M}" if period.step == "hour" else f"{when:%d %b}"
            labels.append({"x": round(x + slot / 2, 1), "text": text})
    ticks = [{"y": round(top + plot_h - plot_h * k / 4, 1), "text": _compact(ceiling * k / 4)} for k in range(5)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "bottom": top + plot_h,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
        "label_y": height - 8,
    }


def page_context(
    summary: dict[str, Any],
    viewer: Viewer,
    site: Site,
    period: SummaryRange,
    filters: Mapping[str, str],
    country_names: Mapping[str, str],
) -> dict[str, Any]:
    """What summary.html needs: the numbers, formatted, and every link the page offers."""
    state = {
        "website": site.id if len(viewer.sites) > 1 and not viewer.base.startswith("/share/") else None,
        "period": None if period.name == "custom" else period.name,
        **filters,
    }
    if period.name == "custom":
        state["start"] = f"{dt.datetime.fromtimestamp(period.start, period.zone):%Y-%m-%d}"
        state["end"] = f"{dt.datetime.fromtimestamp(period.end - 1, period.zone):%Y-%m-%d}"

    def link(**changes: str | None) -> str:
        query = {k: v for k, v in {**state, **changes}.items() if v}
        return viewer.base + ("?" + urlencode(query) if query else "")

    def display(metric: str, value: str) -> str:
        if metric == "country":
            return country_names.get(value, value)
        if metric == "device":
            return value.capitalize()
        return value

    headline = []
    for name, label in HEADLINES:
        cell = summary["totals"][name]
        change = cell["change"]
        better = None if change is None or change == 0 else (change < 0) == (name == "bounce_rate")
        headline.append(
            {
                "label": label,
                "value": format_headline(name, cell["value"]),
                "previous": format_headline(name, cell["previous"]),
                "change_text": f"{change * 100:+.0f}% on the previous period"
                if change is not None
                else "new"
                if cell["value"]
                else "–",
                "tone": "same" if better is None else "up" if better else "down",
            }
        )
    panels = []
    for metric, (title, column) in LIST_TITLES.items():
        block = summary["lists"][metric]
        rows = [
            {
                "label": display(metric, r["value"]),
                "href": link(**{metric: r["value"]}),
                "count": f"{r['count']:,}",
                "share": r["share"],
                "percent": f"{r['share'] * 100:.0f}%",
            }
            for r in block["rows"]
        ]
        panels.append({"id": metric, "title": title, "label": FILTER_LABELS[metric], "column": column, "rows": rows})
    events = [
        {
            "label": e["value"] or "(no name)",
            "href": link(event=e["value"]),
            "count": f"{e['count']:,}",
            "share": e["share"],
            "percent": f"{e['share'] * 100:.0f}%",
            "data_keys": ", ".join(k["key"] for k in e["keys"]),
        }
        for e in summary["events"]
    ]
    vitals = []
    for row in summary["vitals"]:
        cells = []
        for metric in VITALS:
            cell = row[metric]
            if cell is None:
                cells.append({"text": "–", "rating": "none"})
            else:
                text = (
                    f"{cell['p75']:.2f}"
                    if metric == "cls"
                    else format_duration(cell["p75"] / 1000)
                    if cell["p75"] >= 60_000
                    else f"{cell['p75']:,.0f} ms"
                )
                cells.append({"text": text, "rating": cell["rating"]})
        vitals.append({"page": row["page"], "href": link(page=row["page"]), "reports": f"{row['reports']:,}", "cells": cells})
    start_local = dt.datetime.fromtimestamp(period.start, period.zone)
    end_local = dt.datetime.fromtimestamp(period.end - 1, period.zone)
    json_query = {k: v for k, v in {**state, "website": site.id}.items() if v}
    if viewer.base.startswith("/share/"):
        json_query["share"] = viewer.base.rsplit("/", 1)[1]
    return {
        "site": site,
        "sites": viewer.sites,
        "base": viewer.base,
        "logged_in": viewer.logged_in,
        "shared": viewer.base.startswith("/share/"),
        "period": period,
        "summary": summary,
        "periods": [
            {"label": label, "href": link(period=key, start=None, end=None), "current": key == period.name}
            for key, label in PERIODS.items()
        ],
        "custom_start": f"{start_local:%Y-%m-%d}",
        "custom_end": f"{end_local:%Y-%m-%d}",
        "hidden": {k: v for k, v in state.items() if v and k not in ("period", "start", "end")},
        "filters": [
            {"label": FILTER_LABELS[k], "value": display(k, v), "href": link(**{k: None})} for k, v in filters.items()
        ],
        "headline": headline,
        "chart": chart_geometry(summary["chart"], period),
        "panels": panels,
        "events": events,
        "vitals": vitals,
        "vital_names": [n.upper() for n in VITALS],
        "realtime": {
            "visitors": summary["realtime"]["visitors"],
            "pages": [
                {"label": p["value"], "href": link(page=p["value"]), "count": p["count"]} for p in summary["realtime"]["pages"]
            ],
        },
        "bots": f"{summary['bots']:,}",
        "timezone": str(period.zone),
        "json_query": urlencode(json_query),
        "range_text": f"{start_local:%a %d %b %Y %H:%M} – {dt.datetime.fromtimestamp(period.end, period.zone):%a %d %b %Y %H:%M}",
    }
