"""Who may read what across origins: CORS on the collection routes only; the page answers only this machine until a
password is set; state-changing page routes check Origin."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.cli
from conftest import FIREFOX, Clock, LiveServer, assert_api_error, hit, open_client, rows

pytestmark = pytest.mark.anyio

SITE = "https://blog.example"
PREFLIGHT = {"origin": SITE, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def app(db_path: Path, **settings: object) -> footfall.app.Litestar:
    config = collector.Config(db=str(db_path), embedded_geo=False, **settings)  # type: ignore[arg-type]
    return footfall.app.create_app(config, Clock())


@pytest.mark.parametrize("path", ["/api/send", "/api/batch", "/api/heartbeat", "/script.js", "/stats.js", "/c"])
async def test_collection_routes_answer_cors(db_path: Path, website: str, path: str) -> None:
    """Any site may send hits and load the tracker: preflights get 204 with the tracker's header allowed, answers get *."""
    async with open_client(app(db_path, tracker_path="/stats.js", collect_path="/c")) as client:
        preflight = await client.options(path, headers={**PREFLIGHT, "access-control-request-headers": "x-umami-cache"})
        assert preflight.status_code == 204
        assert cors_headers(preflight) == {
            "access-control-allow-origin": "*",
            "access-control-allow-methods": "GET, POST, OPTIONS",
            "access-control-allow-headers": "content-type, x-umami-cache",
            "access-control-max-age": "86400",
        }
        if path in ("/api/heartbeat", "/script.js", "/stats.js"):
            answer = await client.get(path, headers={"origin": SITE})
            assert answer.status_code == 200
        else:
            body = hit(website, url="/") if path != "/api/batch" else [hit(website, url="/")]
            answer = await client.post(path, json=body, headers={"origin": SITE, "user-agent": FIREFOX})
            assert answer.status_code == 200, answer.text
            refused = await client.post(path, content=b"{", headers={"origin": SITE, "user-agent": FIREFOX})
            assert_api_error(refused, 400, "bad-request")
            assert refused.headers["access-control-allow-origin"] == "*"  # the tracker may read why
        assert answer.headers["access-control-allow-origin"] == "*"


async def test_page_json_login_and_share_send_no_cors(db_path: Path, website: str) -> None:
    """The page, /api/summary, login, logout, share links and static files send no CORS header, to a simple request or
    a preflight, so no other site's script can read them (this machine's own browser sees the page meanwhile)."""
    result = CliRunner().invoke(footfall.cli.cli, ["site", "share", website, "--db", str(db_path)])
    share = "/share/" + result.output.strip().rsplit("/", 1)[1]
    async with open_client(app(db_path)) as client:
        reads = ["/", f"/?website={website}", "/api/summary", f"/api/summary?share={share[7:]}", share, "/login"]
        for path in [*reads, "/static/footfall.css", "/api/openapi.json"]:
            response = await client.get(path, headers={"origin": SITE})
            assert response.status_code in (200, 303), (path, response.status_code)
            assert cors_headers(response) == {}, path
            preflight = await client.options(path, headers=PREFLIGHT)
            assert cors_headers(preflight) == {}, path
        page = await client.get("/", headers={"origin": SITE})
        assert page.status_code == 200 and "Visitors" in page.text
        for path in ("/login", "/logout"):
            posted = await client.post(path, data={"password": "x"}, headers={"origin": SITE})
            assert posted.status_code == 403 and cors_headers(posted) == {}, path


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("LOCALHOST:3000", True),
        ("[::1]:8000", True),
        ("127.0.0.2", True),
        ("evil.example", False),  # DNS rebinding: evil.example resolved to 127.0.0.1
        ("127.0.0.1.nip.io", False),
        ("localhost.evil.example:8000", False),
        ("analytics.example.com", False),  # nginx without proxy_set_header: no forwarding header, but its Host
        ("", False),
    ],
)
async def test_without_a_password_only_a_loopback_host_is_served(db_path: Path, website: str, host: str, served: bool) -> None:
    """Before a password exists, the page and its JSON answer only requests for a loopback name or address."""
    async with open_client(app(db_path)) as client:
        page = await client.get("/", headers={"host": host})
        summary = await client.get("/api/summary", params={"website": website}, headers={"host": host})
    if served:
        assert page.status_code == 200 and "Visitors" in page.text
        assert summary.status_code == 200 and summary.json()["website"]["id"] == website
    else:
        assert page.status_code == 403
        assert "Set a password first" in page.text and "footfall password" in page.text
        assert_api_error(summary, 403, "forbidden", "Set a password with `footfall password`")


@pytest.mark.parametrize(
    "header",
    [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "via",
        "cf-connecting-ip",
        "true-client-ip",
        "cdn-loop",
    ],
)
async def test_without_a_password_proxied_requests_are_refused(db_path: Path, website: str, header: str) -> None:
    """Any forwarding header means a proxy relayed the request from somewhere else: 403 and how to set a password."""
    async with open_client(app(db_path)) as client:
        page = await client.get("/", headers={header: "127.0.0.1"})
        assert page.status_code == 403 and "footfall password" in page.text
        assert_api_error(await client.get("/api/summary", headers={header: "127.0.0.1"}), 403, "forbidden")


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"origin": "http://127.0.0.1:8000"}, True),
        ({"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}, True),
        ({"origin": "https://stats.example", "x-forwarded-host": "stats.example"}, True),  # behind a proxy
        ({}, True),  # not a browser: no Origin, no Fetch Metadata
        ({"origin": "https://evil.example"}, False),
        ({"origin": "http://127.0.0.1:9999"}, False),
        ({"origin": "null"}, False),
        ({"origin": "http://127.0.0.1:8000", "sec-fetch-site": "cross-site"}, False),
        ({"sec-fetch-site": "same-site"}, False),
    ],
)
async def test_state_changing_page_routes_check_origin(
    db_path: Path, website: str, headers: dict[str, str], allowed: bool
) -> None:
    """POST /logout (and /login) go through only from footfall's own origin."""
    async with open_client(app(db_path)) as client:
        response = await client.post("/logout", headers=headers)
    if allowed:
        assert response.status_code == 303 and response.headers["location"] == "/login"
    else:
        assert response.status_code == 403 and "Log out from footfall&#39;s own pages." in response.text


@pytest.mark.slow
def test_live_server_cross_origin(db_path: Path) -> None:
    """On a real server: collection routes answer CORS, the page and its JSON and login send none, and before a password
    a foreign Host or a proxied request is refused."""
    collector.prepare_database(str(db_path))
    server = LiveServer(db_path)
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    with httpx.Client(base_url=server.url) as http:
        sent = http.post("/api/send", json=hit(website, url="/"), headers={"origin": SITE, "user-agent": FIREFOX})
        assert sent.status_code == 200 and sent.headers["access-control-allow-origin"] == "*"
        assert cors_headers(http.options("/api/send", headers=PREFLIGHT))["access-control-allow-origin"] == "*"
        for path in ("/", "/api/summary", "/login"):
            assert cors_headers(http.get(path, headers={"origin": SITE})) == {}, path
            assert cors_headers(http.options(path, headers=PREFLIGHT)) == {}, path
        assert http.get("/").status_code == 200
        assert http.get("/", headers={"host": "rebound.example"}).status_code == 403
        assert http.get("/api/summary", headers={"x-forwarded-for": "203.0.113.9"}).status_code == 403
    server.stop()
