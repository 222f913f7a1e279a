"""The summary page over HTTP: the page, share links, its JSON twin, login and logout, static files.

Owns: page routes, who may see what (Viewer), the template context and chart geometry, page security headers. Imports
collector, footfall.auth, footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.config.compression import CompressionConfig
from litestar.response import Redirect, Template

from collector import (
    DAY_SECONDS,
    HOUR_SECONDS,
    ApiError,
    Config,
    asset_path,
    bad_request,
    collection_of,
    origin_of,
)
from footfall.assets import Asset, make_asset, serve_asset
from footfall.auth import SESSION_COOKIE, auth_of, is_https, is_local_browser, is_same_origin, safe_next
from footfall.rollups import VITALS
from footfall.summary import (
    FILTERS,
    HEADLINES,
    PERIODS,
    Site,
    SummaryRange,
    SummaryReader,
    list_sites,
    reader_of,
    resolve_range,
    shared_site,
)

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


class Viewer(NamedTuple):
    """Who is looking, and at what: the sites they may see and the path the page lives at."""

    sites: list[Site]
    base: str  # '/' or '/share/TOKEN'
    logged_in: bool


class Denied(Exception):
    """No access to the summary: why ('login', 'no-password' or 'not-found')."""


async def _viewer(request: Request, token: str | None) -> Viewer:
    reader = collection_of(request).reader
    assert reader is not None
    sites = await list_sites(reader)
    if token is not None:
        website_key = await shared_site(reader, token)
        if website_key is None:
            raise Denied("not-found")
        return Viewer([s for s in sites if s.key == website_key], f"/share/{token}", False)
    auth, now = auth_of(request), reader_of(request).clock()
    if await auth.bearer(request.headers, now) is not None:  # a script with an API key or token (README: /api/summary)
        return Viewer(sites, "/", True)
    if auth.password_hash:
        if await auth.session(request.cookies.get(SESSION_COOKIE), "page", now) is not None:
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
    from footfall.segments import RollupSource
    from footfall.summary import panel_totals

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
    reader = reader_of(request)
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
    export = request.query_params.get("export")
    show = request.query_params.get("show")
    for name, value in (("export", export), ("show", show)):
        if value is not None and value not in (EXPORTS if name == "export" else EXPORTS[:-1]):
            return _page("message.html", {"title": "Cannot show that", "message": f"There is no list called {value!r}."}, 400)
    try:
        summary = await reader.summary(site, period, filters, export or show)
    except ApiError as exc:  # a summary too slow to compute (503)
        return _page("message.html", {"title": "Cannot show that", "message": exc.message}, exc.status, **exc.headers)
    names = request.app.state.country_names
    if export is not None:
        day = dt.datetime.fromtimestamp(period.start, period.zone)
        filename = f"footfall-{re.sub(r'[^a-z0-9]+', '-', site.name.lower()).strip('-') or 'site'}-{export}-{day:%Y-%m-%d}.csv"
        return Response(
            content=summary_csv(summary, export, names),
            media_type="text/csv",
            headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
        )
    context = page_context(summary, viewer, site, period, filters, names, reader.clock(), show)
    return _page("summary.html", context)


async def get_summary_json(request: Request) -> Response:
    """GET /api/summary?website=…&period=…|start=…&end=…[&share=…][&country=…]: the summary page's numbers as JSON."""
    reader = reader_of(request)
    try:
        viewer = await _viewer(request, request.query_params.get("share"))
    except Denied as denied:
        reason = str(denied)
        if reason == "not-found":
            raise ApiError(404, "not-found", "Share link not found.") from None
        if reason == "login":
            raise ApiError(
                401,
                "unauthorized",
                "Log in first (POST /login), send an API key (Authorization: Bearer KEY), or use a share link.",
            ) from None
        raise ApiError(403, "forbidden", "Set a password with `footfall password` to read the summary remotely.") from None
    site, period, filters = _summary_request(request, viewer, reader)
    summary = await reader.summary(site, period, filters)
    return Response(content=msgspec.json.encode(summary), media_type="application/json", headers={"Cache-Control": "no-store"})


async def get_login(request: Request) -> Response[Any] | Template:
    """GET /login: the login form."""
    if not auth_of(request).password_hash:
        return Redirect(path="/", status_code=303, headers=PAGE_HEADERS)
    return _page("login.html", {"next": safe_next(request.query_params.get("next")), "error": None})


async def post_login(request: Request) -> Response[Any] | Template:
    """POST /login (urlencoded or multipart form): check the password; on success start a session and go to ``next``."""
    auth, collection = auth_of(request), collection_of(request)
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
    await auth_of(request).close_session(request.cookies.get(SESSION_COOKIE))
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


def plural(n: float, one: str, many: str | None = None) -> str:
    """'1 visitor', '2 visitors', '1,234 visitors'."""
    return f"{n:,.0f} {one if n == 1 else many or one + 's'}"


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


def percent(share: float) -> str:
    """A share as the page shows it: '42%', '0.4%' below one percent, '0%' for nothing."""
    if 0 < share < 0.01:
        return f"{share * 100:.1f}%"
    return f"{share * 100:.0f}%"


def nice_ticks(peak: int) -> list[int]:
    """Round y-axis ticks from 0 to just above ``peak``: a step of 1, 2 or 5 × a power of ten, at most five intervals."""
    if peak <= 0:
        return [0, 1]
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            intervals = -(-(peak + 1) // step)  # the top line is above the tallest bar
            if intervals <= 5:
                return [step * k for k in range(intervals + 1)]
        magnitude *= 10


#: How the chart names an interval, by step: (title format, axis label format).
_STEP_FORMATS = {
    "hour": ("%a %d %b %Y, %H:%M", "%H:%M"),
    "day": ("%a %d %b %Y", "%d %b"),
    "week": ("week of %a %d %b %Y", "%d %b"),
    "month": ("%B %Y", "%b %Y"),
}


def chart_geometry(
    chart: list[dict[str, int]], previous: list[dict[str, int]], period: SummaryRange, width: int = 960
) -> dict[str, Any]:
    """Coordinates for the server-side SVG chart: bars (pageviews) with inner bars (visitors), the previous period's
    pageviews as a line, round y ticks, and for each bar the text its tooltip and the screen-reader table show.

    ``width`` is in the SVG's own units, drawn at about that many CSS pixels: the page has a wide chart and a narrow one
    for phones (so text stays readable and a bar stays a few pixels wide).
    """
    height, left, right, top, bottom = 300, 44, 8, 66, 26  # the band above the plot is where a bar's tooltip shows
    tip_w = 250 if width >= 600 else 230
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([p["pageviews"] for p in chart] + [p["pageviews"] for p in previous] + [0])
    ticks = nice_ticks(peak)
    ceiling = ticks[-1]
    slot = plot_w / max(1, len(chart))
    title_format, label_format = _STEP_FORMATS[period.step]
    if period.step == "hour" and period.end - period.start <= DAY_SECONDS:
        title_format = "%H:%M"
    bars, labels, line = [], [], []
    every = max(1, math.ceil(len(chart) / (width // 110)))
    for i, point in enumerate(chart):
        when = dt.datetime.fromtimestamp(point["start"], period.zone)
        name = f"{when:{title_format}}"
        if period.step == "hour":
            name = f"{when:%a %d %b, %H:%M}–{dt.datetime.fromtimestamp(point['end'], period.zone):%H:%M}"
        x = left + i * slot
        pv_h = point["pageviews"] / ceiling * plot_h
        vi_h = point["visitors"] / ceiling * plot_h
        before = previous[i]["pageviews"] if i < len(previous) else 0
        tip_x = min(max(x + slot / 2, tip_w / 2 + 2), width - tip_w / 2 - 2)
        bars.append(
            {
                "x": round(x + slot * 0.08, 1),
                "w": round(max(slot * 0.84, 1), 1),
                "slot_x": round(x, 1),
                "slot_w": round(slot, 1),
                "y": round(top + plot_h - pv_h, 1),
                "h": round(pv_h, 1),
                "vx": round(x + slot * 0.28, 1),
                "vw": round(max(slot * 0.44, 1), 1),
                "vy": round(top + plot_h - vi_h, 1),
                "vh": round(vi_h, 1),
                "tip_x": round(tip_x, 1),
                "name": name,
                "pageviews": f"{point['pageviews']:,}",
                "visitors": f"{point['visitors']:,}",
                "previous": f"{before:,}",
                "pv_text": plural(point["pageviews"], "pageview"),
                "vi_text": plural(point["visitors"], "visitor"),
                "prev_text": plural(before, "pageview"),
                "title": f"{name}: {plural(point['pageviews'], 'pageview')}, {plural(point['visitors'], 'visitor')}",
            }
        )
        line.append(f"{x + slot / 2:.1f},{top + plot_h - before / ceiling * plot_h:.1f}")
        if i % every == 0:
            labels.append({"x": round(x + slot / 2, 1), "text": f"{when:{label_format}}"})
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": top + plot_h,
        "bars": bars,
        "labels": labels,
        "ticks": [{"y": round(top + plot_h - plot_h * t / ceiling, 1), "text": _compact(t)} for t in ticks],
        "line": " ".join(line) if len(line) > 1 else "",
        "label_y": height - 8,
        "step": period.step,
        "tip_w": tip_w,
        "tip_y": 4,
    }


#: The page's groups of panels: (id, heading, panels). A panel is a list (LIST_TITLES), 'events' or 'vitals'.
GROUPS = (
    ("sources", "Sources", ("referrer", "utm_source", "utm_medium", "utm_campaign")),
    ("pages", "Pages", ("page", "entry", "exit")),
    ("audience", "Audience", ("country", "browser", "os", "device", "language", "screen")),
    ("goals", "Events & goals", ("events",)),
    ("performance", "Performance", ("vitals",)),
)


#: Web-vital ratings as words (never colour alone).
RATING_WORDS = {"good": "good", "needs-improvement": "needs work", "poor": "poor", "none": ""}


def _range_text(period: SummaryRange, now: float) -> str:
    """The period as a person says it, the end inclusive: 'Thu 14 May 2026, 00:00–16:20', 'Fri 01 May – Sat 30 May 2026'."""
    zone = period.zone
    first = dt.datetime.fromtimestamp(period.start, zone)
    running = now < period.end
    end = dt.datetime.fromtimestamp(max(period.start, int(now)) if running else period.end, zone)
    midnight = dt.time(0)
    if not running and first.time() == midnight and end.time() == midnight:
        last = dt.datetime.fromtimestamp(period.end - 1, zone)
        if last.date() == first.date():
            return f"{first:%a %d %b %Y}"
        return f"{first:%a %d %b}{'' if first.year == last.year else f' {first.year}'} – {last:%a %d %b %Y}"
    if first.date() == end.date() or (end.time() == midnight and end - first <= dt.timedelta(days=1)):
        return f"{first:%a %d %b %Y}, {first:%H:%M}–{'24:00' if end.date() != first.date() else f'{end:%H:%M}'}"
    return (
        f"{first:%a %d %b}{'' if first.year == end.year else f' {first.year}'}, {first:%H:%M} – {end:%a %d %b %Y}, {end:%H:%M}"
    )


def page_context(
    summary: dict[str, Any],
    viewer: Viewer,
    site: Site,
    period: SummaryRange,
    filters: Mapping[str, str],
    country_names: Mapping[str, str],
    now: float,
    show: str | None = None,
) -> dict[str, Any]:
    """What summary.html needs: the numbers, formatted, and every link the page offers."""
    state = {
        "website": site.id if len(viewer.sites) > 1 and not viewer.base.startswith("/share/") else None,
        "period": None if period.name == "custom" else period.name,
        **filters,
        "show": show,
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
        previous = format_headline(name, cell["previous"])
        if change is not None:
            change_text = f"{'+' if change > 0 else '−' if change < 0 else '±'}{abs(change) * 100:.0f}%"
            change_long = f"{change_text} on the previous period ({previous})"
        else:
            change_text = "new" if cell["value"] else "–"
            change_long = "nothing in the previous period" if cell["value"] else "nothing in either period"
        headline.append(
            {
                "name": name,
                "label": label,
                "value": format_headline(name, cell["value"]),
                "previous": previous,
                "change_text": change_text,
                "change_long": change_long,
                "tone": "same" if better is None else "up" if better else "down",
            }
        )

    def list_rows(metric: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            direct = r.get("direct", False)
            label = "Direct / none" if direct else display(metric, r["value"])
            out.append(
                {
                    "label": label,
                    "full": label if direct else r["value"] if label == r["value"] else f"{label} ({r['value']})",
                    "href": None if direct else link(**{metric: r["value"]}),
                    "count": f"{r['count']:,}",
                    "share": r["share"],
                    "bar": round(min(1.0, r["share"]) * 100, 1),
                    "percent": percent(r["share"]),
                    "direct": direct,
                }
            )
        return out

    panels: dict[str, dict[str, Any]] = {}
    for metric, (title, column) in LIST_TITLES.items():
        block = summary["lists"][metric]
        panels[metric] = {
            "id": metric,
            "kind": "list",
            "title": title,
            "label": FILTER_LABELS[metric],
            "column": column,
            "rows": list_rows(metric, block["rows"]),
            "more": link(show=metric) if block["more"] and show != metric else None,
            "csv": link(export=metric, show=None),
        }
    goals = summary["goals"]
    events = []
    for e in goals["rows"]:
        row = list_rows("event", [e])[0]
        row["label"] = row["full"] = e["value"] or "(no name)"
        row["visitors"] = f"{e['visitors']:,}"
        row["conversion"] = percent(e["conversion"])
        row["data"] = [
            {
                "key": k["key"],
                "count": f"{k['count']:,}",
                "top": [{"value": v["value"] or "(empty)", "count": f"{v['count']:,}"} for v in k["values"]],
            }
            for k in e["keys"]
        ]
        events.append(row)
    panels["events"] = {
        "id": "events",
        "kind": "events",
        "title": "Custom events",
        "rows": events,
        "more": link(show="event") if goals["more"] and show != "event" else None,
        "csv": link(export="event", show=None),
    }
    vitals = []
    for row in summary["vitals"]:
        cells = []
        for metric in VITALS:
            cell = row[metric]
            if cell is None:
                cells.append({"text": "–", "rating": "none", "word": "no data"})
            else:
                text = (
                    f"{cell['p75']:.2f}"
                    if metric == "cls"
                    else format_duration(cell["p75"] / 1000)
                    if cell["p75"] >= 60_000
                    else f"{cell['p75'] / 1000:.1f} s"
                    if cell["p75"] >= 1000
                    else f"{cell['p75']:,.0f} ms"
                )
                cells.append({"text": text, "rating": cell["rating"], "word": RATING_WORDS[cell["rating"]]})
        vitals.append({"page": row["page"], "href": link(page=row["page"]), "reports": f"{row['reports']:,}", "cells": cells})
    panels["vitals"] = {
        "id": "vitals",
        "kind": "vitals",
        "title": "Web vitals (75th percentile)",
        "rows": vitals,
        "more": None,
        "csv": link(export="vitals", show=None),
    }
    groups = []
    for ident, heading, names in GROUPS:
        members = [panels[n] for n in names if show is None or show == n or (show == "event" and n == "events")]
        if members:
            groups.append({"id": ident, "title": heading, "panels": members})
    start_local = dt.datetime.fromtimestamp(period.start, period.zone)
    end_local = dt.datetime.fromtimestamp(period.end - 1, period.zone)
    json_query = {k: v for k, v in {**state, "website": site.id}.items() if v}
    if viewer.base.startswith("/share/"):
        json_query["share"] = viewer.base.rsplit("/", 1)[1]
    realtime = summary["realtime"]
    shown = {"event": "events"}.get(show or "", show)
    return {
        "site": site,
        "sites": viewer.sites,
        "base": viewer.base,
        "logged_in": viewer.logged_in,
        "shared": viewer.base.startswith("/share/"),
        "period": period,
        "summary": summary,
        "show": shown,
        "show_title": panels[shown]["title"] if shown in panels else "",
        "back": link(show=None),
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
        "chart": chart_geometry(summary["chart"], summary["previous_chart"], period),
        "chart_narrow": chart_geometry(summary["chart"], summary["previous_chart"], period, 380),
        "groups": groups,
        "vital_names": [n.upper() for n in VITALS],
        "realtime": {
            "visitors": realtime["visitors"],
            "noun": "visitor" if realtime["visitors"] == 1 else "visitors",
            "pages": [
                {"label": p["value"], "href": link(page=p["value"]), "count": f"{p['count']:,}"} for p in realtime["pages"]
            ],
        },
        "bots": plural(summary["bots"], "bot request"),
        "timezone": str(period.zone),
        "json_query": urlencode(json_query),
        "csv_all": link(export="all", show=None),
        "range_text": _range_text(period, now),
        "previous_text": _range_text(
            period._replace(start=period.previous_start, end=period.previous_end), period.previous_end
        ),
    }


#: What an export may name: a list, 'event', 'vitals' or 'all'.
EXPORTS = (*LIST_TITLES, "event", "vitals", "all")


class _SafeWriter:
    """csv.writer for values visitors sent: a text cell that a spreadsheet would run as a formula (it starts with =, +, -,
    @, a tab or a carriage return) gets a leading apostrophe, as OWASP advises against CSV injection."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow(["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in row])


def summary_csv(summary: dict[str, Any], export: str, country_names: Mapping[str, str]) -> str:
    """The numbers of one panel (or of the whole view, for 'all') as CSV: the same values the page shows, unformatted."""
    out = io.StringIO()
    writer = _SafeWriter(csv.writer(out, lineterminator="\r\n"))

    def list_part(metric: str, with_panel: bool) -> None:
        block = summary["goals"] if metric == "event" else summary["lists"][metric]
        for r in block["rows"]:
            label = "Direct / none" if r.get("direct") else r["value"]
            cells = [label, *([country_names.get(label, label)] if metric == "country" else []), r["count"], r["share"]]
            if metric == "event":
                cells += [r["visitors"], r["conversion"]]
            writer.writerow([metric, *cells] if with_panel else cells)

    def vitals_part(with_panel: bool) -> None:
        for row in summary["vitals"]:
            cells = [row["page"], row["reports"]]
            for metric in VITALS:
                cell = row[metric]
                cells += ["", ""] if cell is None else [cell["p75"], cell["rating"]]
            writer.writerow(["vitals", *cells] if with_panel else cells)

    vital_columns = [f"{m}_{part}" for m in VITALS for part in ("p75", "rating")]
    if export == "vitals":
        writer.writerow(["page", "reports", *vital_columns])
        vitals_part(False)
    elif export != "all":
        title = FILTER_LABELS[export].lower().replace(" ", "_")
        column = "count" if export == "event" else LIST_TITLES[export][1].lower()
        extra = ["visitors", "conversion"] if export == "event" else []
        writer.writerow([title, *(["name"] if export == "country" else []), column, "share", *extra])
        list_part(export, False)
    else:
        writer.writerow(["panel", "value", "name", "count", "share", "visitors", "conversion"])
        for name, cell in summary["totals"].items():
            writer.writerow(["totals", name, "", cell["value"], "", "", ""])
            writer.writerow(["previous", name, "", cell["previous"], "", "", ""])
        for point in summary["chart"]:
            when = dt.datetime.fromtimestamp(point["start"], dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow(["chart", when, "", point["pageviews"], "", point["visitors"], ""])
        for metric in LIST_TITLES:
            block = summary["lists"][metric]
            for r in block["rows"]:
                label = "Direct / none" if r.get("direct") else r["value"]
                name = country_names.get(label, "") if metric == "country" else ""
                writer.writerow([metric, label, name, r["count"], r["share"], "", ""])
        for r in summary["goals"]["rows"]:
            writer.writerow(["event", r["value"], "", r["count"], r["share"], r["visitors"], r["conversion"]])
    return out.getvalue()


def compression_config(config: Config) -> CompressionConfig:
    """gzip for pages, JSON and CSV when the client accepts it; never on the collection routes (they answer a few bytes
    and must not pay for it) nor on the tracker and static files (gzipped once at start-up, with their ETag)."""
    own = ["/api/send", "/api/batch", "/api/heartbeat", "/script.js", "/favicon.ico"]
    own += [p for p in (config.collect_path, config.tracker_path) if p]
    return CompressionConfig(
        backend="gzip",
        gzip_compress_level=6,
        minimum_size=1024,
        exclude=[f"^{re.escape(p)}$" for p in own] + ["^/static/"],
    )
