"""clickhouse: Umami's ClickHouse schema as footfall creates and checks it, and the connection to a ClickHouse.

Owns: the tables (Umami's ``website_event``, ``event_data``, ``session_data``, ``website_performance``, the hourly stats
table and its materialized view, plus footfall's own ``footfall_event`` for what Umami has no column for), checking existing
ones against them, and ``Target``: one ClickHouse database reached over HTTP(S) or in-process through chDB, whose errors
become one-line ShipErrors. footfall.ship (`footfall ship clickhouse`) and footfall.clickhouse_import (`footfall import
clickhouse`) build on it.

Imports: collector (ConfigError and constants) and the stdlib. clickhouse-connect (the optional ``clickhouse`` extra) is
imported when a target is opened; ``--chdb`` runs ClickHouse in-process through clickhouse-connect's chDB interface (the
``chdb`` package). Never web or app.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import msgspec

from collector import CAMPAIGN_PARAMS, EVENT_CUSTOM, EVENT_PAGEVIEW, ConfigError

#: Decimal64(4) holds magnitudes below 2**63 / 10**4; larger numbers ship as NULL (their text stays in string_value).
MAX_DECIMAL64_4 = 9.2e14

#: DateTime('UTC') holds 1970-01-01 … 2106-02-07.
MAX_DATETIME = 2**32 - 1

#: Events per batch unless told otherwise (ship and import hold one batch's rows in memory at once).
DEFAULT_BATCH_SIZE = 10_000

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# ------------------------------------------------------------------------------------------------------------------------
# The tables. Names, columns and types are Umami's (db/clickhouse/schema.sql with its migrations up to performance and
# distinct_id); each list is in Umami's column order. footfall_event is footfall's own.
# ------------------------------------------------------------------------------------------------------------------------

_LC = "LowCardinality(String)"
_UTC = "DateTime('UTC')"
_ARR = "SimpleAggregateFunction(groupArrayArray, Array(String))"

#: Session attributes, as footfall's session table and Umami's website_event name them.
SESSION_COLUMNS = ("browser", "os", "device", "screen", "language", "country", "region", "city")

WEBSITE_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("session_id", "UUID"),
    ("visit_id", "UUID"),
    ("event_id", "UUID"),
    ("hostname", _LC),
    *((name, _LC) for name in SESSION_COLUMNS[:7]),
    ("city", "String"),
    ("url_path", "String"),
    ("url_query", "String"),
    *((name, "String") for name in CAMPAIGN_PARAMS[:5]),
    ("referrer_path", "String"),
    ("referrer_query", "String"),
    ("referrer_domain", "String"),
    ("page_title", "String"),
    *((name, "String") for name in CAMPAIGN_PARAMS[5:]),
    ("event_type", "UInt32"),
    ("event_name", "String"),
    ("tag", "String"),
    ("distinct_id", "String"),
    ("created_at", _UTC),
    ("job_id", "Nullable(UUID)"),
)

EVENT_DATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("session_id", "UUID"),
    ("event_id", "UUID"),
    ("url_path", "String"),
    ("event_name", "String"),
    ("data_key", "String"),
    ("string_value", "Nullable(String)"),
    ("number_value", "Nullable(Decimal64(4))"),
    ("date_value", f"Nullable({_UTC})"),
    ("data_type", "UInt32"),
    ("created_at", _UTC),
    ("job_id", "Nullable(UUID)"),
)

SESSION_DATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("session_id", "UUID"),
    ("data_key", "String"),
    ("string_value", "Nullable(String)"),
    ("number_value", "Nullable(Decimal64(4))"),
    ("date_value", f"Nullable({_UTC})"),
    ("data_type", "UInt32"),
    ("distinct_id", "String"),
    ("created_at", _UTC),
    ("job_id", "Nullable(UUID)"),
)

WEBSITE_PERFORMANCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("session_id", "UUID"),
    ("visit_id", "UUID"),
    ("url_path", "String"),
    ("lcp", "Nullable(Decimal(10, 1))"),
    ("inp", "Nullable(Decimal(10, 1))"),
    ("cls", "Nullable(Decimal(10, 4))"),
    ("fcp", "Nullable(Decimal(10, 1))"),
    ("ttfb", "Nullable(Decimal(10, 1))"),
    ("created_at", _UTC),
)

#: Text columns of an event (its own and its session's) that ClickHouse keeps as non-nullable String: footfall's NULL and
#: '' both become ''. footfall_event.blank lists those that were '' in footfall, so the way back restores both exactly.
BLANKABLE = (
    "event_name",
    "url_query",
    "referrer_path",
    "referrer_query",
    "referrer_domain",
    "page_title",
    "hostname",
    "tag",
    *CAMPAIGN_PARAMS,
    *SESSION_COLUMNS,
    "distinct_id",
)

VITALS = ("lcp", "inp", "cls", "fcp", "ttfb")

FOOTFALL_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("event_id", "UUID"),
    ("created_at", _UTC),
    ("duration", "Nullable(UInt32)"),
    *((name, "Nullable(Float64)") for name in VITALS),
    ("blank", "Array(LowCardinality(String))"),
)

STATS_HOURLY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("website_id", "UUID"),
    ("session_id", "UUID"),
    ("visit_id", "UUID"),
    ("hostname", _ARR),
    *((name, _LC) for name in SESSION_COLUMNS[:7]),
    ("city", "String"),
    ("entry_url", f"AggregateFunction(argMin, String, {_UTC})"),
    ("exit_url", f"AggregateFunction(argMax, String, {_UTC})"),
    ("url_path", _ARR),
    ("url_query", _ARR),
    *((name, _ARR) for name in CAMPAIGN_PARAMS[:5]),
    ("referrer_domain", _ARR),
    ("page_title", _ARR),
    *((name, _ARR) for name in CAMPAIGN_PARAMS[5:]),
    ("event_type", "UInt32"),
    ("event_name", _ARR),
    ("views", "SimpleAggregateFunction(sum, UInt64)"),
    ("min_time", f"SimpleAggregateFunction(min, {_UTC})"),
    ("max_time", f"SimpleAggregateFunction(max, {_UTC})"),
    ("tag", _ARR),
    ("distinct_id", "String"),
    ("created_at", _UTC),
)


class Table(NamedTuple):
    """A table footfall creates (if missing) or checks (if present)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    engine: str  # everything after the column list


TABLES: tuple[Table, ...] = (
    Table(
        "website_event",
        WEBSITE_EVENT_COLUMNS,
        # Umami's two projections: the same rows ordered by page and by referrer, for its page and referrer reports.
        "ENGINE = MergeTree PARTITION BY toYYYYMM(created_at) "
        "ORDER BY (toStartOfHour(created_at), website_id, session_id, visit_id, created_at) "
        "PRIMARY KEY (toStartOfHour(created_at), website_id, session_id, visit_id) SETTINGS index_granularity = 8192",
    ),
    Table(
        "event_data",
        EVENT_DATA_COLUMNS,
        "ENGINE = MergeTree ORDER BY (website_id, event_id, data_key, created_at) SETTINGS index_granularity = 8192",
    ),
    Table(
        "session_data",
        SESSION_DATA_COLUMNS,
        "ENGINE = ReplacingMergeTree ORDER BY (website_id, session_id, data_key) SETTINGS index_granularity = 8192",
    ),
    Table(
        "website_performance",
        WEBSITE_PERFORMANCE_COLUMNS,
        "ENGINE = MergeTree PARTITION BY toYYYYMM(created_at) ORDER BY (website_id, toStartOfHour(created_at), session_id) "
        "SETTINGS index_granularity = 8192",
    ),
    Table(
        "footfall_event",
        FOOTFALL_EVENT_COLUMNS,
        "ENGINE = MergeTree PARTITION BY toYYYYMM(created_at) ORDER BY (website_id, created_at, event_id)",
    ),
)

_PROJECTIONS = (
    "PROJECTION website_event_url_path_projection (SELECT * ORDER BY toStartOfDay(created_at), website_id, url_path, "
    "created_at)",
    "PROJECTION website_event_referrer_domain_projection (SELECT * ORDER BY toStartOfDay(created_at), website_id, "
    "referrer_domain, created_at)",
)

STATS_TABLE = Table(
    "website_event_stats_hourly",
    STATS_HOURLY_COLUMNS,
    "ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(created_at) "
    "ORDER BY (website_id, event_type, toStartOfHour(created_at), cityHash64(visit_id), visit_id) "
    "SAMPLE BY cityHash64(visit_id)",
)

#: What the hourly view aggregates per visit and hour: arrays of the non-empty values, as Umami's view does.
_STATS_ARRAYS = ("url_query", *CAMPAIGN_PARAMS[:5], "referrer_domain", "page_title", *CAMPAIGN_PARAMS[5:], "tag")


def _stats_view_sql(db: str) -> str:
    arrays = ",\n    ".join(
        f"arrayFilter(x -> x != '' and x != hostname, groupArray({c})) AS {c}"
        if c == "referrer_domain"
        else f"arrayFilter(x -> x != '', groupArray({c})) AS {c}"
        for c in _STATS_ARRAYS
    )
    group = "website_id, session_id, visit_id, hostname, browser, os, device, screen, language, country, region, city"
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.website_event_stats_hourly_mv TO {db}.website_event_stats_hourly AS
SELECT website_id, session_id, visit_id, hostnames AS hostname, browser, os, device, screen, language, country, region, city,
    entry_url, exit_url, url_paths AS url_path, {", ".join(_STATS_ARRAYS[:-1])}, event_type, event_name, views, min_time,
    max_time, tag, distinct_id, hour AS created_at
FROM (SELECT website_id, session_id, visit_id,
    arrayFilter(x -> x != '', groupArray(hostname)) AS hostnames,
    browser, os, device, screen, language, country, region, city,
    argMinState(url_path, created_at) AS entry_url,
    argMaxState(url_path, created_at) AS exit_url,
    arrayFilter(x -> x != '', groupArray(url_path)) AS url_paths,
    {arrays},
    event_type,
    if(event_type = {EVENT_CUSTOM}, groupArray(event_name), []) AS event_name,
    sumIf(1, event_type = {EVENT_PAGEVIEW}) AS views,
    min(created_at) AS min_time,
    max(created_at) AS max_time,
    distinct_id,
    toStartOfHour(created_at) AS hour
  FROM {db}.website_event
  GROUP BY {group}, event_type, distinct_id, hour)"""


def quoted(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def _normal_type(declared: str) -> str:
    """A declared type as system.columns spells it."""
    return declared.replace("Decimal64(4)", "Decimal(18, 4)")


# ------------------------------------------------------------------------------------------------------------------------
# Connecting
# ------------------------------------------------------------------------------------------------------------------------


class ShipError(ConfigError):
    """ClickHouse refused something or cannot be reached; the message is one line."""


class Target:
    """A ClickHouse database to ship to or import from, through a clickhouse-connect client (HTTP(S) or in-process chDB)."""

    def __init__(self, client: Any, database: str, name: str) -> None:
        self.client = client
        self.database = database
        self.name = name  #: the position key: where the data goes (URL or chDB path, and database)

    def command(self, sql: str) -> None:
        with _clickhouse_errors():
            self.client.command(sql)

    def rows(self, sql: str) -> list[list[Any]]:
        """The result rows of a query, as JSON values (UUIDs and strings as text)."""
        with _clickhouse_errors():
            raw = self.client.raw_query(sql, fmt="JSONCompactEachRow")
        return [msgspec.json.decode(line) for line in raw.splitlines() if line]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[bytes], token: str) -> None:
        """Insert JSON-encoded rows; the token lets a deduplicating server drop an identical retry."""
        if not rows:
            return
        with _clickhouse_errors():
            self.client.raw_insert(
                f"{self.database}.{table}",
                list(columns),
                b"\n".join(rows),
                settings={"insert_deduplication_token": token},
                fmt="JSONCompactEachRow",
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


@contextlib.contextmanager
def _clickhouse_errors() -> Iterator[None]:
    """clickhouse-connect's exceptions as one-line ShipErrors."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        yield
    except ClickHouseError as exc:
        raise ShipError(f"ClickHouse: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """A clickhouse-connect error in one short line: the network reason, or the server's message."""
    text = " ".join(str(exc).split())
    reason = re.search(r"\[Errno -?\d+\] ([^\"')(]+)", text) or re.search(r"(Read timed out|timed out)", text)
    if reason:
        return reason.group(1).strip().rstrip(".")
    return text[:300]


def _load_client_module() -> Any:
    try:
        import clickhouse_connect
    except ImportError:
        raise ConfigError("ClickHouse support needs clickhouse-connect: pip install 'footfall[clickhouse]'") from None
    return clickhouse_connect


def open_target(url: str | None, chdb: str | None, database: str, environ: Mapping[str, str]) -> Target:
    """Connect to ``url`` (user and password from FOOTFALL_CLICKHOUSE_USER / _PASSWORD, else the URL) or open an in-process
    chDB directory, and make sure ``database`` exists."""
    if not _IDENT_RE.fullmatch(database):
        raise ConfigError(f"--database must be a plain ClickHouse name (letters, digits, _), not {database!r}")
    clickhouse_connect = _load_client_module()
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        if chdb:
            try:
                import chdb as _chdb  # noqa: F401 - only to give a clear message when it is missing
            except ImportError:
                raise ConfigError("--chdb needs chDB: pip install chdb") from None
            path = Path(chdb).resolve()
            path.mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(interface="chdb", path=str(path))
            name = f"chdb:{path}/{database}"
        else:
            url = url or environ.get("FOOTFALL_CLICKHOUSE_URL") or "http://localhost:8123"
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"--url must be http(s)://HOST[:PORT], not {url!r}")
            secure = parts.scheme == "https"
            port = parts.port or (8443 if secure else 8123)
            options: dict[str, Any] = {}
            if environ.get("FOOTFALL_CLICKHOUSE_CA_CERT"):
                options["ca_cert"] = environ["FOOTFALL_CLICKHOUSE_CA_CERT"]
            client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=port,
                username=environ.get("FOOTFALL_CLICKHOUSE_USER") or unquote(parts.username or "") or "default",
                password=environ.get("FOOTFALL_CLICKHOUSE_PASSWORD") or unquote(parts.password or ""),
                secure=secure,
                connect_timeout=10,
                send_receive_timeout=300,
                **options,
            )
            name = f"{parts.scheme}://{parts.hostname}:{port}/{database}"
    except ClickHouseError as exc:
        raise ShipError(f"cannot connect to ClickHouse at {chdb or url}: {describe(exc)}") from None
    target = Target(client, database, name)
    target.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    return target


# ------------------------------------------------------------------------------------------------------------------------
# Creating or checking the tables
# ------------------------------------------------------------------------------------------------------------------------


def existing_columns(target: Target, table: str) -> dict[str, str]:
    rows = target.rows(
        f"SELECT name, type FROM system.columns WHERE database = '{target.database}' AND table = '{table}' ORDER BY position"
    )
    return {name: kind for name, kind in rows}


def _check_table(target: Target, table: Table, found: dict[str, str]) -> None:
    problems = []
    for name, kind in table.columns:
        if name not in found:
            problems.append(f"no column {name}")
        elif found[name] != _normal_type(kind):
            problems.append(f"{name} is {found[name]}, not {_normal_type(kind)}")
    if problems:
        raise ShipError(
            f"{target.database}.{table.name} exists but is not Umami's ({'; '.join(problems[:3])}); "
            f"ship into another --database or bring it up to Umami's schema"
        )


def _create_sql(db: str, table: Table, extra: Sequence[str] = ()) -> str:
    columns = ",\n    ".join([*(f"{name} {kind}" for name, kind in table.columns), *extra])
    return f"CREATE TABLE IF NOT EXISTS {db}.{table.name}\n(\n    {columns}\n)\n{table.engine}"


def ensure_schema(target: Target) -> list[str]:
    """Create Umami's tables where missing and check the ones present; what was done, one line each."""
    notes: list[str] = []
    db = target.database
    fresh_events = False
    for table in TABLES:
        found = existing_columns(target, table.name)
        if found:
            _check_table(target, table, found)
            continue
        target.command(_create_sql(db, table, _PROJECTIONS if table.name == "website_event" else ()))
        fresh_events |= table.name == "website_event"
        notes.append(f"created {db}.{table.name}")
    stats = existing_columns(target, STATS_TABLE.name)
    views = target.rows(
        f"SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'website_event_stats_hourly_mv'"
    )
    has_view = int(views[0][0]) > 0
    if stats:
        _check_table(target, STATS_TABLE, stats)
        if not has_view:
            notes.append(f"{db}.website_event_stats_hourly has no view filling it; not created over existing events")
        return notes
    if not fresh_events:
        notes.append("hourly stats view not created: website_event already holds events the view would never see")
        return notes
    # Current ClickHouse refuses an AggregatingMergeTree with plain columns outside its sorting key (Umami's session
    # attributes) unless allow_dimensions_outside_sorting_key = 1; servers from before that check know no such setting.
    sql = _create_sql(db, STATS_TABLE)
    try:
        target.command(sql + " SETTINGS allow_dimensions_outside_sorting_key = 1")
    except ShipError as exc:
        if "UNKNOWN_SETTING" not in str(exc) and "Unknown setting" not in str(exc):
            notes.append(f"hourly stats view not created: {exc}")
            return notes
        try:
            target.command(sql)
        except ShipError as again:
            notes.append(f"hourly stats view not created: {again}")
            return notes
    target.command(_stats_view_sql(db))
    notes.append(f"created {db}.website_event_stats_hourly and its materialized view")
    return notes
