"""footfall's collector: how an HTTP request to Umami's collection API becomes a row in one SQLite file.

Run it with ``footfall serve``: it listens on 127.0.0.1:8000, creates ``footfall.db`` and a website called ``default``
on first start, and prints the ``<script>`` tag to paste. Any Umami client (the browser tracker, ``@umami/node``, the
``umami-analytics`` PyPI client, ``curl``) can send to ``POST /api/send`` and ``POST /api/batch``.

This module is the ground floor: it imports nothing from the ``footfall`` package, which holds everything that is not
collection (geo, rollups, the summary page, operations, the CLI) and wires this module's routes into the app. Every
event lands in a WAL-mode SQLite file whose layout, ``schema.sql``, is a public contract; no IP address and no full
user-agent string is ever written to it.

Sections (search for the banner titles), in the order a request flows:
    Constants and defaults
    Configuration
    Wire types
    Errors
    Data path
    Client and location
    Sessions and visits
    Storage
    Collection state
    Collection routes
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import sqlite3
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite
import msgspec
from litestar import Request, Response, get, post

__version__ = "0.1.0"

log = logging.getLogger("footfall")

###############################################################################################################################
# Constants and defaults
###############################################################################################################################
#: Units of time, in seconds.
HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS

#: Largest /api/send body, in bytes (a tracker hit is ~300 bytes; 64 KiB leaves room for generous ``data``).
MAX_SEND_BODY_BYTES = 64 * 1024

#: Largest /api/batch body, in bytes.
MAX_BATCH_BODY_BYTES = 1024 * 1024

#: Most items in one /api/batch request.
MAX_BATCH_ITEMS = 500

# Column limits, mirrored as CHECKs in schema.sql. Longer values are truncated (Umami answers 500 there).
MAX_URL_CHARS = 500  #: url_path, url_query, referrer_*, page_title

MAX_EVENT_NAME_CHARS = 50

MAX_TAG_CHARS = 50

MAX_HOSTNAME_CHARS = 100

MAX_LANGUAGE_CHARS = 35

MAX_SCREEN_CHARS = 11

MAX_CAMPAIGN_CHARS = 255  #: utm_* and click ids

MAX_DISTINCT_ID_CHARS = 50

MAX_AGENT_FIELD_CHARS = 20  #: browser, os, device

# Bounds on ``data`` (Umami's tracker documents them; Umami's server does not enforce them).
MAX_DATA_KEYS = 50  #: flattened keys per event or identify

MAX_DATA_DEPTH = 5  #: nesting levels of objects

MAX_DATA_STRING_CHARS = 500  #: longer string values are truncated

MAX_DATA_KEY_CHARS = 500  #: a longer dotted key is refused

#: A timestamp further than this in the future is refused, in seconds.
MAX_FUTURE_SECONDS = HOUR_SECONDS

#: A page's reported visible time (payload.duration, from footfall's tracker) is capped at this, in milliseconds.
MAX_DURATION_MS = DAY_SECONDS * 1000

#: Web vitals in milliseconds must lie in [0, MAX_VITAL_MS]; CLS in [0, MAX_CLS] (Umami's bounds).
MAX_VITAL_MS = 60_000

MAX_CLS = 100

#: An event this much older than the start of its session's visit still joins it (clock skew, batch order), in seconds.
VISIT_BACKWARD_SECONDS = 5 * 60

#: No visit spans more than this, in seconds: an event that would stretch one further starts a new visit.
MAX_VISIT_SECONDS = DAY_SECONDS

#: A previous period's salt is kept this long after its period ends, in seconds, for late batches.
SALT_GRACE_SECONDS = HOUR_SECONDS

#: A cache token older than this is stale and ignored, in seconds.
TOKEN_MAX_AGE_SECONDS = DAY_SECONDS

#: Bytes of user-agent strings whose verdict (browser, OS, device, bot) is kept in memory: ~10,000 typical agents; a hit
#: costs ~0.2 µs, a miss ~30 µs. Counted in bytes, so a flood of 8 KB user agents cannot make it hold 4,096 of them.
AGENT_MEMO_BYTES = 2 * 1024 * 1024

#: Bytes of (website, client, agent, salt, id) inputs whose session id is kept in memory (two hashes saved on a repeat).
SESSION_MEMO_BYTES = 2 * 1024 * 1024

#: Bytes of URL and referrer strings whose split and derived fields are kept in memory; longer ones are never kept.
URL_MEMO_BYTES = 1024 * 1024

MAX_MEMO_URL_CHARS = 2048

#: Sessions whose visit state is kept in memory at most; the oldest are forgotten first.
MAX_TRACKED_SESSIONS = 200_000

#: Unknown website ids remembered (for a second each) so floods of random ids stay cheap.
MAX_MISSING_WEBSITES = 10_000

#: Key lookups (session and visit UUID → integer key) the writer keeps in memory, per table.
MAX_CACHED_KEYS = 100_000

#: Events one transaction commits at most (a group commit of 2,000 small rows takes ~20 ms).
WRITE_BATCH_MAX_EVENTS = 2000

#: Attempts at one group commit when the database is busy, full or read-only, before its requests get 503.
WRITE_ATTEMPTS = 3

#: First back-off between attempts, in seconds; doubles each time.
WRITE_BACKOFF_SECONDS = 0.1

#: The writer wakes at least this often to flush bot counts, in seconds.
WRITER_IDLE_SECONDS = 1.0

#: Seconds a client is asked to wait (Retry-After) when footfall is overloaded or the database is unavailable.
RETRY_AFTER_SECONDS = 1

#: Size the WAL file is truncated back to once checkpointed, in bytes (it grows past it only while a reader holds it).
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024

#: The writer looks at the WAL file's size at most this often, in seconds (see EventWriter._restart_long_wal).
WAL_CHECK_SECONDS = 1.0

#: How long a RESTART checkpoint may wait for readers of the old WAL to finish, in milliseconds (the writer waits too).
WAL_RESTART_WAIT_MS = 1000

#: Longest wait between RESTART attempts that readers kept failing, in seconds (the wait doubles from WAL_CHECK_SECONDS).
WAL_MAX_PAUSE_SECONDS = 60.0

#: Current schema version, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

#: UUID namespace of Umami's ``uuid()`` helper (the DNS namespace), so session ids match Umami's formula.
UMAMI_UUID_NAMESPACE = uuid.NAMESPACE_DNS

EVENT_PAGEVIEW = 1

EVENT_CUSTOM = 2

EVENT_PERFORMANCE = 5

DATA_STRING = 1

DATA_NUMBER = 2

DATA_BOOLEAN = 3

DATA_DATE = 4

DATA_ARRAY = 5


def asset_path(name: str) -> Path:
    """A file footfall ships: in ``footfall_assets/`` beside this module when installed; at the top or in assets/ of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "footfall_assets" / name, here / name, here / "assets" / name, here / "systemd" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"footfall's {name} is missing from {here}; reinstall footfall")


###############################################################################################################################
# Configuration
###############################################################################################################################
class Setting(NamedTuple):
    """One setting: its name, default and help text. The CLI options and the README table are made from these."""

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()


#: Every setting footfall has. Each is a ``footfall serve --NAME`` option and a ``FOOTFALL_NAME`` environment variable.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("db", "footfall.db", "Path of the SQLite database file; created with its schema if missing."),
    Setting("host", "127.0.0.1", "Address to listen on. Put a reverse proxy in front to serve the internet."),
    Setting("port", 8000, "TCP port to listen on."),
    Setting("max_body_bytes", MAX_SEND_BODY_BYTES, "Largest /api/send body in bytes; a larger one gets 413."),
    Setting("batch_max_items", MAX_BATCH_ITEMS, "Most items in one /api/batch request; more gets 413."),
    Setting("batch_max_bytes", MAX_BATCH_BODY_BYTES, "Largest /api/batch body in bytes; a larger one gets 413."),
    Setting("salt_rotation", "month", "How often the random session salt changes.", ("day", "week", "month")),
    Setting("visit_timeout", 30, "Minutes without activity after which a session's next event starts a new visit."),
    Setting("bot_check", True, 'Refuse bot user agents: answer {"beep":"boop"} and only count them.'),
    Setting("trusted_proxies", "127.0.0.1/32,::1/128",
            "Peers (comma list of IPs/CIDRs) whose forwarding headers are believed; skipped when walking X-Forwarded-For."),
    Setting("client_ip_header", "",
            "Read the client IP only from this header, e.g. cf-connecting-ip behind Cloudflare (as Umami's CLIENT_IP_HEADER); "
            "empty: X-Forwarded-For walked from the right past trusted proxies, else X-Real-IP."),
    Setting("cdn_geo", "off",
            "Believe this CDN's location headers from trusted proxies (cloudflare: CF-IPCountry …); off: locate by address.",
            ("off", "cloudflare", "vercel", "cloudfront", "edgeone")),
    Setting("allow_payload_ip", False, "Honour payload.ip from any sender, not only from trusted proxies."),
    Setting("ignore_ip", "",
            "IPs/CIDRs whose hits get 403 and are not stored (as Umami's IGNORE_IP); an IPv6 address covers its --ipv6-prefix."),
    Setting("ipv6_prefix", 64, "IPv6 network bits that name one client for --rate-limit, the login limit and --ignore-ip."),
    Setting("geoip_db", "", "A MaxMind-format City or Country database (.mmdb) for country, region and city."),
    Setting("embedded_geo", True, "Locate countries with the data shipped in the package (no download, ~6 MB)."),
    Setting("remove_trailing_slash", False, "Store /about/ as /about (as Umami's REMOVE_TRAILING_SLASH)."),
    Setting("rate_limit", "",
            "Requests one client may make to the collection endpoints, e.g. 4/s or 120/m (429 beyond it); empty: no limit."),
    Setting("tracker_path", "", "Also serve the tracker script at this path (ad blockers block /script.js), e.g. /stats.js."),
    Setting("collect_path", "", "Also accept hits at this path, answering as /api/send; the served tracker posts there."),
    Setting("timezone", "UTC",
            "Time zone of the summary page: its days, hours and chart labels (an IANA name, e.g. Europe/Berlin)."),
    Setting("password_hash", "", "The page's password hash (`footfall password --print-hash`); overrides the stored one."),
    Setting("summary_timeout", 20, "Seconds a summary may compute; a slower one answers 503 (choose a shorter period)."),
    Setting("body_timeout", 10, "Seconds a client may take to send a request body; a slower one gets 408 and is dropped."),
    Setting("header_timeout", 10, "Seconds a connection may take to send a request's headers before it is closed."),
    Setting("max_connections", 1000, "Connections and requests in flight at once; more get 503 (keep under LimitNOFILE)."),
    Setting("login_max_days", 30, "Days a login (cookie or API token) lasts; logout and `footfall password` end it sooner."),
    Setting("api_username", "admin", "The username POST /api/auth/login takes, with the page's password (Umami's is admin)."),
    Setting("write_queue_max", 20_000, "Events that may wait to be written; beyond that requests get 503."),
    Setting("write_queue_max_bytes", 4 * 1024 * 1024,
            "Bytes of request bodies whose events may wait to be written (their memory is ~5x that); beyond that requests get 503."),
    Setting("busy_timeout_ms", 5000, "How long a write waits for a lock held by another program before it gets 503."),
    Setting("wal_autocheckpoint", 1000,
            "Checkpoint the WAL into the database, beside the writer, once this many pages wait in it (SQLite's default); "
            "0 leaves checkpoints to Litestream, as it advises for busy servers (README, When one machine is not enough)."),
    Setting("log_level", "info", "Log verbosity.", ("debug", "info", "warning", "error")),
)
# fmt: on


@dataclasses.dataclass(frozen=True)
class Config:
    """footfall's settings; see ``SETTINGS`` for what each means."""

    db: str = "footfall.db"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = MAX_SEND_BODY_BYTES
    batch_max_items: int = MAX_BATCH_ITEMS
    batch_max_bytes: int = MAX_BATCH_BODY_BYTES
    salt_rotation: str = "month"
    visit_timeout: int = 30
    bot_check: bool = True
    trusted_proxies: str = "127.0.0.1/32,::1/128"
    client_ip_header: str = ""
    cdn_geo: str = "off"
    allow_payload_ip: bool = False
    ignore_ip: str = ""
    ipv6_prefix: int = 64
    geoip_db: str = ""
    embedded_geo: bool = True
    remove_trailing_slash: bool = False
    rate_limit: str = ""
    tracker_path: str = ""
    collect_path: str = ""
    timezone: str = "UTC"
    password_hash: str = ""
    summary_timeout: int = 20
    body_timeout: int = 10
    header_timeout: int = 10
    max_connections: int = 1000
    login_max_days: int = 30
    api_username: str = "admin"
    write_queue_max: int = 20_000
    write_queue_max_bytes: int = 4 * 1024 * 1024
    busy_timeout_ms: int = 5000
    wal_autocheckpoint: int = 1000
    log_level: str = "info"


class ConfigError(ValueError):
    """A setting has a value footfall cannot use; the message says which and how to fix it."""


_TRUE_WORDS = {"1", "true", "yes", "on"}

_FALSE_WORDS = {"0", "false", "no", "off"}

#: Whole-number settings for which 0 means something (port 0: any free port; wal_autocheckpoint 0: no checkpoints).
_ZERO_ALLOWED = frozenset({"port", "wal_autocheckpoint"})


def _convert_setting(setting: Setting, raw: Any) -> Any:
    default = setting.default
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise ConfigError(f"{setting.name} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{setting.name} must be a whole number, not {raw!r}") from None
        if value < 1 and setting.name not in _ZERO_ALLOWED or value < 0:
            raise ConfigError(f"{setting.name} must be positive, not {raw!r}")
        return value
    value = str(raw)
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{setting.name} must be one of {', '.join(setting.choices)}, not {raw!r}")
    return value


#: Paths footfall serves itself (tracker_path and collect_path may not take them; /api/, /share/ and /static/ are its own).
RESERVED_PATHS = frozenset({"/", "/login", "/logout", "/script.js"})


def load_zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; ConfigError if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone must be an IANA time zone name like Europe/Berlin or UTC, not {name!r}") from None


def env_name(setting: Setting) -> str:
    """The environment variable that sets ``setting``, e.g. ``FOOTFALL_DB``."""
    return "FOOTFALL_" + setting.name.upper()


def parse_password_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt, digest = stored.strip().split("$")
    if scheme != "scrypt" or not (2 <= int(n) <= 2**20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
        raise ValueError(stored)
    return int(n), int(r), int(p), base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def check_password_hash(stored: str) -> str:
    """``stored`` if it is a hash footfall made; ConfigError otherwise (for FOOTFALL_PASSWORD_HASH)."""
    try:
        parse_password_hash(stored)
    except (ValueError, TypeError):
        raise ConfigError("password_hash must be a hash printed by `footfall password --print-hash`") from None
    return stored.strip()


def load_config(options: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Build a Config from command-line options (None = not given), then ``FOOTFALL_*`` variables, then defaults."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = options.get(setting.name)
        if raw is None:
            raw = environ.get(env_name(setting))
        values[setting.name] = setting.default if raw is None else _convert_setting(setting, raw)
    config = Config(**values)
    if config.port > 65535:
        raise ConfigError(f"port must be at most 65535, not {config.port}")
    for name in ("tracker_path", "collect_path"):
        path = getattr(config, name)
        if path and not re.fullmatch(r"/[A-Za-z0-9._~/-]{1,100}", path):
            raise ConfigError(f"{name} must be a path like /stats.js (letters, digits, . _ ~ - /), not {path!r}")
    for path in (config.collect_path, config.tracker_path):
        if path and (path in RESERVED_PATHS or path.startswith(("/api/", "/share/", "/static/"))):
            raise ConfigError("tracker_path and collect_path must differ from footfall's own routes")
    load_zone(config.timezone)
    if config.password_hash:
        check_password_hash(config.password_hash)
    if config.ipv6_prefix > 128:
        raise ConfigError(f"ipv6_prefix must be at most 128 bits, not {config.ipv6_prefix}")
    parse_networks(config.trusted_proxies, "trusted_proxies")
    parse_networks(config.ignore_ip, "ignore_ip")
    parse_rate(config.rate_limit)
    if config.write_queue_max < config.batch_max_items:
        raise ConfigError("write_queue_max must be at least batch_max_items, or a full batch could never be written")
    if config.write_queue_max_bytes < max(config.batch_max_bytes, config.max_body_bytes):
        raise ConfigError(
            "write_queue_max_bytes must be at least batch_max_bytes and max_body_bytes, or a full body could never be written"
        )
    return config


###############################################################################################################################
# Wire types
###############################################################################################################################
class Payload(msgspec.Struct):
    """The ``payload`` of an /api/send body; every field Umami v3.1 accepts. Unknown fields are ignored."""

    website: str | None = None
    link: str | None = None
    pixel: str | None = None
    hostname: str | None = None
    screen: str | None = None
    language: str | None = None
    url: str | None = None
    referrer: str | None = None
    title: str | None = None
    tag: str | None = None
    id: str | None = None
    name: str | None = None
    data: dict[str, Any] | None = None
    timestamp: int | float | str | None = None
    ip: str | None = None
    userAgent: str | None = None  # noqa: N815 (Umami's field name)
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    lcp: float | None = None
    inp: float | None = None
    cls: float | None = None
    fcp: float | None = None
    ttfb: float | None = None
    duration: float | None = None  # footfall's tracker: ms the page was visible (Umami's tracker sends it and Umami drops it)


class SendRequest(msgspec.Struct):
    """An /api/send body, and one item of an /api/batch body."""

    type: Literal["event", "identify", "performance"]
    payload: Payload


class SendResponse(msgspec.Struct):
    """The answer to an accepted hit."""

    cache: str
    sessionId: str  # noqa: N815
    visitId: str  # noqa: N815


class BatchDetail(msgspec.Struct):
    """One failed batch item: its index and the error body /api/send would have answered."""

    index: int
    response: dict[str, Any]


class BatchResponse(msgspec.Struct, omit_defaults=True):
    """The answer to /api/batch; ``cache`` is the first accepted item's token, absent when there is none."""

    size: int
    processed: int
    errors: int
    details: list[BatchDetail]
    cache: str | None = None


class ErrorDetail(msgspec.Struct):
    """What went wrong, in Umami's words."""

    message: str
    code: str
    status: int


class ErrorBody(msgspec.Struct):
    """Every error footfall answers: ``{"error": {"message", "code", "status"}}``."""

    error: ErrorDetail


class BotAnswer(msgspec.Struct):
    """The answer to a bot's hit, which is counted and not stored (as Umami's)."""

    beep: Literal["boop"]


class DataRow(NamedTuple):
    """One flattened key of ``data``: (data_key, data_type, string_value, number_value, date_value)."""

    data_key: str
    data_type: int
    string_value: str | None
    number_value: float | None
    date_value: int | None


class Hit(NamedTuple):
    """A validated hit: the payload's fields checked, bounded and typed, ready to enrich."""

    kind: str
    website_id: str
    created_at: int
    hostname: str | None
    screen: str | None
    language: str | None
    url: ParsedUrl | None
    referrer: ParsedUrl | None
    title: str | None
    tag: str | None
    distinct_id: str | None
    name: str | None
    data: list[DataRow]
    browser: str | None
    os: str | None
    device: str | None
    vitals: tuple[float | None, float | None, float | None, float | None, float | None]  # lcp, inp, cls, fcp, ttfb
    duration: int | None  # ms the page was visible, for performance events


class SessionRow(NamedTuple):
    """A session's first-seen attributes, as stored in the ``session`` table."""

    session_id: str
    website_key: int
    browser: str | None
    os: str | None
    device: str | None
    screen: str | None
    language: str | None
    country: str | None
    region: str | None
    city: str | None
    distinct_id: str | None
    created_at: int


class EventRow(NamedTuple):
    """A ``website_event`` row without its keys (the writer resolves session and visit UUIDs to keys)."""

    created_at: int
    event_type: int
    event_name: str | None
    url_path: str
    url_query: str | None
    referrer_path: str | None
    referrer_query: str | None
    referrer_domain: str | None
    self_referral: int
    page_title: str | None
    hostname: str | None
    tag: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    gclid: str | None
    fbclid: str | None
    msclkid: str | None
    ttclid: str | None
    li_fat_id: str | None
    twclid: str | None
    lcp: float | None
    inp: float | None
    cls: float | None
    fcp: float | None
    ttfb: float | None
    duration: int | None


class Record(NamedTuple):
    """Everything one accepted hit writes: its session, visit, event (None for identify) and data rows, packed (pack_data:
    50 keys as tuples are ~12 KB of small objects a hit, and thousands queued fragment the allocator's arenas for good)."""

    website_id: str
    session: SessionRow
    visit_id: str
    visit_started_at: int
    event: EventRow | None
    event_data: bytes
    session_data: bytes


_DATA_DECODER = msgspec.msgpack.Decoder(list[tuple[str, int, str | None, float | None, int | None]])


def pack_data(rows: list[DataRow]) -> bytes:
    """A hit's data rows as one compact bytes object, for the time they wait to be written (b"" when there are none)."""
    return msgspec.msgpack.encode(rows) if rows else b""


def unpack_data(packed: bytes) -> list[tuple[str, int, str | None, float | None, int | None]]:
    """The data rows pack_data packed, as (data_key, data_type, string_value, number_value, date_value) tuples."""
    return _DATA_DECODER.decode(packed) if packed else []


###############################################################################################################################
# Errors
###############################################################################################################################
class ApiError(Exception):
    """An error answered to the client as Umami's ``{"error": {"message", "code", "status"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"error": {"message": self.message, "code": self.code, "status": self.status}}


def bad_request(message: str) -> ApiError:
    """400: the request is wrong; the message names the field and the problem."""
    return ApiError(400, "bad-request", message)


def forbidden() -> ApiError:
    """403, as Umami answers an ignored IP."""
    return ApiError(403, "forbidden", "Forbidden")


def too_large(message: str) -> ApiError:
    """413: the body or batch is over a configured limit."""
    return ApiError(413, "payload-too-large", message)


def too_many_requests(retry_after: int) -> ApiError:
    """429 with Retry-After: this client is over --rate-limit."""
    return ApiError(429, "too-many-requests", "Too many requests; slow down.", {"Retry-After": str(retry_after)})


def unavailable(message: str) -> ApiError:
    """503 with Retry-After: footfall cannot write right now; the client may send again."""
    return ApiError(503, "service-unavailable", message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


class DatabaseUnavailable(Exception):
    """The database could not take a write (locked, full, read-only) after the retry limit."""


###############################################################################################################################
# Data path
###############################################################################################################################
# request body → decode_send → validate_payload → enrich → derive_session_id / visit → EventWriter.submit → response.
# Each step is a plain function of values, so tests can run any of them alone.


class Memo:
    """``fn(key)`` remembered for recent keys, least recently used forgotten first, bounded by the bytes of its keys.

    ``size(key)`` is what a key holds (its strings' lengths); each entry is charged MEMO_ENTRY_BYTES more for the dict
    slot and the value. Exceptions are not remembered. Not thread-safe: the event loop's thread uses it alone. An
    OrderedDict, not a dict kept in order by re-inserting: a dict's oldest entry is found by skipping the slots freed
    before it, which made a miss cost 3 µs instead of 0.8 once the memo was full (every request of a new-agent storm).
    """

    __slots__ = ("_fn", "_size", "max_bytes", "bytes", "_items")

    def __init__(self, fn: Callable[[Any], Any], max_bytes: int, size: Callable[[Any], int] = len) -> None:
        self._fn = fn
        self._size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: collections.OrderedDict[Any, Any] = collections.OrderedDict()

    def __call__(self, key: Any) -> Any:
        items = self._items
        try:
            value = items[key]
        except KeyError:
            value = self._fn(key)
            self.bytes += self._size(key) + MEMO_ENTRY_BYTES
            while self.bytes > self.max_bytes and items:
                oldest, _ = items.popitem(last=False)
                self.bytes -= self._size(oldest) + MEMO_ENTRY_BYTES
            items[key] = value
            return value
        items.move_to_end(key)  # most recently used last
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


#: What a Memo charges an entry beyond its key's characters: the dict slot, the key and value objects (~200 bytes).
MEMO_ENTRY_BYTES = 200


def text_size(key: tuple[str | None, ...]) -> int:
    """The characters of a tuple of strings (a Memo's size of a composite key), ~60 bytes of object header each."""
    return sum(60 + len(part) for part in key if part)


# RFC 9562 as zod's z.uuid() checks it: version 1-8, variant 10xx; the nil and max UUIDs pass too.
UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff",
    re.IGNORECASE,
)

# Umami's DATETIME_REGEX (src/lib/constants.ts): such strings are stored as dates.
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}(Z|\+[0-9]{2}:[0-9]{2})?)?")

_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})

_FORBIDDEN_HOST_CHARS = frozenset(' <>^|\\%\t\n\r"`{}')

# WHATWG URL parsing removes tabs and newlines anywhere and C0 controls and spaces at the ends.
_URL_STRIP_CHARS = "".join(chr(c) for c in range(0x21))

_URL_DROP = str.maketrans("", "", "\t\n\r")

_RESERVED_IN_PATH = frozenset(";/?:@&=+$,#")

_PERCENT_RUN_RE = re.compile(r"(?:%[0-9A-Fa-f]{2})+")

#: The UTM fields, then the click ids: two lines that read as the two groups they are.
CAMPAIGN_PARAMS = (
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "gclid", "fbclid", "msclkid", "ttclid", "li_fat_id", "twclid",
)  # fmt: skip

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, ValueError)


def clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def _describe_decode_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "JSON is nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "body is not valid UTF-8"
    return str(exc).replace("`", "")


def decode_send(body: bytes) -> SendRequest:
    """Decode an /api/send body whatever its Content-Type (sendBeacon sends text/plain); 400 names what is wrong."""
    try:
        return msgspec.json.decode(body, type=SendRequest)
    except _DECODE_ERRORS as exc:
        raise bad_request(f"Invalid request body: {_describe_decode_error(exc)}") from None


def decode_batch(body: bytes, max_items: int) -> list[msgspec.Raw]:
    """Split an /api/batch body into its raw items; each is decoded on its own so errors are reported per item."""
    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except _DECODE_ERRORS as exc:
        raise bad_request(f"Invalid batch body, expected a JSON array: {_describe_decode_error(exc)}") from None
    if len(items) > max_items:
        raise too_large(f"Batch has {len(items)} items; at most {max_items} are accepted per request.")
    return items


class ParsedUrl(NamedTuple):
    """A URL split once at validation: host (None when relative), path ('/'-rooted), raw query and fragment."""

    host: str | None
    path: str
    query: str
    fragment: str


def parse_url(value: str | None, field: str) -> ParsedUrl | None:
    """Split a URL as ``new URL(value, base)`` would, refusing what it refuses (Umami: "Invalid URL."), naming the field."""
    if not value:
        return None
    try:
        return _split_url_memo(value) if len(value) <= MAX_MEMO_URL_CHARS else _split_url(value)
    except ValueError:
        raise bad_request(f"Invalid URL in payload.{field}: {value[:100]!r}") from None


def _split_url(value: str) -> ParsedUrl:
    cleaned = value.strip(_URL_STRIP_CHARS)
    if "\t" in cleaned or "\n" in cleaned or "\r" in cleaned:
        cleaned = cleaned.translate(_URL_DROP)
    parts = urlsplit(cleaned)
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    host = parts.hostname
    if parts.scheme.lower() in _SPECIAL_SCHEMES and not host:
        raise ValueError("missing host")
    if host and (_FORBIDDEN_HOST_CHARS & set(host)):
        raise ValueError("bad host")
    path = parts.path
    if not parts.scheme and not parts.netloc and not path.startswith("/"):
        path = "/" + path  # relative to the base's root
    return ParsedUrl(host if parts.netloc else None, path, parts.query, parts.fragment)


#: URLs and referrers split once: a site's pages and referrers repeat (one Memo for the whole process; pure function).
_split_url_memo = Memo(_split_url, URL_MEMO_BYTES)


def _parse_timestamp(raw: int | float | str | None, now: float) -> int:
    """Unix seconds from payload.timestamp (numeric strings allowed, 0/'' mean now), as Umami's z.coerce.number().int()."""
    if raw is None or raw == "":
        return int(now)
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"payload.timestamp must be Unix seconds, not {str(raw)[:40]!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise bad_request("payload.timestamp must be a whole number of Unix seconds")
    seconds = int(value)
    if seconds == 0:
        return int(now)
    if seconds < 0:
        raise bad_request("payload.timestamp must be positive")
    if seconds > now + MAX_FUTURE_SECONDS:
        raise bad_request(f"payload.timestamp is more than {MAX_FUTURE_SECONDS // HOUR_SECONDS} hour in the future")
    return seconds


def _check_vitals(payload: Payload) -> tuple[float | None, ...]:
    for field in ("lcp", "inp", "fcp", "ttfb"):
        value = getattr(payload, field)
        if value is not None and not 0 <= value <= MAX_VITAL_MS:
            raise bad_request(f"payload.{field} must be between 0 and {MAX_VITAL_MS} ms")
    if payload.cls is not None and not 0 <= payload.cls <= MAX_CLS:
        raise bad_request(f"payload.cls must be between 0 and {MAX_CLS}")
    return (payload.lcp, payload.inp, payload.cls, payload.fcp, payload.ttfb)


def _check_duration(value: float | None) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise bad_request("payload.duration must be a positive number of milliseconds")
    return int(min(value, MAX_DURATION_MS))


def _data_value(key: str, value: Any) -> DataRow:
    """Type one leaf of ``data`` as Umami's DATA_TYPE does (src/lib/data.ts)."""
    if isinstance(value, bool):
        return DataRow(key, DATA_BOOLEAN, "true" if value else "false", None, None)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise bad_request(f"payload.data.{key[:100]} is too large a number") from None
        return DataRow(key, DATA_NUMBER, f"{number:.4f}", number, None)
    if isinstance(value, str):
        if _DATETIME_RE.fullmatch(value):
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                when = None  # e.g. month 13: keep it as a plain string
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.timezone.utc)
                return DataRow(key, DATA_DATE, value, None, int(when.timestamp()))
        return DataRow(key, DATA_STRING, value[:MAX_DATA_STRING_CHARS], None, None)
    # Arrays, and null (typeof null is 'object' in Umami), are stored as their JSON text.
    return DataRow(key, DATA_ARRAY, msgspec.json.encode(value).decode()[:MAX_DATA_STRING_CHARS], None, None)


def flatten_data(data: Mapping[str, Any]) -> list[DataRow]:
    """Flatten nested objects into dotted keys and type each leaf; 400 past MAX_DATA_KEYS keys or MAX_DATA_DEPTH levels."""
    rows: list[DataRow] = []
    stack: list[tuple[str, Mapping[str, Any], int]] = [("", data, 1)]
    while stack:
        prefix, obj, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise bad_request(f"payload.data is nested deeper than {MAX_DATA_DEPTH} levels")
        for name, value in obj.items():
            key = f"{prefix}{name}"
            if len(key) > MAX_DATA_KEY_CHARS:
                raise bad_request(f"payload.data has a key longer than {MAX_DATA_KEY_CHARS} characters")
            if isinstance(value, dict):
                stack.append((key + ".", value, depth + 1))
                continue
            if len(rows) == MAX_DATA_KEYS:
                raise bad_request(f"payload.data has more than {MAX_DATA_KEYS} keys")
            rows.append(_data_value(key, value))
    rows.sort()  # stable order, and a key given twice ("a.b" and {"a": {"b"}}) keeps one value
    return list({row.data_key: row for row in rows}.values())


def validate_payload(request: SendRequest, now: float) -> Hit:
    """Check a decoded hit against Umami's rules and footfall's bounds; return it typed, or raise a 400."""
    p = request.payload
    if p.link is not None or p.pixel is not None:
        raise bad_request("Only payload.website is supported; link and pixel ids are not.")
    if p.website is None:
        raise bad_request("payload.website is required")
    if not UUID_RE.fullmatch(p.website):
        raise bad_request("payload.website must be a UUID")
    url = parse_url(p.url, "url")
    referrer = parse_url(p.referrer, "referrer")
    return Hit(
        kind=request.type,
        website_id=p.website.lower(),
        created_at=_parse_timestamp(p.timestamp, now),
        hostname=clip(p.hostname, MAX_HOSTNAME_CHARS),
        screen=clip(p.screen, MAX_SCREEN_CHARS),
        language=clip(p.language, MAX_LANGUAGE_CHARS),
        url=url,
        referrer=referrer,
        title=p.title,
        tag=clip(p.tag, MAX_TAG_CHARS),
        distinct_id=p.id or None,
        name=p.name or None,
        data=flatten_data(p.data) if p.data else [],
        browser=p.browser,
        os=p.os,
        device=p.device,
        vitals=_check_vitals(p),  # type: ignore[arg-type]
        duration=_check_duration(p.duration),
    )


class Agent(NamedTuple):
    """What a user-agent string says: display names, a device class, and whether it is a bot."""

    browser: str | None
    os: str | None
    device: str  # 'mobile', 'tablet' or 'desktop'
    is_bot: bool


#: How the collector learns what a user agent is: ``parse_agent(user_agent) -> Agent``. The app assembly hands in
#: footfall.agents' (user-agents over ua-parser, and footfall's bot list); the collector alone sees every agent as unknown.
ParseAgent = Callable[[str], Agent]


def unknown_agent(user_agent: str) -> Agent:
    """The ParseAgent of a collector without an agent parser: no browser, no OS, a desktop, not a bot."""
    return Agent(None, None, "desktop", False)


def _device_class(agent: Agent, screen: str | None) -> str:
    """Umami's rule: a desktop whose screen is at most 1920 pixels wide is a laptop."""
    if agent.device == "desktop" and screen:
        width = screen.partition("x")[0]
        if width.isdigit() and int(width) <= 1920:
            return "laptop"
    return agent.device


def _decode_uri(text: str) -> str:
    """Like JavaScript's decodeURI: decode %XX runs that form UTF-8, keep reserved characters and bad runs escaped."""
    if "%" not in text:
        return text

    def decode_run(match: re.Match[str]) -> str:
        run = match.group(0)
        try:
            decoded = bytes.fromhex(run.replace("%", "")).decode("utf-8")
        except UnicodeDecodeError:
            return run
        return "".join(quote(c, safe="") if c in _RESERVED_IN_PATH or c == "%" else c for c in decoded)

    return _PERCENT_RUN_RE.sub(decode_run, text)


def strip_www(host: str | None) -> str | None:
    if host and host.startswith("www."):
        return host[4:]
    return host


_TRAILING_SLASH_RE = re.compile(r"/(?=(#.*)?$)")


def enrich(
    hit: Hit,
    website_key: int,
    agent: Agent,
    session_id: str,
    location: Location | None = None,
    remove_trailing_slash: bool = False,
) -> tuple[SessionRow, EventRow | None]:
    """Derive the session and event rows of a validated hit: device, location, URL parts, referrer, campaign parameters."""
    device = hit.device if hit.device is not None else _device_class(agent, hit.screen)
    location = location or NOWHERE
    session = SessionRow(
        session_id=session_id,
        website_key=website_key,
        browser=clip(hit.browser if hit.browser is not None else agent.browser, MAX_AGENT_FIELD_CHARS),
        os=clip(hit.os if hit.os is not None else agent.os, MAX_AGENT_FIELD_CHARS),
        device=clip(device, MAX_AGENT_FIELD_CHARS),
        screen=hit.screen,
        language=hit.language,
        country=location.country,
        region=location.region,
        city=location.city,
        distinct_id=clip(hit.distinct_id, MAX_DISTINCT_ID_CHARS),
        created_at=hit.created_at,
    )
    if hit.kind == "identify":
        return session, None
    title = hit.title
    if title and "%" in title:
        with contextlib.suppress(UnicodeDecodeError):
            title = unquote(title, errors="strict")  # Umami decodeURIComponent()s titles (an old tracker encoded them)
    if hit.kind == "performance":
        # Umami keeps only the path (no hash or query), the title and the vitals for performance events.
        path = hit.url.path if hit.url else ""
        return session, EventRow(
            hit.created_at,
            EVENT_PERFORMANCE,
            None,
            clip(_decode_uri(path), MAX_URL_CHARS) or "",
            None,
            None,
            None,
            None,
            0,
            clip(title, MAX_URL_CHARS),
            None,
            None,
            *([None] * len(CAMPAIGN_PARAMS)),
            *hit.vitals,
            hit.duration,
        )
    page_key = (hit.url, hit.hostname, remove_trailing_slash)
    url_path, query, hostname, campaign = (_page_memo if _memo_fits(hit.url) else _page_fields)(page_key)
    ref_path = ref_query = ref_domain = None
    self_referral = 0
    if hit.referrer:
        referrer_key = (hit.referrer, hit.hostname or "localhost")
        ref_path, ref_query, domain = (_referrer_memo if _memo_fits(hit.referrer) else _referrer_fields)(referrer_key)
        ref_domain = clip(domain, MAX_URL_CHARS) or None
        # A referrer on the event's own site is stored but marked, so reports don't count the site as its own source.
        self_referral = int(bool(domain) and domain == strip_www(hostname))
    return session, EventRow(
        hit.created_at,
        EVENT_CUSTOM if hit.name else EVENT_PAGEVIEW,
        clip(hit.name, MAX_EVENT_NAME_CHARS),
        url_path,
        query,
        ref_path,
        ref_query,
        ref_domain,
        self_referral,
        clip(title, MAX_URL_CHARS),
        hostname,
        hit.tag,
        *campaign,
        *hit.vitals,
        None,
    )


_NO_CAMPAIGN: tuple[None, ...] = (None,) * len(CAMPAIGN_PARAMS)


def _page_fields(key: tuple[ParsedUrl | None, str | None, bool]) -> tuple[str, str | None, str | None, tuple[str | None, ...]]:
    """(url_path, url_query, hostname, campaign values) of a page: its URL, the payload's hostname, the trailing-slash rule."""
    url, hostname, remove_trailing_slash = key
    base_host = hostname or "localhost"
    # Like Umami's new URL(url, base): with no url (e.g. @umami/node) the host is the base, localhost when none is sent.
    host, path, query, fragment = url if url else (base_host, "", "", "")
    url_path = _decode_uri(path + ("#" + fragment if fragment else ""))
    if remove_trailing_slash:
        url_path = _TRAILING_SLASH_RE.sub("", url_path, count=1)
    campaign = _NO_CAMPAIGN
    if query:
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, value)  # URLSearchParams.get() returns the first
        campaign = tuple(clip(params.get(name), MAX_CAMPAIGN_CHARS) for name in CAMPAIGN_PARAMS)
    hostname = clip(hostname or strip_www(host or base_host), MAX_HOSTNAME_CHARS)
    return url_path[:MAX_URL_CHARS], clip(query, MAX_URL_CHARS) or None, hostname, campaign


def _referrer_fields(key: tuple[ParsedUrl, str]) -> tuple[str | None, str | None, str | None]:
    """(referrer_path, referrer_query, domain before clipping) of a referrer, relative to the page's host."""
    (r_host, r_path, r_query, _), base_host = key
    return clip(_decode_uri(r_path), MAX_URL_CHARS), clip(r_query, MAX_URL_CHARS) or None, strip_www(r_host or base_host)


def _memo_fits(url: ParsedUrl | None) -> bool:
    return url is None or len(url.path) + len(url.query) + len(url.fragment) <= MAX_MEMO_URL_CHARS


def _url_key_size(key: tuple[Any, ...]) -> int:
    return text_size(key[0] or ()) + text_size(key[1:2])


#: What enrich derives from a page's URL and from a referrer, once per distinct value (pure functions of their keys).
_page_memo = Memo(_page_fields, URL_MEMO_BYTES, _url_key_size)

_referrer_memo = Memo(_referrer_fields, URL_MEMO_BYTES, _url_key_size)

###############################################################################################################################
# Client and location
###############################################################################################################################
# Who sent a hit, by one rule (README, "Behind a reverse proxy"): forwarding headers only from trusted proxies (Umami
# believes them from anyone, vendor headers such as True-Client-IP first). X-Forwarded-For is walked from the right, as
# each proxy appends the address it got the request from and a visitor's own entries sit on the left; X-Real-IP only
# without it. Vendor headers only when named (--client-ip-header), CDN location headers only with --cdn-geo. The IP
# itself is never stored.

#: Headers that name a client address. None is believed unless the rule above says so; any of them (or another
#: forwarding header) on a request means a proxy relayed it.
CLIENT_IP_HEADERS = (
    "x-forwarded-for", "x-real-ip", "forwarded", "true-client-ip", "cf-connecting-ip", "fastly-client-ip",
    "x-nf-client-connection-ip", "do-connecting-ip", "x-appengine-user-ip", "x-client-ip", "x-cluster-client-ip", "x-forwarded"
)  # fmt: skip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR_RE = re.compile(r'for="?(\[[^\]"]*\]?|[^;,"\s]*)', re.IGNORECASE)


def parse_networks(text: str, setting: str, ipv6_prefix: int = 128) -> tuple[Network, ...]:
    """A comma list of IPs and CIDRs (IPv4 and IPv6) as networks; ConfigError naming the bad entry.

    IPv6 entries narrower than ``ipv6_prefix`` bits are widened to it (for --ignore-ip, where one address stands for its /64).
    """
    networks: list[Network] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{setting}: {item!r} is not an IP address or CIDR range") from None
        if network.version == 6 and network.prefixlen > ipv6_prefix:
            network = network.supernet(new_prefix=ipv6_prefix)
        networks.append(network)
    return tuple(networks)


@functools.lru_cache(maxsize=1024)  # a pure function of short text (the peer and header values repeat); ~4 µs a miss
def normalize_ip(value: str | None) -> IPAddress | None:
    """An address from header or payload text: brackets and port stripped, IPv4-mapped IPv6 made IPv4; None if garbage."""
    if not value:
        return None
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_any(address: IPAddress | None, networks: tuple[Network, ...]) -> bool:
    # An empty tuple (no --ignore-ip, the usual case: asked for every hit) answers without making a generator.
    return bool(networks) and address is not None and any(address in network for network in networks)


class ClientPolicy(NamedTuple):
    """Which peers are trusted proxies, which header names the client, and which clients are ignored."""

    trusted: tuple[Network, ...]
    header: str | None
    allow_payload_ip: bool
    ignored: tuple[Network, ...]


class Client(NamedTuple):
    """The resolved sender of a hit."""

    address: IPAddress | None
    trusted_peer: bool  # the socket peer is a trusted proxy, so its forwarding (and, with --cdn-geo, CDN) headers count
    from_payload: bool  # payload.ip was used (CDN location headers then describe the proxy's client, not this one)

    @property
    def ip(self) -> str:
        return _ip_text(self.address)


@functools.lru_cache(maxsize=1024)  # every event of a batch asks; str() of an address is ~1 µs, a hit ~0.1 µs
def _ip_text(address: IPAddress | None) -> str:
    return "" if address is None else str(address)


def _header_text(headers: Mapping[str, str], name: str) -> str:
    """Every value of a header, in order, joined by commas (a proxy may add a second X-Forwarded-For line)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return ",".join(getall(name, []))
    return headers.get(name) or ""


def _address_chain(headers: Mapping[str, str], name: str) -> list[str]:
    """The addresses a forwarding header lists, leftmost (the first hop's claim) first."""
    text = _header_text(headers, name)
    if name == "forwarded":
        return _FORWARDED_FOR_RE.findall(text)
    return text.split(",") if text else []


def _walk_from_right(chain: Sequence[str], peer: IPAddress | None, trusted: tuple[Network, ...]) -> IPAddress | None:
    """The first address from the right that is not a trusted proxy (all trusted: the leftmost; an entry that is not an
    address: the last trusted hop, as nobody footfall trusts wrote what lies left of it)."""
    hop = peer
    for entry in reversed(chain):
        address = normalize_ip(entry)
        if address is None:
            return hop
        if not in_any(address, trusted):
            return address
        hop = address
    return hop


def resolve_client(peer: str, headers: Mapping[str, str], payload_ip: str | None, policy: ClientPolicy) -> Client:
    """The client: payload.ip (if allowed); from a trusted peer, --client-ip-header's header alone (walked from the right,
    if a list) or X-Forwarded-For walked from the right past trusted proxies, else X-Real-IP; else the socket peer."""
    peer_address = normalize_ip(peer)
    trusted = in_any(peer_address, policy.trusted)
    if payload_ip and (trusted or policy.allow_payload_ip):
        address = normalize_ip(payload_ip)
        if address is not None:
            return Client(address, trusted, True)
    if not trusted:
        return Client(peer_address, False, False)
    if policy.header:
        chain = _address_chain(headers, policy.header)
    else:
        chain = _address_chain(headers, "x-forwarded-for") or _address_chain(headers, "x-real-ip")[:1]
    return Client(_walk_from_right(chain, peer_address, policy.trusted), True, False)


_RATE_RE = re.compile(r"(\d+)\s*/\s*([sm])")


def parse_rate(text: str) -> float | None:
    """Requests per second from a --rate-limit like '4/s' or '120/m'; None when empty (no limit)."""
    if not text.strip():
        return None
    match = _RATE_RE.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"rate_limit must look like 4/s or 120/m, not {text!r}")
    return int(match.group(1)) / (1 if match.group(2) == "s" else 60)


#: Clients a RateLimiter tracks at most; past that the least recently seen are dropped (each costs ~250 bytes).
MAX_RATE_BUCKETS = 100_000


def limit_key(address: IPAddress | None, ipv6_prefix: int) -> int | None:
    """Who a limit counts: an IPv4 address, or the /ipv6_prefix network of an IPv6 one (kept above 2**128, so the two
    never collide). A /64 is one household's, and its addresses cost nothing to rotate."""
    if address is None:
        return None
    if address.version == 4:
        return int(address)
    return (1 << 128) | (int(address) >> (128 - ipv6_prefix))


class RateLimiter:
    """A token bucket per client (IPv4 address or IPv6 network): ``rate`` requests a second, bursts up to ``burst``.
    Least recently used first: ``sweep()`` drops the buckets full again; past ``max_buckets`` the oldest goes."""

    def __init__(self, rate: float, burst: float, ipv6_prefix: int = 64, max_buckets: int = MAX_RATE_BUCKETS) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.ipv6_prefix = ipv6_prefix
        self.max_buckets = max_buckets
        self._buckets: collections.OrderedDict[int | None, list[float]] = collections.OrderedDict()  # → [tokens, refilled]

    def check(self, address: IPAddress | None, now: float) -> None:
        """Take one token for ``address``'s bucket, or raise 429 saying when the next one is due."""
        key = limit_key(address, self.ipv6_prefix)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self.sweep(now)
                while len(self._buckets) >= self.max_buckets:
                    self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)  # the most recently used last
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] < 1:
            raise too_many_requests(max(1, math.ceil((1 - bucket[0]) / self.rate)))
        bucket[0] -= 1

    def sweep(self, now: float) -> None:
        """Forget the buckets that are full again (from the least recently used, so it stops at the first active one)."""
        full_after = self.burst / self.rate
        buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if now - buckets[key][1] < full_after:
                break
            del buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class Location(NamedTuple):
    """Where a client is: ISO 3166-1 alpha-2 country, ISO 3166-2 'CC-RR' region, city name; each may be None."""

    country: str | None
    region: str | None
    city: str | None


NOWHERE = Location(None, None, None)

#: How the collector learns where a client is: ``locate(client, headers)``. The app assembly hands in footfall.geo's
#: (trusted CDN headers, then the geo databases); the collector alone locates nobody.
Locate = Callable[["Client", Mapping[str, str]], Location]


def locate_nowhere(client: Client, headers: Mapping[str, str]) -> Location:
    """The Locate of a collector without geo data: every client is nowhere."""
    return NOWHERE


def client_policy(config: Config) -> ClientPolicy:
    """The ClientPolicy that ``config`` describes (trusted proxies, client-ip header, payload.ip, ignored ranges)."""
    return ClientPolicy(
        parse_networks(config.trusted_proxies, "trusted_proxies"),
        config.client_ip_header.lower() or None,
        config.allow_payload_ip,
        parse_networks(config.ignore_ip, "ignore_ip", config.ipv6_prefix),
    )


class Origin:
    """The sender of one HTTP request. The items of a batch share it, so its client and location are worked out once."""

    __slots__ = ("peer", "headers", "_clients", "_locations")

    def __init__(self, peer: str, headers: Mapping[str, str]) -> None:
        self.peer = peer
        self.headers = headers
        self._clients: dict[str | None, Client] = {}
        self._locations: dict[IPAddress | None, Location] = {}

    def client(self, payload_ip: str | None, policy: ClientPolicy) -> Client:
        found = self._clients.get(payload_ip)
        if found is None:
            found = self._clients[payload_ip] = resolve_client(self.peer, self.headers, payload_ip, policy)
        return found

    def location(self, client: Client, locate: Locate) -> Location:
        found = self._locations.get(client.address)
        if found is None:
            found = self._locations[client.address] = locate(client, self.headers)
        return found


def origin_of(request: Request) -> Origin:
    """The Origin of an HTTP request: its peer address and headers."""
    client = request.scope.get("client")
    return Origin(client[0] if client else "", request.headers)


###############################################################################################################################
# Sessions and visits
###############################################################################################################################
_UUID_NAMESPACE_BYTES = UMAMI_UUID_NAMESPACE.bytes


def umami_uuid(*parts: str | None, secret: str) -> str:
    """Umami's ``uuid(...parts)``: UUIDv5 in the DNS namespace of sha512-hex(parts joined, then the secret).

    RFC 9562's UUIDv5 written out (SHA-1 of namespace and name, version and variant bits set, hex in 8-4-4-4-12), which
    is ``str(uuid.uuid5(...))`` at half its cost: a new visitor needs two of these, a session id and a visit id.
    """
    name = "".join(p or "" for p in parts) + secret
    digest = bytearray(hashlib.sha1(_UUID_NAMESPACE_BYTES + hashlib.sha512(name.encode()).hexdigest().encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # variant 10xx
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derive_session_id(
    website_id: str, ip: str, user_agent: str, salt: str, secret: str, distinct_id: str | None = None
) -> str:
    """sessionId as Umami computes it: uuid(website, ip, ua, salt), or uuid(website, id) when the client sends an id."""
    if distinct_id:
        return umami_uuid(website_id, distinct_id, secret=secret)
    return umami_uuid(website_id, ip, user_agent, salt, secret=secret)


def derive_visit_id(session_id: str, started_at: int, secret: str) -> str:
    """visitId: uuid(session, visit start). Differs from Umami on purpose: a visit is a run of activity, not a clock hour."""
    return umami_uuid(session_id, str(started_at), secret=secret)


class Period(NamedTuple):
    """One salt period: its key in the ``salt`` table and its bounds in Unix seconds."""

    key: str
    starts_at: int
    ends_at: int


def salt_period(rotation: str, at: float) -> Period:
    """The day, week (Sunday start, as Umami) or month containing ``at``, in UTC."""
    day = dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if rotation == "day":
        start, end = day, day + dt.timedelta(days=1)
    elif rotation == "week":
        start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        end = start + dt.timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    return Period(f"{rotation}:{start.date().isoformat()}", int(start.timestamp()), int(end.timestamp()))


class SaltBook:
    """The random salts of the current and neighbouring periods, mirrored from the ``salt`` table."""

    def __init__(self, rotation: str, salts: Mapping[str, tuple[str, int, int]]) -> None:
        self.rotation = rotation
        self._salts = dict(salts)  # period key → (salt, starts_at, ends_at)
        self._last: tuple[str, int, int] = ("", 0, 0)  # the salt found last, tried first

    def salt_for(self, at: float, now: float) -> str:
        """The salt of the period containing ``at``; the current period's when that salt is gone (or never existed)."""
        salt, starts_at, ends_at = self._last
        if starts_at <= at < ends_at:  # nearly every hit: no calendar arithmetic
            return salt
        found = self._salts.get(salt_period(self.rotation, at).key)
        if found is not None:
            self._last = found
            return found[0]
        return self._salts[salt_period(self.rotation, now).key][0]

    def wanted(self, now: float) -> list[Period]:
        """Periods that need a salt and have none yet: the current one and the next (made early so rotation never waits)."""
        current = salt_period(self.rotation, now)
        following = salt_period(self.rotation, current.ends_at)
        return [p for p in (current, following) if p.key not in self._salts]

    def expired(self, now: float) -> list[str]:
        """Periods whose salt must be deleted: ended more than SALT_GRACE_SECONDS ago, or of another rotation."""
        return [
            key
            for key, (_, _, ends_at) in self._salts.items()
            if ends_at + SALT_GRACE_SECONDS <= now or not key.startswith(self.rotation + ":")
        ]

    def add(self, period: Period, salt: str) -> None:
        self._salts[period.key] = (salt, period.starts_at, period.ends_at)

    def snapshot(self) -> dict[str, tuple[str, int, int]]:
        """A copy of every salt held: period key → (salt, starts_at, ends_at)."""
        return dict(self._salts)

    def remove(self, key: str) -> None:
        self._salts.pop(key, None)
        self._last = ("", 0, 0)


class VisitTracker:
    """Which visit each recently active session is in, so visits split after ``timeout`` seconds of silence.

    The rule (schema.sql, ``visit``): an event joins at most ``timeout`` after the visit's last event or at most
    VISIT_BACKWARD_SECONDS before its first, if the visit then spans at most MAX_VISIT_SECONDS; else it starts its own.

    Map: session_id → [visit_id, started_at, last_seen]. Ordered oldest activity first, so eviction looks at the front.
    """

    def __init__(self, timeout: int, secret: str, max_sessions: int = MAX_TRACKED_SESSIONS) -> None:
        self.timeout = timeout
        self._secret = secret
        self._max = max_sessions
        #: A plain dict kept in order by re-inserting: an OrderedDict's links cost ~54 bytes a session, for no speed.
        self._visits: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._visits)

    def restore(self, session_id: str, visit_id: str, started_at: int, last_seen: int) -> None:
        """Remember a visit found in the database at start-up."""
        self._visits[session_id] = [visit_id, started_at, last_seen]

    def visit_for(self, session_id: str, at: int) -> tuple[str, int]:
        """The (visit_id, started_at) an event of this session at time ``at`` belongs to; starts a visit when needed."""
        state = self._visits.get(session_id)
        if (
            state is not None
            and state[1] - VISIT_BACKWARD_SECONDS <= at <= state[2] + self.timeout
            and max(state[2], at) - min(state[1], at) <= MAX_VISIT_SECONDS
        ):
            if at > state[2]:
                del self._visits[session_id]  # move to the end: most recently active
                state[2] = at
                self._visits[session_id] = state
            state[1] = min(state[1], at)
            return state[0], state[1]
        visit_id = derive_visit_id(session_id, at, self._secret)
        if state is None or at > state[2]:
            self._visits.pop(session_id, None)
            self._visits[session_id] = [visit_id, at, at]
            self._evict(at)
        return visit_id, at  # an event far older than the session's current visit gets a visit of its own

    def _evict(self, now: int) -> None:
        cutoff = now - self.timeout
        while self._visits:
            oldest_id, oldest = next(iter(self._visits.items()))
            if oldest[2] >= cutoff and len(self._visits) <= self._max:
                break
            del self._visits[oldest_id]

    def evict(self, now: int) -> None:
        """Forget sessions idle for longer than the timeout."""
        self._evict(now)


class CacheToken(NamedTuple):
    """What a client's ``x-umami-cache`` token vouches for."""

    website_id: str
    session_id: str
    visit_id: str
    issued_at: int


_TOKEN_LAYOUT = struct.Struct(">16s16s16sI")

_TOKEN_MAC_BYTES = 16


def issue_cache_token(key: bytes, website_id: str, session_id: str, visit_id: str, now: float) -> str:
    """A compact signed token (98 characters): three UUIDs and the issue time, with a truncated HMAC-SHA256."""
    # The ids are canonical lower-case UUID text (validated or made here), so their bytes are their hex digits.
    ids = (website_id + session_id + visit_id).replace("-", "")
    raw = bytes.fromhex(ids) + int(now).to_bytes(4, "big")  # _TOKEN_LAYOUT
    mac = hmac.digest(key, raw, "sha256")[:_TOKEN_MAC_BYTES]
    return base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode()


def read_cache_token(token: str | None, key: bytes, now: float) -> CacheToken | None:
    """The token's contents if it is ours, untampered and fresh; None otherwise (a bad token is ignored, never an error)."""
    if not token or len(token) > 200:
        return None
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(blob) != _TOKEN_LAYOUT.size + _TOKEN_MAC_BYTES:
        return None
    raw, mac = blob[: _TOKEN_LAYOUT.size], blob[_TOKEN_LAYOUT.size :]
    if not hmac.compare_digest(mac, hmac.digest(key, raw, "sha256")[:_TOKEN_MAC_BYTES]):
        return None
    website, session, visit, issued_at = _TOKEN_LAYOUT.unpack(raw)
    if not now - TOKEN_MAX_AGE_SECONDS <= issued_at <= now + 60:
        return None
    return CacheToken(str(uuid.UUID(bytes=website)), str(uuid.UUID(bytes=session)), str(uuid.UUID(bytes=visit)), issued_at)


###############################################################################################################################
# Storage
###############################################################################################################################
# The schema is schema.sql (public). prepare_database() applies it and the migrations below once at start, synchronously;
# then the server holds one aiosqlite connection for the writer and one for reads.


#: Numbered migrations: version → function run in one transaction with the bump to that version. Version 1 is schema.sql.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def connect_pragmas(busy_timeout_ms: int, wal_autocheckpoint: int = 1000) -> str:
    return ";".join(
        (
            "PRAGMA journal_mode=WAL",  # readers (sqlite3 shell, summary page) never block the writer, nor it them
            "PRAGMA synchronous=NORMAL",  # durable across a process crash (kill -9); WAL makes it safe from corruption
            # Wait this long for a lock another program holds (Litestream takes short write locks to checkpoint; it
            # advises 5000 ms, the default of busy_timeout_ms).
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
            # PASSIVE checkpoints after commits that leave this many WAL pages; 0: none (Litestream checkpoints instead).
            f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}",
            "PRAGMA foreign_keys=ON",  # keys between events, sessions and visits stay consistent
            # After a long reader (someone's sqlite3 shell) held checkpoints back, shrink the WAL file back to this size.
            f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}",
            "PRAGMA secure_delete=ON",  # deleted rows (expired salts, forgotten people) are zeroed, not left in free space
        )
    )


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction on an autocommit connection: COMMIT when the block ends, ROLLBACK when it raises.

    ``immediate`` takes the write lock at the start (``BEGIN IMMEDIATE``: a writer never fails half-way on SQLITE_BUSY);
    ``immediate=False`` is a read snapshot (``BEGIN``) that sees one consistent state of the file throughout.
    Every transaction in footfall goes through here.
    """
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")


def execute_statements(conn: sqlite3.Connection, statements: Iterable[tuple[str, Sequence[Any]]]) -> int:
    """Run statements in one transaction; the number of rows they changed."""
    changed = 0
    with transaction(conn):
        for sql, params in statements:
            changed += conn.execute(sql, params).rowcount
    return changed


def apply_migrations(conn: sqlite3.Connection, migrations: Mapping[int, Callable[[sqlite3.Connection], None]]) -> int:
    """Bring ``PRAGMA user_version`` up to date, each migration in one transaction with its version bump."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = max([1, *migrations])
    if current > latest:
        raise ConfigError(f"the database has schema version {current}, newer than this footfall ({latest}); upgrade footfall")
    if current == 0:
        conn.execute("PRAGMA user_version = 1")
        current = 1
    for version in sorted(v for v in migrations if v > current):
        with transaction(conn):
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {int(version)}")
        current = version
    return current


class Prepared(NamedTuple):
    """What start-up learns from the database."""

    secret: str
    salts: dict[str, tuple[str, int, int]]
    default_website_id: str | None  # set when this start created the 'default' website


def connect(
    path: str, busy_timeout_ms: int = 5000, shared: bool = False, wal_autocheckpoint: int = 1000
) -> sqlite3.Connection:
    """A stdlib connection with footfall's PRAGMAs, in autocommit mode (transactions are explicit).

    ``shared``: usable from any thread (the caller makes sure only one uses it at a time).
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000, check_same_thread=not shared)
    conn.executescript(connect_pragmas(busy_timeout_ms, wal_autocheckpoint))
    return conn


def prepare_database(
    path: str,
    rotation: str = "month",
    now: float | None = None,
    migrations: Mapping[int, Callable[[sqlite3.Connection], None]] = MIGRATIONS,
    default_site: bool = True,
) -> Prepared:
    """Create or upgrade the database: schema, migrations, install secret, salts, and with ``default_site`` (serve, not
    site add or import) a 'default' site when the database has no website at all, removed ones included."""
    now = time.time() if now is None else now
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open database {path}: {exc}") from None
    try:
        conn.executescript(asset_path("schema.sql").read_text(encoding="utf-8"))
        apply_migrations(conn, migrations)
        with transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO setting (name, value, updated_at) VALUES ('install_secret', ?, ?)",
                (secrets.token_hex(32), int(now)),
            )
            secret = conn.execute("SELECT value FROM setting WHERE name = 'install_secret'").fetchone()[0]
            default_id = None
            if default_site and conn.execute("SELECT count(*) FROM website").fetchone()[0] == 0:
                default_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO website (website_id, name, created_at) VALUES (?, 'default', ?)", (default_id, int(now))
                )
            stored = conn.execute("SELECT period, salt, starts_at, ends_at FROM salt")
            book = SaltBook(rotation, {period: (salt, starts, ends) for period, salt, starts, ends in stored})
            plan = plan_salt_rotation(book, now)
            for sql, params in plan.statements():
                conn.execute(sql, params)
        plan.apply(book)
        return Prepared(secret, book.snapshot(), default_id)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot prepare database {path}: {exc}") from None
    finally:
        conn.close()


class SaltRotation(NamedTuple):
    """New random salts for the periods that need one, and the periods whose salt must go."""

    created: list[tuple[Period, str]]
    expired: list[str]

    def statements(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The writes, for whichever connection runs them (start-up's, or the writer task's)."""
        return [
            *(
                (
                    "INSERT OR REPLACE INTO salt (period, salt, starts_at, ends_at) VALUES (?, ?, ?, ?)",
                    (p.key, salt, p.starts_at, p.ends_at),
                )
                for p, salt in self.created
            ),
            *(("DELETE FROM salt WHERE period = ?", (key,)) for key in self.expired),
        ]

    def apply(self, book: SaltBook) -> None:
        """Mirror the committed writes in memory."""
        for period, salt in self.created:
            book.add(period, salt)
        for key in self.expired:
            book.remove(key)


def plan_salt_rotation(book: SaltBook, now: float) -> SaltRotation:
    """What rotation is due at ``now``: salts for the current and next period, deletion of those past their grace."""
    return SaltRotation([(period, secrets.token_hex(32)) for period in book.wanted(now)], book.expired(now))


def _in_chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _KeyCache:
    """UUID → integer key for recently used sessions or visits, least recently used dropped first."""

    def __init__(self, limit: int) -> None:
        self._keys: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._limit = limit

    def get(self, uuid_text: str) -> int | None:
        key = self._keys.get(uuid_text)
        if key is not None:
            self._keys.move_to_end(uuid_text)
        return key

    def put(self, uuid_text: str, key: int) -> None:
        self._keys[uuid_text] = key
        self._keys.move_to_end(uuid_text)
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)

    def clear(self) -> None:
        self._keys.clear()


class WriteJob(NamedTuple):
    """Records to commit together, and the future the request awaits."""

    records: list[Record]
    future: asyncio.Future[None]
    size: int  # bytes of the request body the records came from


class _Call(NamedTuple):
    """Maintenance work run by the writer between commits (only the writer writes)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


STOP = object()  #: Queued by close(): everything before it is committed, then the writer ends.

SESSION_INSERT = (
    "INSERT INTO session (session_key, session_id, website_key, browser, os, device, screen, language, "
    "country, region, city, distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)

VISIT_INSERT = "INSERT INTO visit (visit_key, visit_id, session_key, started_at) VALUES (?,?,?,?)"

#: EventRow's columns in three parts: what every event has, the campaign parameters, and the vitals and duration.
_EVENT_BASE, _EVENT_CAMPAIGN, _EVENT_VITALS = slice(0, 12), slice(12, 23), slice(23, 29)


def _event_insert(campaign: bool, vitals: bool) -> str:
    fields = EventRow._fields
    columns = ["event_key", "website_key", "session_key", "visit_key", *fields[_EVENT_BASE]]
    columns += [*(fields[_EVENT_CAMPAIGN] if campaign else ()), *(fields[_EVENT_VITALS] if vitals else ())]
    return f"INSERT INTO website_event ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


#: The event INSERT for each (has campaign values, has vitals) shape: most pageviews bind 16 values, not 33, and binding
#: the 17 NULLs they would leave cost as much as the rest of the insert.
EVENT_INSERTS = {(c, v): _event_insert(c, v) for c in (False, True) for v in (False, True)}

_NO_VITALS = (None,) * (_EVENT_VITALS.stop - _EVENT_VITALS.start)

EVENT_DATA_INSERT = (
    "INSERT OR REPLACE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
    "date_value) VALUES (?,?,?,?,?,?)"
)

SESSION_DATA_UPSERT = (
    "INSERT INTO session_data (session_key, data_key, data_type, string_value, number_value, date_value, distinct_id, "
    "created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (session_key, data_key) DO UPDATE SET data_type = excluded.data_type, "
    "string_value = excluded.string_value, number_value = excluded.number_value, date_value = excluded.date_value, "
    "distinct_id = excluded.distinct_id, created_at = excluded.created_at"
)


def _unpacked(packed: list[tuple[tuple[Any, ...], bytes, tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    """The rows of (leading columns, packed data rows, trailing columns), unpacked hit by hit as executemany asks."""
    for head, data, tail in packed:
        for d in unpack_data(data):
            yield (*head, *d, *tail)


#: visit.started_at stays its first event's time when an event up to VISIT_BACKWARD_SECONDS earlier joins the visit.
_VISIT_START_UPDATE = "UPDATE visit SET started_at = ?1 WHERE visit_key = ?2 AND started_at > ?1"

_BOT_UPSERT = (
    "INSERT INTO bot_counter (website_key, day, hits) VALUES (?,?,?) "
    "ON CONFLICT (website_key, day) DO UPDATE SET hits = hits + excluded.hits"
)


class EventWriter:
    """The one task that writes events. Invariants:

    * Only this task writes to the database (maintenance goes through ``call()``).
    * ``submit()`` returns only after its records are committed: a request is acknowledged only then.
    * Records are group-committed: whatever is queued when a commit starts (up to WRITE_BATCH_MAX_EVENTS) goes into one
      ``BEGIN IMMEDIATE … COMMIT``, so throughput grows with load instead of paying one fsync-free commit per event.
    * At most ``max_pending`` events, from request bodies of at most ``max_pending_bytes`` together, wait at once; past
      either ``submit()`` raises ``unavailable`` (503), so memory stays bounded under overload (48 batches of 500 events
      with 50 data keys each would hold ~300 MB; the body bytes bound it whatever the events carry).
    * ``close()`` queues STOP: everything queued before it is committed, then the connection closes.
    * A database that is busy, full or read-only is retried WRITE_ATTEMPTS times with back-off; then the waiting requests
      get 503, and the writer goes on with the next ones, so footfall recovers by itself when the condition clears.
    * Integer keys are assigned here (max(key) + n, read inside the transaction), so a batch is a few ``executemany``
      calls whatever its size.
    * The WAL stays near WAL_SIZE_LIMIT_BYTES under load: checkpoints are PASSIVE (``after_commit``'s, beside the writer,
      when the app gives one: footfall.checkpoint), and while readers overlap without
      a gap (the page, upkeep's refresh, someone's sqlite3 shell) each one still holds an older snapshot, so the WAL is
      never fully checkpointed and never starts over: it grew past a gigabyte in a 30-minute soak. Past the limit the
      writer runs one RESTART checkpoint, which holds new writes back (at most WAL_RESTART_WAIT_MS) until the readers
      of old snapshots are done, and then starts the WAL over. Not with ``wal_autocheckpoint`` 0 (Litestream's turn).
    """

    def __init__(
        self,
        path: str,
        busy_timeout_ms: int,
        max_pending: int,
        max_pending_bytes: int = 1 << 62,
        wal_autocheckpoint: int = 1000,
        after_commit: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.wal_autocheckpoint = wal_autocheckpoint
        #: Called after each commit by whoever checkpoints instead (footfall.checkpoint); True: copy what it left, here.
        self.after_commit = after_commit
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending = 0  #: events submitted and not yet committed or failed
        self.pending_bytes = 0  #: bytes of the request bodies of those events
        self.commits = 0  #: transactions committed (a batch request is exactly one)
        self.committed = 0  #: records committed since start
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._conn: sqlite3.Connection | None = None
        #: The writer's own thread: every statement on the write connection runs there, off the event loop.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="footfall-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sessions = _KeyCache(MAX_CACHED_KEYS)
        self._visits = _KeyCache(MAX_CACHED_KEYS)
        self._bots: collections.Counter[tuple[int, str]] = collections.Counter()
        self._last_error_log = 0.0
        self._wal_check_at = 0.0  #: time.monotonic() of the next look at the WAL's size
        self._wal_pause = WAL_CHECK_SECONDS  #: seconds until the next RESTART attempt after this one
        self.wal_restarts = 0  #: RESTART checkpoints that started the WAL over
        self.wal_busy = 0  #: RESTART checkpoints that readers kept from finishing

    async def start(self) -> None:
        """Open the write connection and start the writer task."""
        checkpoints = 0 if self.after_commit else self.wal_autocheckpoint  # its own, unless someone else checkpoints
        self._conn = await self._in_thread(connect, self.path, self.busy_timeout_ms, True, checkpoints)
        self._task = asyncio.create_task(self._writer_loop(), name="footfall-writer")

    def remember(self, session_id: str, session_key: int, visit_id: str, visit_key: int) -> None:
        """Seed the key caches (start-up loads the visits still open)."""
        self._sessions.put(session_id, session_key)
        self._visits.put(visit_id, visit_key)

    def count_bot(self, website_key: int, day: str) -> None:
        """Count one refused bot request; folded into the next commit (not acknowledged, so never waited for)."""
        self._bots[(website_key, day)] += 1

    async def submit(self, records: list[Record], size: int = 0) -> None:
        """Queue records (from a request body of ``size`` bytes) and wait until they are committed; 503 if the queue is
        full or the database unavailable."""
        if self._closing:
            raise unavailable("footfall is shutting down; send again shortly.")
        if self.pending + len(records) > self.max_pending or self.pending_bytes + size > self.max_pending_bytes:
            raise unavailable("footfall is overloaded; send again shortly.")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending += len(records)
        self.pending_bytes += size
        self._queue.put_nowait(WriteJob(records, future, size))
        try:
            await asyncio.shield(future)  # a client hanging up must not cancel a commit other requests share
        except DatabaseUnavailable as exc:
            raise unavailable(f"The database cannot be written right now ({exc}); send again shortly.") from None

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(connection)`` on the write connection between commits (in the writer's thread); its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Call(fn, future))
        return await future

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (tests and shutdown use this instead of sleeping)."""
        await self.call(lambda conn: None)

    async def close(self) -> None:
        """Stop accepting, commit everything queued, close the connection. Safe to call twice."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(STOP)
        await self._task
        self._task = None
        if self._conn is not None:
            await self._in_thread(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)

    async def _writer_loop(self) -> None:
        while True:
            if not self._queue.empty():
                item = self._queue.get_nowait()  # under load: no timeout task per commit
            else:
                try:
                    item = await asyncio.wait_for(self._queue.get(), WRITER_IDLE_SECONDS)
                except asyncio.TimeoutError:
                    if self._bots:
                        await self._commit_jobs([])
                    continue
            if item is STOP:
                await self._commit_jobs([])  # bot counts
                return
            if isinstance(item, _Call):
                await self._run_call(item)
                continue
            jobs = [item]
            size = len(item.records)
            stop_after = False
            while size < WRITE_BATCH_MAX_EVENTS and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is STOP:
                    stop_after = True
                    break
                if isinstance(nxt, _Call):
                    await self._commit_jobs(jobs)
                    await self._run_call(nxt)
                    jobs, size = [], 0
                    continue
                jobs.append(nxt)
                size += len(nxt.records)
            await self._commit_jobs(jobs)
            jobs = item = nxt = None  # committed: their records are not kept alive while the writer waits for more
            if stop_after:
                await self._commit_jobs([])
                return

    async def _run_call(self, call: _Call) -> None:
        assert self._conn is not None
        await self._commit_jobs([])  # pending bot counts first, so flush() covers them too
        try:
            result = await self._in_thread(call.fn, self._conn)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            if self._conn.in_transaction:
                await self._in_thread(self._conn.rollback)
            if not call.future.done():
                call.future.set_exception(exc)
        else:
            if not call.future.done():
                call.future.set_result(result)

    async def _commit_jobs(self, jobs: list[WriteJob]) -> None:
        """Commit jobs together; retry transient failures; on a bad row, commit the jobs one by one to isolate it."""
        records = [r for job in jobs for r in job.records]
        if not records and not self._bots:
            return
        error: BaseException | None = None
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await self.commit_batch(records)
                error = None
                break
            except sqlite3.IntegrityError as exc:
                error = exc
                self._sessions.clear()  # a row was deleted behind our back (e.g. footfall forget): re-read keys
                self._visits.clear()
            except sqlite3.OperationalError as exc:
                error = DatabaseUnavailable(str(exc))
                self._log_error("write-retry", exc)
                await asyncio.sleep(WRITE_BACKOFF_SECONDS * 2**attempt)
            except sqlite3.DatabaseError as exc:
                error = exc
                break
        if error is None:
            for job in jobs:
                self._settle(job, None)
        elif isinstance(error, DatabaseUnavailable) or len(jobs) <= 1:
            self._log_error("write-failed", error)
            for job in jobs:
                self._settle(job, error)
        else:
            for job in jobs:  # isolate the job that can never commit; the others go through
                await self._commit_jobs([job])

    def _settle(self, job: WriteJob, error: BaseException | None) -> None:
        self.pending -= len(job.records)
        self.pending_bytes -= job.size
        if job.future.done():
            return
        if error is None:
            job.future.set_result(None)
        else:
            job.future.set_exception(error)

    def _log_error(self, event: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 10:
            self._last_error_log = now
            log.warning("event=%s error=%r", event, str(exc))

    async def commit_batch(self, records: list[Record]) -> None:
        """Write records (and pending bot counts) in one transaction; caches change only after COMMIT succeeds."""
        bots, self._bots = self._bots, collections.Counter()
        try:
            new_sessions, new_visits = await self._in_thread(self._write, records, bots)
        except BaseException:
            self._bots.update(bots)  # counts are not lost with the failed transaction
            raise
        self.commits += 1
        self.committed += len(records)
        if self.after_commit is not None and self.after_commit():  # a checkpoint beside us left frames: copy them
            await self._in_thread(self._checkpoint, "PASSIVE")
        if self.wal_autocheckpoint and time.monotonic() >= self._wal_check_at:
            await self._restart_long_wal()
        for sid, key in new_sessions.items():
            self._sessions.put(sid, key)
        for vid, key in new_visits.items():
            self._visits.put(vid, key)

    async def _restart_long_wal(self) -> None:
        """Start the WAL over once it has grown past WAL_SIZE_LIMIT_BYTES (the class docstring says why)."""
        self._wal_check_at = time.monotonic() + WAL_CHECK_SECONDS
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size > WAL_SIZE_LIMIT_BYTES:
            busy = await self._in_thread(self._checkpoint)
            self.wal_restarts += not busy
            self.wal_busy += busy
            # A reader that stays (someone's sqlite3 shell) makes every attempt wait in vain: wait longer between them,
            # so such a reader costs the writer at most WAL_RESTART_WAIT_MS a minute.
            self._wal_pause = min(self._wal_pause * 2, WAL_MAX_PAUSE_SECONDS) if busy else WAL_CHECK_SECONDS
            self._wal_check_at = time.monotonic() + self._wal_pause

    def _checkpoint(self, mode: str = "RESTART") -> bool:
        """One checkpoint on the write connection: RESTART waits at most WAL_RESTART_WAIT_MS for readers, PASSIVE (what a
        checkpoint beside the writer left) for nobody. True if it could not finish (the next look tries again)."""
        conn = self._conn
        assert conn is not None
        conn.execute(f"PRAGMA busy_timeout={WAL_RESTART_WAIT_MS}")
        try:
            busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.OperationalError as exc:
            self._log_error(f"wal-{mode.lower()}", exc)
            return True
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        return bool(busy)

    def _write(self, records: list[Record], bots: Mapping[tuple[int, str], int]) -> tuple[dict[str, int], dict[str, int]]:
        """The transaction of commit_batch, in the writer's thread: keys assigned, rows built once, one executemany each."""
        conn = self._conn
        assert conn is not None
        new_sessions: dict[str, int] = {}
        new_visits: dict[str, int] = {}
        with transaction(conn):
            # Event keys never go back below the rollups' or `footfall ship`'s watermark (after `forget` deleted the
            # newest events), so every event they have not seen has a key above it, and no key names two events.
            next_session, next_visit, next_event = conn.execute(
                "SELECT (SELECT ifnull(max(session_key), 0) FROM session), (SELECT ifnull(max(visit_key), 0) FROM visit),"
                " max((SELECT ifnull(max(event_key), 0) FROM website_event), ifnull((SELECT max(CAST(value AS INTEGER))"
                " FROM setting WHERE name IN ('rollup_event_key', 'ship_event_key')), 0))"
            ).fetchone()
            session_keys = self._resolve(conn, "session", [r.session.session_id for r in records], self._sessions)
            session_rows = []
            for r in records:
                sid = r.session.session_id
                if sid not in session_keys:
                    next_session += 1
                    session_keys[sid] = new_sessions[sid] = next_session
                    session_rows.append((next_session, *r.session))
            visit_keys = self._resolve(conn, "visit", [r.visit_id for r in records], self._visits)
            visit_rows, earlier = [], []
            data_of_events: list[tuple[tuple[Any, ...], bytes, tuple[Any, ...]]] = []
            data_of_sessions: list[tuple[tuple[Any, ...], bytes, tuple[Any, ...]]] = []
            event_rows: dict[tuple[bool, bool], list[tuple[Any, ...]]] = {shape: [] for shape in EVENT_INSERTS}
            for r in records:
                session_key = session_keys[r.session.session_id]
                if r.visit_id not in visit_keys:
                    next_visit += 1
                    visit_keys[r.visit_id] = new_visits[r.visit_id] = next_visit
                    visit_rows.append((next_visit, r.visit_id, session_key, r.visit_started_at))
                elif r.event is not None and r.event.created_at == r.visit_started_at:
                    earlier.append((r.visit_started_at, visit_keys[r.visit_id]))  # it moved the visit's start back
                if (e := r.event) is not None:
                    next_event += 1
                    campaign, vitals = e[_EVENT_CAMPAIGN], e[_EVENT_VITALS]
                    shape = (campaign != _NO_CAMPAIGN, vitals != _NO_VITALS)
                    row = (next_event, r.session.website_key, session_key, visit_keys[r.visit_id], *e[_EVENT_BASE])
                    event_rows[shape].append(row + (campaign if shape[0] else ()) + (vitals if shape[1] else ()))
                    if r.event_data:
                        data_of_events.append(((next_event,), r.event_data, ()))
                if r.session_data:
                    data_of_sessions.append(((session_key,), r.session_data, (r.session.distinct_id, r.session.created_at)))
            for sql, rows in (
                (SESSION_INSERT, session_rows),
                (VISIT_INSERT, visit_rows),
                *((EVENT_INSERTS[shape], rows) for shape, rows in event_rows.items()),
                (EVENT_DATA_INSERT, data_of_events and _unpacked(data_of_events)),
                (SESSION_DATA_UPSERT, data_of_sessions and _unpacked(data_of_sessions)),
                (_BOT_UPSERT, [(w, d, n) for (w, d), n in bots.items()]),
                (_VISIT_START_UPDATE, earlier),
            ):
                if rows:
                    conn.executemany(sql, rows)
        return new_sessions, new_visits

    @staticmethod
    def _resolve(conn: sqlite3.Connection, table: str, ids: list[str], cache: _KeyCache) -> dict[str, int]:
        """Keys of the given UUIDs that exist: from the cache, else one ``IN (…)`` query per 500 misses."""
        found: dict[str, int] = {}
        missing: list[str] = []
        for uuid_text in dict.fromkeys(ids):
            key = cache.get(uuid_text)
            if key is None:
                missing.append(uuid_text)
            else:
                found[uuid_text] = key
        for chunk in _in_chunks(missing):
            sql = f"SELECT {table}_id, {table}_key FROM {table} WHERE {table}_id IN ({', '.join('?' * len(chunk))})"
            for uuid_text, key in conn.execute(sql, chunk):
                found[uuid_text] = key
                cache.put(uuid_text, key)
        return found


###############################################################################################################################
# Collection state
###############################################################################################################################
# What the collection routes share while footfall serves: the writer, the salts and open visits, the active websites, the
# parse caches and the client policy. The app assembly (footfall.app) creates one, starts it in its lifespan and puts it
# on ``app.state.collection``; everything that is not collection (the page, rollups, upkeep) lives upstairs.


class Collection:
    """The collector's running state: config, writer, read connection, salts, visits, websites and caches."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        locate: Locate = locate_nowhere,
        parse_agent: ParseAgent = unknown_agent,
        after_commit: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        #: Where a client is (handed in by the app assembly: CDN headers and geo databases live upstairs).
        self.locate = locate
        self.writer = EventWriter(
            config.db,
            config.busy_timeout_ms,
            config.write_queue_max,
            config.write_queue_max_bytes,
            config.wal_autocheckpoint,
            after_commit,
        )
        self.reader: aiosqlite.Connection | None = None
        self.secret = ""
        self.token_key = b""
        self.salts = SaltBook(config.salt_rotation, {})
        self.visits = VisitTracker(config.visit_timeout * 60, "")
        self.websites: dict[str, int] = {}
        #: The one enrichment memo keyed by the User-Agent string: browser, OS, device class and bot verdict together.
        self.parse_agent = Memo(parse_agent, AGENT_MEMO_BYTES)
        #: Session ids of recent (website, client, agent, salt, id) inputs: two hashes saved on every repeat hit.
        self.session_id = Memo(self._derive_session_id, SESSION_MEMO_BYTES, text_size)
        self.policy = client_policy(config)
        rate = parse_rate(config.rate_limit)
        unit = 60 if config.rate_limit.strip().lower().endswith("m") else 1
        self.rate_limiter = RateLimiter(rate, rate * unit, config.ipv6_prefix) if rate else None
        self.prepared: Prepared | None = None
        self._missing_websites: dict[str, float] = {}  # website id → monotonic time until which it counts as missing

    def forget_memos(self) -> None:
        """Empty the enrichment memos (upkeep does when the server falls quiet: what they hold was allocated among a
        burst's garbage and would keep its memory from going back to the OS)."""
        for memo in (self.parse_agent, self.session_id, _split_url_memo, _page_memo, _referrer_memo):
            memo.clear()
        normalize_ip.cache_clear()

    def _derive_session_id(self, key: tuple[str, str, str, str, str | None]) -> str:
        website_id, ip, user_agent, salt, distinct_id = key
        return derive_session_id(website_id, ip, user_agent, salt, self.secret, distinct_id)

    async def start(self) -> None:
        """Prepare the database, open the read connection, start the writer, restore the visits still open."""
        now = self.clock()
        self.prepared = await asyncio.to_thread(prepare_database, self.config.db, self.config.salt_rotation, now)
        self.secret = self.prepared.secret
        self.token_key = bytes.fromhex(self.secret)
        self.salts = SaltBook(self.config.salt_rotation, self.prepared.salts)
        self.visits = VisitTracker(self.config.visit_timeout * 60, self.secret)
        self.reader = await aiosqlite.connect(self.config.db, isolation_level=None)
        await self.reader.executescript(
            connect_pragmas(self.config.busy_timeout_ms, self.config.wal_autocheckpoint) + ";PRAGMA query_only=1"
        )
        await self.load_websites()
        await self.writer.start()
        await self._restore_visits(now)

    async def close(self) -> None:
        """Drain and close the writer, close the reader. Safe to call twice."""
        await self.writer.close()
        if self.reader is not None:
            await self.reader.close()
            self.reader = None

    async def read_setting(self, name: str) -> str | None:
        """One value of the ``setting`` table, or None."""
        assert self.reader is not None
        async with self.reader.execute("SELECT value FROM setting WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def load_websites(self) -> None:
        """Reload the active websites (``footfall site add/remove`` may run while we serve)."""
        assert self.reader is not None
        async with self.reader.execute("SELECT website_id, website_key FROM website WHERE deleted_at IS NULL") as cur:
            self.websites = {row[0]: row[1] for row in await cur.fetchall()}

    async def website_key(self, website_id: str) -> int:
        """The key of an active website; 400 'Website not found.' otherwise.

        A miss is looked up in the database (a site added with the CLI a moment ago is found at once); ids found
        missing are remembered for a second so a flood of random ids costs one query per id per second.
        """
        key = self.websites.get(website_id)
        if key is None:
            now = time.monotonic()
            if self._missing_websites.get(website_id, 0.0) <= now:
                assert self.reader is not None
                sql = "SELECT website_key FROM website WHERE website_id = ? AND deleted_at IS NULL"
                async with self.reader.execute(sql, (website_id,)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    key = self.websites[website_id] = row[0]
                else:
                    if len(self._missing_websites) >= MAX_MISSING_WEBSITES:
                        self._missing_websites.clear()
                    self._missing_websites[website_id] = now + 1.0
        if key is None:
            raise bad_request("Website not found.")
        return key

    async def _restore_visits(self, now: float) -> None:
        """Reload visits active within the timeout, so a restart does not split them."""
        assert self.reader is not None
        sql = """SELECT s.session_id, s.session_key, v.visit_id, v.visit_key, v.started_at, max(e.created_at)
                   FROM website_event e JOIN visit v ON v.visit_key = e.visit_key JOIN session s ON s.session_key = v.session_key
                  WHERE e.website_key IN (SELECT website_key FROM website) AND e.created_at >= ?
                  GROUP BY e.visit_key ORDER BY max(e.created_at)"""  # noqa: E501
        async with self.reader.execute(sql, (int(now) - self.visits.timeout,)) as cur:
            for session_id, session_key, visit_id, visit_key, started_at, last_seen in await cur.fetchall():
                self.visits.restore(session_id, visit_id, started_at, last_seen)
                self.writer.remember(session_id, session_key, visit_id, visit_key)

    async def execute(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        """Run statements in one transaction in the writer task (between its commits); the rows they changed."""
        return await self.writer.call(functools.partial(execute_statements, statements=statements))  # type: ignore[no-any-return]

    async def upkeep(self) -> None:
        """Collection's share of the periodic work: reload websites, rotate salts, forget idle visits and rate buckets."""
        now = self.clock()
        await self.load_websites()
        rotation = plan_salt_rotation(self.salts, now)
        if rotation.created or rotation.expired:
            await self.execute(rotation.statements())
            rotation.apply(self.salts)
            if rotation.expired:  # secure_delete zeroed the salt in the file; the WAL's copies go with a truncate
                await self.writer.call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        self.visits.evict(int(now))
        if self.rate_limiter is not None:
            self.rate_limiter.sweep(now)

    async def accept(
        self, request: SendRequest, origin: Origin, user_agent: str, token: CacheToken | None, now: float
    ) -> Record | None:
        """Run one decoded hit through the data path; the Record to write, or None for a bot (counted, not stored).

        The order of checks is Umami's: validation, website, client, bot, ignored IP, then session and event.
        """
        hit = validate_payload(request, now)
        website_key = self.websites.get(hit.website_id)
        if website_key is None:  # not an active site we know: ask the database (a site added a moment ago is found)
            website_key = await self.website_key(hit.website_id)
        client = origin.client(request.payload.ip, self.policy)
        agent = self.parse_agent(user_agent)
        if agent.is_bot and self.config.bot_check:
            self.writer.count_bot(website_key, time.strftime("%Y-%m-%d", time.gmtime(now)))
            return None
        if in_any(client.address, self.policy.ignored):
            raise forbidden()
        salt = self.salts.salt_for(hit.created_at, now)
        session_id = self.session_id((hit.website_id, client.ip, user_agent, salt, hit.distinct_id))
        # A valid cache token for this very session says its row exists already, and a session's first-seen attributes
        # stick, so the location lookup is skipped (the work a token saves; a forged or stale one saves nothing).
        known = token is not None and token.session_id == session_id and token.website_id == hit.website_id
        location = NOWHERE if known else origin.location(client, self.locate)
        visit_id, visit_started_at = self.visits.visit_for(session_id, hit.created_at)
        session, event = enrich(hit, website_key, agent, session_id, location, self.config.remove_trailing_slash)
        data = pack_data(hit.data)  # an event's data, or an identify's (no event) for its session
        return Record(
            hit.website_id, session, visit_id, visit_started_at, event, *((data, b"") if event is not None else (b"", data))
        )

    def origin(self, request: Request, now: float) -> Origin:
        """Who sent this request; 429 when that client is over --rate-limit."""
        origin = origin_of(request)
        self.check_rate(origin, now)
        return origin

    def check_rate(self, origin: Origin, now: float) -> None:
        """429 when the sender of a request is over --rate-limit."""
        if self.rate_limiter is not None:
            self.rate_limiter.check(origin.client(None, self.policy).address, now)

    def answer(self, record: Record, now: float) -> SendResponse:
        """The 200 body for an accepted record, with a fresh cache token."""
        session_id = record.session.session_id
        return SendResponse(
            cache=issue_cache_token(self.token_key, record.website_id, session_id, record.visit_id, now),
            sessionId=session_id,
            visitId=record.visit_id,
        )


###############################################################################################################################
# Collection routes
###############################################################################################################################
# /api/send, /api/batch (and --collect-path), the tracker script and the heartbeat. Each handler reads like GoatCounter's
# count: body → decode → validate → enrich → session/visit → writer.submit → answer. They never touch the database.

#: The answer to a bot's hit, encoded once.
BEEP_BOOP = msgspec.json.encode(BotAnswer(beep="boop"))


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Any JSON answer: msgspec-encoded bytes with the JSON media type (the one renderer for JSON bodies)."""
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type="application/json", headers=dict(headers or {})
    )


def collection_of(request: Request) -> Collection:
    """The running Collection a request is served by (the app keeps it on ``app.state``)."""
    return request.app.state.collection  # type: ignore[no-any-return]


def _user_agent(headers: Mapping[str, str], hit: SendRequest) -> str:
    """The user agent of a hit: payload.userAgent, else the User-Agent header; one is required (unlike in Umami)."""
    user_agent = hit.payload.userAgent or headers.get("user-agent", "")
    if not user_agent.strip():
        raise bad_request("User-Agent header is required")
    return user_agent


# The two bodies below are the whole of /api/send and /api/batch once the client has passed the rate limit and its body
# is read: Litestar's handlers (post_send, post_batch) and the bare-ASGI fast path (footfall.fastpath) both call them,
# so the answers are the same bytes whichever way a request came in.


async def collect_send(collection: Collection, origin: Origin, body: bytes, now: float) -> bytes:
    """Record one pageview, custom event, identify or performance report; the JSON answer (ApiError when refused)."""
    hit = decode_send(body)
    token = read_cache_token(origin.headers.get("x-umami-cache"), collection.token_key, now)
    record = await collection.accept(hit, origin, _user_agent(origin.headers, hit), token, now)
    if record is None:
        return BEEP_BOOP
    await collection.writer.submit([record], len(body))
    return msgspec.json.encode(collection.answer(record, now))


async def collect_batch(collection: Collection, origin: Origin, body: bytes, now: float) -> bytes:
    """Check each item of a batch on its own, write every accepted one in one transaction; the JSON answer."""
    items = decode_batch(body, collection.config.batch_max_items)
    token = read_cache_token(origin.headers.get("x-umami-cache"), collection.token_key, now)
    records: list[Record] = []
    details: list[BatchDetail] = []
    processed = 0
    for index, raw in enumerate(items):
        try:
            hit = decode_send(raw)
            record = await collection.accept(hit, origin, _user_agent(origin.headers, hit), token, now)
        except ApiError as exc:
            details.append(BatchDetail(index, exc.body()))
            continue
        processed += 1  # a bot item counts as processed, as in Umami (issue #3337)
        if record is not None:
            records.append(record)
    size, count = len(body), len(items)
    del body, items  # the raw items are views of the body: neither is held while the records wait for their commit
    raw = None
    if records:
        await collection.writer.submit(records, size)
    cache = collection.answer(records[0], now).cache if records else None
    return msgspec.json.encode(BatchResponse(count, processed, len(details), details, cache))


async def post_send(request: Request) -> Response:
    """POST /api/send: record one pageview, custom event, identify or performance report."""
    return await _collected(request, collect_send)


async def post_batch(request: Request) -> Response:
    """POST /api/batch: each item checked on its own, every accepted one written in one transaction."""
    return await _collected(request, collect_batch)


#: A collection body (collect_send, collect_batch): (collection, origin, body, now) → the answer's JSON bytes.
Collect = Callable[[Collection, Origin, bytes, float], Awaitable[bytes]]


async def _collected(request: Request, collect: Collect) -> Response:
    """A Litestar request run through collect_send or collect_batch (after the rate limit); the JSON answer."""
    collection = collection_of(request)
    now = collection.clock()
    origin = collection.origin(request, now)
    return Response(content=await collect(collection, origin, await request.body(), now), media_type="application/json")


async def get_heartbeat() -> Response:
    """GET /api/heartbeat: liveness, as the umami-analytics client expects."""
    return Response(content=b'{"ok":true}', media_type="application/json")


def collection_routes(config: Config) -> list[Any]:
    """The collection handlers, with their body limits; the app assembly mounts them, the tracker script beside them
    (footfall.assets), and CORS for them only."""
    routes = [
        post("/api/send", request_max_body_size=config.max_body_bytes, status_code=200)(post_send),
        post("/api/batch", request_max_body_size=config.batch_max_bytes, status_code=200)(post_batch),
        get("/api/heartbeat")(get_heartbeat),
    ]
    if config.collect_path:
        routes.append(
            post(config.collect_path, request_max_body_size=config.max_body_bytes, status_code=200, name="collect-alias")(
                post_send
            )
        )
    return routes
