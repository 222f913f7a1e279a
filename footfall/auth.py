"""Who may read the numbers: the page's password (scrypt), login cookies, the login limiter and share tokens.

Owns: password hashing and checking, cookie issue and check, same-origin and local-browser tests, PageAuth (the running
state). Imports collector only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from litestar import Request

from collector import CLIENT_IP_HEADERS, DAY_SECONDS, RateLimiter, normalize_ip, parse_password_hash

# The page is private by default. With no password set it answers only browsers on this machine (loopback peer, no
# forwarding header: a reverse proxy on the same host always adds one). A password is stored as a salted scrypt hash; a
# login sets a signed, HttpOnly, SameSite=Strict cookie that expires after 30 days and dies with a password change. Login
# and logout refuse cross-site requests (Sec-Fetch-Site, else Origin), and login attempts are rate-limited per client.

#: scrypt cost: ~50 ms and 16 MiB per check. Stored with each hash, so it can be raised without breaking old ones.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


#: Shortest password `footfall password` accepts.
MIN_PASSWORD_CHARS = 10


#: Name and lifetime of the login cookie (seconds).
SESSION_COOKIE = "footfall_session"


SESSION_MAX_AGE_SECONDS = 30 * DAY_SECONDS


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


def issue_session_cookie(key: bytes, password_hash: str, now: float) -> str:
    """A login cookie value: its expiry and an HMAC over it and the current password hash."""
    expires = int(now) + SESSION_MAX_AGE_SECONDS
    mac = hmac.new(key, f"{expires}|{password_hash}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def read_session_cookie(value: str | None, key: bytes, password_hash: str, now: float) -> bool:
    """Whether a login cookie is genuine, unexpired and made under the current password."""
    if not value or not password_hash:
        return False
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or int(expires) < now:
        return False
    wanted = hmac.new(key, f"{expires}|{password_hash}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, wanted)


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


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no //host or scheme tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or any(c < " " for c in target):
        return "/"
    return target


def new_share_token() -> str:
    """An unguessable share-link token (256 random bits)."""
    return secrets.token_urlsafe(32)


class PageAuth:
    """Who may read the page: the password hash in force, the cookie key, and the login limiter."""

    def __init__(self, configured_hash: str, ipv6_prefix: int = 64) -> None:
        #: --password-hash / FOOTFALL_PASSWORD_HASH; when set it overrides the hash `footfall password` stores.
        self.configured_hash = configured_hash
        self.password_hash = configured_hash
        self.cookie_key = b""
        #: Per client (IPv6: per --ipv6-prefix network); swept by upkeep, and bounded in between.
        self.login_limiter = RateLimiter(1 / LOGIN_REFILL_SECONDS, LOGIN_BURST, ipv6_prefix, LOGIN_LIMITER_MAX_CLIENTS)
        self._checks = asyncio.Semaphore(2)  # scrypt costs 16 MiB and ~50 ms: never many at once

    def start(self, install_secret: str) -> None:
        """Derive the cookie key from the install secret."""
        self.cookie_key = hmac.new(bytes.fromhex(install_secret), b"footfall summary session", hashlib.sha256).digest()

    async def load(self, read_setting: Callable[[str], Awaitable[str | None]]) -> None:
        """Pick up the stored hash (``footfall password`` may run while we serve), unless one is configured."""
        if not self.configured_hash:
            self.password_hash = await read_setting("password_hash") or ""

    async def check_password(self, password: str) -> bool:
        """Whether ``password`` is the page's (scrypt in a worker thread, two checks at most at a time)."""
        async with self._checks:
            return await asyncio.to_thread(verify_password, password, self.password_hash)
