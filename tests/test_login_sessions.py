"""Logins are server-side sessions: logout, expiry and `footfall password` end them; a copy of the database mints none."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.auth
import footfall.cli
from conftest import T0, Clock, open_client, rows

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
COOKIE = footfall.auth.SESSION_COOKIE
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


def set_password(db_path: Path, password: str = PASSWORD) -> str:
    result = CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input=password + "\n")
    assert result.exit_code == 0, result.output
    return result.output


def app(db_path: Path, clock: Clock, **settings: Any) -> Any:
    return footfall.app.create_app(collector.Config(db=str(db_path), **settings), clock)


async def page_login(client: Any, password: str = PASSWORD, **headers: str) -> Any:
    return await client.post("/login", data={"password": password, "next": "/"}, headers={**SAME_ORIGIN, **headers})


async def opens_page(client: Any, cookie: str) -> bool:
    """Whether the summary page opens with this cookie value (a fresh cookie jar each time: only the value counts)."""
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie)
    response = await client.get("/")
    client.cookies.clear()
    assert response.status_code in (200, 303), response.text
    return response.status_code == 200


async def test_logout_ends_the_session_for_every_copy_of_the_cookie(db_path: Path, website: str) -> None:
    """After logout the old cookie value, replayed, opens nothing: the server forgot the session."""
    set_password(db_path)
    async with open_client(app(db_path, Clock()), peer="198.51.100.7") as client:
        cookie = (await page_login(client)).cookies[COOKIE]
        assert await opens_page(client, cookie)
        assert rows(db_path, "SELECT kind, count(*) FROM login_session GROUP BY kind") == [("page", 1)]
        client.cookies.set(COOKIE, cookie)
        logout = await client.post("/logout", headers=SAME_ORIGIN)
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert not await opens_page(client, cookie)
        assert rows(db_path, "SELECT count(*) FROM login_session") == [(0,)]


async def test_a_session_expires_by_its_stored_times(db_path: Path, website: str) -> None:
    """A login lasts --login-max-days: the stored expiry is what counts, and a shorter setting shortens old sessions."""
    set_password(db_path)
    clock = Clock()
    async with open_client(app(db_path, clock, login_max_days=2), peer="198.51.100.7") as client:
        response = await page_login(client)
        assert "max-age=172800" in response.headers["set-cookie"].lower()
        cookie = response.cookies[COOKIE]
        assert rows(db_path, "SELECT created_at, expires_at, last_used_at FROM login_session") == [
            (int(T0), int(T0) + 2 * 86400, int(T0))
        ]
        clock.advance(2 * 86400 - 1)
        assert await opens_page(client, cookie)
        assert rows(db_path, "SELECT last_used_at FROM login_session") == [(int(T0) + 2 * 86400 - 1,)]
        clock.advance(1)
        assert not await opens_page(client, cookie)
        clock.now = T0 + 3600
        assert await opens_page(client, cookie)  # within its time again: the record decides, not a timer
    async with open_client(app(db_path, clock, login_max_days=1), peer="198.51.100.7") as client:
        clock.now = T0 + 86400 - 1
        assert await opens_page(client, cookie)
        clock.now = T0 + 86400
        assert not await opens_page(client, cookie)  # a shorter setting applies to sessions made before it


async def test_footfall_password_ends_every_login_at_once(db_path: Path, website: str) -> None:
    """`footfall password` deletes all sessions in the same transaction as the new hash: old cookies die immediately."""
    set_password(db_path)
    async with open_client(app(db_path, Clock()), peer="198.51.100.7") as client:
        first = (await page_login(client)).cookies[COOKIE]
        second = (await page_login(client)).cookies[COOKIE]
        assert await opens_page(client, first) and await opens_page(client, second)
        output = set_password(db_path, "another long password")
        assert "2 login(s) ended" in output
        assert not await opens_page(client, first) and not await opens_page(client, second)
        assert (await page_login(client, PASSWORD)).status_code == 403  # the new password counts at once
        assert await opens_page(client, (await page_login(client, "another long password")).cookies[COOKIE])


async def test_a_configured_hash_change_voids_older_sessions(db_path: Path, website: str) -> None:
    """A session made under one --password-hash is void under another (nothing else to delete it when the env changes)."""
    first, second = footfall.auth.hash_password("first password!"), footfall.auth.hash_password("second password!")
    clock = Clock()
    async with open_client(app(db_path, clock, password_hash=first), peer="198.51.100.7") as client:
        cookie = (await page_login(client, "first password!")).cookies[COOKIE]
        assert await opens_page(client, cookie)
    async with open_client(app(db_path, clock, password_hash=second), peer="198.51.100.7") as client:
        assert not await opens_page(client, cookie)


async def test_a_copy_of_the_database_mints_no_cookie(db_path: Path, website: str) -> None:
    """Holding the file (install secret and password hash included) is not enough: only a hash of each token is there."""
    set_password(db_path)
    async with open_client(app(db_path, Clock()), peer="198.51.100.7") as client:
        token = (await page_login(client)).cookies[COOKIE]
        secret = rows(db_path, "SELECT value FROM setting WHERE name = 'install_secret'")[0][0]
        stored_hash = rows(db_path, "SELECT value FROM setting WHERE name = 'password_hash'")[0][0]
        # What the secret and hash allowed before sessions: a cookie signed with a key derived from the install secret.
        key = hmac.new(bytes.fromhex(secret), b"footfall summary session", hashlib.sha256).digest()
        expires = int(T0) + 86400
        forged = f"{expires}.{hmac.new(key, f'{expires}|{stored_hash}'.encode(), hashlib.sha256).hexdigest()}"
        for attempt in (forged, secret, stored_hash, rows(db_path, "SELECT token_hash FROM login_session")[0][0]):
            assert not await opens_page(client, attempt)
        assert await opens_page(client, token)
        await client.app.state.collection.writer.flush()
    assert rows(db_path, "SELECT token_hash FROM login_session") == [(hashlib.sha256(token.encode()).hexdigest(),)]
    for path in db_path.parent.glob(db_path.name + "*"):
        assert token.encode() not in path.read_bytes(), path


async def test_every_login_path_runs_the_same_password_check(
    db_path: Path, website: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Urlencoded, multipart (also with the password sent as a file) and the API login each cost one scrypt check."""
    set_password(db_path)
    stored = rows(db_path, "SELECT value FROM setting WHERE name = 'password_hash'")[0][0]
    checked: list[tuple[str, str]] = []
    real = footfall.auth.verify_password

    def counting(password: str, against: str) -> bool:
        checked.append((password, against))
        return real(password, against)

    monkeypatch.setattr(footfall.auth, "verify_password", counting)
    async with open_client(app(db_path, Clock())) as client:
        urlencoded = await client.post("/login", data={"password": PASSWORD}, headers=SAME_ORIGIN)
        multipart = await client.post("/login", files={"password": (None, PASSWORD), "next": (None, "/")}, headers=SAME_ORIGIN)
        as_file = await client.post(
            "/login", files={"password": ("p.txt", PASSWORD.encode()), "next": ("n", b"/x")}, headers=SAME_ORIGIN
        )
        api = await client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert [r.status_code for r in (urlencoded, multipart, as_file, api)] == [303, 303, 403, 200]
    assert multipart.headers["location"] == "/" and "Wrong password" in as_file.text
    assert checked == [(PASSWORD, stored), (PASSWORD, stored), ("", stored), (PASSWORD, stored)]


@pytest.mark.parametrize(
    ("peer", "headers", "secure"),
    [
        ("127.0.0.1", {"x-forwarded-proto": "https"}, True),  # the proxy on this machine says the visitor used HTTPS
        ("127.0.0.1", {"x-forwarded-proto": "http"}, False),
        ("127.0.0.1", {}, False),
        ("198.51.100.7", {"x-forwarded-proto": "https"}, False),  # anyone else saying so is not believed
        ("10.0.0.5", {"x-forwarded-proto": "https, http"}, True),  # a proxy trusted by --trusted-proxies
    ],
)
async def test_cookie_is_secure_when_the_request_came_over_https(
    db_path: Path, website: str, peer: str, headers: dict[str, str], secure: bool
) -> None:
    """Secure is set for HTTPS as a trusted proxy reports it (the collector's client policy decides who is trusted)."""
    set_password(db_path)
    async with open_client(app(db_path, Clock(), trusted_proxies="127.0.0.1/32,10.0.0.0/8"), peer=peer) as client:
        cookie = (await page_login(client, **headers)).headers["set-cookie"].lower()
    assert ("; secure" in cookie) is secure, cookie


async def test_expired_and_voided_sessions_are_dropped_at_the_next_login(db_path: Path, website: str) -> None:
    """The session table stays bounded: each login deletes the ended sessions."""
    set_password(db_path)
    clock = Clock()
    async with open_client(app(db_path, clock, login_max_days=1), peer="198.51.100.7") as client:
        for _ in range(3):
            await page_login(client)
        assert rows(db_path, "SELECT count(*) FROM login_session") == [(3,)]
        clock.advance(86400)
        await page_login(client)
        assert rows(db_path, "SELECT created_at FROM login_session") == [(int(T0) + 86400,)]
