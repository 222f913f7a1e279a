"""Who may see the summary: loopback only until a password is set, then a login; share links see one site; headers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import litestar

import collector
import footfall.app
import footfall.auth
import footfall.cli
from conftest import T0, Clock, add_website, assert_api_error, open_client, rows

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


def set_password(db_path: Path, password: str = PASSWORD) -> None:
    result = CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input=password + "\n")
    assert result.exit_code == 0, result.output


def app(db_path: Path, clock: Clock | None = None, **settings: object) -> litestar.Litestar:
    return footfall.app.create_app(collector.Config(db=str(db_path), **settings), clock or Clock())  # type: ignore[arg-type]


async def login(client: collector.Any, password: str = PASSWORD, **headers: str) -> collector.Any:
    return await client.post(
        "/login", data={"password": password, "next": "/?period=7d"}, headers={"sec-fetch-site": "same-origin", **headers}
    )


def test_password_is_stored_as_a_salted_scrypt_hash(db_path: Path, website: str) -> None:
    """`footfall password` stores scrypt, never the password; two hashes of one password differ; short ones are refused."""
    set_password(db_path)
    (stored,) = rows(db_path, "SELECT value FROM setting WHERE name = 'password_hash'")[0]
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert footfall.auth.verify_password(PASSWORD, stored) and not footfall.auth.verify_password(PASSWORD + "x", stored)
    assert footfall.auth.hash_password(PASSWORD) != footfall.auth.hash_password(PASSWORD)
    assert not footfall.auth.verify_password(PASSWORD, "scrypt$garbage")
    short = CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    printed = CliRunner().invoke(
        footfall.cli.cli, ["password", "--stdin", "--print-hash", "--db", str(db_path)], input=PASSWORD + "\n"
    )
    assert footfall.auth.verify_password(PASSWORD, printed.output.strip())
    with pytest.raises(collector.ConfigError, match="password_hash"):
        collector.load_config({"password_hash": "plain-text"}, {})


async def test_without_a_password_only_this_machine_sees_it(db_path: Path, website: str) -> None:
    """No password: a loopback browser sees the page; a remote one, or one relayed by a proxy, gets 403 and how to fix it."""
    async with open_client(app(db_path)) as local:
        page = await local.get("/")
        assert page.status_code == 200 and "Visitors" in page.text
        proxied = await local.get("/", headers={"x-forwarded-for": "198.51.100.7"})
        assert proxied.status_code == 403 and "footfall password" in proxied.text
        assert_api_error(await local.get("/api/summary", headers={"x-forwarded-for": "198.51.100.7"}), 403, "forbidden")
        assert (await local.get("/login")).status_code == 303  # nothing to log in to
    async with open_client(app(db_path), peer="198.51.100.7") as remote:
        page = await remote.get("/")
        assert page.status_code == 403 and "footfall password" in page.text
        assert_api_error(await remote.get("/api/summary"), 403, "forbidden", "footfall password")


async def test_with_a_password_everything_needs_a_login(db_path: Path, website: str) -> None:
    """With a password, every page and JSON route refuses without the cookie, loopback included."""
    set_password(db_path)
    async with open_client(app(db_path)) as client:
        page = await client.get("/?period=today&country=DE")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2F%3Fperiod%3Dtoday%26country%3DDE"
        assert_api_error(await client.get("/api/summary"), 401, "unauthorized")
        form = await client.get("/login")
        assert form.status_code == 200 and 'type="password"' in form.text


async def test_login_sets_a_strict_httponly_cookie(db_path: Path, website: str) -> None:
    """The right password sets a signed HttpOnly SameSite=Strict cookie and goes to next; the cookie opens the JSON too."""
    set_password(db_path)
    async with open_client(app(db_path), peer="198.51.100.7") as client:
        response = await login(client)
        assert response.status_code == 303 and response.headers["location"] == "/?period=7d"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(footfall.auth.SESSION_COOKIE + "=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2592000"):
            assert attribute.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain http here; over https (or a proxy saying so) it is Secure
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/api/summary", params={"website": website})).status_code == 200
        logout = await client.post("/logout", headers={"sec-fetch-site": "same-origin"})
        assert logout.status_code == 303
        assert (await client.get("/")).status_code == 303
        spoofed = await login(client, **{"x-forwarded-proto": "https"})  # not a trusted proxy: not believed
        assert "secure" not in spoofed.headers["set-cookie"].lower()


async def test_wrong_password_forged_cookie_and_old_cookies_get_nothing(db_path: Path, website: str) -> None:
    """A wrong password, a forged or expired cookie, or one from before a password change opens nothing."""
    set_password(db_path)
    clock = Clock()
    async with open_client(app(db_path, clock), peer="198.51.100.7") as client:
        wrong = await login(client, "not the password")
        assert wrong.status_code == 403 and "Wrong password" in wrong.text and "set-cookie" not in wrong.headers
        client.cookies.set(footfall.auth.SESSION_COOKIE, "0" * 43)
        assert (await client.get("/")).status_code == 303
        good = (await login(client)).cookies[footfall.auth.SESSION_COOKIE]
        client.cookies.set(footfall.auth.SESSION_COOKIE, good)
        assert (await client.get("/")).status_code == 200
        clock.advance(footfall.auth.SESSION_MAX_AGE_SECONDS + 1)
        assert (await client.get("/")).status_code == 303
        clock.now = T0
        assert (await client.get("/")).status_code == 200
        set_password(db_path, "another long password")
        await client.app.state.auth.load(client.app.state.collection.read_setting)
        assert (await client.get("/")).status_code == 303


async def test_login_attempts_are_rate_limited(db_path: Path, website: str) -> None:
    """Five wrong guesses, then 429 with Retry-After, even for the right password; other clients are unaffected."""
    set_password(db_path)
    async with open_client(app(db_path), peer="198.51.100.7") as client:
        for _ in range(footfall.auth.LOGIN_BURST):
            assert (await login(client, "guess guess guess")).status_code == 403
        blocked = await login(client)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "set-cookie" not in blocked.headers
    async with open_client(app(db_path), peer="198.51.100.8") as other:
        assert (await login(other)).status_code == 303


async def test_cross_site_login_and_logout_are_refused(db_path: Path, website: str) -> None:
    """Forms posted from another site (Fetch Metadata or Origin) are refused: no login CSRF, no forced logout."""
    set_password(db_path)
    async with open_client(app(db_path)) as client:
        cross = await client.post("/login", data={"password": PASSWORD}, headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        origin = await client.post("/login", data={"password": PASSWORD}, headers={"origin": "https://evil.example"})
        assert origin.status_code == 403
        same = await client.post("/login", data={"password": PASSWORD}, headers={"origin": "http://127.0.0.1:8000"})
        assert same.status_code == 303
        logout = await client.post("/logout", headers={"sec-fetch-site": "same-site"})
        assert logout.status_code == 403
        assert (await client.get("/")).status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
async def test_login_never_redirects_off_site(db_path: Path, website: str, target: str) -> None:
    """``next`` must be a path on this server; anything else lands on /."""
    set_password(db_path)
    async with open_client(app(db_path)) as client:
        response = await client.post(
            "/login", data={"password": PASSWORD, "next": target}, headers={"sec-fetch-site": "same-origin"}
        )
        assert response.headers["location"] == "/"


async def test_share_link_shows_one_site_only(db_path: Path, website: str) -> None:
    """`footfall site share` prints a link that shows its own site without login, and never another; --revoke ends it."""
    other = add_website(db_path, "other")
    set_password(db_path)
    result = CliRunner().invoke(
        footfall.cli.cli, ["site", "share", website, "--db", str(db_path), "--base-url", "https://stats.example"]
    )
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    token = re.fullmatch(r"https://stats\.example/share/([A-Za-z0-9_-]{43})", url).group(1)  # type: ignore[union-attr]
    again = CliRunner().invoke(footfall.cli.cli, ["site", "share", website, "--db", str(db_path)])
    assert again.output.strip().endswith(token)  # the same link until revoked
    async with open_client(app(db_path), peer="198.51.100.7") as client:
        page = await client.get(f"/share/{token}")
        assert page.status_code == 200 and "<h1>test</h1>" in page.text
        sneaky = await client.get(f"/share/{token}", params={"website": other})
        assert sneaky.status_code == 400
        body = (await client.get("/api/summary", params={"share": token})).json()
        assert body["website"]["id"] == website
        assert (await client.get("/api/summary", params={"share": token, "website": other})).status_code == 400
        assert (await client.get("/")).status_code == 303  # the link opens nothing else
        assert (await client.get("/share/" + "x" * 43)).status_code == 404
        assert_api_error(await client.get("/api/summary", params={"share": "nope"}), 404, "not-found")
    revoked = CliRunner().invoke(footfall.cli.cli, ["site", "share", website, "--revoke", "--db", str(db_path)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    async with open_client(app(db_path), peer="198.51.100.7") as client:
        assert (await client.get(f"/share/{token}")).status_code == 404


async def test_security_headers_on_every_page(db_path: Path, website: str) -> None:
    """CSP without script, no framing, no Referer leaks, no caching: on the page, login, messages and redirects."""
    set_password(db_path)
    async with open_client(app(db_path)) as client:
        responses = [await client.get("/login"), await client.get("/"), await login(client, "wrong password!")]
        await login(client)
        responses += [await client.get("/"), await client.get("/?period=nonsense")]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
    assert responses[-1].status_code == 400 and "period must be one of" in responses[-1].text


async def test_password_hash_setting_overrides_the_database(db_path: Path, website: str) -> None:
    """FOOTFALL_PASSWORD_HASH (--password-hash) is the password when given."""
    hashed = footfall.auth.hash_password("from the environment")
    async with open_client(app(db_path, password_hash=hashed), peer="198.51.100.7") as client:
        assert (await login(client, "from the environment")).status_code == 303
        assert (await login(client, PASSWORD)).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        '/login?next=/"><script>alert(1)</script>',
        "/?start=<script>alert(2)</script>&end=x",
        "/?period=<img src=x onerror=alert(3)>",
        "/?website=<svg/onload=alert(4)>",
        '/?page="><script>alert(5)</script>',
    ],
)
async def test_reflected_input_is_escaped(db_path: Path, website: str, path: str) -> None:
    """Whatever a URL carries comes back escaped, on the login form, error pages and the page itself."""
    set_password(db_path)
    async with open_client(app(db_path)) as client:
        if not path.startswith("/login"):
            await login(client)
        response = await client.get(path)
    assert response.status_code in (200, 400), response.text
    body = response.text.lower()
    assert "<script>alert" not in body and "<img src=x" not in body and "<svg/onload" not in body
    if "alert(" in body:  # reflected: then only as text
        assert "&lt;" in body or "&#34;" in body or "%3c" in body
