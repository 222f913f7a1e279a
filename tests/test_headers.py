"""Every route's Content-Type: the right type, and for text one `charset=utf-8` (Litestar adds it; we never add another)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import collector
import footfall.app
from conftest import FIREFOX, T0, Clock, hit, open_client

pytestmark = pytest.mark.anyio

HTML = "text/html; charset=utf-8"
JSON = "application/json"

#: What each route answers the request below with: "METHOD path" → (status, Content-Type).
EXPECTED = {
    "POST /api/send": (200, JSON),
    "POST /api/batch": (200, JSON),
    "GET /api/heartbeat": (200, JSON),
    "GET /script.js": (200, "text/javascript; charset=utf-8"),
    "GET /": (200, HTML),
    "GET /share/{token:str}": (404, HTML),
    "GET /api/summary": (200, JSON),
    "GET /login": (303, "text/plain; charset=utf-8"),  # no password yet: on to the page
    "POST /login": (403, HTML),
    "POST /logout": (303, "text/plain; charset=utf-8"),
    "GET /favicon.ico": (200, "image/svg+xml"),
    "GET /static/{name:str}": (200, "text/css; charset=utf-8"),
    "GET /api/openapi.json": (200, JSON),
}

#: A value for each path parameter a route may have.
PATH_VALUES = {"token": "no-such-link", "name": "footfall.css"}


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace(f"{{{name}:str}}", value)
    return path


def check_content_type(response: httpx.Response, label: str) -> None:
    """One Content-Type; text types say charset=utf-8 once; other types carry no charset."""
    values = response.headers.get_list("content-type")
    if not response.content and not values:
        return
    assert len(values) == 1, (label, values)
    media_type, *params = (part.strip() for part in values[0].split(";"))
    assert len(params) == len(set(params)) and sum(p.startswith("charset=") for p in params) <= 1, (label, values)
    if media_type.startswith("text/"):
        assert params == ["charset=utf-8"], (label, values)
    else:
        assert not any(p.startswith("charset=") for p in params), (label, values)


async def test_every_route_sends_one_right_content_type(db_path: Path) -> None:
    """Walks app.routes: each method of each route answers with its Content-Type, gzipped or not, preflight included."""
    collector.prepare_database(str(db_path), now=T0)
    website = collector.connect(str(db_path)).execute("SELECT website_id FROM website").fetchone()[0]
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())
    seen = set()
    async with open_client(app) as client:
        for route in app.routes:
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                label = f"{method} {route.path}"
                seen.add(label)
                url = concrete(route.path)
                if method == "POST" and route.path == "/api/batch":
                    response = await client.post(url, json=[hit(website, url="/b")], headers={"User-Agent": FIREFOX})
                elif method == "POST":
                    response = await client.post(url, json=hit(website, url="/a"), headers={"User-Agent": FIREFOX})
                else:
                    response = await client.get(url)
                check_content_type(response, label)
                if label in EXPECTED:
                    assert (response.status_code, response.headers["content-type"]) == EXPECTED[label], label
                plain = await client.request(method, url, headers={"Accept-Encoding": "identity", "User-Agent": FIREFOX})
                check_content_type(plain, label + " (not gzipped)")
                preflight = await client.options(
                    url, headers={"Origin": "https://site.example", "Access-Control-Request-Method": method}
                )
                check_content_type(preflight, f"OPTIONS {route.path}")
        errors = [
            await client.post("/api/send", content=b"{", headers={"User-Agent": FIREFOX}),
            await client.get("/no/such/page"),
            await client.get("/static/nothing.css"),
        ]
        for response in errors:
            check_content_type(response, str(response.request.url))
            assert response.headers["content-type"] == JSON and response.status_code in (400, 404)
    assert set(EXPECTED) <= seen, set(EXPECTED) - seen
