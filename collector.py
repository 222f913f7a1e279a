"""footfall: a small, privacy-friendly web analytics collector that speaks Umami's collection API.

Run it with ``footfall serve`` (or just ``footfall``): it listens on 127.0.0.1:8000, creates ``footfall.db`` and a website
called ``default`` on first start, and prints the ``<script>`` tag to paste. Any Umami client (the browser tracker,
``@umami/node``, the ``umami-analytics`` PyPI client, ``curl``) can send to ``POST /api/send`` and ``POST /api/batch``.

Every event lands in one WAL-mode SQLite file whose layout, ``schema.sql``, is a public contract: people query it with
``sqlite3 footfall.db``. No IP address and no full user-agent string is ever written to it.

Sections (search for the banner titles):
    Constants and defaults
    Configuration
    Wire types
    Errors
    Data path
    Sessions and visits
    Storage
    HTTP handlers
    App factory and lifespan
    CLI
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import itertools
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosqlite
import click
import msgspec
import ua_parser
import user_agents
import user_agents.parsers
from litestar import Litestar, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

__version__ = "0.1.0"

log = logging.getLogger("footfall")


###############################################################################################################################
# Constants and defaults
###############################################################################################################################

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
MAX_FUTURE_SECONDS = 3600
#: A page's reported visible time (payload.duration, from footfall's tracker) is capped at this, in milliseconds.
MAX_DURATION_MS = 24 * 3600 * 1000
#: Web vitals in milliseconds must lie in [0, MAX_VITAL_MS]; CLS in [0, MAX_CLS] (Umami's bounds).
MAX_VITAL_MS = 60_000
MAX_CLS = 100

#: A previous period's salt is kept this long after its period ends, in seconds, for late batches.
SALT_GRACE_SECONDS = 3600
#: A cache token older than this is stale and ignored, in seconds.
TOKEN_MAX_AGE_SECONDS = 24 * 3600
#: Parsed user agents kept in memory (a hit costs ~0.1 µs, a miss ~500 µs).
UA_CACHE_SIZE = 4096
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
#: Background upkeep (website reload, salts, visit eviction) runs this often, in seconds.
MAINTENANCE_SECONDS = 2.0
#: Per-site retention (website.retention_days) is applied this often, in seconds.
RETENTION_INTERVAL_SECONDS = 24 * 3600
#: Seconds a client is asked to wait (Retry-After) when footfall is overloaded or the database is unavailable.
RETRY_AFTER_SECONDS = 1

#: Size the WAL file is truncated back to once checkpointed, in bytes (it grows past it only while a reader holds it).
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024
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
SETTINGS: tuple[Setting, ...] = (
    Setting("db", "footfall.db", "Path of the SQLite database file; created with its schema if missing."),
    Setting("host", "127.0.0.1", "Address to listen on. Put a reverse proxy in front to serve the internet."),
    Setting("port", 8000, "TCP port to listen on."),
    Setting("max_body_bytes", MAX_SEND_BODY_BYTES, "Largest /api/send body in bytes; a larger one gets 413."),
    Setting("batch_max_items", MAX_BATCH_ITEMS, "Most items in one /api/batch request; more gets 413."),
    Setting("batch_max_bytes", MAX_BATCH_BODY_BYTES, "Largest /api/batch body in bytes; a larger one gets 413."),
    Setting("salt_rotation", "month", "How often the random session salt changes.", ("day", "week", "month")),
    Setting("visit_timeout", 30, "Minutes without activity after which a session's next event starts a new visit."),
    Setting("bot_check", True, "Refuse bot user agents: answer {\"beep\":\"boop\"} and only count them."),
    Setting("trusted_proxies", "127.0.0.1/32,::1/128",
            "Peers (comma list of IPs/CIDRs) whose forwarding and CDN location headers are believed."),
    Setting("client_ip_header", "", "Read the client IP only from this header (as Umami's CLIENT_IP_HEADER); "
                                    "empty: Umami's list (cf-connecting-ip, x-real-ip, x-forwarded-for, …)."),
    Setting("allow_payload_ip", False, "Honour payload.ip from any sender, not only from trusted proxies."),
    Setting("ignore_ip", "", "IPs/CIDRs whose hits get 403 and are not stored (as Umami's IGNORE_IP)."),
    Setting("geoip_db", "", "A MaxMind-format City or Country database (.mmdb) for country, region and city."),
    Setting("embedded_geo", True, "Locate countries with the data shipped in the package (no download, ~6 MB)."),
    Setting("remove_trailing_slash", False, "Store /about/ as /about (as Umami's REMOVE_TRAILING_SLASH)."),
    Setting("rate_limit", "", "Requests one client may make to the collection endpoints, e.g. 4/s or 120/m "
                              "(429 beyond it); empty: no limit."),
    Setting("tracker_path", "", "Also serve the tracker script at this path (ad blockers block /script.js), e.g. /stats.js."),
    Setting("collect_path", "", "Also accept hits at this path, answering as /api/send; the served tracker posts there."),
    Setting("timezone", "UTC", "Time zone of the summary page: its days, hours and chart labels (an IANA name, e.g. "
                               "Europe/Berlin)."),
    Setting("password_hash", "", "The summary page's password hash (from `footfall password --print-hash`); overrides the "
                                 "one `footfall password` stores in the database."),
    Setting("write_queue_max", 20_000, "Events that may wait to be written; beyond that requests get 503."),
    Setting("busy_timeout_ms", 5000, "How long a write waits for a lock held by another program before it gets 503."),
    Setting("log_level", "info", "Log verbosity.", ("debug", "info", "warning", "error")),
)


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
    allow_payload_ip: bool = False
    ignore_ip: str = ""
    geoip_db: str = ""
    embedded_geo: bool = True
    remove_trailing_slash: bool = False
    rate_limit: str = ""
    tracker_path: str = ""
    collect_path: str = ""
    timezone: str = "UTC"
    password_hash: str = ""
    write_queue_max: int = 20_000
    busy_timeout_ms: int = 5000
    log_level: str = "info"


class ConfigError(ValueError):
    """A setting has a value footfall cannot use; the message says which and how to fix it."""


_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


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
        if value < 1 and setting.name != "port" or value < 0:
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
    parse_networks(config.trusted_proxies, "trusted_proxies")
    parse_networks(config.ignore_ip, "ignore_ip")
    parse_rate(config.rate_limit)
    if config.write_queue_max < config.batch_max_items:
        raise ConfigError("write_queue_max must be at least batch_max_items, or a full batch could never be written")
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
    """Everything one accepted hit writes: its session, visit, event (None for identify) and data rows."""

    website_id: str
    session: SessionRow
    visit_id: str
    visit_started_at: int
    event: EventRow | None
    event_data: list[DataRow]
    session_data: list[DataRow]


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


def _error_response(error: ApiError) -> Response:
    return Response(
        content=msgspec.json.encode(error.body()),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


def handle_api_error(request: Request, exc: ApiError) -> Response:
    """Render an ApiError."""
    return _error_response(exc)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    """Render Litestar's own errors (404, 405, 413 …) in Umami's shape, never with internal detail."""
    status = exc.status_code
    if status == 413:
        return _error_response(too_large("Request body is too large."))
    if status >= 500:
        return handle_server_error(request, exc)
    code = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
            429: "too-many-requests"}
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    return _error_response(ApiError(status, code.get(status, "bad-request"), message, dict(exc.headers or {})))


def handle_server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: log the traceback with method and route, answer a fixed 500 (Umami sends its stack; we don't)."""
    log.error("event=server-error method=%s path=%s", request.method, request.url.path, exc_info=exc)
    return _error_response(ApiError(500, "server-error", "Server error"))


###############################################################################################################################
# Data path
###############################################################################################################################
# request body → decode_send → validate_payload → enrich → derive_session_id / visit → EventWriter.submit → response.
# Each step is a plain function of values, so tests can run any of them alone.

# RFC 9562 as zod's z.uuid() checks it: version 1-8, variant 10xx; the nil and max UUIDs pass too.
_UUID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff",
    re.IGNORECASE,
)
# Umami's DATETIME_REGEX (src/lib/constants.ts): such strings are stored as dates.
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}(Z|\+[0-9]{2}:[0-9]{2})?)?")
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
_FORBIDDEN_HOST_CHARS = frozenset(" <>^|\\%\t\n\r\"`{}")
# WHATWG URL parsing removes tabs and newlines anywhere and C0 controls and spaces at the ends.
_URL_STRIP_CHARS = "".join(chr(c) for c in range(0x21))
_URL_DROP = str.maketrans("", "", "\t\n\r")
_RESERVED_IN_PATH = frozenset(";/?:@&=+$,#")
_PERCENT_RUN_RE = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_CAMPAIGN_PARAMS = (
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "gclid", "fbclid", "msclkid", "ttclid", "li_fat_id", "twclid",
)  # fmt: skip

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, ValueError)


def _clip(value: str | None, limit: int) -> str | None:
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
    cleaned = value.strip(_URL_STRIP_CHARS)
    if "\t" in cleaned or "\n" in cleaned or "\r" in cleaned:
        cleaned = cleaned.translate(_URL_DROP)
    try:
        parts = urlsplit(cleaned)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
        host = parts.hostname
        if parts.scheme.lower() in _SPECIAL_SCHEMES and not host:
            raise ValueError("missing host")
        if host and (_FORBIDDEN_HOST_CHARS & set(host)):
            raise ValueError("bad host")
    except ValueError:
        raise bad_request(f"Invalid URL in payload.{field}: {value[:100]!r}") from None
    path = parts.path
    if not parts.scheme and not parts.netloc and not path.startswith("/"):
        path = "/" + path  # relative to the base's root
    return ParsedUrl(host if parts.netloc else None, path, parts.query, parts.fragment)


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
        raise bad_request(f"payload.timestamp is more than {MAX_FUTURE_SECONDS // 3600} hour in the future")
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
    if not _UUID_RE.fullmatch(p.website):
        raise bad_request("payload.website must be a UUID")
    url = parse_url(p.url, "url")
    referrer = parse_url(p.referrer, "referrer")
    return Hit(
        kind=request.type,
        website_id=p.website.lower(),
        created_at=_parse_timestamp(p.timestamp, now),
        hostname=_clip(p.hostname, MAX_HOSTNAME_CHARS),
        screen=_clip(p.screen, MAX_SCREEN_CHARS),
        language=_clip(p.language, MAX_LANGUAGE_CHARS),
        url=url,
        referrer=referrer,
        title=p.title,
        tag=_clip(p.tag, MAX_TAG_CHARS),
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


# Bots and non-browser clients that user-agents' is_bot (device family 'Spider') misses: headless browsers, HTTP
# libraries, monitoring and SEO crawlers, link-preview fetchers. The Umami Node client's "Mozilla/5.0 Umami/v20.x" is a
# server-side sender, not a bot, and does not match.
# Plain substrings (lower case): a loop of `in` tests costs ~3 µs, where one regex alternation of them cost ~90 µs.
_BOT_TOKENS = (
    "bot/", "bot;", "bot-", "crawl", "spider", "slurp", "headless", "phantomjs", "puppeteer", "playwright", "selenium",
    "lighthouse", "pagespeed", "gtmetrix", "curl/", "wget/", "python-requests", "python-urllib", "python-httpx",
    "aiohttp", "httpie", "go-http-client", "okhttp", "axios/", "node-fetch", "undici", "java/", "apache-httpclient",
    "libwww-perl", "guzzlehttp", "scrapy", "feedfetcher", "facebookexternalhit", "whatsapp/", "telegrambot",
    "skypeuripreview", "embedly", "preview", "uptime", "pingdom", "monitor", "statuscake", "site24x7", "ahrefs",
    "semrush", "mj12", "dataforseo", "bytespider", "gptbot", "ccbot", "claude", "perplexity", "qwantify",
    "exabot", "archive.org", "ia_archiver",
)  # fmt: skip
_BOT_WORD_RE = re.compile(r"bot\b")


def looks_like_bot(user_agent: str) -> bool:
    """True for user agents on footfall's own bot list (what user-agents' is_bot misses)."""
    lowered = user_agent.lower()
    return any(token in lowered for token in _BOT_TOKENS) or ("bot" in lowered and bool(_BOT_WORD_RE.search(lowered)))


# Family names from ua-parser → the display names footfall stores.
_BROWSER_NAMES = {
    "Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome", "Chrome Mobile WebView": "Chrome",
    "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox", "Edge Mobile": "Edge",
    "Opera Mobile": "Opera", "Other": None,
}  # fmt: skip
_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", "Ubuntu": "Linux", "Fedora": "Linux", "Debian": "Linux",
             "Other": None}  # fmt: skip


class _FastUserAgent(user_agents.parsers.UserAgent):
    """user-agents' UserAgent (same fields and properties) filled by ua-parser 1.x's compiled resolver (~15 µs, not ~500)."""

    def __init__(self, user_agent_string: str) -> None:  # noqa: D107 - same contract as the parent
        result = ua_parser.parse(user_agent_string)
        agent, system, device = result.user_agent, result.os, result.device
        self.ua_string = user_agent_string
        self.browser = user_agents.parsers.parse_browser(
            agent.family, agent.major, agent.minor, agent.patch) if agent else user_agents.parsers.parse_browser("Other")
        self.os = user_agents.parsers.parse_operating_system(
            system.family, system.major, system.minor, system.patch, system.patch_minor
        ) if system else user_agents.parsers.parse_operating_system("Other")
        self.device = user_agents.parsers.parse_device(device.family, device.brand, device.model) if device else \
            user_agents.parsers.parse_device("Other", None, None)


def classify_agent(parsed: user_agents.parsers.UserAgent) -> Agent:
    """Display names, device class and bot verdict from a user-agents UserAgent."""
    device = "mobile" if parsed.is_mobile else "tablet" if parsed.is_tablet else "desktop"
    is_bot = parsed.is_bot or looks_like_bot(parsed.ua_string)
    browser = _BROWSER_NAMES.get(parsed.browser.family, parsed.browser.family)
    system = _OS_NAMES.get(parsed.os.family, parsed.os.family)
    return Agent(_clip(browser, MAX_AGENT_FIELD_CHARS), _clip(system, MAX_AGENT_FIELD_CHARS), device, is_bot)


def parse_agent(user_agent: str) -> Agent:
    """Classify a user-agent string with the fast resolver (the Runtime keeps an LRU cache of this function)."""
    return classify_agent(_FastUserAgent(user_agent))


def parse_agent_slow(user_agent: str) -> Agent:
    """The same through user-agents' own parser (~500 µs); the benchmark compares it with parse_agent."""
    return classify_agent(user_agents.parse(user_agent))


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


def _strip_www(host: str | None) -> str | None:
    if host and host.startswith("www."):
        return host[4:]
    return host


_TRAILING_SLASH_RE = re.compile(r"/(?=(#.*)?$)")


def enrich(hit: Hit, website_key: int, agent: Agent, session_id: str, location: Location | None = None,
           remove_trailing_slash: bool = False) -> tuple[SessionRow, EventRow | None]:  # fmt: skip
    """Derive the session and event rows of a validated hit: device, location, URL parts, referrer, campaign parameters."""
    device = hit.device if hit.device is not None else _device_class(agent, hit.screen)
    location = location or NOWHERE
    session = SessionRow(
        session_id=session_id,
        website_key=website_key,
        browser=_clip(hit.browser if hit.browser is not None else agent.browser, MAX_AGENT_FIELD_CHARS),
        os=_clip(hit.os if hit.os is not None else agent.os, MAX_AGENT_FIELD_CHARS),
        device=_clip(device, MAX_AGENT_FIELD_CHARS),
        screen=hit.screen,
        language=hit.language,
        country=location.country,
        region=location.region,
        city=location.city,
        distinct_id=_clip(hit.distinct_id, MAX_DISTINCT_ID_CHARS),
        created_at=hit.created_at,
    )
    if hit.kind == "identify":
        return session, None
    base_host = hit.hostname or "localhost"
    # Like Umami's new URL(url, base): with no url (e.g. @umami/node) the host is the base, localhost when none is sent.
    host, path, query, fragment = hit.url if hit.url else (base_host, "", "", "")
    host = host or base_host
    title = hit.title
    if title and "%" in title:
        with contextlib.suppress(UnicodeDecodeError):
            title = unquote(title, errors="strict")  # Umami decodeURIComponent()s titles (an old tracker encoded them)
    if hit.kind == "performance":
        # Umami keeps only the path (no hash or query), the title and the vitals for performance events.
        return session, EventRow(hit.created_at, EVENT_PERFORMANCE, None, _clip(_decode_uri(path), MAX_URL_CHARS) or "",
                                 None, None, None, None, 0, _clip(title, MAX_URL_CHARS), None, None,
                                 *([None] * len(_CAMPAIGN_PARAMS)), *hit.vitals, hit.duration)  # fmt: skip
    url_path = _decode_uri(path + ("#" + fragment if fragment else ""))
    if remove_trailing_slash:
        url_path = _TRAILING_SLASH_RE.sub("", url_path, count=1)
    hostname = _clip(hit.hostname or _strip_www(host), MAX_HOSTNAME_CHARS)
    campaign: list[str | None] = [None] * len(_CAMPAIGN_PARAMS)
    if query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(key, value)  # URLSearchParams.get() returns the first
        campaign = [_clip(params.get(name), MAX_CAMPAIGN_CHARS) for name in _CAMPAIGN_PARAMS]
    ref_path = ref_query = ref_domain = None
    if hit.referrer:
        r_host, r_path, r_query, _ = hit.referrer
        ref_domain, ref_path, ref_query = _strip_www(r_host or base_host), _decode_uri(r_path), r_query
    # A referrer on the event's own site is stored but marked, so reports don't count the site as its own source.
    self_referral = int(bool(ref_domain) and ref_domain == _strip_www(hostname))
    event = EventRow(
        hit.created_at,
        EVENT_CUSTOM if hit.name else EVENT_PAGEVIEW,
        _clip(hit.name, MAX_EVENT_NAME_CHARS),
        url_path[:MAX_URL_CHARS],
        _clip(query, MAX_URL_CHARS) or None,
        _clip(ref_path, MAX_URL_CHARS),
        _clip(ref_query, MAX_URL_CHARS) or None,
        _clip(ref_domain, MAX_URL_CHARS) or None,
        self_referral,
        _clip(title, MAX_URL_CHARS),
        hostname,
        hit.tag,
        *campaign,
        *hit.vitals,
        None,
    )
    return session, event


###############################################################################################################################
# Client and location
###############################################################################################################################
# Who sent a hit and from where. Forwarding headers are believed only from trusted proxies (footfall differs from Umami,
# which believes them from anyone); the location comes from a trusted CDN's headers, else a MaxMind-format database given
# with --geoip-db, else the country data embedded with the package. The IP itself is never stored.

#: Headers Umami reads the client address from, in its order (src/lib/ip.ts); the first one present wins.
CLIENT_IP_HEADERS = (
    "true-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-nf-client-connection-ip", "do-connecting-ip",
    "x-real-ip", "x-appengine-user-ip", "x-forwarded-for", "forwarded", "x-client-ip", "x-cluster-client-ip",
    "x-forwarded",
)  # fmt: skip
#: CDN location headers (country, region, city) per provider, in Umami's order (src/lib/detect.ts).
CDN_GEO_HEADERS = (
    ("cf-ipcountry", "cf-region-code", "cf-ipcity"),
    ("x-vercel-ip-country", "x-vercel-ip-country-region", "x-vercel-ip-city"),
    ("cloudfront-viewer-country", "cloudfront-viewer-country-region", "cloudfront-viewer-city"),
    ("eo-ipcountry", "eo-region-code", "eo-ipcity"),
)
MAX_REGION_CHARS = 20
MAX_CITY_CHARS = 50
#: Version of the embedded-geo cache file layout; a new one is built when this or geoip2fast's version changes.
GEO_CACHE_VERSION = 1
_GEO_MAGIC = b"FFGEO\x00\x00\x01"
_GEO_HEADER = struct.Struct("<8sIII")  # magic, IPv4 ranges, IPv6 ranges, countries

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR_RE = re.compile(r'for="?(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+)', re.IGNORECASE)


def parse_networks(text: str, setting: str) -> tuple[Network, ...]:
    """A comma list of IPs and CIDRs (IPv4 and IPv6) as networks; ConfigError naming the bad entry."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{setting}: {item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


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


def _in_any(address: IPAddress | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


class ClientPolicy(NamedTuple):
    """Which peers are trusted proxies, which header names the client, and which clients are ignored."""

    trusted: tuple[Network, ...]
    header: str | None
    allow_payload_ip: bool
    ignored: tuple[Network, ...]


class Client(NamedTuple):
    """The resolved sender of a hit."""

    address: IPAddress | None
    trusted_peer: bool  # the socket peer is a trusted proxy, so its forwarding and CDN headers are believed
    from_payload: bool  # payload.ip was used (CDN location headers then describe the proxy's client, not this one)

    @property
    def ip(self) -> str:
        return "" if self.address is None else str(self.address)


def resolve_client(peer: str, headers: Mapping[str, str], payload_ip: str | None, policy: ClientPolicy) -> Client:
    """The client address: payload.ip (if allowed), else a forwarding header from a trusted proxy, else the socket peer."""
    peer_address = normalize_ip(peer)
    trusted = _in_any(peer_address, policy.trusted)
    if payload_ip and (trusted or policy.allow_payload_ip):
        address = normalize_ip(payload_ip)
        if address is not None:
            return Client(address, trusted, True)
    if trusted:
        for name in (policy.header,) if policy.header else CLIENT_IP_HEADERS:
            value = headers.get(name)
            if not value:
                continue
            if name == "x-forwarded-for":
                value = value.partition(",")[0]
            elif name == "forwarded":
                match = _FORWARDED_FOR_RE.search(value)
                value = match.group(1) if match else ""
            address = normalize_ip(value)
            if address is not None:
                return Client(address, True, False)
            break  # as Umami, only the first header present counts; garbage in it falls back to the peer
    return Client(peer_address, trusted, False)


_RATE_RE = re.compile(r"(\d+)\s*/\s*([sm])")


def parse_rate(text: str) -> float | None:
    """Requests per second from a --rate-limit like '4/s' or '120/m'; None when empty (no limit)."""
    if not text.strip():
        return None
    match = _RATE_RE.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"rate_limit must look like 4/s or 120/m, not {text!r}")
    return int(match.group(1)) / (1 if match.group(2) == "s" else 60)


class RateLimiter:
    """A token bucket per client address: ``rate`` requests a second, bursts up to one second's (or minute's) worth.

    Buckets idle long enough to be full again are dropped by ``sweep()``, so memory follows the active clients only.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._buckets: dict[IPAddress | None, list[float]] = {}  # address → [tokens, last refill time]

    def check(self, address: IPAddress | None, now: float) -> None:
        """Take one token for ``address``, or raise 429 saying when the next one is due."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = [self.burst, now]
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] < 1:
            raise too_many_requests(max(1, math.ceil((1 - bucket[0]) / self.rate)))
        bucket[0] -= 1

    def sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {a: b for a, b in self._buckets.items() if now - b[1] < full_after}

    def __len__(self) -> int:
        return len(self._buckets)


class Location(NamedTuple):
    """Where a client is: ISO 3166-1 alpha-2 country, ISO 3166-2 'CC-RR' region, city name; each may be None."""

    country: str | None
    region: str | None
    city: str | None


NOWHERE = Location(None, None, None)


def _header_text(value: str | None) -> str | None:
    """A CDN header value: latin-1 bytes re-read as UTF-8, then percent-decoded, as Umami does."""
    if not value:
        return None
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    with contextlib.suppress(UnicodeDecodeError):
        value = unquote(value, errors="strict")
    return value.strip() or None


def _region_code(country: str, region: str | None) -> str | None:
    if not region:
        return None
    return _clip(region if "-" in region else f"{country}-{region}", MAX_REGION_CHARS)


def _valid_country(code: str | None) -> str | None:
    code = (code or "").strip().upper()
    # XX (unknown) and T1 (Tor) are Cloudflare's non-countries.
    return code if len(code) == 2 and code.isalpha() and code.isascii() and code not in ("XX", "T1") else None


def location_from_headers(headers: Mapping[str, str]) -> Location | None:
    """The location a CDN put in its headers (first provider whose country header is present), or None."""
    for country_header, region_header, city_header in CDN_GEO_HEADERS:
        raw = headers.get(country_header)
        if raw:
            country = _valid_country(_header_text(raw))
            if country is None:
                return NOWHERE
            city = _header_text(headers.get(city_header))
            return Location(country, _region_code(country, _header_text(headers.get(region_header))),
                            _clip(city, MAX_CITY_CHARS))  # fmt: skip
    return None


def _is_local(address: IPAddress) -> bool:
    return address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified or \
        address.is_multicast or address.is_reserved  # fmt: skip


class MaxMindGeo:
    """A MaxMind-format City (or Country) database, memory-mapped with maxminddb."""

    def __init__(self, path: str) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(path, maxminddb.MODE_MMAP)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(f"geoip_db: cannot read {path}: {exc}") from None

    def lookup(self, address: IPAddress) -> Location | None:
        try:
            record = self._reader.get(address)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        country = _valid_country((record.get("country") or record.get("registered_country") or {}).get("iso_code"))
        if country is None:
            return None
        subdivisions = record.get("subdivisions") or [{}]
        city = ((record.get("city") or {}).get("names") or {}).get("en")
        return Location(country, _region_code(country, subdivisions[0].get("iso_code")), _clip(city, MAX_CITY_CHARS))

    def close(self) -> None:
        self._reader.close()


def geo_cache_path() -> Path:
    """Where the embedded country data is cached: systemd's CacheDirectory, else the XDG cache directory."""
    import importlib.metadata

    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    source_version = importlib.metadata.version("geoip2fast")
    return Path(base) / "footfall" / f"geo-{source_version}-{GEO_CACHE_VERSION}-{sys.byteorder}.bin"


def build_geo_cache(out: Path) -> None:
    """Convert geoip2fast's bundled country data into footfall's compact file: sorted range arrays, 10-18 bytes a range.

    Loading geoip2fast's pickle costs 35-85 MB of RSS, so footfall runs this once, in a child process, and afterwards only
    memory-maps the result (~6 MB). IPv6 ranges keep the top 64 bits of their bounds (allocations are /64 or wider; a few
    hundred longer prefixes resolve to a neighbour's country).
    """
    import array
    import gzip
    import importlib.util
    import pickle

    spec = importlib.util.find_spec("geoip2fast")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).with_name("geoip2fast-ipv6.dat.gz")
    with gzip.open(source, "rb") as handle:
        _version, _info, _total, database = pickle.load(handle)  # the installed package's own data file  # noqa: S301
    _index, names, starts, country_ids, netlengths = database
    codes = [name.split(":", 1) for name in names]
    v4 = (array.array("I"), array.array("I"), array.array("H"))
    v6 = (array.array("Q"), array.array("Q"), array.array("H"))
    for chunk in zip(starts, netlengths, country_ids):
        for start, netlength, country_id in zip(*chunk):
            if country_id < 16 or not _valid_country(codes[country_id][0]):
                continue  # private, reserved or unknown: no location
            if start < 2**32 and netlength <= 32:
                target, first, last = v4, start, start + 2 ** (32 - netlength) - 1
            else:
                target, first, last = v6, start >> 64, (start + 2 ** (128 - netlength) - 1) >> 64
            target[0].append(first)
            target[1].append(last)
            target[2].append(country_id)
    table = msgspec.json.encode([[code, name] for code, name in codes])
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(f".tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(_GEO_HEADER.pack(_GEO_MAGIC, len(v4[0]), len(v6[0]), len(codes)))
        for part in (*v6[:2], *v4[:2], v4[2], v6[2]):  # 8-byte arrays first, so every array stays aligned
            handle.write(part.tobytes())
        handle.write(table)
    os.replace(temporary, out)


class EmbeddedGeo:
    """Country lookup in the compact file made by build_geo_cache: bisection over memory-mapped arrays (a few µs)."""

    def __init__(self, path: Path) -> None:
        import mmap

        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        magic, n4, n6, ncodes = _GEO_HEADER.unpack_from(self._map)
        if magic != _GEO_MAGIC:
            raise ValueError(f"{path} is not a footfall geo file")
        view = memoryview(self._map)
        offset = _GEO_HEADER.size

        def take(count: int, width: int, code: str) -> memoryview:
            nonlocal offset
            part = view[offset : offset + count * width].cast(code)
            offset += count * width
            return part

        self._v6_first, self._v6_last = take(n6, 8, "Q"), take(n6, 8, "Q")
        self._v4_first, self._v4_last = take(n4, 4, "I"), take(n4, 4, "I")
        self._v4_country, self._v6_country = take(n4, 2, "H"), take(n6, 2, "H")
        table = msgspec.json.decode(bytes(view[offset:]))
        self.codes: list[str] = [code for code, _ in table]
        #: ISO country code → English name (the summary page shows names).
        self.names: dict[str, str] = {code: name for code, name in table if _valid_country(code)}
        del view

    def lookup(self, address: IPAddress) -> Location | None:
        if address.version == 4:
            number, first, last, country = int(address), self._v4_first, self._v4_last, self._v4_country
        else:
            number, first, last, country = int(address) >> 64, self._v6_first, self._v6_last, self._v6_country
        index = bisect.bisect_right(first, number) - 1
        if index < 0 or number > last[index]:
            return None
        return Location(self.codes[country[index]], None, None)

    def close(self) -> None:
        self._v4_first = self._v4_last = self._v4_country = self._v6_first = self._v6_last = self._v6_country = None  # type: ignore[assignment]
        self._map.close()


def load_embedded_geo() -> EmbeddedGeo | None:
    """The embedded country data, building its cache file first (in a child process) when missing; None if unavailable."""
    path = geo_cache_path()
    try:
        if not path.exists():
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "build-geo-cache", str(path)],
                           check=True, timeout=300, capture_output=True)  # fmt: skip
        return EmbeddedGeo(path)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("event=geo-unavailable path=%s error=%r", path, str(exc))
        return None


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

    def location(self, client: Client, geo: Sequence[MaxMindGeo | EmbeddedGeo]) -> Location:
        found = self._locations.get(client.address)
        if found is None:
            found = self._locations[client.address] = locate(client, self.headers, geo)
        return found


def origin_of(request: Request) -> Origin:
    """The Origin of an HTTP request: its peer address and headers."""
    client = request.scope.get("client")
    return Origin(client[0] if client else "", request.headers)


def locate(client: Client, headers: Mapping[str, str], geo: Sequence[MaxMindGeo | EmbeddedGeo]) -> Location:
    """The client's location: trusted CDN headers, else each geo database in turn; nothing for local addresses."""
    if client.trusted_peer and not client.from_payload:
        found = location_from_headers(headers)
        if found is not None:
            return found
    if client.address is None or _is_local(client.address):
        return NOWHERE
    for source in geo:
        found = source.lookup(client.address)
        if found is not None:
            return found
    return NOWHERE


###############################################################################################################################
# Sessions and visits
###############################################################################################################################


def umami_uuid(*parts: str | None, secret: str) -> str:
    """Umami's ``uuid(...parts)``: UUIDv5 in the DNS namespace of sha512-hex(parts joined, then the secret)."""
    name = "".join(p or "" for p in parts) + secret
    return str(uuid.uuid5(UMAMI_UUID_NAMESPACE, hashlib.sha512(name.encode()).hexdigest()))


def derive_session_id(website_id: str, ip: str, user_agent: str, salt: str, secret: str,
                      distinct_id: str | None = None) -> str:  # fmt: skip
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
        return [key for key, (_, _, ends_at) in self._salts.items()
                if ends_at + SALT_GRACE_SECONDS <= now or not key.startswith(self.rotation + ":")]  # fmt: skip

    def add(self, period: Period, salt: str) -> None:
        self._salts[period.key] = (salt, period.starts_at, period.ends_at)

    def remove(self, key: str) -> None:
        self._salts.pop(key, None)
        self._last = ("", 0, 0)


class VisitTracker:
    """Which visit each recently active session is in, so visits split after ``timeout`` seconds of silence.

    Map: session_id → [visit_id, started_at, last_seen]. Ordered oldest activity first, so eviction looks at the front.
    """

    def __init__(self, timeout: int, secret: str, max_sessions: int = MAX_TRACKED_SESSIONS) -> None:
        self.timeout = timeout
        self._secret = secret
        self._max = max_sessions
        self._visits: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._visits)

    def restore(self, session_id: str, visit_id: str, started_at: int, last_seen: int) -> None:
        """Remember a visit found in the database at start-up."""
        self._visits[session_id] = [visit_id, started_at, last_seen]

    def visit_for(self, session_id: str, at: int) -> tuple[str, int]:
        """The (visit_id, started_at) an event of this session at time ``at`` belongs to; starts a visit when needed."""
        state = self._visits.get(session_id)
        if state is not None and state[1] - self.timeout <= at <= state[2] + self.timeout:
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
    raw = _TOKEN_LAYOUT.pack(uuid.UUID(website_id).bytes, uuid.UUID(session_id).bytes, uuid.UUID(visit_id).bytes,
                             int(now))  # fmt: skip
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]
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
    if not hmac.compare_digest(mac, hmac.new(key, raw, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]):
        return None
    website, session, visit, issued_at = _TOKEN_LAYOUT.unpack(raw)
    if not now - TOKEN_MAX_AGE_SECONDS <= issued_at <= now + 60:
        return None
    return CacheToken(str(uuid.UUID(bytes=website)), str(uuid.UUID(bytes=session)), str(uuid.UUID(bytes=visit)),
                      issued_at)  # fmt: skip


###############################################################################################################################
# Storage
###############################################################################################################################
# The schema is schema.sql (public). prepare_database() applies it and the migrations below once at start, synchronously;
# then the server holds one aiosqlite connection for the writer and one for reads.


#: Numbered migrations: version → function run in one transaction with the bump to that version. Version 1 is schema.sql.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def _connect_pragmas(busy_timeout_ms: int) -> str:
    return ";".join((
        "PRAGMA journal_mode=WAL",  # readers (sqlite3 shell, summary page) never block the writer, nor it them
        "PRAGMA synchronous=NORMAL",  # durable across a process crash (kill -9); WAL makes it safe from corruption
        f"PRAGMA busy_timeout={int(busy_timeout_ms)}",  # wait this long for a lock another program holds
        "PRAGMA foreign_keys=ON",  # keys between events, sessions and visits stay consistent
        # After a long reader (someone's sqlite3 shell) held checkpoints back, shrink the WAL file back to this size.
        f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}",
    ))  # fmt: skip


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
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


class Prepared(NamedTuple):
    """What start-up learns from the database."""

    secret: str
    salts: dict[str, tuple[str, int, int]]
    default_website_id: str | None  # set when this start created the 'default' website


def connect(path: str, busy_timeout_ms: int = 5000, shared: bool = False) -> sqlite3.Connection:
    """A stdlib connection with footfall's PRAGMAs, in autocommit mode (transactions are explicit).

    ``shared``: usable from any thread (the caller makes sure only one uses it at a time).
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000, check_same_thread=not shared)
    conn.executescript(_connect_pragmas(busy_timeout_ms))
    return conn


def prepare_database(path: str, rotation: str = "month", now: float | None = None,
                     migrations: Mapping[int, Callable[[sqlite3.Connection], None]] = MIGRATIONS) -> Prepared:  # fmt: skip
    """Create or upgrade the database: schema, migrations, install secret, salts, and a 'default' site if there is none."""
    now = time.time() if now is None else now
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open database {path}: {exc}") from None
    try:
        conn.executescript(asset_path("schema.sql").read_text(encoding="utf-8"))
        apply_migrations(conn, migrations)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR IGNORE INTO setting (name, value, updated_at) VALUES ('install_secret', ?, ?)",
                     (secrets.token_hex(32), int(now)))  # fmt: skip
        secret = conn.execute("SELECT value FROM setting WHERE name = 'install_secret'").fetchone()[0]
        default_id = None
        if conn.execute("SELECT count(*) FROM website").fetchone()[0] == 0:
            default_id = str(uuid.uuid4())
            conn.execute("INSERT INTO website (website_id, name, created_at) VALUES (?, 'default', ?)", (default_id, int(now)))
        book = SaltBook(rotation, {row[0]: tuple(row[1:]) for row in conn.execute("SELECT period, salt, starts_at, ends_at FROM salt")})  # type: ignore[misc]  # noqa: E501
        rotation = plan_salt_rotation(book, now)
        for sql, params in rotation.statements():
            conn.execute(sql, params)
        rotation.apply(book)
        conn.execute("COMMIT")
        return Prepared(secret, dict(book._salts), default_id)
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
        return [*(("INSERT OR REPLACE INTO salt (period, salt, starts_at, ends_at) VALUES (?, ?, ?, ?)",
                   (p.key, salt, p.starts_at, p.ends_at)) for p, salt in self.created),
                *(("DELETE FROM salt WHERE period = ?", (key,)) for key in self.expired)]  # fmt: skip

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


class _Call(NamedTuple):
    """Maintenance work run by the writer between commits (only the writer writes)."""

    fn: Callable[[aiosqlite.Connection], Awaitable[Any]]
    future: asyncio.Future[Any]


STOP = object()  #: Queued by close(): everything before it is committed, then the writer ends.

_SESSION_INSERT = ("INSERT INTO session (session_key, session_id, website_key, browser, os, device, screen, language, "
                   "country, region, city, distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")  # fmt: skip
_VISIT_INSERT = "INSERT INTO visit (visit_key, visit_id, session_key, started_at) VALUES (?,?,?,?)"
_EVENT_INSERT = (f"INSERT INTO website_event (event_key, website_key, session_key, visit_key, {', '.join(EventRow._fields)}) "
                 f"VALUES ({', '.join('?' * (len(EventRow._fields) + 4))})")  # fmt: skip
_EVENT_DATA_INSERT = ("INSERT OR REPLACE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
                      "date_value) VALUES (?,?,?,?,?,?)")  # fmt: skip
_SESSION_DATA_UPSERT = (
    "INSERT INTO session_data (session_key, data_key, data_type, string_value, number_value, date_value, distinct_id, "
    "created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (session_key, data_key) DO UPDATE SET data_type = excluded.data_type, "
    "string_value = excluded.string_value, number_value = excluded.number_value, date_value = excluded.date_value, "
    "distinct_id = excluded.distinct_id, created_at = excluded.created_at"
)
_BOT_UPSERT = ("INSERT INTO bot_counter (website_key, day, hits) VALUES (?,?,?) "
               "ON CONFLICT (website_key, day) DO UPDATE SET hits = hits + excluded.hits")  # fmt: skip


class EventWriter:
    """The one task that writes events. Invariants:

    * Only this task writes to the database (maintenance goes through ``call()``).
    * ``submit()`` returns only after its records are committed: a request is acknowledged only then.
    * Records are group-committed: whatever is queued when a commit starts (up to WRITE_BATCH_MAX_EVENTS) goes into one
      ``BEGIN IMMEDIATE … COMMIT``, so throughput grows with load instead of paying one fsync-free commit per event.
    * At most ``max_pending`` events wait at once; past that ``submit()`` raises ``unavailable`` (503), so memory stays
      bounded under overload.
    * ``close()`` queues STOP: everything queued before it is committed, then the connection closes.
    * A database that is busy, full or read-only is retried WRITE_ATTEMPTS times with back-off; then the waiting requests
      get 503, and the writer goes on with the next ones, so footfall recovers by itself when the condition clears.
    * Integer keys are assigned here (max(key) + n, read inside the transaction), so a batch is a few ``executemany``
      calls whatever its size.
    """

    def __init__(self, path: str, busy_timeout_ms: int, max_pending: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.max_pending = max_pending
        self.pending = 0  #: events submitted and not yet committed or failed
        self.commits = 0  #: transactions committed (a batch request is exactly one)
        self.committed = 0  #: records committed since start
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sessions = _KeyCache(MAX_CACHED_KEYS)
        self._visits = _KeyCache(MAX_CACHED_KEYS)
        self._bots: collections.Counter[tuple[int, str]] = collections.Counter()
        self._last_error_log = 0.0

    async def start(self) -> None:
        """Open the write connection and start the writer task."""
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self._conn.executescript(_connect_pragmas(self.busy_timeout_ms))
        self._task = asyncio.create_task(self._writer_loop(), name="footfall-writer")

    def remember(self, session_id: str, session_key: int, visit_id: str, visit_key: int) -> None:
        """Seed the key caches (start-up loads the visits still open)."""
        self._sessions.put(session_id, session_key)
        self._visits.put(visit_id, visit_key)

    def count_bot(self, website_key: int, day: str) -> None:
        """Count one refused bot request; folded into the next commit (not acknowledged, so never waited for)."""
        self._bots[(website_key, day)] += 1

    async def submit(self, records: list[Record]) -> None:
        """Queue records and wait until they are committed; 503 if the queue is full or the database unavailable."""
        if self._closing:
            raise unavailable("footfall is shutting down; send again shortly.")
        if self.pending + len(records) > self.max_pending:
            raise unavailable("footfall is overloaded; send again shortly.")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending += len(records)
        self._queue.put_nowait(WriteJob(records, future))
        try:
            await asyncio.shield(future)  # a client hanging up must not cancel a commit other requests share
        except DatabaseUnavailable as exc:
            raise unavailable(f"The database cannot be written right now ({exc}); send again shortly.") from None

    async def call(self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """Run ``fn(connection)`` in the writer task between commits, and return its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Call(fn, future))
        return await future

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (tests and shutdown use this instead of sleeping)."""
        async def nothing(conn: aiosqlite.Connection) -> None:
            return None

        await self.call(nothing)

    async def close(self) -> None:
        """Stop accepting, commit everything queued, close the connection. Safe to call twice."""
        if self._task is None:
            return
        self._closing = True
        self._queue.put_nowait(STOP)
        await self._task
        self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _writer_loop(self) -> None:
        while True:
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
            if stop_after:
                await self._commit_jobs([])
                return

    async def _run_call(self, call: _Call) -> None:
        assert self._conn is not None
        await self._commit_jobs([])  # pending bot counts first, so flush() covers them too
        try:
            result = await call.fn(self._conn)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            if self._conn.in_transaction:
                await self._conn.rollback()
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
        conn = self._conn
        assert conn is not None
        bots, self._bots = self._bots, collections.Counter()
        new_sessions: dict[str, int] = {}
        new_visits: dict[str, int] = {}
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Event keys never go back below the rollups' watermark (after `forget` deleted the newest events), so
            # every event the rollups have not seen has a key above it.
            async with conn.execute(
                "SELECT (SELECT ifnull(max(session_key), 0) FROM session), (SELECT ifnull(max(visit_key), 0) FROM visit),"
                " max((SELECT ifnull(max(event_key), 0) FROM website_event),"
                " ifnull((SELECT CAST(value AS INTEGER) FROM setting WHERE name = 'rollup_event_key'), 0))"
            ) as cur:
                next_session, next_visit, next_event = await cur.fetchone()  # type: ignore[misc]
            session_keys = await self._resolve(conn, "session", [r.session.session_id for r in records], self._sessions)
            session_rows = []
            for r in records:
                sid = r.session.session_id
                if sid not in session_keys:
                    next_session += 1
                    session_keys[sid] = new_sessions[sid] = next_session
                    session_rows.append((next_session, *r.session))
            visit_keys = await self._resolve(conn, "visit", [r.visit_id for r in records], self._visits)
            visit_rows, event_rows, data_rows, session_data_rows = [], [], [], []
            for r in records:
                session_key = session_keys[r.session.session_id]
                if r.visit_id not in visit_keys:
                    next_visit += 1
                    visit_keys[r.visit_id] = new_visits[r.visit_id] = next_visit
                    visit_rows.append((next_visit, r.visit_id, session_key, r.visit_started_at))
                if r.event is not None:
                    next_event += 1
                    event_rows.append((next_event, r.session.website_key, session_key, visit_keys[r.visit_id], *r.event))
                    data_rows.extend((next_event, *d) for d in r.event_data)
                for d in r.session_data:
                    session_data_rows.append((session_key, *d, r.session.distinct_id, r.session.created_at))
            for sql, rows in ((_SESSION_INSERT, session_rows), (_VISIT_INSERT, visit_rows), (_EVENT_INSERT, event_rows),
                              (_EVENT_DATA_INSERT, data_rows), (_SESSION_DATA_UPSERT, session_data_rows),
                              (_BOT_UPSERT, [(w, d, n) for (w, d), n in bots.items()])):  # fmt: skip
                if rows:
                    await conn.executemany(sql, rows)
            await conn.execute("COMMIT")
            self.commits += 1
            self.committed += len(records)
        except BaseException:
            if conn.in_transaction:
                await conn.rollback()
            self._bots.update(bots)  # counts are not lost with the failed transaction
            raise
        for sid, key in new_sessions.items():
            self._sessions.put(sid, key)
        for vid, key in new_visits.items():
            self._visits.put(vid, key)

    @staticmethod
    async def _resolve(conn: aiosqlite.Connection, table: str, ids: list[str], cache: _KeyCache) -> dict[str, int]:
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
            async with conn.execute(sql, chunk) as cur:
                for uuid_text, key in await cur.fetchall():
                    found[uuid_text] = key
                    cache.put(uuid_text, key)
        return found


###############################################################################################################################
# Summary rollups
###############################################################################################################################
# The summary page reads hourly rollups (schema.sql: rollup, rollup_visitors, rollup_vitals). They are recomputed, never
# incremented: every refresh takes the hours touched by events written since the last one (a watermark on event_key), deletes
# those hours' rows and recomputes them from website_event. So a rollup hour is always exactly what its events say, whatever
# order events arrived in, and the same code rebuilds everything (watermark 0), serves a filtered page (the same counts for a
# subset of visits) and repairs the hours a prune or `forget` changed.
#
# A refresh reads in one snapshot, computes in Python, then writes in a short transaction that first checks that nobody
# deleted events meanwhile (prune, retention and forget bump 'rollup_epoch'); if somebody did, it starts over.

#: Rollup granularity, in seconds. Day boundaries of every time zone in use today are whole hours apart from UTC's, or
#: half or three-quarter hours, which the alignment ('rollup_shift') takes care of.
ROLLUP_BUCKET_SECONDS = 3600
#: The server refreshes rollups this often, in seconds, or less often if a refresh takes over 5% of that (and always right
#: before it renders a summary).
ROLLUP_REFRESH_SECONDS = 10.0
#: Above this many events a second written, background refreshes wait for a quieter moment.
ROLLUP_BUSY_EVENTS_PER_SECOND = 200
#: Events one refresh round reads at most; a rebuild of a big database goes round by round (memory stays bounded).
ROLLUP_ROUND_EVENTS = 250_000
#: Visit attributes the summary lists (visits per value).
VISIT_DIMENSIONS = ("entry", "exit", "referrer", "utm_source", "utm_medium", "utm_campaign",
                    "country", "browser", "os", "device", "language", "screen")  # fmt: skip
#: Visit attributes that are the session's: a filter on them is decided by a visit's first event.
_SESSION_FILTERS = ("country", "browser", "os", "device", "language", "screen")
#: Web vitals, in the order of website_event's columns.
VITALS = ("lcp", "inp", "cls", "fcp", "ttfb")
#: Every metric of the rollup table (their rows are deleted together when an hour is recomputed).
ROLLUP_METRICS = ("pageviews", "events", "visits", "bounces", "duration", "page", "event", "event_key", "reports",
                  *VISIT_DIMENSIONS)  # fmt: skip


def bucket_of(at: int, shift: int) -> int:
    """Start of the rollup hour holding Unix time ``at``; hours start ``shift`` seconds after UTC's."""
    return at - (at - shift) % ROLLUP_BUCKET_SECONDS


#: The hourly rollup tables and their daily sums.
ROLLUP_TABLES = ("rollup", "rollup_visitors", "rollup_vitals", "rollup_daily", "rollup_daily_visitors", "rollup_daily_vitals")


def day_of(at: int, zone: dt.tzinfo) -> int:
    """The local midnight (Unix seconds) starting the day of ``zone`` that holds Unix time ``at``."""
    return _day_start(dt.datetime.fromtimestamp(at, zone).date(), zone)


def next_day(day: int, zone: dt.tzinfo) -> int:
    """The local midnight after the one at ``day`` (days are 23 to 25 hours long where clocks change)."""
    return _day_start(dt.datetime.fromtimestamp(day, zone).date() + dt.timedelta(days=1), zone)


def _day_start(day: dt.date, zone: dt.tzinfo) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=zone).timestamp())


def bucket_shift(zone: dt.tzinfo, at: float) -> int:
    """The alignment of ``zone``'s hours to UTC's at time ``at``, in seconds (0, 1800 or 2700 for today's zones)."""
    offset = dt.datetime.fromtimestamp(at, dt.timezone.utc).astimezone(zone).utcoffset() or dt.timedelta(0)
    return int(offset.total_seconds()) % ROLLUP_BUCKET_SECONDS


def vital_bin(value: float) -> float:
    """``value`` rounded to two significant figures: the resolution of the web-vitals histograms."""
    if value <= 0:
        return 0.0
    return round(value, 1 - math.floor(math.log10(value)))


class EventFact(NamedTuple):
    """The columns of one event the rollups need."""

    event_key: int
    visit_key: int
    website_key: int
    session_key: int
    created_at: int
    event_type: int
    event_name: str | None
    url_path: str
    referrer_domain: str | None
    self_referral: int
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    duration: int | None
    lcp: float | None
    inp: float | None
    cls: float | None
    fcp: float | None
    ttfb: float | None


_FACT_COLUMNS = ", ".join(f"e.{name}" for name in EventFact._fields)
_FACT_ORDER = " ORDER BY e.visit_key, e.created_at, e.event_key"


class VisitFact(NamedTuple):
    """One visit as the summary counts it (see schema.sql, "Summary page")."""

    visit_key: int
    website_key: int
    session_key: int
    started_at: int
    pageviews: int
    custom_events: int
    duration_s: int
    entry: str | None
    exit: str | None
    referrer: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    country: str | None
    browser: str | None
    os: str | None
    device: str | None
    language: str | None
    screen: str | None


_FIRST_DIMENSION = VisitFact._fields.index(VISIT_DIMENSIONS[0])
assert VisitFact._fields[_FIRST_DIMENSION:] == VISIT_DIMENSIONS


class VisitBuilder:
    """Summarises one visit from its events, fed in time order (created_at, then event_key), without keeping them."""

    __slots__ = ("first", "attributes", "landing", "last_page", "last_at", "pageviews", "custom_events", "reported_ms",
                 "page", "event", "saw_page", "saw_event")  # fmt: skip

    def __init__(self, first: EventFact, attributes: Sequence[str | None], page: str | None = None,
                 event: str | None = None) -> None:  # fmt: skip
        self.first, self.attributes = first, attributes
        self.landing: EventFact | None = None  # the first pageview
        self.last_page: str | None = None
        self.last_at = first.created_at
        self.pageviews = self.custom_events = self.reported_ms = 0
        self.page, self.event = page, event  # filter values to look out for
        self.saw_page = self.saw_event = False

    def add(self, e: EventFact) -> None:
        self.last_at = e.created_at
        self.reported_ms += e.duration or 0
        if e.event_type == EVENT_PAGEVIEW:
            self.pageviews += 1
            if self.landing is None:
                self.landing = e
            self.last_page = e.url_path
            self.saw_page = self.saw_page or e.url_path == self.page
        elif e.event_type == EVENT_CUSTOM:
            self.custom_events += 1
            self.saw_event = self.saw_event or (e.event_name or "") == self.event

    def fact(self) -> VisitFact:
        first, landing = self.first, self.landing or self.first
        return VisitFact(
            first.visit_key, first.website_key, first.session_key, first.created_at, self.pageviews, self.custom_events,
            max(self.last_at - first.created_at, self.reported_ms // 1000),
            self.landing.url_path if self.landing else None, self.last_page,
            landing.referrer_domain if landing.referrer_domain and not landing.self_referral else None,
            landing.utm_source, landing.utm_medium, landing.utm_campaign, *self.attributes,
        )  # fmt: skip


class Rollups:
    """Rollup rows being computed for a set of hours: what the three rollup tables will hold for them."""

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.counts: collections.Counter[tuple[int, str, int, str]] = collections.Counter()
        self.visitors: collections.Counter[tuple[int, int, int]] = collections.Counter()
        self.vitals: collections.Counter[tuple[int, int, str, str, float]] = collections.Counter()

    def add_event(self, e: EventFact) -> None:
        """Count one event in its hour: pageviews and pages, custom events, web vitals."""
        hour = bucket_of(e.created_at, self.shift)
        counts = self.counts
        if e.event_type == EVENT_PAGEVIEW:
            counts[(e.website_key, "pageviews", hour, "")] += 1
            counts[(e.website_key, "page", hour, e.url_path)] += 1
        elif e.event_type == EVENT_CUSTOM:
            counts[(e.website_key, "events", hour, "")] += 1
            counts[(e.website_key, "event", hour, e.event_name or "")] += 1
        elif e.event_type == EVENT_PERFORMANCE:
            counts[(e.website_key, "reports", hour, e.url_path)] += 1
            for name, value in zip(VITALS, e[-5:]):
                if value is not None:
                    self.vitals[(e.website_key, hour, name, e.url_path, vital_bin(value))] += 1

    def add_event_key(self, website_key: int, created_at: int, event_name: str | None, data_key: str) -> None:
        """Count one data key of a custom event."""
        value = msgspec.json.encode([event_name or "", data_key]).decode()
        self.counts[(website_key, "event_key", bucket_of(created_at, self.shift), value)] += 1

    def add_visit(self, visit: VisitFact) -> None:
        """Count one visit in the hour it started: totals, bounce, duration and its attributes."""
        hour = bucket_of(visit.started_at, self.shift)
        key = visit.website_key
        counts = self.counts
        counts[(key, "visits", hour, "")] += 1
        counts[(key, "bounces", hour, "")] += visit.pageviews == 1 and visit.custom_events == 0
        counts[(key, "duration", hour, "")] += visit.duration_s
        for name, value in zip(VISIT_DIMENSIONS, visit[_FIRST_DIMENSION:]):
            if value:
                counts[(key, name, hour, value)] += 1

    def add_visitor(self, website_key: int, started_at: int, previous: int | None) -> None:
        """Count a visit in rollup_visitors: by its hour and the hour of the session's previous visit (None: none)."""
        since = 0 if previous is None else bucket_of(previous, self.shift)
        self.visitors[(website_key, bucket_of(started_at, self.shift), since)] += 1

    def rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows for rollup, rollup_visitors and rollup_vitals (zero counts left out)."""
        return ([(*k, n) for k, n in self.counts.items() if n], [(*k, n) for k, n in self.visitors.items()],
                [(*k, n) for k, n in self.vitals.items()])  # fmt: skip


def _hour_runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs of rollup hours as [start, end) time ranges."""
    runs: list[list[int]] = []
    for hour in sorted(hours):
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + ROLLUP_BUCKET_SECONDS
        else:
            runs.append([hour, hour + ROLLUP_BUCKET_SECONDS])
    return [(a, b) for a, b in runs]


#: Scratch tables of one aggregation (temporary: this connection's own, gone with it).
_AGGREGATION_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS agg_candidate (visit_key INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS agg_visit (visit_key INTEGER PRIMARY KEY, website_key INTEGER, session_key INTEGER, "
    "started_at INTEGER, counted INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS agg_session_visit (visit_key INTEGER PRIMARY KEY, session_key INTEGER, started_at INTEGER)",
)
#: Every event of the candidate visits with its session's attributes, visit by visit (the visit_key index gives the order).
_CANDIDATE_EVENTS = (f"SELECT {_FACT_COLUMNS}, s.country, s.browser, s.os, s.device, s.language, s.screen "
                     f"FROM temp.agg_candidate c CROSS JOIN website_event e ON e.visit_key = c.visit_key "
                     f"CROSS JOIN session s ON s.session_key = e.session_key ORDER BY c.visit_key, e.created_at, e.event_key")  # fmt: skip
# (CROSS JOIN fixes the join order: SQLite knows nothing of the temporary table's size and would rather scan every event.)
_FACT_WIDTH = len(EventFact._fields)


def _visit_matches(fact: VisitFact, visit: VisitBuilder, filters: Mapping[str, str]) -> bool:
    for name, wanted in filters.items():
        if name == "page":
            if not visit.saw_page:
                return False
        elif name == "event":
            if not visit.saw_event:
                return False
        elif getattr(fact, name) != wanted:
            return False
    return True


def aggregate_visits(conn: sqlite3.Connection, shift: int, counts: Callable[[int, int], bool], filters: Mapping[str, str],
                     since_among_all: bool, covered: Callable[[int, int], bool] | None = None,
                     ) -> tuple[Rollups, dict[int, set[int]]]:  # fmt: skip
    """Rollup rows from the visits in temp.agg_candidate (streamed: memory holds counts, not events).

    ``counts(website_key, t)`` says whether an event or a visit start at time t is counted. With ``filters``, only visits
    matching all of them count. A visit's previous visit (for the visitor count) is the session's previous visit of all
    (``since_among_all``: the rollups) or of the matching ones (a filtered page). Returns the rows and the hours outside
    ``covered`` (default: the counted ones) whose visitor count depends on the counted visits (see collect_rollups).
    """
    covered = covered or counts
    out = Rollups(shift)
    conn.execute("DELETE FROM temp.agg_visit")
    pending: list[tuple[int, int, int, int, int]] = []
    decided_early = not (set(filters) - set(_SESSION_FILTERS))  # session attributes are known from a visit's first row
    page, event = filters.get("page"), filters.get("event")
    builder: VisitBuilder | None = None
    held: list[EventFact] = []  # counted events of the current visit, while its match is undecided

    def finish(visit: VisitBuilder) -> None:
        fact = visit.fact()
        if filters and not decided_early:
            if not _visit_matches(fact, visit, filters):
                held.clear()
                return
            for e in held:
                out.add_event(e)
            held.clear()
        counted = counts(fact.website_key, fact.started_at)
        if counted:
            out.add_visit(fact)
        pending.append((fact.visit_key, fact.website_key, fact.session_key, fact.started_at, counted))
        if len(pending) >= 5000:
            conn.executemany("INSERT INTO temp.agg_visit VALUES (?,?,?,?,?)", pending)
            pending.clear()

    skipping = -1  # a visit already known not to match
    for row in conn.execute(_CANDIDATE_EVENTS):
        e = EventFact(*row[:_FACT_WIDTH])
        if e.visit_key == skipping:
            continue
        if builder is None or e.visit_key != builder.first.visit_key:
            if builder is not None:
                finish(builder)
            builder = VisitBuilder(e, row[_FACT_WIDTH:], page, event)
            if filters and decided_early and not _visit_matches(builder.fact(), builder, filters):
                builder, skipping = None, e.visit_key
                continue
        builder.add(e)
        if counts(e.website_key, e.created_at):
            if filters and not decided_early:
                held.append(e)
            else:
                out.add_event(e)
    if builder is not None:
        finish(builder)
    conn.executemany("INSERT INTO temp.agg_visit VALUES (?,?,?,?,?)", pending)
    sql = ("SELECT e.website_key, e.created_at, e.event_name, d.data_key FROM temp.agg_visit a CROSS JOIN website_event e "
           "ON e.visit_key = a.visit_key CROSS JOIN event_data d ON d.event_key = e.event_key WHERE e.event_type = 2")  # fmt: skip
    for website_key, created_at, name, data_key in conn.execute(sql):
        if counts(website_key, created_at):
            out.add_event_key(website_key, created_at, name, data_key)
    follow: dict[int, set[int]] = collections.defaultdict(set)
    if since_among_all:  # every visit of the sessions concerned, with its start (its first event)
        conn.execute("DELETE FROM temp.agg_session_visit")
        conn.execute("INSERT INTO temp.agg_session_visit SELECT v.visit_key, v.session_key, (SELECT min(e.created_at) "
                     "FROM website_event e WHERE e.visit_key = v.visit_key) FROM visit v WHERE v.session_key IN "
                     "(SELECT session_key FROM temp.agg_visit WHERE counted)")  # fmt: skip
        source = "temp.agg_session_visit WHERE started_at IS NOT NULL"
    else:
        source = "temp.agg_visit"
    sql = (f"SELECT a.website_key, a.started_at, w.previous, w.next FROM temp.agg_visit a JOIN "
           f"(SELECT visit_key, lag(started_at) OVER win AS previous, lead(started_at) OVER win AS next FROM {source} "
           f"WINDOW win AS (PARTITION BY session_key ORDER BY started_at, visit_key)) w USING (visit_key) WHERE a.counted")
    for website_key, started, previous, following in conn.execute(sql):
        out.add_visitor(website_key, started, previous)
        if following is not None and since_among_all and not covered(website_key, following):
            follow[website_key].add(bucket_of(following, shift))
    return out, dict(follow)


def collect_rollups(conn: sqlite3.Connection, dirty: Mapping[int, set[int]], shift: int,
                    scope: Mapping[int, set[int]] | None = None) -> tuple[Rollups, dict[int, set[int]]]:  # fmt: skip
    """Compute the rollup rows of the given hours (website_key → hour starts) from the events.

    Also returns hours outside ``scope`` (the hours being recomputed anyway; default ``dirty``) whose visitor counts depend
    on what changed (the next visit of a session whose visit changed); the caller recomputes those too. That only happens
    when events arrive out of order.
    """
    scope = dirty if scope is None else scope
    for sql in _AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    for website_key, hours in dirty.items():
        for start, end in _hour_runs(hours):
            conn.execute("INSERT OR IGNORE INTO temp.agg_candidate SELECT visit_key FROM website_event "
                         "WHERE website_key = ? AND created_at >= ? AND created_at < ?", (website_key, start, end))  # fmt: skip
    return aggregate_visits(conn, shift, lambda key, at: bucket_of(at, shift) in dirty.get(key, ()), {}, True,
                            lambda key, at: bucket_of(at, shift) in dirty.get(key, ()) or bucket_of(at, shift) in scope.get(key, ()))


def _setting_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _set_setting(conn: sqlite3.Connection, name: str, value: object) -> None:
    conn.execute("INSERT INTO setting (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                 "value = excluded.value, updated_at = excluded.updated_at", (name, str(value), int(time.time())))  # fmt: skip


def store_rollups(conn: sqlite3.Connection, dirty: Mapping[int, set[int]], rollups: Rollups, zone: dt.tzinfo) -> None:
    """Replace the rollup rows of the given hours, then the daily sums of their days (inside the caller's transaction)."""
    metrics = ", ".join(f"'{m}'" for m in ROLLUP_METRICS)
    for website_key, hours in dirty.items():
        for start, end in _hour_runs(hours):
            params = (website_key, start, end)
            conn.execute(f"DELETE FROM rollup WHERE website_key = ? AND metric IN ({metrics}) AND hour >= ? AND hour < ?", params)
            conn.execute("DELETE FROM rollup_visitors WHERE website_key = ? AND hour >= ? AND hour < ?", params)
            conn.execute("DELETE FROM rollup_vitals WHERE website_key = ? AND hour >= ? AND hour < ?", params)
    counts, visitors, vitals = rollups.rows()
    conn.executemany("INSERT INTO rollup (website_key, metric, hour, value, n) VALUES (?,?,?,?,?)", counts)
    conn.executemany("INSERT INTO rollup_visitors (website_key, hour, since, n) VALUES (?,?,?,?)", visitors)
    conn.executemany("INSERT INTO rollup_vitals (website_key, hour, metric, url_path, bin, n) VALUES (?,?,?,?,?,?)", vitals)
    for website_key, hours in dirty.items():
        for day in sorted({day_of(hour, zone) for hour in hours}):
            sum_day(conn, website_key, day, next_day(day, zone))


def sum_day(conn: sqlite3.Connection, website_key: int, day: int, end: int) -> None:
    """Recompute one website's daily rollup rows of the day [day, end) from its hourly rows."""
    metrics = ", ".join(f"'{m}'" for m in ROLLUP_METRICS)
    conn.execute(f"DELETE FROM rollup_daily WHERE website_key = ? AND metric IN ({metrics}) AND day = ?", (website_key, day))
    conn.execute("DELETE FROM rollup_daily_visitors WHERE website_key = ? AND day = ?", (website_key, day))
    conn.execute("DELETE FROM rollup_daily_vitals WHERE website_key = ? AND day = ?", (website_key, day))
    params = (day, website_key, day, end)
    conn.execute(f"INSERT INTO rollup_daily (website_key, metric, day, value, n) SELECT website_key, metric, ?, value, sum(n) "
                 f"FROM rollup WHERE website_key = ? AND metric IN ({metrics}) AND hour >= ? AND hour < ? "
                 f"GROUP BY metric, value", params)  # fmt: skip
    conn.execute("INSERT INTO rollup_daily_visitors (website_key, day, since, n) SELECT website_key, ?, since, sum(n) "
                 "FROM rollup_visitors WHERE website_key = ? AND hour >= ? AND hour < ? GROUP BY since", params)  # fmt: skip
    conn.execute("INSERT INTO rollup_daily_vitals (website_key, day, metric, url_path, bin, n) SELECT website_key, ?, metric, "
                 "url_path, bin, sum(n) FROM rollup_vitals WHERE website_key = ? AND hour >= ? AND hour < ? "
                 "GROUP BY metric, url_path, bin", params)  # fmt: skip


def _dirty_hours(conn: sqlite3.Connection, after: int, upto: int, shift: int) -> dict[int, set[int]]:
    """Hours to recompute for events with keys in (after, upto]: theirs, and every hour their visits have events in."""
    dirty: dict[int, set[int]] = collections.defaultdict(set)
    sql = ("SELECT DISTINCT x.website_key, x.created_at FROM website_event x WHERE x.visit_key IN "
           "(SELECT e.visit_key FROM website_event e WHERE e.event_key > ? AND e.event_key <= ?)")  # fmt: skip
    for website_key, created_at in conn.execute(sql, (after, upto)):
        dirty[website_key].add(bucket_of(created_at, shift))
    return dirty


def recompute_hours(conn: sqlite3.Connection, dirty: Mapping[int, set[int]], shift: int,
                    scope: Mapping[int, set[int]] | None = None) -> tuple[Rollups, dict[int, set[int]]]:  # fmt: skip
    """Collect the given hours plus the hours their changes reach outside ``scope`` (see collect_rollups); return them and
    all the hours collected."""
    hours = {k: set(v) for k, v in dirty.items()}
    while True:
        rollups, follow = collect_rollups(conn, hours, shift, scope)
        if not follow:
            return rollups, hours
        for website_key, more in follow.items():
            hours.setdefault(website_key, set()).update(more)


#: Hours recomputed in one read-then-write step of a refresh (bounds its memory: a rebuild goes two days at a time).
ROLLUP_CHUNK_HOURS = 48


def _chunks(hours: Mapping[int, set[int]], size: int = ROLLUP_CHUNK_HOURS) -> Iterable[dict[int, set[int]]]:
    for website_key, found in hours.items():
        ordered = sorted(found)
        for at in range(0, len(ordered), size):
            yield {website_key: set(ordered[at : at + size])}


def _all_hours(conn: sqlite3.Connection, shift: int) -> dict[int, set[int]]:
    hours: dict[int, set[int]] = collections.defaultdict(set)
    sql = "SELECT DISTINCT website_key, created_at - (created_at - ?) % 3600 FROM website_event"
    for website_key, hour in conn.execute(sql, (shift,)):
        hours[website_key].add(hour)
    return hours


def _zone_name(zone: dt.tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def refresh_rollups(conn: sqlite3.Connection, shift: int, zone: dt.tzinfo = dt.timezone.utc,
                    round_events: int = ROLLUP_ROUND_EVENTS) -> int:  # fmt: skip
    """Bring the rollups up to date with website_event; return how many events were new to them.

    Safe beside a running footfall (the writer may commit between steps) and against concurrent deletes (epoch check).
    If ``shift`` or ``zone`` differ from what the rollups were made with, every rollup is rebuilt.
    """
    seen = 0
    while True:
        conn.execute("BEGIN")
        try:
            if _stored_alignment(conn) != (shift, _zone_name(zone)):
                conn.execute("COMMIT")
                reset_rollups(conn, shift, zone)
                continue
            mark, epoch = _setting_int(conn, "rollup_event_key"), _setting_int(conn, "rollup_epoch")
            # The writer never reuses a key at or below the mark (EventWriter.commit_batch), so keys above it are new.
            top = conn.execute("SELECT ifnull(max(event_key), 0) FROM website_event").fetchone()[0]
            if top <= mark:
                conn.execute("COMMIT")
                return seen
            upto = top if mark == 0 else min(top, mark + round_events)
            dirty = _all_hours(conn, shift) if mark == 0 else _dirty_hours(conn, mark, upto, shift)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not all(_refresh_chunk(conn, chunk, dirty, shift, zone, mark, epoch) for chunk in _chunks(dirty)):
            continue  # somebody deleted events or refreshed meanwhile: start over
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _rollups_untouched(conn, mark, epoch):
                conn.execute("ROLLBACK")
                continue
            _set_setting(conn, "rollup_event_key", upto)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        seen += upto - mark


def _rollups_untouched(conn: sqlite3.Connection, mark: int, epoch: int) -> bool:
    """Whether nobody refreshed the rollups or deleted events since a refresh read ``mark`` and ``epoch``."""
    return _setting_int(conn, "rollup_event_key") == mark and _setting_int(conn, "rollup_epoch") == epoch


def _refresh_chunk(conn: sqlite3.Connection, chunk: Mapping[int, set[int]], scope: Mapping[int, set[int]], shift: int,
                   zone: dt.tzinfo, mark: int, epoch: int) -> bool:  # fmt: skip
    """Recompute some hours of ``scope`` in one snapshot, then store them unless somebody changed the rollups meanwhile."""
    conn.execute("BEGIN")
    try:
        rollups, hours = recompute_hours(conn, chunk, shift, scope)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _rollups_untouched(conn, mark, epoch):
            conn.execute("ROLLBACK")
            return False
        store_rollups(conn, hours, rollups, zone)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def reset_rollups(conn: sqlite3.Connection, shift: int, zone: dt.tzinfo = dt.timezone.utc) -> None:
    """Drop every rollup row; the next refresh recomputes them all (hours aligned by ``shift``, days in ``zone``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ROLLUP_TABLES:
            conn.execute(f"DELETE FROM {table}")
        _set_setting(conn, "rollup_shift", shift)
        _set_setting(conn, "rollup_zone", _zone_name(zone))
        _set_setting(conn, "rollup_event_key", 0)
        _set_setting(conn, "rollup_epoch", _setting_int(conn, "rollup_epoch") + 1)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _stored_alignment(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The (shift, zone name) the rollups were made with; None before the first refresh."""
    found = dict(conn.execute("SELECT name, value FROM setting WHERE name IN ('rollup_shift', 'rollup_zone')").fetchall())
    if len(found) < 2:
        return None
    return int(found["rollup_shift"]), found["rollup_zone"]


def hours_cut_by_prune(conn: sqlite3.Connection, cutoff: int, website_key: int | None) -> dict[int, set[int]]:
    """Before deleting events older than ``cutoff``: the hours whose rollups change beyond the ones dropped whole.

    That is the hour holding the cutoff, and the hours of the later events of visits the cutoff splits (visits with an
    event in the day before it), whose start moves.
    """
    alignment = _stored_alignment(conn)
    if alignment is None:
        return {}
    shift = alignment[0]
    sites = [website_key] if website_key is not None else [k for (k,) in conn.execute("SELECT website_key FROM website")]
    hours: dict[int, set[int]] = {}
    sql = ("SELECT DISTINCT created_at FROM website_event WHERE website_key = ? AND created_at >= ? AND visit_key IN "
           "(SELECT visit_key FROM website_event WHERE website_key = ? AND created_at >= ? AND created_at < ?)")  # fmt: skip
    for key in sites:
        found = {bucket_of(cutoff, shift)}
        found.update(bucket_of(at, shift) for (at,) in conn.execute(sql, (key, cutoff, key, cutoff - 86400, cutoff)))
        hours[key] = found
    return hours


def drop_pruned_rollups(conn: sqlite3.Connection, cutoff: int, website_key: int | None, repair: Mapping[int, set[int]]) -> None:
    """After deleting events older than ``cutoff``: drop the rollup hours and days before it and recompute ``repair``."""
    alignment = _stored_alignment(conn)
    if alignment is not None:
        first_hour, first_day = bucket_of(cutoff, alignment[0]), day_of(cutoff, load_zone(alignment[1]))
        site = "" if website_key is None else " AND website_key = ?"
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ROLLUP_TABLES:
                column, first = ("day", first_day) if "daily" in table else ("hour", first_hour)
                conn.execute(f"DELETE FROM {table} WHERE {column} < ?{site}", (first,) if website_key is None else (first, website_key))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    repair_rollups(conn, repair)


def rollup_epoch_bump() -> tuple[str, tuple[Any, ...]]:
    """The statement that tells a refresh in flight that events were deleted (run in the deleting transaction)."""
    return ("INSERT INTO setting (name, value, updated_at) VALUES ('rollup_epoch', '1', 0) ON CONFLICT (name) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1", ())  # fmt: skip


def repair_rollups(conn: sqlite3.Connection, dirty: Mapping[int, set[int]]) -> None:
    """Recompute the given hours after events were deleted from them (prune, retention, forget), in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        alignment = _stored_alignment(conn)
        if alignment is not None:
            rollups, hours = recompute_hours(conn, dirty, alignment[0])
            store_rollups(conn, hours, rollups, load_zone(alignment[1]))
        conn.execute(*rollup_epoch_bump())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


###############################################################################################################################
# Summary page: numbers
###############################################################################################################################
# One function per panel, each a query on the rollups (or, for realtime and bots, on website_event and bot_counter). A
# filtered page computes the same rollup rows for the matching visits into temporary tables and runs the same queries.

#: Rows in each top list.
SUMMARY_LIST_LIMIT = 10
#: "Realtime" looks back this far, in seconds.
REALTIME_SECONDS = 300
#: Period presets: key → label.
PERIODS = {"today": "Today", "yesterday": "Yesterday", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days",
           "90d": "Last 90 days", "12m": "Last 12 months"}  # fmt: skip
#: What a list or a filter can be about; each is a query parameter of the page (e.g. ?country=DE).
FILTERS = ("page", "event", *VISIT_DIMENSIONS)
#: Web-vital thresholds (good up to the first, poor above the second), as web.dev defines them.
VITAL_THRESHOLDS = {"lcp": (2500, 4000), "inp": (200, 500), "cls": (0.1, 0.25), "fcp": (1800, 3000), "ttfb": (800, 1800)}
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class SummaryRange(NamedTuple):
    """The period a summary covers: [start, end) for the chart, [start, until) for the numbers, in Unix seconds."""

    name: str  # a PERIODS key, or 'custom'
    label: str
    start: int
    end: int
    until: int  # end, or the end of the current hour while the period is still running
    step: str  # 'hour' or 'day': the chart's intervals
    bounds: list[int]  # the chart's interval starts, then its end
    zone: dt.tzinfo

    @property
    def previous(self) -> tuple[int, int]:
        """The period of the same length right before this one (what the changes compare with)."""
        return self.start - (self.until - self.start), self.start


def _parse_day_or_time(text: str, zone: dt.tzinfo, inclusive_end: bool) -> int:
    """Unix seconds from 'YYYY-MM-DD' (that day's start in ``zone``, or the next day's for an inclusive end) or seconds."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise bad_request(f"{text!r} is not a date") from None
        return _day_start(day + dt.timedelta(days=1) if inclusive_end else day, zone)
    if re.fullmatch(r"[0-9]{1,12}", text):  # ASCII digits only: str.isdigit() also takes '³'
        return int(text)
    raise bad_request(f"{text[:40]!r} is neither a date (YYYY-MM-DD) nor Unix seconds")


def resolve_range(period: str | None, start: str | None, end: str | None, zone: dt.tzinfo, now: float,
                  shift: int) -> SummaryRange:  # fmt: skip
    """The period of a summary request: a preset, or start and end (dates inclusive, or Unix seconds with end exclusive)."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    current_hour_end = bucket_of(int(now), shift) + ROLLUP_BUCKET_SECONDS
    if start or end:
        if not (start and end):
            raise bad_request("start and end go together")
        name, label = "custom", ""
        a, b = _parse_day_or_time(start, zone, False), _parse_day_or_time(end, zone, True)
        if b <= a:
            raise bad_request("end must be after start")
        if b - a > 3 * 366 * 86400:
            raise bad_request("a summary covers at most three years")
    else:
        name = period or "30d"
        if name not in PERIODS:
            raise bad_request(f"period must be one of {', '.join(PERIODS)}")
        label = PERIODS[name]
        tomorrow = _day_start(today + dt.timedelta(days=1), zone)
        if name == "today":
            a, b = _day_start(today, zone), tomorrow
        elif name == "yesterday":
            a, b = _day_start(today - dt.timedelta(days=1), zone), _day_start(today, zone)
        elif name == "24h":
            a, b = current_hour_end - 86400, current_hour_end
        elif name == "12m":
            month = today.year * 12 + today.month - 1 - 11
            a, b = _day_start(dt.date(month // 12, month % 12 + 1, 1), zone), tomorrow
        else:
            a, b = _day_start(today - dt.timedelta(days=int(name[:-1]) - 1), zone), tomorrow
    a, b = bucket_of(a, shift), bucket_of(b - 1, shift) + ROLLUP_BUCKET_SECONDS
    if name == "custom":
        first, last = (dt.datetime.fromtimestamp(t, zone) for t in (a, b - 1))
        label = f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"
    step = "hour" if b - a <= 2 * 86400 else "day"
    if step == "hour":
        bounds = list(range(a, b, ROLLUP_BUCKET_SECONDS))
    else:
        day, bounds = dt.datetime.fromtimestamp(a, zone).date(), []
        while (at := bucket_of(_day_start(day, zone), shift)) < b:
            bounds.append(max(at, a))
            day += dt.timedelta(days=1)
    until = max(a, min(b, current_hour_end))
    return SummaryRange(name, label, a, b, until, step, [*bounds, b], zone)


class RollupSource(NamedTuple):
    """The tables a summary reads: the rollups (hourly, and daily for whole days), or a filtered page's temporary ones."""

    zone: dt.tzinfo
    hourly: tuple[str, str, str] = ("rollup", "rollup_visitors", "rollup_vitals")
    daily: tuple[str, str, str] | None = ("rollup_daily", "rollup_daily_visitors", "rollup_daily_vitals")

    def parts(self, start: int, end: int) -> list[tuple[tuple[str, str, str], str, int, int]]:
        """[start, end) as (tables, time column, from, to) pieces: its whole local days from the daily tables, if any."""
        if self.daily is not None and end > start:
            first = day_of(start, self.zone)
            first = first if first == start else next_day(first, self.zone)
            last = day_of(end, self.zone)
            if first < last:
                pieces = [(self.daily, "day", first, last)]
                pieces += [(self.hourly, "hour", a, b) for a, b in ((start, first), (last, end)) if a < b]
                return pieces
        return [(self.hourly, "hour", start, end)]


def filtered_source(zone: dt.tzinfo) -> RollupSource:
    """A filtered page's tables: hourly rows in temporary tables (see load_filtered)."""
    return RollupSource(zone, ("temp.f_rollup", "temp.f_rollup_visitors", "temp.f_rollup_vitals"), None)


def _union(src: RollupSource, start: int, end: int, table: int, columns: str, where: str,
           params: Sequence[Any], by_time: bool = True) -> tuple[str, list[Any]]:  # fmt: skip
    """One SELECT over all pieces of [start, end): ``where`` applies to each piece, and the pieces are UNION ALL-ed.

    ``by_time=False`` keeps SQLite from picking the daily tables' day index over their primary key (a page's web vitals).
    """
    selects, values = [], []
    for tables, column, a, b in src.parts(start, end):
        plus = "+" if column == "day" and not by_time else ""
        selects.append(f"SELECT {columns} FROM {tables[table]} WHERE {where} AND {plus}{column} >= ? AND {plus}{column} < ?")
        values += [*params, a, b]
    return " UNION ALL ".join(selects), values


def panel_totals(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int) -> dict[str, float]:
    """Visitors, visits, pageviews, custom events, views per visit, bounce rate and average visit length of [start, end)."""
    sums = dict.fromkeys(("pageviews", "events", "visits", "bounces", "duration"), 0)
    inner, params = _union(src, start, end, 0, "metric, n", "website_key = ? AND metric IN "
                           "('pageviews', 'events', 'visits', 'bounces', 'duration')", [website_key])  # fmt: skip
    sums.update(conn.execute(f"SELECT metric, sum(n) FROM ({inner}) GROUP BY metric", params).fetchall())
    inner, params = _union(src, start, end, 1, "n", "website_key = ? AND since < ?", [website_key, start])
    visitors = conn.execute(f"SELECT ifnull(sum(n), 0) FROM ({inner})", params).fetchone()[0]
    visits = sums["visits"]
    return {
        "visitors": visitors, "visits": visits, "pageviews": sums["pageviews"], "custom_events": sums["events"],
        "views_per_visit": round(sums["pageviews"] / visits, 2) if visits else 0.0,
        "bounce_rate": round(sums["bounces"] / visits, 4) if visits else 0.0,
        "avg_duration_s": round(sums["duration"] / visits, 1) if visits else 0.0,
    }  # fmt: skip


def panel_chart(conn: sqlite3.Connection, src: RollupSource, website_key: int, bounds: list[int]) -> list[dict[str, int]]:
    """Pageviews and visitors per chart interval (bounds: interval starts, then the end)."""
    pageviews = [0] * (len(bounds) - 1)
    visitors = [0] * (len(bounds) - 1)
    pieces: dict[tuple[tuple[str, str, str], str], list[tuple[int, int, int, int]]] = collections.defaultdict(list)
    for index, (a, b) in enumerate(itertools.pairwise(bounds)):
        for tables, column, x, y in src.parts(a, b):
            pieces[(tables, column)].append((index, x, y, a))
    for (tables, column), intervals in pieces.items():
        encoded = msgspec.json.encode(intervals).decode()
        sql = (f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[0]} r ON r.website_key = ? AND "
               f"r.metric = 'pageviews' AND r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 GROUP BY 1")
        for index, n in conn.execute(sql, (encoded, website_key)):
            pageviews[index] += n
        sql = (f"SELECT j.value ->> 0, sum(r.n) FROM json_each(?) j JOIN {tables[1]} r ON r.website_key = ? AND "
               f"r.{column} >= j.value ->> 1 AND r.{column} < j.value ->> 2 AND r.since < j.value ->> 3 GROUP BY 1")
        for index, n in conn.execute(sql, (encoded, website_key)):
            visitors[index] += n
    return [{"start": a, "pageviews": p, "visitors": v} for a, p, v in zip(bounds, pageviews, visitors)]


def panel_top(conn: sqlite3.Connection, src: RollupSource, website_key: int, metric: str, start: int, end: int,
              total: int, limit: int = SUMMARY_LIST_LIMIT) -> list[dict[str, Any]]:  # fmt: skip
    """The most frequent values of one metric in [start, end), with their share of ``total``."""
    inner, params = _union(src, start, end, 0, "value, n", "website_key = ? AND metric = ?", [website_key, metric])
    sql = f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT ?"
    rows = conn.execute(sql, [*params, limit]).fetchall()
    return [{"value": value, "count": n, "share": round(n / total, 4) if total else 0.0} for value, n in rows]


def panel_events(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int,
                 total: int) -> list[dict[str, Any]]:  # fmt: skip
    """Custom events by name, each with its three most common data keys."""
    events = panel_top(conn, src, website_key, "event", start, end, total)
    for event in events:
        prefix = msgspec.json.encode([event["value"]]).decode()[:-1] + ","
        inner, params = _union(src, start, end, 0, "value, n", "website_key = ? AND metric = 'event_key' AND "
                               "substr(value, 1, ?) = ?", [website_key, len(prefix), prefix])  # fmt: skip
        rows = conn.execute(f"SELECT value, sum(n) AS c FROM ({inner}) GROUP BY value ORDER BY c DESC, value LIMIT 3", params)
        event["keys"] = [{"key": msgspec.json.decode(value)[1], "count": n} for value, n in rows]
    return events


def _vital_rating(metric: str, value: float) -> str:
    good, poor = VITAL_THRESHOLDS[metric]
    return "good" if value <= good else "poor" if value > poor else "needs-improvement"


def panel_vitals(conn: sqlite3.Connection, src: RollupSource, website_key: int, start: int, end: int,
                 limit: int = SUMMARY_LIST_LIMIT) -> list[dict[str, Any]]:  # fmt: skip
    """p75 of each web vital for the pages with most performance reports (nearest rank over two-figure histograms)."""
    pages = []
    for top in panel_top(conn, src, website_key, "reports", start, end, 0, limit):
        inner, params = _union(src, start, end, 2, "metric, bin, n", "website_key = ? AND url_path = ?",
                               [website_key, top["value"]], by_time=False)  # fmt: skip
        histograms: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        for metric, value, n in conn.execute(f"SELECT metric, bin, sum(n) FROM ({inner}) GROUP BY metric, bin "
                                             f"ORDER BY metric, bin", params):  # fmt: skip
            histograms[metric].append((value, n))
        row: dict[str, Any] = {"page": top["value"], "reports": top["count"]}
        for metric in VITALS:
            bins = histograms.get(metric)
            row[metric] = None
            if bins:
                count = sum(n for _, n in bins)
                rank, seen = math.ceil(0.75 * count), 0
                for value, n in bins:
                    seen += n
                    if seen >= rank:
                        row[metric] = {"p75": value, "rating": _vital_rating(metric, value), "count": count}
                        break
        pages.append(row)
    return pages


def panel_realtime(conn: sqlite3.Connection, website_key: int, now: float) -> dict[str, Any]:
    """Visitors active in the last five minutes, and the page each was last on."""
    since = int(now) - REALTIME_SECONDS
    visitors = conn.execute("SELECT count(DISTINCT session_key) FROM website_event WHERE website_key = ? AND created_at >= ?",
                            (website_key, since)).fetchone()[0]  # fmt: skip
    sql = ("SELECT url_path, count(*) AS c FROM (SELECT session_key, url_path, max(created_at) FROM website_event "
           "WHERE website_key = ? AND created_at >= ? AND event_type = 1 GROUP BY session_key) "
           "GROUP BY url_path ORDER BY c DESC, url_path LIMIT ?")  # fmt: skip
    pages = [{"value": path, "count": n} for path, n in conn.execute(sql, (website_key, since, SUMMARY_LIST_LIMIT))]
    return {"visitors": visitors, "pages": pages}


def panel_bots(conn: sqlite3.Connection, website_key: int, start: int, end: int) -> int:
    """Requests refused as bots in the UTC days that [start, end) touches (bot_counter counts per UTC day)."""
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (start, max(start, end - 1)))
    sql = "SELECT ifnull(sum(hits), 0) FROM bot_counter WHERE website_key = ? AND day >= ? AND day <= ?"
    return int(conn.execute(sql, (website_key, first, last)).fetchone()[0])


def collect_filtered(conn: sqlite3.Connection, website_key: int, start: int, end: int, filters: Mapping[str, str],
                     shift: int) -> Rollups:  # fmt: skip
    """Rollup rows of [start, end) for the visits that match every filter (a segment: all numbers are about them).

    Candidates are the visits with an event in the range, or, with a filter on a session attribute, the matching sessions'
    visits that started in the range or the day before it (visits are never that long); a page or event filter narrows
    them to visits with such an event in the same span. The rest is decided visit by visit, and only events and visit
    starts inside the range are counted.
    """
    for sql in _AGGREGATION_TABLES:
        conn.execute(sql)
    conn.execute("DELETE FROM temp.agg_candidate")
    narrow, params = [], []
    for name, column, kind in (("page", "url_path", EVENT_PAGEVIEW), ("event", "ifnull(event_name, '')", EVENT_CUSTOM)):
        if name in filters:
            narrow.append(f" AND {{visit}} IN (SELECT visit_key FROM website_event WHERE website_key = ? AND created_at >= ? "
                          f"AND created_at < ? AND event_type = {kind} AND {column} = ?)")
            params += [website_key, start - 86400, end, filters[name]]
    sessions = [(name, value) for name, value in filters.items() if name in _SESSION_FILTERS]
    if sessions:  # few sessions match: go from them to their visits, not through every event of the range
        matching = " AND ".join(f"s.{name} = ?" for name, _ in sessions)
        sql = (f"INSERT OR IGNORE INTO temp.agg_candidate SELECT v.visit_key FROM session s CROSS JOIN visit v "
               f"ON v.session_key = s.session_key WHERE s.website_key = ? AND {matching} AND v.started_at >= ? "
               f"AND v.started_at < ?" + "".join(n.format(visit="v.visit_key") for n in narrow))  # fmt: skip
        conn.execute(sql, [website_key, *(value for _, value in sessions), start - 86400, end, *params])
    else:
        sql = ("INSERT OR IGNORE INTO temp.agg_candidate SELECT e.visit_key FROM website_event e WHERE e.website_key = ? "
               "AND e.created_at >= ? AND e.created_at < ?" + "".join(n.format(visit="e.visit_key") for n in narrow))
        conn.execute(sql, [website_key, start, end, *params])
    rollups, _ = aggregate_visits(conn, shift, lambda key, at: start <= at < end, filters, False)
    return rollups


def load_filtered(conn: sqlite3.Connection, rollups: Rollups) -> None:
    """Put a filtered page's rollup rows into the temporary tables filtered_source() names."""
    for table, like in (("f_rollup", "rollup"), ("f_rollup_visitors", "rollup_visitors"), ("f_rollup_vitals", "rollup_vitals")):
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} AS SELECT * FROM main.{like} WHERE 0")
        conn.execute(f"DELETE FROM temp.{table}")
    counts, visitors, vitals = rollups.rows()
    conn.executemany("INSERT INTO temp.f_rollup (website_key, metric, hour, value, n) VALUES (?,?,?,?,?)", counts)
    conn.executemany("INSERT INTO temp.f_rollup_visitors (website_key, hour, since, n) VALUES (?,?,?,?)", visitors)
    conn.executemany("INSERT INTO temp.f_rollup_vitals (website_key, hour, metric, url_path, bin, n) VALUES (?,?,?,?,?,?)",
                     vitals)  # fmt: skip


class Site(NamedTuple):
    """A website as the summary shows it."""

    key: int
    id: str
    name: str
    domain: str | None


def _change(current: float, previous: float) -> float | None:
    return round((current - previous) / previous, 4) if previous else None


def build_summary(conn: sqlite3.Connection, site: Site, period: SummaryRange, filters: Mapping[str, str], now: float,
                  shift: int) -> dict[str, Any]:  # fmt: skip
    """Everything the summary page shows, as plain data (the JSON twin returns exactly this)."""
    src = RollupSource(period.zone)
    previous_start, previous_end = period.previous
    conn.execute("BEGIN")  # one snapshot for every panel
    try:
        if filters:  # the same rollup rows for the matching visits, in this connection's own temporary tables
            load_filtered(conn, collect_filtered(conn, site.key, min(previous_start, period.start), period.end, filters, shift))
            src = filtered_source(period.zone)
        totals = panel_totals(conn, src, site.key, period.start, period.until)
        before = panel_totals(conn, src, site.key, previous_start, previous_end)
        lists: dict[str, dict[str, Any]] = {}
        for metric in ("page", *VISIT_DIMENSIONS):
            total = totals["pageviews"] if metric == "page" else totals["visits"]
            lists[metric] = {"total": total, "rows": panel_top(conn, src, site.key, metric, period.start, period.until, total)}
        summary = {
            "website": {"id": site.id, "name": site.name, "domain": site.domain},
            "period": {
                "name": period.name, "label": period.label, "timezone": str(period.zone), "step": period.step,
                "start": period.start, "end": period.end, "until": period.until,
                "previous_start": previous_start, "previous_end": previous_end,
            },
            "filters": dict(filters),
            "totals": {name: {"value": value, "previous": before[name], "change": _change(value, before[name])}
                       for name, value in totals.items()},
            "chart": panel_chart(conn, src, site.key, period.bounds),
            "lists": lists,
            "events": panel_events(conn, src, site.key, period.start, period.until, totals["custom_events"]),
            "vitals": panel_vitals(conn, src, site.key, period.start, period.until),
            "realtime": panel_realtime(conn, site.key, now),
            "bots": panel_bots(conn, site.key, period.start, period.until),
        }  # fmt: skip
    finally:
        conn.execute("COMMIT")
    return summary


###############################################################################################################################
# HTTP handlers
###############################################################################################################################


class Runtime:
    """All of footfall's mutable state while it serves: config, writer, reader, salts, visits, websites, caches."""

    def __init__(self, config: Config, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.writer = EventWriter(config.db, config.busy_timeout_ms, config.write_queue_max)
        self.reader: aiosqlite.Connection | None = None
        self.secret = ""
        self.token_key = b""
        self.salts = SaltBook(config.salt_rotation, {})
        self.visits = VisitTracker(config.visit_timeout * 60, "")
        self.websites: dict[str, int] = {}
        self.parse_agent = functools.lru_cache(maxsize=UA_CACHE_SIZE)(parse_agent)
        #: Session ids of recent (website, client, agent, salt, id) inputs: two hashes saved on every repeat hit.
        self.session_id = functools.lru_cache(maxsize=UA_CACHE_SIZE)(derive_session_id)
        self.policy = ClientPolicy(parse_networks(config.trusted_proxies, "trusted_proxies"), config.client_ip_header.lower() or None,
                                   config.allow_payload_ip, parse_networks(config.ignore_ip, "ignore_ip"))  # fmt: skip
        self.geo: list[MaxMindGeo | EmbeddedGeo] = []
        rate = parse_rate(config.rate_limit)
        unit = 60 if config.rate_limit.strip().lower().endswith("m") else 1
        self.rate_limiter = RateLimiter(rate, rate * unit) if rate else None
        self.prepared: Prepared | None = None
        #: The summary's time zone and the alignment of its hours (rollup_shift).
        self.zone = load_zone(config.timezone)
        self.shift = bucket_shift(self.zone, clock())
        #: The summary's own connection: rollup refreshes and summary reads run on it in a worker thread, one at a time.
        self.summary_conn: sqlite3.Connection | None = None
        self.summary_lock = asyncio.Lock()
        self.password_hash = config.password_hash
        self.cookie_key = b""
        self.login_limiter = RateLimiter(1 / LOGIN_REFILL_SECONDS, LOGIN_BURST)
        self.country_names: dict[str, str] = {}
        self._password_checks = asyncio.Semaphore(2)  # scrypt costs 16 MiB and ~50 ms: never many at once
        self._rollups_refreshed_at = 0.0
        self._rollups_pause = ROLLUP_REFRESH_SECONDS
        self._committed_seen = (time.monotonic(), 0)  # (when, writer.committed then): the ingest rate between upkeep rounds
        self._maintenance: asyncio.Task[None] | None = None
        self._missing_websites: dict[str, float] = {}
        self._retention_applied_at = 0.0  # website id → monotonic time until which it counts as missing

    async def start(self) -> None:
        """Prepare the database, open connections, restore open visits, start the writer and upkeep tasks."""
        now = self.clock()
        self.prepared = await asyncio.to_thread(prepare_database, self.config.db, self.config.salt_rotation, now)
        self.secret = self.prepared.secret
        self.token_key = bytes.fromhex(self.secret)
        self.cookie_key = hmac.new(self.token_key, b"footfall summary session", hashlib.sha256).digest()
        self.salts = SaltBook(self.config.salt_rotation, self.prepared.salts)
        self.visits = VisitTracker(self.config.visit_timeout * 60, self.secret)
        if self.config.geoip_db:
            self.geo.append(MaxMindGeo(self.config.geoip_db))
        if self.config.embedded_geo:
            embedded = await asyncio.to_thread(load_embedded_geo)
            if embedded is not None:
                self.geo.append(embedded)
                self.country_names = embedded.names
        self.reader = await aiosqlite.connect(self.config.db, isolation_level=None)
        await self.reader.executescript(_connect_pragmas(self.config.busy_timeout_ms) + ";PRAGMA query_only=1")
        await self.load_websites()
        self.summary_conn = await asyncio.to_thread(connect, self.config.db, self.config.busy_timeout_ms, True)
        await self.load_password()
        await self.writer.start()
        await self._restore_visits(now)
        self._maintenance = asyncio.create_task(self._maintenance_loop(), name="footfall-maintenance")

    async def close(self) -> None:
        """Stop upkeep, drain and close the writer, close the reader."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.writer.close()
        async with self.summary_lock:
            if self.summary_conn is not None:
                self.summary_conn.close()
                self.summary_conn = None
        for source in self.geo:
            source.close()
        self.geo = []
        if self.reader is not None:
            await self.reader.close()
            self.reader = None

    async def load_password(self) -> None:
        """The summary's password hash: --password-hash if given, else the one `footfall password` stored."""
        if self.config.password_hash:
            self.password_hash = self.config.password_hash
            return
        assert self.reader is not None
        async with self.reader.execute("SELECT value FROM setting WHERE name = 'password_hash'") as cur:
            row = await cur.fetchone()
        self.password_hash = row[0] if row else ""

    async def check_password(self, password: str) -> bool:
        """Whether ``password`` is the summary's (scrypt in a worker thread, two checks at most at a time)."""
        async with self._password_checks:
            return await asyncio.to_thread(verify_password, password, self.password_hash)

    async def sites(self) -> list[Site]:
        """Active websites, by name."""
        assert self.reader is not None
        sql = "SELECT website_key, website_id, name, domain FROM website WHERE deleted_at IS NULL ORDER BY name, website_id"
        async with self.reader.execute(sql) as cur:
            return [Site(*row) for row in await cur.fetchall()]

    async def shared_site(self, token: str) -> int | None:
        """The website a share token shows, if the link exists."""
        assert self.reader is not None
        async with self.reader.execute("SELECT website_key FROM share_link WHERE token = ?", (token,)) as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def _in_summary_thread(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        async with self.summary_lock:
            conn = self.summary_conn
            if conn is None:
                raise unavailable("footfall is shutting down; try again shortly.")
            return await asyncio.to_thread(fn, conn)

    async def refresh_rollups(self) -> int:
        """Bring the summary's rollups up to date (a worker thread; the writer goes on meanwhile)."""
        started = time.monotonic()
        try:
            return await self._in_summary_thread(lambda conn: refresh_rollups(conn, self.shift, self.zone))  # type: ignore[no-any-return]
        finally:
            # Background refreshes take at most ~5% of the time, however busy the current hour (it is recomputed whole).
            self._rollups_refreshed_at = time.monotonic()
            self._rollups_pause = max(ROLLUP_REFRESH_SECONDS, 20 * (self._rollups_refreshed_at - started))

    async def summary(self, site: Site, period: SummaryRange, filters: Mapping[str, str]) -> dict[str, Any]:
        """The numbers of one summary page, from rollups brought up to date first."""
        now = self.clock()

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            refresh_rollups(conn, self.shift, self.zone)
            return build_summary(conn, site, period, filters, now, self.shift)

        return await self._in_summary_thread(job)  # type: ignore[no-any-return]

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

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            try:
                await self.maintain()
            except Exception as exc:  # noqa: BLE001 - upkeep must never stop; the next round retries
                log.warning("event=maintenance-failed error=%r", str(exc))

    async def maintain(self) -> None:
        """One round of upkeep: reload websites, create and delete salts, forget idle visits, apply retention daily."""
        now = self.clock()
        await self.load_websites()
        rotation = plan_salt_rotation(self.salts, now)
        if rotation.created or rotation.expired:
            await self.writer.call(functools.partial(self._execute_in_transaction, statements=rotation.statements()))
            rotation.apply(self.salts)
        self.visits.evict(int(now))
        if self.rate_limiter is not None:
            self.rate_limiter.sweep(now)
        if now - self._retention_applied_at >= RETENTION_INTERVAL_SECONDS:
            self._retention_applied_at = now
            await self.apply_retention(now)
        await self.load_password()
        clock_now, committed = time.monotonic(), self.writer.committed
        rate = (committed - self._committed_seen[1]) / max(clock_now - self._committed_seen[0], 1e-3)
        self._committed_seen = (clock_now, committed)
        # Under a heavy load the background refresh waits (it recomputes the current hour whole, and its read snapshot would
        # hold the WAL back); the summary page refreshes before it reads in any case.
        if clock_now - self._rollups_refreshed_at >= self._rollups_pause and rate <= ROLLUP_BUSY_EVENTS_PER_SECOND:
            await self.refresh_rollups()

    async def apply_retention(self, now: float) -> int:
        """Delete events past each site's retention_days, one small transaction at a time between ingest commits."""
        assert self.reader is not None
        sql = "SELECT website_key, retention_days FROM website WHERE retention_days IS NOT NULL"
        async with self.reader.execute(sql) as cur:
            sites = await cur.fetchall()
        total = 0
        for website_key, days in sites:
            cutoff = int(now - days * 86400)
            repair = await self._in_summary_thread(lambda conn: hours_cut_by_prune(conn, cutoff, website_key))  # noqa: B023
            statement = prune_statement(cutoff, website_key)
            while deleted := await self.writer.call(functools.partial(self._execute_in_transaction, statements=[statement])):
                total += deleted
            await self._in_summary_thread(lambda conn: drop_pruned_rollups(conn, cutoff, website_key, repair))  # noqa: B023
        if total:
            await self.writer.call(functools.partial(self._execute_in_transaction,
                                                     statements=[(sql, ()) for sql in ORPHAN_DELETES]))  # fmt: skip
            log.info("event=retention deleted_events=%d", total)
        return total

    @staticmethod
    async def _execute_in_transaction(conn: aiosqlite.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
        await conn.execute("BEGIN IMMEDIATE")
        changed = 0
        for sql, params in statements:
            async with conn.execute(sql, params) as cur:
                changed += cur.rowcount
        await conn.execute("COMMIT")
        return changed

    async def accept(self, request: SendRequest, origin: Origin, user_agent: str, token: CacheToken | None,
                     now: float) -> Record | None:  # fmt: skip
        """Run one decoded hit through the data path; the Record to write, or None for a bot (counted, not stored).

        The order of checks is Umami's: validation, website, client, bot, ignored IP, then session and event.
        """
        hit = validate_payload(request, now)
        website_key = await self.website_key(hit.website_id)
        client = origin.client(request.payload.ip, self.policy)
        agent = self.parse_agent(user_agent)
        if agent.is_bot and self.config.bot_check:
            self.writer.count_bot(website_key, time.strftime("%Y-%m-%d", time.gmtime(now)))
            return None
        if _in_any(client.address, self.policy.ignored):
            raise forbidden()
        salt = self.salts.salt_for(hit.created_at, now)
        session_id = self.session_id(hit.website_id, client.ip, user_agent, salt, self.secret, hit.distinct_id)
        # A valid cache token for this very session says its row exists already, and a session's first-seen attributes
        # stick, so the location lookup is skipped (the work a token saves; a forged or stale one saves nothing).
        known = token is not None and token.session_id == session_id and token.website_id == hit.website_id
        location = NOWHERE if known else origin.location(client, self.geo)
        visit_id, visit_started_at = self.visits.visit_for(session_id, hit.created_at)
        session, event = enrich(hit, website_key, agent, session_id, location, self.config.remove_trailing_slash)
        return Record(hit.website_id, session, visit_id, visit_started_at, event,
                      hit.data if event is not None else [], hit.data if event is None else [])  # fmt: skip

    def origin(self, request: Request, now: float) -> Origin:
        """Who sent this request; 429 when that client is over --rate-limit."""
        origin = origin_of(request)
        if self.rate_limiter is not None:
            self.rate_limiter.check(origin.client(None, self.policy).address, now)
        return origin

    def answer(self, record: Record, now: float) -> SendResponse:
        """The 200 body for an accepted record, with a fresh cache token."""
        session_id = record.session.session_id
        return SendResponse(
            cache=issue_cache_token(self.token_key, record.website_id, session_id, record.visit_id, now),
            sessionId=session_id,
            visitId=record.visit_id,
        )


_BEEP_BOOP = msgspec.json.encode({"beep": "boop"})


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _json(body: Any) -> Response:
    return Response(content=msgspec.json.encode(body), media_type="application/json")


async def post_send(request: Request) -> Response:
    """POST /api/send: record one pageview, custom event, identify or performance report."""
    runtime = _runtime(request)
    now = runtime.clock()
    origin = runtime.origin(request, now)
    hit = decode_send(await request.body())
    user_agent = _user_agent(request, hit)
    token = read_cache_token(request.headers.get("x-umami-cache"), runtime.token_key, now)
    record = await runtime.accept(hit, origin, user_agent, token, now)
    if record is None:
        return Response(content=_BEEP_BOOP, media_type="application/json")
    await runtime.writer.submit([record])
    return _json(runtime.answer(record, now))


def _user_agent(request: Request, hit: SendRequest) -> str:
    """The user agent of a hit: payload.userAgent, else the User-Agent header; one is required (unlike in Umami)."""
    user_agent = hit.payload.userAgent or request.headers.get("user-agent", "")
    if not user_agent.strip():
        raise bad_request("User-Agent header is required")
    return user_agent


async def post_batch(request: Request) -> Response:
    """POST /api/batch: each item checked on its own, every accepted one written in one transaction."""
    runtime = _runtime(request)
    now = runtime.clock()
    origin = runtime.origin(request, now)
    items = decode_batch(await request.body(), runtime.config.batch_max_items)
    token = read_cache_token(request.headers.get("x-umami-cache"), runtime.token_key, now)
    records: list[Record] = []
    details: list[BatchDetail] = []
    processed = 0
    for index, raw in enumerate(items):
        try:
            hit = decode_send(raw)
            record = await runtime.accept(hit, origin, _user_agent(request, hit), token, now)
        except ApiError as exc:
            details.append(BatchDetail(index, exc.body()))
            continue
        processed += 1  # a bot item counts as processed, as in Umami (issue #3337)
        if record is not None:
            records.append(record)
    if records:
        await runtime.writer.submit(records)
    cache = runtime.answer(records[0], now).cache if records else None
    return _json(BatchResponse(len(items), processed, len(details), details, cache))


class TrackerScript(NamedTuple):
    """The minified tracker as served: plain and gzipped bytes and a strong ETag, prepared once at start-up."""

    body: bytes
    gzipped: bytes
    etag: str


def load_tracker(collect_path: str = "") -> TrackerScript:
    """Read assets/script.js, point it at ``collect_path`` when set, and precompute its gzip form and ETag."""
    import gzip

    body = asset_path("script.js").read_bytes()
    if collect_path:
        body = body.replace(b'"/api/send"', msgspec.json.encode(collect_path))
    return TrackerScript(body, gzip.compress(body, 9, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


_SCRIPT_HEADERS = {"Cache-Control": "public, max-age=86400", "Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding"}


async def get_script(request: Request) -> Response:
    """GET /script.js (and --tracker-path): the tracker, cacheable for a day, revalidated by ETag."""
    tracker: TrackerScript = request.app.state.tracker
    headers = {**_SCRIPT_HEADERS, "ETag": tracker.etag}
    if tracker.etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(content=tracker.gzipped, media_type="text/javascript; charset=utf-8", headers=headers)
    return Response(content=tracker.body, media_type="text/javascript; charset=utf-8", headers=headers)


async def get_heartbeat() -> Response:
    """GET /api/heartbeat: liveness, as the umami-analytics client expects."""
    return Response(content=b'{"ok":true}', media_type="application/json")


###############################################################################################################################
# Summary page: access
###############################################################################################################################
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
SESSION_MAX_AGE_SECONDS = 30 * 86400
#: Login attempts per client: a burst of this many, then one more every LOGIN_REFILL_SECONDS.
LOGIN_BURST = 5
LOGIN_REFILL_SECONDS = 12
#: Headers a reverse proxy adds: with any of them a loopback peer is not the local user.
_PROXY_HEADERS = (*CLIENT_IP_HEADERS, "x-forwarded-host", "x-forwarded-proto", "via")


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, as 'scrypt$N$r$p$salt$hash' (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32)
    encode = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt)}${encode(digest)}"


def _parse_password_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt, digest = stored.strip().split("$")
    if scheme != "scrypt" or not (2 <= int(n) <= 2**20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
        raise ValueError(stored)
    return int(n), int(r), int(p), base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def check_password_hash(stored: str) -> str:
    """``stored`` if it is a hash footfall made; ConfigError otherwise (for FOOTFALL_PASSWORD_HASH)."""
    try:
        _parse_password_hash(stored)
    except (ValueError, TypeError):
        raise ConfigError("password_hash must be a hash printed by `footfall password --print-hash`") from None
    return stored.strip()


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash (constant-time comparison)."""
    try:
        n, r, p, salt, digest = _parse_password_hash(stored)
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


def is_local_browser(request: Request) -> bool:
    """A request from this very machine, not relayed by a proxy (the only ones served before a password is set)."""
    client = request.scope.get("client")
    address = normalize_ip(client[0] if client else None)
    return address is not None and address.is_loopback and not any(h in request.headers for h in _PROXY_HEADERS)


def is_same_origin(request: Request) -> bool:
    """Whether a form post comes from footfall's own pages (Fetch Metadata, else the Origin header)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser (curl, scripts); browser sessions are protected by SameSite=Strict anyway
    return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no //host or scheme tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or any(c < " " for c in target):
        return "/"
    return target


def new_share_token() -> str:
    """An unguessable share-link token (256 random bits)."""
    return secrets.token_urlsafe(32)


###############################################################################################################################
# Summary page: HTTP
###############################################################################################################################

#: Headers on every summary response: no script may run, nothing may frame it, nothing leaks in Referer, nothing is cached.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}  # fmt: skip
#: Titles of the summary's lists and of the filters they set.
LIST_TITLES = {
    "page": ("Pages", "Pageviews"), "entry": ("Entry pages", "Visits"), "exit": ("Exit pages", "Visits"),
    "referrer": ("Referrers", "Visits"), "utm_source": ("UTM sources", "Visits"), "utm_medium": ("UTM mediums", "Visits"),
    "utm_campaign": ("UTM campaigns", "Visits"), "country": ("Countries", "Visits"), "browser": ("Browsers", "Visits"),
    "os": ("Operating systems", "Visits"), "device": ("Devices", "Visits"), "language": ("Languages", "Visits"),
    "screen": ("Screen sizes", "Visits"),
}  # fmt: skip
FILTER_LABELS = {"page": "Page", "event": "Event", "entry": "Entry page", "exit": "Exit page", "referrer": "Referrer",
                 "utm_source": "UTM source", "utm_medium": "UTM medium", "utm_campaign": "UTM campaign",
                 "country": "Country", "browser": "Browser", "os": "OS", "device": "Device", "language": "Language",
                 "screen": "Screen"}  # fmt: skip
HEADLINES = (("visitors", "Visitors"), ("visits", "Visits"), ("pageviews", "Pageviews"),
             ("views_per_visit", "Views per visit"), ("bounce_rate", "Bounce rate"), ("avg_duration_s", "Visit duration"))


class Viewer(NamedTuple):
    """Who is looking, and at what: the sites they may see and the path the page lives at."""

    sites: list[Site]
    base: str  # '/' or '/share/TOKEN'
    logged_in: bool


class Denied(Exception):
    """No access to the summary: why ('login', 'no-password' or 'not-found')."""


async def _viewer(request: Request, token: str | None) -> Viewer:
    runtime = _runtime(request)
    sites = await runtime.sites()
    if token is not None:
        website_key = await runtime.shared_site(token)
        if website_key is None:
            raise Denied("not-found")
        return Viewer([s for s in sites if s.key == website_key], f"/share/{token}", False)
    if runtime.password_hash:
        cookie = request.cookies.get(SESSION_COOKIE)
        if read_session_cookie(cookie, runtime.cookie_key, runtime.password_hash, runtime.clock()):
            return Viewer(sites, "/", True)
        raise Denied("login")
    if is_local_browser(request):
        return Viewer(sites, "/", False)
    raise Denied("no-password")


def _summary_request(request: Request, viewer: Viewer, runtime: Runtime) -> tuple[Site, SummaryRange, dict[str, str]]:
    params = request.query_params
    website = (params.get("website") or "").lower()
    site = next((s for s in viewer.sites if s.id == website), None) if website else (viewer.sites or [None])[0]
    if site is None:
        raise bad_request("Website not found.")
    filters = {name: params[name] for name in FILTERS if params.get(name)}
    if any(len(value) > 500 for value in filters.values()):
        raise bad_request("a filter value is longer than 500 characters")
    period = resolve_range(params.get("period"), params.get("start"), params.get("end"), runtime.zone, runtime.clock(),
                           runtime.shift)  # fmt: skip
    return site, period, filters


def _page(name: str, context: dict[str, Any], status: int = 200, **headers: str) -> Template:
    return Template(template_name=name, context=context, status_code=status, headers={**PAGE_HEADERS, **headers},
                    media_type="text/html; charset=utf-8")  # fmt: skip


def _denied_page(request: Request, reason: str) -> Response[Any] | Template:
    if reason == "login":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(path="/login?" + urlencode({"next": target}), status_code=303, headers=PAGE_HEADERS)
    if reason == "not-found":
        return _page("message.html", {"title": "Not found", "message": "This share link does not exist (any more)."}, 404)
    return _page("message.html", {"title": "Set a password first", "command": "footfall password",
                                  "message": "The summary is only shown on this machine until it has a password. Set one "
                                             "with the command below, then log in."}, 403)  # fmt: skip


async def get_summary_page(request: Request) -> Response[Any] | Template:
    """GET / : the summary page of one website (private)."""
    return await _summary_page(request, None)


async def get_share_page(request: Request) -> Response[Any] | Template:
    """GET /share/TOKEN : the summary page of the one website this share link shows."""
    return await _summary_page(request, request.path_params["token"])


async def _summary_page(request: Request, token: str | None) -> Response[Any] | Template:
    runtime = _runtime(request)
    try:
        viewer = await _viewer(request, token)
    except Denied as denied:
        return _denied_page(request, str(denied))
    if not viewer.sites:
        return _page("message.html", {"title": "No websites", "command": "footfall site add NAME",
                                      "message": "There is no website to show yet. Add one:"})  # fmt: skip
    try:
        site, period, filters = _summary_request(request, viewer, runtime)
    except ApiError as exc:
        return _page("message.html", {"title": "Cannot show that", "message": exc.message}, exc.status)
    summary = await runtime.summary(site, period, filters)
    return _page("summary.html", page_context(summary, viewer, site, period, filters, runtime))


async def get_summary_json(request: Request) -> Response:
    """GET /api/summary?website=…&period=…|start=…&end=…[&share=…][&country=…]: the summary page's numbers as JSON."""
    runtime = _runtime(request)
    try:
        viewer = await _viewer(request, request.query_params.get("share"))
    except Denied as denied:
        reason = str(denied)
        if reason == "not-found":
            raise ApiError(404, "not-found", "Share link not found.") from None
        if reason == "login":
            raise ApiError(401, "unauthorized", "Log in first (POST /login), or use a share link.") from None
        raise ApiError(403, "forbidden", "Set a password with `footfall password` to read the summary remotely.") from None
    site, period, filters = _summary_request(request, viewer, runtime)
    summary = await runtime.summary(site, period, filters)
    return Response(content=msgspec.json.encode(summary), media_type="application/json", headers={"Cache-Control": "no-store"})


async def get_login(request: Request) -> Response[Any] | Template:
    """GET /login: the login form."""
    runtime = _runtime(request)
    if not runtime.password_hash:
        return Redirect(path="/", status_code=303, headers=PAGE_HEADERS)
    return _page("login.html", {"next": safe_next(request.query_params.get("next")), "error": None})


async def post_login(request: Request) -> Response[Any] | Template:
    """POST /login: check the password; on success set the session cookie and go to ``next``."""
    runtime = _runtime(request)
    if not is_same_origin(request):
        return _page("message.html", {"title": "Refused", "message": "Log in from footfall's own login page."}, 403)
    form = await request.form()
    target = safe_next(form.get("next"))
    now = runtime.clock()
    try:
        runtime.login_limiter.check(origin_of(request).client(None, runtime.policy).address, now)
    except ApiError as exc:
        return _page("login.html", {"next": target, "error": "Too many attempts. Wait a minute and try again."}, 429,
                     **exc.headers)  # fmt: skip
    password = form.get("password") or ""
    stored = runtime.password_hash
    if not stored or not isinstance(password, str) or not await runtime.check_password(password):
        return _page("login.html", {"next": target, "error": "Wrong password."}, 403)
    response = Redirect(path=target, status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(SESSION_COOKIE, issue_session_cookie(runtime.cookie_key, stored, now), max_age=SESSION_MAX_AGE_SECONDS,
                        path="/", httponly=True, samesite="strict", secure=_is_https(request))  # fmt: skip
    return response


async def post_logout(request: Request) -> Response[Any] | Template:
    """POST /logout: drop the session cookie."""
    if not is_same_origin(request):
        return _page("message.html", {"title": "Refused", "message": "Log out from footfall's own pages."}, 403)
    response = Redirect(path="/login", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


#: The summary's static files: name → media type.
STATIC_FILES = {"footfall.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


class StaticFile(NamedTuple):
    """A static file as served: its bytes, media type and a strong ETag, read once at start-up."""

    body: bytes
    media_type: str
    etag: str


def load_static_files() -> dict[str, StaticFile]:
    """Read STATIC_FILES from the assets."""
    files = {}
    for name, media_type in STATIC_FILES.items():
        body = asset_path("summary.css" if name == "footfall.css" else name).read_bytes()
        files[name] = StaticFile(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


async def get_static(request: Request) -> Response:
    """GET /static/footfall.css and /static/favicon.svg (also at /favicon.ico): revalidated by ETag."""
    name = request.path_params.get("name", "favicon.svg")
    found: StaticFile | None = request.app.state.static.get(name)
    if found is None:
        raise ApiError(404, "not-found", "Not found")
    headers = {"Cache-Control": "public, max-age=3600", "ETag": found.etag, "X-Content-Type-Options": "nosniff"}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=found.body, media_type=found.media_type, headers=headers)


def _compact(n: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{n:g}"


def format_duration(seconds: float) -> str:
    """'1h 02m', '3m 05s' or '42s'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
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
            name = f"{when:%a %d %b %H:%M}" if period.end - period.start > 86400 else f"{when:%H:%M}"
        else:
            name = f"{when:%a %d %b %Y}"
        x = left + i * slot
        pv_h = point["pageviews"] / ceiling * plot_h
        vi_h = point["visitors"] / ceiling * plot_h
        bars.append({
            "x": round(x + slot * 0.1, 1), "w": round(max(slot * 0.8, 1), 1),
            "y": round(top + plot_h - pv_h, 1), "h": round(pv_h, 1),
            "vx": round(x + slot * 0.3, 1), "vw": round(max(slot * 0.4, 1), 1),
            "vy": round(top + plot_h - vi_h, 1), "vh": round(vi_h, 1),
            "title": f"{name}: {point['pageviews']:,} pageviews, {point['visitors']:,} visitors",
        })  # fmt: skip
        if i % every == 0:
            text = f"{when:%H:%M}" if period.step == "hour" else f"{when:%d %b}"
            labels.append({"x": round(x + slot / 2, 1), "text": text})
    ticks = [{"y": round(top + plot_h - plot_h * k / 4, 1), "text": _compact(ceiling * k / 4)} for k in range(5)]
    return {"width": width, "height": height, "left": left, "right": width - right, "bottom": top + plot_h, "bars": bars,
            "labels": labels, "ticks": ticks, "label_y": height - 8}  # fmt: skip


def page_context(summary: dict[str, Any], viewer: Viewer, site: Site, period: SummaryRange, filters: Mapping[str, str],
                 runtime: Runtime) -> dict[str, Any]:  # fmt: skip
    """What summary.html needs: the numbers, formatted, and every link the page offers."""
    state = {"website": site.id if len(viewer.sites) > 1 and not viewer.base.startswith("/share/") else None,
             "period": None if period.name == "custom" else period.name, **filters}  # fmt: skip
    if period.name == "custom":
        state["start"] = f"{dt.datetime.fromtimestamp(period.start, period.zone):%Y-%m-%d}"
        state["end"] = f"{dt.datetime.fromtimestamp(period.end - 1, period.zone):%Y-%m-%d}"

    def link(**changes: str | None) -> str:
        query = {k: v for k, v in {**state, **changes}.items() if v}
        return viewer.base + ("?" + urlencode(query) if query else "")

    def display(metric: str, value: str) -> str:
        if metric == "country":
            return runtime.country_names.get(value, value)
        if metric == "device":
            return value.capitalize()
        return value

    headline = []
    for name, label in HEADLINES:
        cell = summary["totals"][name]
        change = cell["change"]
        better = None if change is None or change == 0 else (change < 0) == (name == "bounce_rate")
        headline.append({"label": label, "value": format_headline(name, cell["value"]),
                         "previous": format_headline(name, cell["previous"]),
                         "change_text": f"{change * 100:+.0f}% on the previous period" if change is not None
                         else "new" if cell["value"] else "–",
                         "tone": "same" if better is None else "up" if better else "down"})  # fmt: skip
    panels = []
    for metric, (title, column) in LIST_TITLES.items():
        block = summary["lists"][metric]
        rows = [{"label": display(metric, r["value"]), "href": link(**{metric: r["value"]}), "count": f"{r['count']:,}",
                 "share": r["share"], "percent": f"{r['share'] * 100:.0f}%"} for r in block["rows"]]  # fmt: skip
        panels.append({"id": metric, "title": title, "label": FILTER_LABELS[metric], "column": column, "rows": rows})
    events = [{"label": e["value"] or "(no name)", "href": link(event=e["value"]), "count": f"{e['count']:,}",
               "share": e["share"], "percent": f"{e['share'] * 100:.0f}%",
               "keys": ", ".join(k["key"] for k in e["keys"])} for e in summary["events"]]  # fmt: skip
    vitals = []
    for row in summary["vitals"]:
        cells = []
        for metric in VITALS:
            cell = row[metric]
            if cell is None:
                cells.append({"text": "–", "rating": "none"})
            else:
                text = f"{cell['p75']:.2f}" if metric == "cls" else format_duration(cell["p75"] / 1000) if cell["p75"] >= 60_000 \
                    else f"{cell['p75']:,.0f} ms"  # fmt: skip
                cells.append({"text": text, "rating": cell["rating"]})
        vitals.append({"page": row["page"], "href": link(page=row["page"]), "reports": f"{row['reports']:,}", "cells": cells})
    start_local = dt.datetime.fromtimestamp(period.start, period.zone)
    end_local = dt.datetime.fromtimestamp(period.end - 1, period.zone)
    json_query = {k: v for k, v in {**state, "website": site.id}.items() if v}
    if viewer.base.startswith("/share/"):
        json_query["share"] = viewer.base.rsplit("/", 1)[1]
    return {
        "site": site, "sites": viewer.sites, "base": viewer.base, "logged_in": viewer.logged_in,
        "shared": viewer.base.startswith("/share/"), "period": period, "summary": summary,
        "periods": [{"label": label, "href": link(period=key, start=None, end=None), "current": key == period.name}
                    for key, label in PERIODS.items()],
        "custom_start": f"{start_local:%Y-%m-%d}", "custom_end": f"{end_local:%Y-%m-%d}",
        "hidden": {k: v for k, v in state.items() if v and k not in ("period", "start", "end")},
        "filters": [{"label": FILTER_LABELS[k], "value": display(k, v), "href": link(**{k: None})} for k, v in filters.items()],
        "headline": headline, "chart": chart_geometry(summary["chart"], period), "panels": panels, "events": events,
        "vitals": vitals, "vital_names": [n.upper() for n in VITALS],
        "realtime": {"visitors": summary["realtime"]["visitors"],
                     "pages": [{"label": p["value"], "href": link(page=p["value"]), "count": p["count"]}
                               for p in summary["realtime"]["pages"]]},
        "bots": f"{summary['bots']:,}", "timezone": str(period.zone), "json_query": urlencode(json_query),
        "range_text": f"{start_local:%a %d %b %Y %H:%M} – {dt.datetime.fromtimestamp(period.end, period.zone):%a %d %b %Y %H:%M}",
    }  # fmt: skip


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 description of footfall's JSON API.

    The collection handlers decode their bodies themselves (msgspec, with Umami's error messages), so Litestar cannot see
    their request types; the bodies and answers are described here from the very Structs that decode and encode them.
    """
    (send, batch, accepted, bot, batch_answer, error), components = msgspec.json.schema_components(
        (SendRequest, list[SendRequest], SendResponse, BotAnswer, BatchResponse, ErrorBody),
        ref_template="#/components/schemas/{name}")  # fmt: skip
    # A batch item is judged on its own: a bad one is listed in the 200 answer's details, not refused with the batch.
    batch = {"type": "array", "maxItems": config.batch_max_items,
             "items": {"description": "An /api/send body (see SendRequest); checked on its own"}}  # fmt: skip
    # The Struct decodes leniently so that each mistake gets Umami's own message; the document states what is accepted.
    payload = components["Payload"]
    payload["required"] = ["website"]
    fields = payload["properties"]
    fields["website"] = {"type": "string", "pattern": f"^({_UUID_RE.pattern})$", "description": "The website's UUID."}
    fields["link"] = fields["pixel"] = {"type": "null", "description": "Umami's links and pixels are not supported."}
    for name, most in (("lcp", MAX_VITAL_MS), ("inp", MAX_VITAL_MS), ("fcp", MAX_VITAL_MS), ("ttfb", MAX_VITAL_MS),
                       ("cls", MAX_CLS), ("duration", None)):  # fmt: skip
        number: dict[str, Any] = {"type": "number", "minimum": 0, **({"maximum": most} if most is not None else {})}
        fields[name] = {"anyOf": [number, {"type": "null"}]}

    def answers(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
        result = {"200": {"description": "Accepted", "content": {"application/json": {"schema": ok}}}}
        for status in statuses:
            result[str(status)] = {"description": HTTPStatus(status).phrase, "content": {"application/json": {"schema": error}}}
        return result

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    cache_header = {"name": "x-umami-cache", "in": "header", "required": False, "schema": {"type": "string"},
                    "description": "The cache token of an earlier answer (skips work for a known session)."}  # fmt: skip
    user_agent = {"name": "user-agent", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "The visitor's browser; required unless payload.userAgent is given."}  # fmt: skip
    summary_parameters = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("website", "period", "start", "end", "share", *FILTERS)
    ]
    collect = {"summary": "Record a pageview, custom event, identify or performance report (Umami's /api/send)",
               "parameters": [cache_header, user_agent], "requestBody": body(send),
               "responses": answers({"oneOf": [accepted, bot]}, 400, 403, 413, 429, 503)}  # fmt: skip
    paths: dict[str, Any] = {
        "/api/send": {"post": {**collect, "operationId": "send"}},
        "/api/batch": {"post": {"summary": "Record many hits at once; each item is checked on its own (Umami's /api/batch)",
                                "operationId": "batch", "parameters": [cache_header, user_agent], "requestBody": body(batch),
                                "responses": answers(batch_answer, 400, 413, 429, 503)}},
        "/api/heartbeat": {"get": {"summary": "Liveness", "operationId": "heartbeat", "responses": {"200": {
            "description": "Alive", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]}}}}}}},
        "/api/summary": {"get": {"summary": "The summary page's numbers (log in first, or pass a share token)",
                                 "operationId": "summary", "parameters": summary_parameters,
                                 "responses": answers({"type": "object"}, 400, 401, 403, 404)}},
    }  # fmt: skip
    if config.collect_path:
        paths[config.collect_path] = {"post": {**collect, "operationId": "collect-alias"}}
    return {"openapi": "3.1.0", "info": {"title": "footfall", "version": __version__,
                                         "description": "Umami-compatible collection API and the summary's JSON."},
            "paths": paths, "components": {"schemas": components}}  # fmt: skip


async def get_openapi(request: Request) -> Response:
    """GET /api/openapi.json: the OpenAPI description of the JSON API."""
    return Response(content=request.app.state.openapi, media_type="application/json")


###############################################################################################################################
# App factory and lifespan
###############################################################################################################################


def create_app(config: Config, clock: Callable[[], float] = time.time) -> Litestar:
    """The Litestar app: collection routes, CORS for browsers on other origins, Umami-shaped errors, the lifespan."""
    runtime = Runtime(config, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar):  # type: ignore[no-untyped-def]
        await runtime.start()
        app.state.runtime = runtime
        app.state.tracker = await asyncio.to_thread(load_tracker, config.collect_path)
        app.state.static = await asyncio.to_thread(load_static_files)
        app.state.openapi = msgspec.json.encode(openapi_document(config))
        try:
            yield
        finally:
            await runtime.close()

    handlers = [
        get("/", include_in_schema=False)(get_summary_page),
        get("/share/{token:str}", include_in_schema=False)(get_share_page),
        get("/api/summary")(get_summary_json),
        get("/api/openapi.json", include_in_schema=False)(get_openapi),
        get("/login", include_in_schema=False)(get_login),
        post("/login", include_in_schema=False, status_code=303, request_max_body_size=4096)(post_login),
        post("/logout", include_in_schema=False, status_code=303, request_max_body_size=4096)(post_logout),
        get(["/static/{name:str}", "/favicon.ico"], include_in_schema=False)(get_static),
        post("/api/send", request_max_body_size=config.max_body_bytes, status_code=200)(post_send),
        post("/api/batch", request_max_body_size=config.batch_max_bytes, status_code=200)(post_batch),
        get("/api/heartbeat")(get_heartbeat),
        get(["/script.js", *([config.tracker_path] if config.tracker_path else [])], include_in_schema=False)(get_script),
    ]
    if config.collect_path:
        handlers.append(post(config.collect_path, request_max_body_size=config.max_body_bytes, status_code=200,
                             name="collect-alias")(post_send))  # fmt: skip
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        # The browser tracker posts JSON with an x-umami-cache header from the site's origin, which needs a preflight.
        cors_config=CORSConfig(allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
                               allow_headers=["content-type", "x-umami-cache"], max_age=86400),  # fmt: skip
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception, Exception: handle_server_error},
        template_config=TemplateConfig(directory=asset_path("templates"), engine=JinjaTemplateEngine),
        request_max_body_size=config.batch_max_bytes,
        openapi_config=None,
        logging_config=None,  # footfall configures logging itself (key=value lines, no IPs); Litestar's would add handlers
        debug=False,
    )


###############################################################################################################################
# Operations
###############################################################################################################################
# What the operating commands (backup, check, prune, export, forget, stats) do, as plain functions of a database path so
# tests call them directly. They are safe while footfall serves: reads use their own transaction (WAL), deletes go in
# small transactions so ingest never waits long.

#: Events deleted per transaction by prune and retention, so a big delete never holds the write lock for long.
PRUNE_CHUNK_ROWS = 5000
#: Rows fetched at a time by export (memory stays constant whatever the size of the database).
EXPORT_BATCH_ROWS = 1000
_AGE_RE = re.compile(r"(\d+)\s*([hdw])")
_AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> int:
    """Seconds in an age like '400d', '12w' or '36h'; ConfigError otherwise."""
    match = _AGE_RE.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{text!r} is not an age like 400d, 12w or 36h")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def backup_database(db: str, dest: Path, now: float | None = None) -> Path:
    """An online, consistent copy of ``db`` (VACUUM INTO: one read transaction, so footfall keeps writing meanwhile).

    ``dest`` may be a directory (the copy is named footfall-YYYYMMDDTHHMMSSZ.db in it) or a file that does not exist yet.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = dest / f"footfall-{stamp}.db" if dest.is_dir() else dest
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another name or a directory")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with contextlib.closing(connect(db)) as conn:
        conn.execute("VACUUM INTO ?", (str(partial),))
    os.replace(partial, target)  # a backup file either is complete or does not exist
    return target


def expire_backups(folder: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete footfall-*.db backups in ``folder`` older than ``keep_days``; return what was deleted."""
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    removed = []
    for path in sorted(folder.glob("footfall-*.db")):
        if path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    return removed


def check_database(db: str, now: float | None = None) -> dict[str, Any]:
    """Integrity, schema version, row counts and salt ages of a database, for `footfall check`."""
    now = time.time() if now is None else now
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = ("website", "session", "visit", "website_event", "event_data", "session_data", "bot_counter", "salt")
        return {
            "integrity": "ok" if integrity == ["ok"] else "; ".join(integrity[:20]),
            "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "rows": {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables},
            "salts": [{"period": period, "age_days": round((now - starts_at) / 86400, 1)}
                      for period, starts_at in conn.execute("SELECT period, starts_at FROM salt ORDER BY starts_at")],
        }  # fmt: skip


def _website_key_for(conn: sqlite3.Connection, website_id: str | None) -> int | None:
    if website_id is None:
        return None
    row = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website_id.lower(),)).fetchone()
    if row is None:
        raise ConfigError(f"no website with id {website_id}; `footfall site list` shows the ids")
    return int(row[0])


def prune_statement(cutoff: int, website_key: int | None) -> tuple[str, tuple[Any, ...]]:
    """The DELETE of one chunk of events older than ``cutoff`` (Unix seconds), of one site or all."""
    site_clause = "" if website_key is None else " AND website_key = ?"
    params: tuple[Any, ...] = (cutoff,) if website_key is None else (cutoff, website_key)
    return (f"DELETE FROM website_event WHERE event_key IN (SELECT event_key FROM website_event "
            f"WHERE created_at < ?{site_clause} ORDER BY event_key LIMIT {PRUNE_CHUNK_ROWS})", params)  # fmt: skip


#: Visits left without events, then sessions left without visits (their session_data goes with them).
ORPHAN_DELETES = (
    "DELETE FROM visit WHERE NOT EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = visit.visit_key)",
    "DELETE FROM session WHERE NOT EXISTS (SELECT 1 FROM visit v WHERE v.session_key = session.session_key)",
)


def prune_chunk(conn: sqlite3.Connection, cutoff: int, website_key: int | None) -> int:
    """Delete up to PRUNE_CHUNK_ROWS events older than ``cutoff`` (Unix seconds) in one transaction; return how many."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = conn.execute(*prune_statement(cutoff, website_key)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted


def prune_events(db: str, older_than_s: int, website_id: str | None = None, now: float | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:  # fmt: skip
    """Delete events older than ``older_than_s`` seconds (of one site, or all), in small transactions, then orphans."""
    cutoff = int((time.time() if now is None else now) - older_than_s)
    with contextlib.closing(connect(db)) as conn:
        website_key = _website_key_for(conn, website_id)
        repair = hours_cut_by_prune(conn, cutoff, website_key)
        total = 0
        while deleted := prune_chunk(conn, cutoff, website_key):
            total += deleted
            if progress is not None:
                progress(deleted)
        conn.execute("BEGIN IMMEDIATE")
        visits, sessions = (conn.execute(sql).rowcount for sql in ORPHAN_DELETES)
        conn.execute("COMMIT")
        drop_pruned_rollups(conn, cutoff, website_key, repair)
    return {"events": total, "visits": visits, "sessions": sessions}


def forget_person(db: str, distinct_id: str, website_id: str | None = None) -> dict[str, int]:
    """Delete everything stored about one distinct id: its sessions, their visits, events and data (privacy requests)."""
    with contextlib.closing(connect(db)) as conn:
        website_key = _website_key_for(conn, website_id)
        site_clause = "" if website_key is None else " AND website_key = ?"
        params: tuple[Any, ...] = (distinct_id,) if website_key is None else (distinct_id, website_key)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS forget_keys (session_key INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM forget_keys")
            conn.execute(f"INSERT INTO forget_keys SELECT session_key FROM session WHERE distinct_id = ?{site_clause}", params)
            conn.execute(f"INSERT OR IGNORE INTO forget_keys SELECT session_key FROM session_data "
                         f"WHERE distinct_id = ?{'' if website_key is None else ' AND session_key IN (SELECT session_key FROM session WHERE website_key = ?)'}",  # noqa: E501
                         params)  # fmt: skip
            alignment = _stored_alignment(conn)
            repair: dict[int, set[int]] = collections.defaultdict(set)
            if alignment is not None:  # the hours the person's events were counted in
                sql = "SELECT DISTINCT website_key, created_at FROM website_event WHERE session_key IN (SELECT session_key FROM forget_keys)"
                for key, at in conn.execute(sql):
                    repair[key].add(bucket_of(at, alignment[0]))
            counts = {
                "events": conn.execute("DELETE FROM website_event WHERE session_key IN (SELECT session_key FROM forget_keys)").rowcount,  # noqa: E501
                "visits": conn.execute("DELETE FROM visit WHERE session_key IN (SELECT session_key FROM forget_keys)").rowcount,
                "session_data": conn.execute("DELETE FROM session_data WHERE session_key IN (SELECT session_key FROM forget_keys)").rowcount,  # noqa: E501
                "sessions": conn.execute("DELETE FROM session WHERE session_key IN (SELECT session_key FROM forget_keys)").rowcount,
            }  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        repair_rollups(conn, repair)
    return counts


#: Columns of `footfall export` (the `events` view, without internal keys).
EXPORT_COLUMNS = (
    "website_id", "session_id", "visit_id", "created_at", "event_kind", "event_name", "url_path", "url_query",
    "referrer_domain", "referrer_path", "referrer_query", "self_referral", "page_title", "hostname", "tag",
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "gclid", "fbclid", "msclkid", "ttclid",
    "li_fat_id", "twclid", "lcp", "inp", "cls", "fcp", "ttfb", "duration", "browser", "os", "device", "screen",
    "language", "country", "region", "city", "distinct_id",
)  # fmt: skip


def export_events(db: str, out: Any, fmt: str, website_id: str | None = None, since: int | None = None,
                  until: int | None = None) -> int:  # fmt: skip
    """Stream events with their session attributes to the text stream ``out`` as CSV or JSON lines; return the count."""
    import csv

    clauses, params = ["1"], []
    if website_id is not None:
        clauses.append("website_id = ?")
        params.append(website_id.lower())
    if since is not None:
        clauses.append("created_unix >= ?")
        params.append(since)
    if until is not None:
        clauses.append("created_unix < ?")
        params.append(until)
    sql = f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE {' AND '.join(clauses)} ORDER BY event_key"
    count = 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        if website_id is not None:
            _website_key_for(conn, website_id)
        cursor = conn.execute(sql, params)
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(EXPORT_COLUMNS)
        while batch := cursor.fetchmany(EXPORT_BATCH_ROWS):
            if writer is not None:
                writer.writerows(batch)
            else:
                out.writelines(msgspec.json.encode(dict(zip(EXPORT_COLUMNS, row))).decode() + "\n" for row in batch)
            count += len(batch)
    return count


def site_stats(db: str, website_id: str | None, period_s: int, now: float | None = None) -> dict[str, Any]:
    """Headline numbers and top pages of the last ``period_s`` seconds, read from the public views (`footfall stats`)."""
    now = time.time() if now is None else now
    since = int(now - period_s)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        website_key = _website_key_for(conn, website_id)
        site = "" if website_key is None else " AND w.website_key = ?"
        params: tuple[Any, ...] = (since,) if website_key is None else (since, website_key)
        visits_sql = f"""SELECT count(*), count(DISTINCT v.session_key), ifnull(sum(pv), 0),
                                ifnull(sum(pv = 1 AND ce = 0), 0), ifnull(avg(span), 0)
                           FROM (SELECT e.visit_key, sum(e.event_type = 1) AS pv, sum(e.event_type = 2) AS ce,
                                        max(max(e.created_at) - min(e.created_at), ifnull(sum(e.duration), 0) / 1000) AS span
                                   FROM website_event e JOIN website w ON w.website_key = e.website_key
                                  WHERE e.created_at >= ?{site} GROUP BY e.visit_key) AS per_visit
                           JOIN visit v ON v.visit_key = per_visit.visit_key"""
        visits, visitors, pageviews, bounces, duration = conn.execute(visits_sql, params).fetchone()
        top_sql = f"""SELECT e.url_path, count(*) FROM website_event e JOIN website w ON w.website_key = e.website_key
                       WHERE e.created_at >= ?{site} AND e.event_type = 1 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"""
        top = conn.execute(top_sql, params).fetchall()
    return {
        "visitors": visitors, "visits": visits, "pageviews": pageviews,
        "views_per_visit": round(pageviews / visits, 2) if visits else 0.0,
        "bounce_rate": round(100 * bounces / visits, 1) if visits else 0.0,
        "avg_visit_s": round(duration or 0),
        "top_pages": [{"url_path": path, "pageviews": n} for path, n in top],
    }  # fmt: skip


# Moving between Umami and footfall: Umami's PostgreSQL tables as CSV with a header row, as written by
#   \copy website_event TO 'website_event.csv' WITH CSV HEADER
# (likewise session, event_data, session_data). Columns are matched by name, so their order does not matter.

#: Umami's columns per table (prisma/schema.prisma), in the order footfall writes them.
UMAMI_COLUMNS: dict[str, tuple[str, ...]] = {
    "session": ("session_id", "website_id", "browser", "os", "device", "screen", "language", "country", "region", "city",
                "distinct_id", "created_at"),
    "website_event": ("event_id", "website_id", "session_id", "visit_id", "created_at", "url_path", "url_query",
                      "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "referrer_path",
                      "referrer_query", "referrer_domain", "page_title", "gclid", "fbclid", "msclkid", "ttclid",
                      "li_fat_id", "twclid", "event_type", "event_name", "tag", "hostname", "lcp", "inp", "cls", "fcp",
                      "ttfb"),
    "event_data": ("event_data_id", "website_id", "website_event_id", "data_key", "string_value", "number_value",
                   "date_value", "data_type", "created_at"),
    "session_data": ("session_data_id", "website_id", "session_id", "data_key", "string_value", "number_value",
                     "date_value", "data_type", "distinct_id", "created_at"),
}  # fmt: skip
#: The column that tells which table a CSV holds, in import order (sessions before their events, events before data).
_UMAMI_TABLE_KEYS = (("session", "browser"), ("website_event", "event_id"), ("event_data", "event_data_id"),
                     ("session_data", "session_data_id"))  # fmt: skip
_PSQL_OFFSET_RE = re.compile(r"([+-]\d\d)$")


def _from_psql_time(text: str | None) -> int | None:
    """Unix seconds from a timestamptz as psql writes it ('2026-05-14 10:00:00.123+00'), or None."""
    if not text:
        return None
    value = dt.datetime.fromisoformat(_PSQL_OFFSET_RE.sub(r"\1:00", text.strip()))
    return int((value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp())


def _to_psql_time(seconds: int | None) -> str:
    return "" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(seconds))


def _umami_table(header: Sequence[str]) -> str:
    for table, key in _UMAMI_TABLE_KEYS:
        if key in header:
            return table
    raise ConfigError(f"not one of Umami's session, website_event, event_data or session_data CSVs (columns: "
                      f"{', '.join(header[:6])}…); export them with \\copy … WITH CSV HEADER")  # fmt: skip


def _num(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def import_umami(db: str, paths: Sequence[Path], progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Load Umami CSVs into footfall: websites are created with their Umami ids, so tracking snippets keep working."""
    import csv

    files: dict[str, list[Path]] = collections.defaultdict(list)
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            files[_umami_table(next(csv.reader(handle), []))].append(path)
    counts = collections.Counter[str]()
    with contextlib.closing(connect(db)) as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS umami_event (event_id TEXT PRIMARY KEY, event_key INTEGER) WITHOUT ROWID")
        websites: dict[str, int] = dict(conn.execute("SELECT website_id, website_key FROM website").fetchall())

        def website_key(website_id: str) -> int:
            website_id = website_id.lower()
            if website_id not in websites:
                cur = conn.execute("INSERT INTO website (website_id, name, created_at) VALUES (?, ?, ?)",
                                   (website_id, f"umami {website_id[:8]}", int(time.time())))  # fmt: skip
                websites[website_id] = int(cur.lastrowid or 0)
                counts["websites"] += 1
            return websites[website_id]

        def session_key(session_id: str, website: int, created_at: int) -> int:
            conn.execute("INSERT OR IGNORE INTO session (session_id, website_key, created_at) VALUES (?, ?, ?)",
                         (session_id.lower(), website, created_at))  # fmt: skip
            return int(conn.execute("SELECT session_key FROM session WHERE session_id = ?", (session_id.lower(),)).fetchone()[0])

        for table, _ in _UMAMI_TABLE_KEYS:
            for path in files.get(table, []):
                with open(path, newline="", encoding="utf-8") as handle:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        for number, row in enumerate(csv.DictReader(handle), 1):
                            counts[_import_umami_row(conn, table, row, website_key, session_key)] += 1
                            if progress is not None and number % 1000 == 0:
                                progress(1000)
                        conn.execute("COMMIT")
                    except (KeyError, ValueError) as exc:
                        conn.execute("ROLLBACK")
                        raise ConfigError(f"{path}: cannot read row {number}: {exc!r}") from None
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
        first = conn.execute("SELECT min(event_key) FROM temp.umami_event").fetchone()[0]
        if first is not None:  # imported keys may lie below the rollups' watermark: lower it (recomputing is idempotent)
            conn.execute("UPDATE setting SET value = min(CAST(value AS INTEGER), ?) WHERE name = 'rollup_event_key'", (first - 1,))
    return dict(counts)


def _import_umami_row(conn: sqlite3.Connection, table: str, row: dict[str, str], website_key: Callable[[str], int],
                      session_key: Callable[[str, int, int], int]) -> str:  # fmt: skip
    """Insert one Umami row; return what it counted as."""
    get = lambda name, limit=500: (row.get(name) or None) and row[name][:limit]  # noqa: E731
    created = _from_psql_time(row.get("created_at")) or 0
    if table == "session":
        website = website_key(row["website_id"])
        conn.execute(
            "INSERT INTO session (session_id, website_key, browser, os, device, screen, language, country, region, city, "
            "distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (session_id) DO NOTHING",
            (row["session_id"].lower(), website, get("browser", 20), get("os", 20), get("device", 20), get("screen", 11),
             get("language", 35), _valid_country(row.get("country")), get("region", 20), get("city", 50),
             get("distinct_id", 50), created))  # fmt: skip
        return "sessions"
    if table == "website_event":
        kind = int(row.get("event_type") or EVENT_PAGEVIEW)
        if kind not in (EVENT_PAGEVIEW, EVENT_CUSTOM, EVENT_PERFORMANCE):
            return "skipped link and pixel events"
        website = website_key(row["website_id"])
        session = session_key(row["session_id"], website, created)
        visit_id = row["visit_id"].lower()
        conn.execute("INSERT OR IGNORE INTO visit (visit_id, session_key, started_at) VALUES (?, ?, ?)",
                     (visit_id, session, created))  # fmt: skip
        conn.execute("UPDATE visit SET started_at = min(started_at, ?) WHERE visit_id = ?", (created, visit_id))
        visit = conn.execute("SELECT visit_key FROM visit WHERE visit_id = ?", (visit_id,)).fetchone()[0]
        ref_domain = get("referrer_domain")
        hostname = get("hostname", MAX_HOSTNAME_CHARS)
        cur = conn.execute(
            f"INSERT INTO website_event (website_key, session_key, visit_key, {', '.join(EventRow._fields)}) "
            f"VALUES ({', '.join('?' * (len(EventRow._fields) + 3))})",
            (website, session, visit, created, kind, get("event_name", 50), get("url_path") or "", get("url_query"),
             get("referrer_path"), get("referrer_query"), ref_domain,
             int(bool(ref_domain) and ref_domain == _strip_www(hostname)), get("page_title"), hostname, get("tag", 50),
             *(get(name, MAX_CAMPAIGN_CHARS) for name in _CAMPAIGN_PARAMS),
             *(_num(row.get(name)) for name in ("lcp", "inp", "cls", "fcp", "ttfb")), None))  # fmt: skip
        conn.execute("INSERT OR REPLACE INTO umami_event (event_id, event_key) VALUES (?, ?)",
                     (row["event_id"].lower(), cur.lastrowid))  # fmt: skip
        return "events"
    data = (row["data_key"][:MAX_DATA_KEY_CHARS], int(row["data_type"]), get("string_value"), _num(row.get("number_value")),
            _from_psql_time(row.get("date_value")))  # fmt: skip
    if table == "event_data":
        found = conn.execute("SELECT event_key FROM umami_event WHERE event_id = ?", (row["website_event_id"].lower(),)).fetchone()
        if found is None:
            return "skipped event data without its event"
        conn.execute("INSERT OR REPLACE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
                     "date_value) VALUES (?,?,?,?,?,?)", (found[0], *data))  # fmt: skip
        return "event data"
    website = website_key(row["website_id"])
    session = session_key(row["session_id"], website, created)
    conn.execute("INSERT OR REPLACE INTO session_data (session_key, data_key, data_type, string_value, number_value, "
                 "date_value, distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?)",
                 (session, *data, get("distinct_id", 50), created))  # fmt: skip
    return "session data"


def export_umami(db: str, folder: Path, website_id: str | None = None) -> dict[str, int]:
    """Write website_event.csv, session.csv, event_data.csv and session_data.csv in Umami's columns, ready for
    `\\copy TABLE FROM 'TABLE.csv' WITH CSV HEADER` into Umami's PostgreSQL. Event ids are stable UUIDs."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        key = _website_key_for(conn, website_id)
        site = "" if key is None else f" WHERE w.website_key = {int(key)}"
        queries = {
            "session": f"""SELECT s.session_id, w.website_id, s.browser, s.os, s.device, s.screen, s.language, s.country,
                                  s.region, s.city, s.distinct_id, s.created_at
                             FROM session s JOIN website w ON w.website_key = s.website_key{site} ORDER BY s.session_key""",
            "website_event": f"""SELECT e.event_key, w.website_id, s.session_id, v.visit_id, e.created_at, e.url_path,
                                        e.url_query, e.utm_source, e.utm_medium, e.utm_campaign, e.utm_content, e.utm_term,
                                        e.referrer_path, e.referrer_query, e.referrer_domain, e.page_title, e.gclid,
                                        e.fbclid, e.msclkid, e.ttclid, e.li_fat_id, e.twclid, e.event_type, e.event_name,
                                        e.tag, e.hostname, e.lcp, e.inp, e.cls, e.fcp, e.ttfb
                                   FROM website_event e JOIN website w ON w.website_key = e.website_key
                                   JOIN session s ON s.session_key = e.session_key
                                   JOIN visit v ON v.visit_key = e.visit_key{site} ORDER BY e.event_key""",
            "event_data": f"""SELECT d.event_key, w.website_id, d.event_key, d.data_key, d.string_value, d.number_value,
                                     d.date_value, d.data_type, e.created_at
                                FROM event_data d JOIN website_event e ON e.event_key = d.event_key
                                JOIN website w ON w.website_key = e.website_key{site} ORDER BY d.event_key, d.data_key""",
            "session_data": f"""SELECT d.session_key, w.website_id, s.session_id, d.data_key, d.string_value,
                                       d.number_value, d.date_value, d.data_type, d.distinct_id, d.created_at
                                  FROM session_data d JOIN session s ON s.session_key = d.session_key
                                  JOIN website w ON w.website_key = s.website_key{site} ORDER BY d.session_key, d.data_key""",
        }  # fmt: skip
        for table, sql in queries.items():
            columns = UMAMI_COLUMNS[table]
            times = {i for i, name in enumerate(columns) if name in ("created_at", "date_value")}
            with open(folder / f"{table}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                cursor, count = conn.execute(sql), 0
                while batch := cursor.fetchmany(EXPORT_BATCH_ROWS):
                    for row in batch:
                        values = list(row)
                        if table in ("website_event", "event_data"):
                            values[0] = _stable_uuid(values[1], "event", values[0])
                        if table == "event_data":
                            values[2] = values[0]
                            values[0] = _stable_uuid(values[1], "event-data", f"{row[0]}:{row[3]}")
                        if table == "session_data":
                            values[0] = _stable_uuid(values[1], "session-data", f"{row[0]}:{row[3]}")
                        writer.writerow(["" if v is None else _to_psql_time(v) if i in times else v
                                         for i, v in enumerate(values)])  # fmt: skip
                    count += len(batch)
            counts[table] = count
    return counts


def _stable_uuid(website_id: str, kind: str, key: object) -> str:
    """A UUID for a row footfall keys by integer: the same row always gets the same id."""
    return str(uuid.uuid5(uuid.UUID(website_id), f"footfall:{kind}:{key}"))


###############################################################################################################################
# CLI
###############################################################################################################################


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd our state over $NOTIFY_SOCKET (Type=notify units); False when not run by systemd."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("event=sd-notify-failed error=%r", str(exc))
        return False
    return True


def _setting_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--name`` option per SETTINGS entry (None when not given, so the environment can fill it in)."""
    for setting in reversed(SETTINGS):
        flag = "--" + setting.name.replace("_", "-")
        help_text = f"{setting.help} [env {env_name(setting)}; default {setting.default!r}]"
        if isinstance(setting.default, bool):
            fn = click.option(f"{flag}/--no-{flag[2:]}", setting.name, default=None, help=help_text)(fn)
        else:
            kind = click.Choice(setting.choices) if setting.choices else None
            fn = click.option(flag, setting.name, default=None, type=kind, help=help_text)(fn)
    return fn


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(asctime)s level=%(levelname)s %(message)s")


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="footfall")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """footfall: Umami-compatible web analytics in one SQLite file.

    Run without a command to serve with the defaults (same as `footfall serve`).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
@_setting_options
def serve(**options: Any) -> None:
    """Collect events over HTTP until stopped (SIGTERM or Ctrl-C drain the queue first).

    Example: footfall serve --db /var/lib/footfall/footfall.db --port 8000
    """
    import uvicorn

    try:
        config = load_config(options, os.environ)
        prepared = prepare_database(config.db, config.salt_rotation)
        if config.geoip_db:
            MaxMindGeo(config.geoip_db).close()  # fail now, with a clear message, rather than inside the server
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _configure_logging(config.log_level)
    base = f"http://{config.host}:{config.port}"
    click.echo(f"footfall {__version__} listening on {base}, database {os.path.abspath(config.db)}")
    if prepared.default_website_id:
        click.echo(f"Created website 'default' with id {prepared.default_website_id}. Paste this into your pages:")
        click.echo(f'  <script defer src="{base}/script.js" data-website-id="{prepared.default_website_id}"></script>')
    class NotifyingServer(uvicorn.Server):
        """uvicorn's server, telling systemd when it is listening (READY=1) and when it starts to drain (STOPPING=1)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                sd_notify(f"READY=1\nSTATUS=listening on {base}")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            sd_notify("STOPPING=1\nSTATUS=committing queued events")
            await super().shutdown(sockets)

    # proxy_headers=False: footfall decides itself which forwarding headers to believe (--trusted-proxies); uvicorn's
    # own rewrite would replace a trusted proxy's address with the client's and so drop the proxy's CDN location headers.
    server = NotifyingServer(uvicorn.Config(create_app(config), host=config.host, port=config.port, access_log=False,
                                            server_header=False, log_level=config.log_level, lifespan="on",
                                            proxy_headers=False))  # fmt: skip
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was in place before it started.
    # A drained, committed shutdown is a success, so that handler does nothing and the exit code is 0 (systemd expects it).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    if not server.started:
        raise click.ClickException(f"could not serve on {base}; is the port free?")


def _require_database(db: str) -> None:
    """Commands that only read or copy a database refuse a path with none, rather than creating an empty one."""
    if not Path(db).exists():
        raise click.ClickException(f"no database at {db}; pass --db or set FOOTFALL_DB")


def _open_for_cli(db: str) -> sqlite3.Connection:
    try:
        prepare_database(db)
        return connect(db)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


_db_option = click.option("--db", default=lambda: os.environ.get("FOOTFALL_DB", "footfall.db"), show_default="footfall.db",
                          help="Database file [env FOOTFALL_DB].")  # fmt: skip


@cli.group()
def site() -> None:
    """Add, list and remove websites."""


@site.command("add")
@click.argument("name")
@click.option("--domain", help="The site's main domain, e.g. example.com.")
@click.option("--id", "website_id", help="Keep this website UUID (e.g. your Umami website id, so snippets stay the same).")
@_db_option
def site_add(name: str, domain: str | None, website_id: str | None, db: str) -> None:
    """Add a website and print its UUID (only the UUID, so scripts can capture it).

    Example: footfall site add blog --domain blog.example.com
    """
    if not 1 <= len(name) <= 100:
        raise click.ClickException("NAME must be 1 to 100 characters")
    if website_id is not None:
        if not _UUID_RE.fullmatch(website_id):
            raise click.ClickException(f"--id must be a UUID like {uuid.uuid4()}, not {website_id!r}")
        website_id = website_id.lower()
    website_id = website_id or str(uuid.uuid4())
    conn = _open_for_cli(db)
    try:
        conn.execute("INSERT INTO website (website_id, name, domain, created_at) VALUES (?, ?, ?, ?)",
                     (website_id, name, domain, int(time.time())))  # fmt: skip
    except sqlite3.IntegrityError:
        raise click.ClickException(f"a website with id {website_id} already exists; `footfall site list` shows it") from None
    finally:
        conn.close()
    click.echo(website_id)


@site.command("list")
@_db_option
def site_list(db: str) -> None:
    """List websites: id, name, domain, and whether removed.

    Example: footfall site list --db footfall.db
    """
    conn = _open_for_cli(db)
    try:
        rows = conn.execute("SELECT website_id, name, ifnull(domain, ''), deleted_at FROM website ORDER BY website_key").fetchall()
    finally:
        conn.close()
    for website_id, name, domain, deleted_at in rows:
        click.echo("\t".join((website_id, name, domain, "removed" if deleted_at else "active")))


@site.command("remove")
@click.argument("website_id")
@_db_option
def site_remove(website_id: str, db: str) -> None:
    """Remove a website: its data stays, further events for it get 'Website not found.'.

    Example: footfall site remove 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    conn = _open_for_cli(db)
    try:
        changed = conn.execute("UPDATE website SET deleted_at = ? WHERE website_id = ? AND deleted_at IS NULL",
                               (int(time.time()), website_id.lower())).rowcount  # fmt: skip
    finally:
        conn.close()
    if not changed:
        raise click.ClickException(f"no active website with id {website_id}; `footfall site list` shows the ids")
    click.echo(f"removed {website_id.lower()}")


@site.command("retention")
@click.argument("website_id")
@click.argument("days")
@_db_option
def site_retention(website_id: str, days: str, db: str) -> None:
    """Keep a site's events for DAYS days (deleted daily by the running server), or 'off' to keep everything.

    Example: footfall site retention 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c 400
    """
    value = None if days.lower() == "off" else int(days) if days.isdigit() and int(days) > 0 else None
    if value is None and days.lower() != "off":
        raise click.ClickException(f"DAYS must be a positive number of days or 'off', not {days!r}")
    conn = _open_for_cli(db)
    try:
        changed = conn.execute("UPDATE website SET retention_days = ? WHERE website_id = ?", (value, website_id.lower())).rowcount
    finally:
        conn.close()
    if not changed:
        raise click.ClickException(f"no website with id {website_id}; `footfall site list` shows the ids")
    click.echo(f"{website_id.lower()}: events kept {'forever' if value is None else f'{value} days'}")


@site.command("share")
@click.argument("website_id")
@click.option("--revoke", is_flag=True, help="Delete the site's share link; its URL stops working at once.")
@click.option("--base-url", default=lambda: os.environ.get("FOOTFALL_PUBLIC_URL", "http://127.0.0.1:8000"),
              show_default="http://127.0.0.1:8000", help="Where footfall is reached [env FOOTFALL_PUBLIC_URL].")
@_db_option
def site_share(website_id: str, revoke: bool, base_url: str, db: str) -> None:
    """Print a public, read-only link to a site's summary page (made once, then the same link), or --revoke it.

    Anyone with the link sees that site's summary, nothing else. Example:
    footfall site share 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c --base-url https://stats.example.org
    """
    conn = _open_for_cli(db)
    try:
        row = conn.execute("SELECT website_key FROM website WHERE website_id = ? AND deleted_at IS NULL",
                           (website_id.lower(),)).fetchone()  # fmt: skip
        if row is None:
            raise click.ClickException(f"no website with id {website_id}; `footfall site list` shows the ids")
        if revoke:
            gone = conn.execute("DELETE FROM share_link WHERE website_key = ?", row).rowcount
            click.echo(f"{website_id.lower()}: share link revoked" if gone else f"{website_id.lower()}: had no share link")
            return
        conn.execute("INSERT OR IGNORE INTO share_link (token, website_key, created_at) VALUES (?, ?, ?)",
                     (new_share_token(), row[0], int(time.time())))  # fmt: skip
        token = conn.execute("SELECT token FROM share_link WHERE website_key = ?", row).fetchone()[0]
    finally:
        conn.close()
    click.echo(f"{base_url.rstrip('/')}/share/{token}")


@cli.command()
@click.option("--print-hash", is_flag=True, help="Print the hash (for FOOTFALL_PASSWORD_HASH) instead of storing it.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@_db_option
def password(print_hash: bool, from_stdin: bool, db: str) -> None:
    """Set the summary page's password (stored as a salted scrypt hash; logs every browser out).

    Until a password is set, the summary page answers only browsers on this machine. Example: footfall password
    """
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(secret) < MIN_PASSWORD_CHARS:
        raise click.ClickException(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    hashed = hash_password(secret)
    if print_hash:
        click.echo(hashed)
        return
    conn = _open_for_cli(db)
    try:
        _set_setting(conn, "password_hash", hashed)
    finally:
        conn.close()
    click.echo("Password set. Log in at /login (a running footfall picks it up within seconds).")


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _checked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an operation; its ConfigError or database error becomes a one-line CLI error."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"database error: {exc}") from None


@cli.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--keep-days", type=click.IntRange(min=1), help="Then delete footfall-*.db backups in DEST older than this.")
@_db_option
def backup(dest: Path, keep_days: int | None, db: str) -> None:
    """Copy the database consistently while footfall keeps running (into DEST, a new file or a directory).

    Example: footfall backup --db /var/lib/footfall/footfall.db --keep-days 14 /var/lib/footfall/backups
    """
    _require_database(db)
    if keep_days is not None or str(dest).endswith("/"):
        dest.mkdir(parents=True, exist_ok=True)
    with _console().status(f"Backing up {db}…"):
        target = _checked(backup_database, db, dest)
    click.echo(f"{target}\t{target.stat().st_size} bytes")
    if keep_days is not None:
        for old in expire_backups(target.parent, keep_days):
            click.echo(f"deleted {old}")


@cli.command()
@_db_option
def check(db: str) -> None:
    """Check the database: integrity, schema version, row counts and salt ages; exit 1 if it is damaged.

    Example: footfall check --db footfall.db
    """
    _require_database(db)
    report = _checked(check_database, db)
    click.echo(f"integrity: {report['integrity']}")
    click.echo(f"schema version: {report['schema_version']} (this footfall: {SCHEMA_VERSION})")
    for table, count in report["rows"].items():
        click.echo(f"rows {table}: {count}")
    for salt in report["salts"]:
        click.echo(f"salt {salt['period']}: {salt['age_days']} days old")
    if report["integrity"] != "ok":
        raise click.ClickException("the database is damaged; restore a backup (see README, Backups)")


@cli.command()
@click.option("--older-than", "older_than", required=True, help="Age of events to delete, e.g. 400d, 12w, 36h.")
@click.option("--site", "website_id", help="Only this website's events.")
@_db_option
def prune(older_than: str, website_id: str | None, db: str) -> None:
    """Delete events older than an age, in small transactions so a running footfall never stalls.

    Example: footfall prune --older-than 400d --site 6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    seconds = _checked(parse_age, older_than)
    with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=_console()) as bar:
        task = bar.add_task("Deleting", total=None)
        counts = _checked(prune_events, db, seconds, website_id, progress=lambda n: bar.advance(task, n))
    click.echo(f"deleted {counts['events']} events, {counts['visits']} visits, {counts['sessions']} sessions")


@cli.command()
@click.option("--distinct-id", required=True, help="The id the site passed to umami.identify() / payload.id.")
@click.option("--site", "website_id", help="Only on this website.")
@_db_option
def forget(distinct_id: str, website_id: str | None, db: str) -> None:
    """Delete a person's sessions, visits, events and data (for privacy requests).

    Example: footfall forget --distinct-id user-42
    """
    counts = _checked(forget_person, db, distinct_id, website_id)
    click.echo(", ".join(f"deleted {n} {what}" for what, n in counts.items()))


def _unix(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.replace(tzinfo=value.tzinfo or dt.timezone.utc).timestamp())


@cli.command()
@click.option("--site", "website_id", help="Only this website's events.")
@click.option("--since", type=click.DateTime(), help="From this UTC date or time (e.g. 2026-01-01), inclusive.")
@click.option("--until", type=click.DateTime(), help="Before this UTC date or time, exclusive.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "umami-csv"]), default="csv", show_default=True,
              help="umami-csv writes Umami's four tables as CSV files into the -o folder.")  # fmt: skip
@click.option("-o", "--output", default="-", help="File (default stdout); a folder for umami-csv.")
@_db_option
def export(website_id: str | None, since: dt.datetime | None, until: dt.datetime | None, fmt: str, output: str,
           db: str) -> None:  # fmt: skip
    """Write events with their session attributes as CSV or JSON lines, streamed in constant memory; or everything as
    Umami's tables, to load into Umami's PostgreSQL.

    Example: footfall export --since 2026-01-01 --format jsonl -o events.jsonl
    """
    _require_database(db)
    if fmt == "umami-csv":
        if output == "-" or since or until:
            raise click.ClickException("umami-csv needs -o FOLDER and exports whole tables (no --since/--until)")
        counts = _checked(export_umami, db, Path(output), website_id)
        click.echo(", ".join(f"{n} {table}" for table, n in counts.items()) + f" written to {output}", err=True)
        click.echo(f"load them with: \\copy TABLE FROM '{output}/TABLE.csv' WITH CSV HEADER (session first)", err=True)
        return
    with click.open_file(output, "w", encoding="utf-8") as out:
        count = _checked(export_events, db, out, fmt, website_id, _unix(since), _unix(until))
    click.echo(f"exported {count} events", err=True)


@cli.group("import")
def import_() -> None:
    """Load history from another analytics tool."""


@import_.command("umami")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_db_option
def import_umami_command(files: tuple[Path, ...], db: str) -> None:
    """Load Umami's tables from CSV files written by psql with a header row (any order; sessions are loaded first).

    Example: footfall import umami session.csv website_event.csv event_data.csv session_data.csv
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    _open_for_cli(db).close()
    with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} rows"), console=_console()) as bar:
        task = bar.add_task("Importing", total=None)
        counts = _checked(import_umami, db, files, progress=lambda n: bar.advance(task, n))
    click.echo(", ".join(f"{n} {what}" for what, n in sorted(counts.items())))


@cli.command()
@click.option("--site", "website_id", help="Only this website (default: all).")
@click.option("--period", default="7d", show_default=True, help="How far back, e.g. 24h, 7d, 4w.")
@_db_option
def stats(website_id: str | None, period: str, db: str) -> None:
    """Print the headline numbers and top pages of a period.

    Example: footfall stats --period 30d
    """
    _require_database(db)
    numbers = _checked(site_stats, db, website_id, _checked(parse_age, period))
    click.echo(f"last {period}: {numbers['visitors']} visitors, {numbers['visits']} visits, {numbers['pageviews']} pageviews")
    click.echo(f"views per visit {numbers['views_per_visit']}, bounce rate {numbers['bounce_rate']}%, "
               f"average visit {numbers['avg_visit_s']} s")  # fmt: skip
    for page in numbers["top_pages"]:
        click.echo(f"{page['pageviews']:>8}  {page['url_path'] or '/'}")


@cli.command("install-service")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default="/etc/systemd/system",
              show_default=True, envvar="FOOTFALL_UNIT_DIR", help="Where to write the units [env FOOTFALL_UNIT_DIR].")
def install_service(unit_dir: Path) -> None:
    """Write footfall's systemd units, pointing at this footfall, and say how to start them (run it with sudo).

    Example: sudo footfall install-service
    """
    executable = shutil.which("footfall") or str(Path(sys.executable).with_name("footfall"))
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name in ("footfall.service", "footfall-backup.service", "footfall-backup.timer"):
        text = asset_path(name).read_text(encoding="utf-8").replace("/usr/local/bin/footfall", executable)
        (unit_dir / name).write_text(text, encoding="utf-8")
        click.echo(f"wrote {unit_dir / name}")
    click.echo("now: systemctl daemon-reload && systemctl enable --now footfall.service footfall-backup.timer")


@cli.command("build-geo-cache", hidden=True)
@click.argument("out", type=click.Path(dir_okay=False))
def build_geo_cache_command(out: str) -> None:
    """Convert the embedded country data into footfall's compact file (run by footfall itself, in a child process).

    Example: footfall build-geo-cache ~/.cache/footfall/geo.bin
    """
    build_geo_cache(Path(out))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``footfall``); returns the exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="footfall", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
