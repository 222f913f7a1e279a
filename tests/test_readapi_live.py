"""Umami's read API on a real server on 127.0.0.1: log in, read, log out; `footfall password` and `api-key revoke` end access."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import footfall.cli as footfall_cli

from conftest import FIREFOX, LiveServer, rows

PASSWORD = "correct horse battery"


def footfall(db_path: Path, *args: str, stdin: str | None = None) -> str:
    """Run a footfall command against the server's database, as the operator would while it serves."""
    result = CliRunner().invoke(footfall_cli.cli, [*args, "--db", str(db_path)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def server(db_path: Path) -> LiveServer:
    live = LiveServer(db_path, "--no-embedded-geo")  # it makes the database; a login reads the password set next
    footfall(db_path, "password", "--stdin", stdin=PASSWORD + "\n")
    return live


def login(server: LiveServer, username: str = "admin", password: str = PASSWORD) -> httpx.Response:
    return httpx.post(server.url + "/api/auth/login", json={"username": username, "password": password})


def test_log_in_read_the_numbers_and_log_out(server: LiveServer, db_path: Path) -> None:
    """A token from /api/auth/login reads the websites and the numbers sent; after logout it is refused."""
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    now = int(time.time())
    for path in ("/", "/pricing", "/"):
        sent = httpx.post(
            server.url + "/api/send",
            json={"type": "event", "payload": {"website": website, "url": path, "hostname": "example.com"}},
            headers={"user-agent": FIREFOX},
        )
        assert sent.status_code == 200, sent.text
    answer = login(server)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"token", "user"}
    user = body["user"]
    assert (user["username"], user["role"], user["isAdmin"], user["teams"]) == ("admin", "admin", True, [])
    assert set(user) == {"id", "username", "role", "createdAt", "isAdmin", "teams"}
    bearer = {"authorization": f"Bearer {body['token']}"}
    assert httpx.post(server.url + "/api/auth/verify", headers=bearer).json() == user
    assert httpx.get(server.url + "/api/me", headers=bearer).json() == {"user": user, "authType": "session"}
    sites = httpx.get(server.url + "/api/websites", headers=bearer).json()
    assert [w["id"] for w in sites["data"]] == [website] and sites["count"] == 1
    window = {"startAt": str((now - 3600) * 1000), "endAt": str((now + 60) * 1000)}
    stats = httpx.get(f"{server.url}/api/websites/{website}/stats", params=window, headers=bearer).json()
    assert {k: stats[k] for k in ("pageviews", "visitors", "visits", "bounces")} == {
        "pageviews": 3,
        "visitors": 1,
        "visits": 1,
        "bounces": 0,
    }
    paths = httpx.get(f"{server.url}/api/websites/{website}/metrics", params={**window, "type": "path"}, headers=bearer)
    assert paths.json() == [{"x": "/", "y": 2}, {"x": "/pricing", "y": 1}]
    assert httpx.get(f"{server.url}/api/websites/{website}/active", headers=bearer).json() == {"visitors": 1}
    assert httpx.post(server.url + "/api/auth/logout", headers=bearer).json() == {"ok": True}
    refused = httpx.get(server.url + "/api/websites", headers=bearer)
    assert refused.status_code == 401 and refused.json() == {
        "error": {"message": "Unauthorized", "code": "unauthorized", "status": 401}
    }
    assert rows(db_path, "SELECT count(*) FROM login_session") == [(0,)]


def test_footfall_password_ends_every_api_token(server: LiveServer, db_path: Path) -> None:
    """Tokens stop working the moment `footfall password` runs; the new password logs in again."""
    tokens = [login(server).json()["token"] for _ in range(2)]
    for token in tokens:
        assert httpx.get(server.url + "/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert "2 login(s) ended" in footfall(db_path, "password", "--stdin", stdin="a brand new password\n")
    for token in tokens:
        assert httpx.get(server.url + "/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 401
    assert login(server).status_code == 401
    assert login(server, password="a brand new password").status_code == 200


def test_api_key_in_both_headers_until_revoked(server: LiveServer, db_path: Path) -> None:
    """A key from `footfall api-key create` works as Bearer and as x-umami-api-key, and not after `api-key revoke`."""
    key = footfall(db_path, "api-key", "create", "dashboard").strip()
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    for headers in ({"authorization": f"Bearer {key}"}, {"x-umami-api-key": key}):
        answer = httpx.get(f"{server.url}/api/websites/{website}", headers=headers)
        assert answer.status_code == 200 and answer.json()["id"] == website
        me = httpx.get(server.url + "/api/me", headers=headers).json()
        assert me["authType"] == "api-key" and me["apiKey"]["name"] == "dashboard"
    assert "\tlast used " in footfall(db_path, "api-key", "list") and "never" not in footfall(db_path, "api-key", "list")
    assert footfall(db_path, "api-key", "revoke", "dashboard") == "revoked dashboard\n"
    for headers in ({"authorization": f"Bearer {key}"}, {"x-umami-api-key": key}):
        assert httpx.get(f"{server.url}/api/websites/{website}", headers=headers).status_code == 401
    # A new password does not end a key (keys are for scripts; revoke them by name).
    other = footfall(db_path, "api-key", "create", "backup-script").strip()
    footfall(db_path, "password", "--stdin", stdin="a brand new password\n")
    assert httpx.get(server.url + "/api/me", headers={"x-umami-api-key": other}).status_code == 200


def test_api_key_reads_the_summary_json(server: LiveServer, db_path: Path) -> None:
    """/api/summary answers a script's API key or login token with the page's numbers; without one, or revoked, 401."""
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    for path in ("/", "/pricing"):
        sent = httpx.post(
            server.url + "/api/send",
            json={"type": "event", "payload": {"website": website, "url": path}},
            headers={"user-agent": FIREFOX},
        )
        assert sent.status_code == 200, sent.text
    key = footfall(db_path, "api-key", "create", "summary-script").strip()
    token = login(server).json()["token"]
    for headers in ({"authorization": f"Bearer {key}"}, {"x-umami-api-key": key}, {"authorization": f"Bearer {token}"}):
        answer = httpx.get(server.url + "/api/summary", params={"period": "24h"}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["totals"]["pageviews"]["value"] == 2
        assert "access-control-allow-origin" not in answer.headers
    refused = httpx.get(server.url + "/api/summary", params={"period": "24h"})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == (
        "Log in first (POST /login), send an API key (Authorization: Bearer KEY), or use a share link."
    )
    footfall(db_path, "api-key", "revoke", "summary-script")
    assert httpx.get(server.url + "/api/summary", headers={"x-umami-api-key": key}).status_code == 401


def test_login_refusals(server: LiveServer) -> None:
    """Wrong password or username: 401 incorrect-username-password; a bad body: 400; then the login limiter's 429."""
    for username, password in (("admin", "wrong password!"), ("root", PASSWORD)):
        wrong = login(server, username, password)
        assert wrong.status_code == 401
        assert wrong.json()["error"] == {
            "message": "Incorrect username and/or password.",
            "code": "incorrect-username-password",
            "status": 401,
        }
    for body in ('{"username": "admin"}', "not json", '{"username": 1, "password": "x"}'):
        bad = httpx.post(server.url + "/api/auth/login", content=body, headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad-request", bad.text
    for _ in range(3):  # five attempts per client in a burst: two above, three here
        assert login(server, password="still wrong!!").status_code == 401
    blocked = login(server)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert blocked.json()["error"]["code"] == "too-many-requests"
