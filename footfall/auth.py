"""Who may read the numbers: the page's password (scrypt), login sessions, API keys, the login limiter and share tokens.

Owns: password hashing and the one password check every login path runs, server-side login sessions (the page's cookie
and Umami API tokens) and API keys (only their SHA-256 is stored), same-origin, HTTPS and local-browser tests, PageAuth
(the running state). Imports collector only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from litestar import Request

from collector import (
    CLIENT_IP_HEADERS,
    DAY_SECONDS,
    ClientPolicy,
    Collection,
    IPAddress,
    RateLimiter,
    in_any,
    normalize_ip,
    parse_password_hash,
    transaction,
    unavailable,
)

# The page is private by default. With no password set it answers only browsers on this machine (loopback peer, no
# forwarding header: a reverse proxy on the same host always adds one). A password is stored as a salted scrypt hash. A
# login (the page's form, or POST /api/auth/login) makes a server-side session: a random token goes to the client (an
# HttpOnly, SameSite=Strict cookie, or a Bearer token), and the database keeps only its SHA-256, when it was made and when
# it ends. Logout deletes the row, `footfall password` deletes them all, and a session made under another password hash
# is void; so a copy of the database (install secret and password hash included) mints nothing. Login and logout refuse
# cross-site requests (Sec-Fetch-Site, else Origin), and login attempts are rate-limited per client.

#: scrypt cost: ~50 ms and 16 MiB per check. Stored with each hash, so it can be raised without breaking old ones.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


#: Shortest password `footfall password` accepts.
MIN_PASSWORD_CHARS = 10


#: Name of the page's login cookie (its value is a session token).
SESSION_COOKIE = "footfall_session"


#: How long a login lasts by default (the login_max_days setting), in seconds.
SESSION_MAX_AGE_SECONDS = 30 * DAY_SECONDS


#: A session's or key's last use is written at most this often, in seconds (a read per request, a write per minute).
LAST_USED_SECONDS = 60


#: Longest token, key or cookie value looked up; anything longer is refused unread.
MAX_TOKEN_CHARS = 200


#: What every API key starts with, so a leaked one is recognisable (secret scanners, logs).
API_KEY_PREFIX = "ffk_"


#: Longest API key name.
MAX_KEY_NAME_CHARS = 50


#: Login attempts per client: a burst of this many, then one more every LOGIN_REFILL_SECONDS.
LOGIN_BURST = 5


LOGIN_REFILL_SECONDS = 12


#: Clients the login limiter tracks at most between sweeps (a client is forgotten once its burst is back, a minute).
LOGIN_LIMITER_MAX_CLIENTS = 10_000


#: Headers a reverse proxy or CDN adds (and any X-Forwarded-*): with one of them a loopback peer is not the local user.
_PROXY_HEADERS = frozenset((*CLIENT_IP_HEADERS, "via", "cdn-loop", "cf-ray", "cf-visitor", "x-forwarded-host"))


#: Host names that are this machine whatever DNS says (a rebinding attack names its own domain, which is not on the list).
_LOOPBACK_NAMES = frozenset({"localhost"})


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, as 'scrypt$N$r$p$salt$hash' (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32)
    encode = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash (constant-time comparison)."""
    try:
        n, r, p, salt, digest = parse_password_hash(stored)
    except (ValueError, TypeError):
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 << 20, dklen=len(digest))
    return hmac.compare_digest(candidate, digest)


def token_digest(token: str) -> str:
    """What the database keeps of a session token or API key: its SHA-256, hex (the tokens have 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def password_tag(password_hash: str) -> str:
    """A short fingerprint of the password hash in force; a session made under another one is void."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def new_share_token() -> str:
    """An unguessable share-link token (256 random bits)."""
    return secrets.token_urlsafe(32)


def _host_name(host: str) -> str:
    """The name in a Host header, without its port and brackets ('[::1]:8000' → '::1', 'LocalHost:80' → 'localhost')."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0] if host.count(":") == 1 else host


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine: localhost or a loopback address, any port."""
    name = _host_name(host)
    if name in _LOOPBACK_NAMES:
        return True
    address = normalize_ip(name)
    return address is not None and address.is_loopback


def is_local_browser(request: Request) -> bool:
    """A request from this very machine, for this very machine, not relayed by a proxy (the only ones served before a
    password is set): a loopback peer, a loopback Host (so DNS rebinding to 127.0.0.1 is refused), and no forwarding
    header at all (a proxy on this host always adds one; without one, e.g. nginx with no proxy_set_header, the Host
    header still names the public site)."""
    client = request.scope.get("client")
    address = normalize_ip(client[0] if client else None)
    if address is None or not address.is_loopback or not is_loopback_host(request.headers.get("host", "")):
        return False
    return not any(name in _PROXY_HEADERS or name.startswith("x-forwarded-") for name in request.headers.keys())


def _origin_host(origin: str) -> str:
    parts = urlsplit(origin)
    return parts.netloc.lower() if parts.scheme in ("http", "https") else ""


def is_same_origin(request: Request) -> bool:
    """Whether a form post comes from footfall's own pages: its Origin names this host (Host, or the X-Forwarded-Host a
    proxy set) and Fetch Metadata, when sent, says same-origin. A request with neither is not from a browser (curl,
    scripts) and passes; browser sessions are protected by SameSite=Strict as well."""
    origin = request.headers.get("origin")
    if origin is not None:
        hosts = {request.headers.get("host", "").lower(), request.headers.get("x-forwarded-host", "").lower()} - {""}
        if origin == "null" or _origin_host(origin) not in hosts:
            return False
    site = request.headers.get("sec-fetch-site")
    return site is None or site in ("same-origin", "none")


def is_https(request: Request, policy: ClientPolicy) -> bool:
    """Whether the request came over HTTPS: directly, or by a trusted proxy's X-Forwarded-Proto (anyone else's is ignored)."""
    if request.url.scheme == "https":
        return True
    client = request.scope.get("client")
    if not in_any(normalize_ip(client[0] if client else None), policy.trusted):
        return False
    return request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"


def safe_next(target: object) -> str:
    """Where to go after logging in: a path on this server only (no //host or scheme tricks; a form's file is no path)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(c < " " for c in target):
        return "/"
    return target


###############################################################################################################################
# API keys (the CLI's side: plain functions of a connection)
###############################################################################################################################
class ApiKeyInfo(NamedTuple):
    """An API key as `footfall api-key list` shows it (the key itself is never stored)."""

    name: str
    created_at: int
    last_used_at: int | None


def check_key_name(name: str) -> str:
    """``name`` if it can name an API key (1 to 50 visible characters); ValueError saying why otherwise."""
    if not 1 <= len(name) <= MAX_KEY_NAME_CHARS or not name.isprintable() or name != name.strip():
        raise ValueError(f"NAME must be 1 to {MAX_KEY_NAME_CHARS} visible characters without spaces around it")
    return name


def create_api_key(conn: sqlite3.Connection, name: str, now: float) -> str:
    """Store a new API key called ``name`` (hashed) and return the key; ValueError if the name is taken or unusable."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction(conn):
            conn.execute(
                "INSERT INTO api_key (name, key_hash, created_at) VALUES (?, ?, ?)",
                (check_key_name(name), token_digest(key), int(now)),
            )
    except sqlite3.IntegrityError:
        raise ValueError(f"an API key named {name!r} exists; revoke it first or pick another name") from None
    return key


def list_api_keys(conn: sqlite3.Connection) -> list[ApiKeyInfo]:
    """Every API key, by name."""
    rows = conn.execute("SELECT name, created_at, last_used_at FROM api_key ORDER BY name").fetchall()
    return [ApiKeyInfo(*row) for row in rows]


def revoke_api_key(conn: sqlite3.Connection, name: str) -> bool:
    """Delete the API key called ``name``; whether there was one. It stops working with the next request."""
    with transaction(conn):
        return conn.execute("DELETE FROM api_key WHERE name = ?", (name,)).rowcount > 0


def revoke_sessions(conn: sqlite3.Connection) -> int:
    """Delete every login session (page cookies and API tokens), inside the caller's transaction; how many there were."""
    return conn.execute("DELETE FROM login_session").rowcount


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``: the header's second word, as Umami reads it (scheme not checked)."""
    words = headers.get("authorization", "").split(" ")
    return words[1] if len(words) > 1 and words[1] else None


###############################################################################################################################
# The running state
###############################################################################################################################
def auth_of(request: Request) -> PageAuth:
    """The PageAuth a request is served by (the app keeps it on ``app.state``)."""
    return request.app.state.auth  # type: ignore[no-any-return]


class Login(NamedTuple):
    """Who an API request is: a login session ('session', its token's digest) or an API key ('api-key', its name)."""

    kind: str
    digest: str
    name: str = ""


class PageAuth:
    """Who may read the numbers: the password hash in force, login sessions and API keys (in the database), the limiter."""

    def __init__(self, configured_hash: str, max_age_seconds: int = SESSION_MAX_AGE_SECONDS, ipv6_prefix: int = 64) -> None:
        #: --password-hash / FOOTFALL_PASSWORD_HASH; when set it overrides the hash `footfall password` stores.
        self.configured_hash = configured_hash
        self.password_hash = configured_hash
        #: How long a login lasts (--login-max-days), in seconds; checked against each session's stored times.
        self.max_age_seconds = max_age_seconds
        #: Per client (IPv6: per --ipv6-prefix network); swept by upkeep, and bounded in between.
        self.login_limiter = RateLimiter(1 / LOGIN_REFILL_SECONDS, LOGIN_BURST, ipv6_prefix, LOGIN_LIMITER_MAX_CLIENTS)
        self._checks = asyncio.Semaphore(2)  # scrypt costs 16 MiB and ~50 ms: never many at once
        self._collection: Collection | None = None

    def start(self, collection: Collection) -> None:
        """Keep sessions and keys through the collection's read connection and writer (it is started already)."""
        self._collection = collection

    async def load(self, read_setting: Callable[[str], Awaitable[str | None]]) -> None:
        """Pick up the stored hash (``footfall password`` may run while we serve), unless one is configured."""
        if not self.configured_hash:
            self.password_hash = await read_setting("password_hash") or ""

    async def check_password(self, password: object) -> bool:
        """Whether ``password`` is the page's: the one check every login path runs (urlencoded or multipart form, API).

        Something that is not text (a file in a multipart form) is checked as the empty password, so every attempt costs
        the same scrypt run. Two checks at most run at a time, in worker threads.
        """
        text = password if isinstance(password, str) else ""
        async with self._checks:
            return await asyncio.to_thread(verify_password, text, self.password_hash)

    async def log_in(
        self, password: object, address: IPAddress | None, now: float, kind: str, username_ok: bool = True
    ) -> str | None:
        """One login attempt: the limiter (429 beyond it), the password check, then a new session of ``kind``.

        Returns the session's token, or None when the password (or, for the API, the username) is wrong.
        """
        self.login_limiter.check(address, now)
        await self.load(self._store().read_setting)  # the password set a moment ago counts at once
        if not await self.check_password(password) or not username_ok:
            return None
        return await self.open_session(kind, now)

    async def open_session(self, kind: str, now: float) -> str:
        """Record a new login session of ``kind`` ('page' or 'api') and return its token; drop ended ones meanwhile."""
        token = secrets.token_urlsafe(32)
        tag, at = password_tag(self.password_hash), int(now)
        await self._write(
            [
                ("DELETE FROM login_session WHERE expires_at <= ? OR password_tag != ?", (at, tag)),
                (
                    "INSERT INTO login_session (token_hash, kind, password_tag, created_at, expires_at, last_used_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (token_digest(token), kind, tag, at, at + self.max_age_seconds, at),
                ),
            ]
        )
        return token

    async def session(self, token: str | None, kind: str, now: float) -> Login | None:
        """The live session ``token`` opens: of ``kind``, unexpired by its stored times, made under the password in force."""
        if not token or len(token) > MAX_TOKEN_CHARS or not self.password_hash:
            return None
        digest = token_digest(token)
        row = await self._read(
            "SELECT created_at, expires_at, last_used_at, password_tag FROM login_session WHERE token_hash = ? AND kind = ?",
            (digest, kind),
        )
        if row is None:
            return None
        created, expires, used, tag = row
        if now >= min(expires, created + self.max_age_seconds) or tag != password_tag(self.password_hash):
            return None
        if now - used >= LAST_USED_SECONDS:
            await self._write([("UPDATE login_session SET last_used_at = ? WHERE token_hash = ?", (int(now), digest))])
        return Login("session", digest)

    async def close_session(self, token: str | None) -> None:
        """Log out: delete the session ``token`` opens (its cookie or token is refused from now on)."""
        if token and len(token) <= MAX_TOKEN_CHARS:
            await self._write([("DELETE FROM login_session WHERE token_hash = ?", (token_digest(token),))])

    async def api_key(self, key: str | None, now: float) -> Login | None:
        """The API key ``key`` is, if it exists."""
        if not key or len(key) > MAX_TOKEN_CHARS:
            return None
        digest = token_digest(key)
        row = await self._read("SELECT name, last_used_at FROM api_key WHERE key_hash = ?", (digest,))
        if row is None:
            return None
        name, used = row
        if used is None or now - used >= LAST_USED_SECONDS:
            await self._write([("UPDATE api_key SET last_used_at = ? WHERE key_hash = ?", (int(now), digest))])
        return Login("api-key", digest, name)

    async def bearer(self, headers: Mapping[str, str], now: float) -> Login | None:
        """Who a script's request is: an API login token or an API key in ``Authorization: Bearer …``, or an API key in
        ``x-umami-api-key``. A browser never sends these headers by itself (unlike a cookie), so no other page can borrow them.
        """
        token = bearer_token(headers)
        if token is not None and (found := await self.session(token, "api", now) or await self.api_key(token, now)):
            return found
        key = headers.get("x-umami-api-key")
        return await self.api_key(key.strip(), now) if key else None

    def _store(self) -> Collection:
        if self._collection is None or self._collection.reader is None:
            raise unavailable("footfall is starting or shutting down; try again shortly.")
        return self._collection

    async def _read(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        reader = self._store().reader
        assert reader is not None
        async with reader.execute(sql, params) as cur:
            return await cur.fetchone()  # type: ignore[no-any-return]

    async def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            await self._store().execute(statements)
        except sqlite3.Error as exc:
            raise unavailable(f"The login cannot be recorded right now ({exc}); try again shortly.") from None
