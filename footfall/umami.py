"""Moving between Umami and footfall: import Umami's PostgreSQL tables (CSV) and export footfall as Umami's tables.

Owns: column mapping both ways, checking every imported value as the collection API would, and stable ids (an import
runs again inserts nothing twice). Imports collector, footfall.geo and
footfall.ops.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import math
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from collector import (
    CAMPAIGN_PARAMS,
    DATA_ARRAY,
    DATA_STRING,
    EVENT_CUSTOM,
    EVENT_PAGEVIEW,
    EVENT_PERFORMANCE,
    MAX_AGENT_FIELD_CHARS,
    MAX_CAMPAIGN_CHARS,
    MAX_CLS,
    MAX_DATA_KEY_CHARS,
    MAX_DATA_STRING_CHARS,
    MAX_DISTINCT_ID_CHARS,
    MAX_EVENT_NAME_CHARS,
    MAX_FUTURE_SECONDS,
    MAX_HOSTNAME_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_SCREEN_CHARS,
    MAX_TAG_CHARS,
    MAX_URL_CHARS,
    MAX_VITAL_MS,
    UUID_RE,
    ConfigError,
    EventRow,
    clip,
    connect,
    strip_www,
    transaction,
)
from footfall.geo import MAX_CITY_CHARS, MAX_REGION_CHARS, valid_country
from footfall.ops import EXPORT_BATCH_ROWS, website_key_for

#: A website's name is at most this long (schema.sql's CHECK).
MAX_WEBSITE_NAME_CHARS = 100


#: Umami's web-vital columns, in website_event's (and EventRow's) order.
_VITALS = ("lcp", "inp", "cls", "fcp", "ttfb")

# Moving between Umami and footfall: Umami's PostgreSQL tables as CSV with a header row, as written by
#   \copy website_event TO 'website_event.csv' WITH CSV HEADER
# (likewise session, event_data, session_data). Columns are matched by name, so their order does not matter.

#: Umami's columns per table (prisma/schema.prisma), in the order footfall writes them.
UMAMI_COLUMNS: dict[str, tuple[str, ...]] = {
    "session": (
        "session_id",
        "website_id",
        "browser",
        "os",
        "device",
        "screen",
        "language",
        "country",
        "region",
        "city",
        "distinct_id",
        "created_at",
    ),
    "website_event": (
        "event_id",
        "website_id",
        "session_id",
        "visit_id",
        "created_at",
        "url_path",
        "url_query",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "referrer_path",
        "referrer_query",
        "referrer_domain",
        "page_title",
        "gclid",
        "fbclid",
        "msclkid",
        "ttclid",
        "li_fat_id",
        "twclid",
        "event_type",
        "event_name",
        "tag",
        "hostname",
        "lcp",
        "inp",
        "cls",
        "fcp",
        "ttfb",
    ),
    "event_data": (
        "event_data_id",
        "website_id",
        "website_event_id",
        "data_key",
        "string_value",
        "number_value",
        "date_value",
        "data_type",
        "created_at",
    ),
    "session_data": (
        "session_data_id",
        "website_id",
        "session_id",
        "data_key",
        "string_value",
        "number_value",
        "date_value",
        "data_type",
        "distinct_id",
        "created_at",
    ),
}


#: The column that tells which table a CSV holds, in import order (sites, then sessions, events, their data).
_UMAMI_TABLE_KEYS = (
    ("website", "domain"),
    ("session", "browser"),
    ("website_event", "event_id"),
    ("event_data", "event_data_id"),
    ("session_data", "session_data_id"),
)


#: Columns an import cannot do without, per table.
_REQUIRED_COLUMNS = {
    "website": ("website_id",),
    "session": ("session_id", "website_id"),
    "website_event": ("event_id", "website_id", "session_id", "visit_id", "created_at"),
    "event_data": ("website_event_id", "data_key", "data_type"),
    "session_data": ("session_id", "website_id", "data_key", "data_type"),
}


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
    raise ConfigError(
        f"not one of Umami's website, session, website_event, event_data or session_data CSVs (columns: "
        f"{', '.join(header[:6])}…); export them with \\copy … WITH CSV HEADER"
    )


class _BadValue(ValueError):
    """A cell the import refuses: its column and what is wrong with it."""

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column


class _Cells:
    """One CSV row, read column by column and checked as the collection API checks a hit (the same limits)."""

    def __init__(self, row: dict[str, str | None], now: float) -> None:
        self.row = row
        self.now = now

    def text(self, name: str, limit: int) -> str | None:
        """The value cut to ``limit`` characters (as the API truncates), None when empty."""
        return clip(self.row.get(name) or None, limit)

    def uuid(self, name: str) -> str:
        value = (self.row.get(name) or "").strip().lower()
        if not UUID_RE.fullmatch(value):
            raise _BadValue(name, f"{value[:40]!r} is not a UUID")
        return value

    def time(self, name: str, required: bool = False) -> int | None:
        """Unix seconds from a psql timestamp; like payload.timestamp, positive and at most an hour ahead."""
        text = self.row.get(name)
        if not text:
            if required:
                raise _BadValue(name, "a time is required")
            return None
        try:
            seconds = _from_psql_time(text)
        except (ValueError, OverflowError, OSError):
            raise _BadValue(name, f"{text[:40]!r} is not a time like 2026-05-14 10:00:00+00") from None
        assert seconds is not None
        if not 0 < seconds <= self.now + MAX_FUTURE_SECONDS:
            raise _BadValue(name, f"{text[:40]!r} is before 1970 or more than an hour in the future")
        return seconds

    def number(self, name: str, high: float | None = None) -> float | None:
        """A finite number (in [0, high] when given, as web vitals are checked), None when empty."""
        text = self.row.get(name)
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise _BadValue(name, f"{text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise _BadValue(name, f"{text[:40]!r} is not a finite number")
        if high is not None and not 0 <= value <= high:
            raise _BadValue(name, f"{text[:40]!r} is not between 0 and {high:g}")
        return value

    def choice(self, name: str, allowed: range, default: int | None = None) -> int:
        text = (self.row.get(name) or "").strip()
        if not text and default is not None:
            return default
        if not text.isascii() or not text.isdigit() or int(text) not in allowed:
            raise _BadValue(name, f"{text[:40]!r} is not one of {allowed.start}…{allowed.stop - 1}")
        return int(text)


class _Import:
    """One import in one transaction: the connection, what was counted, the websites and sessions seen so far."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.counts = collections.Counter[str]()
        self.websites: dict[str, int] = dict(conn.execute("SELECT website_id, website_key FROM website").fetchall())
        self.first_event_key: int | None = None

    def website_key(self, website_id: str, name: str | None = None, domain: str | None = None, **times: int | None) -> int:
        """The key of a website, created with Umami's id (and name, when the website CSV gives one) if new."""
        if website_id not in self.websites:
            cur = self.conn.execute(
                "INSERT INTO website (website_id, name, domain, created_at, deleted_at) VALUES (?, ?, ?, ?, ?)",
                (
                    website_id,
                    name or f"umami {website_id[:8]}",
                    domain,
                    times.get("created_at") or int(self.now),
                    times.get("deleted_at"),
                ),
            )
            self.websites[website_id] = int(cur.lastrowid or 0)
            self.counts["websites"] += 1
        return self.websites[website_id]

    def session_key(self, session_id: str, website: int, created_at: int) -> int:
        self.conn.execute(
            "INSERT OR IGNORE INTO session (session_id, website_key, created_at) VALUES (?, ?, ?)",
            (session_id, website, created_at),
        )
        return int(self.conn.execute("SELECT session_key FROM session WHERE session_id = ?", (session_id,)).fetchone()[0])

    def row(self, table: str, cells: _Cells) -> None:
        """Check and insert one Umami row (nothing already imported is inserted again)."""
        if table == "website":
            website_id = cells.uuid("website_id")
            if website_id in self.websites:
                self.counts["websites already there"] += 1
                return
            self.website_key(
                website_id,
                cells.text("name", MAX_WEBSITE_NAME_CHARS),
                cells.text("domain", MAX_HOSTNAME_CHARS),
                created_at=cells.time("created_at"),
                deleted_at=cells.time("deleted_at"),
            )
        elif table == "session":
            self._session(cells)
        elif table == "website_event":
            self._event(cells)
        else:
            self._data(table, cells)

    def _session(self, cells: _Cells) -> None:
        values = (
            cells.uuid("session_id"),
            self.website_key(cells.uuid("website_id")),
            cells.text("browser", MAX_AGENT_FIELD_CHARS),
            cells.text("os", MAX_AGENT_FIELD_CHARS),
            cells.text("device", MAX_AGENT_FIELD_CHARS),
            cells.text("screen", MAX_SCREEN_CHARS),
            cells.text("language", MAX_LANGUAGE_CHARS),
            valid_country(cells.row.get("country")),
            cells.text("region", MAX_REGION_CHARS),
            cells.text("city", MAX_CITY_CHARS),
            cells.text("distinct_id", MAX_DISTINCT_ID_CHARS),
            cells.time("created_at") or 0,
        )
        inserted = self.conn.execute(
            "INSERT INTO session (session_id, website_key, browser, os, device, screen, language, country, region, city, "
            "distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (session_id) DO NOTHING",
            values,
        ).rowcount
        self.counts["sessions" if inserted else "sessions already there"] += 1

    def _event(self, cells: _Cells) -> None:
        event_id = cells.uuid("event_id")
        kind = cells.choice("event_type", range(1, 6), EVENT_PAGEVIEW)
        created = cells.time("created_at", required=True)
        assert created is not None
        website = self.website_key(cells.uuid("website_id"))
        session = self.session_key(cells.uuid("session_id"), website, created)
        visit_id = cells.uuid("visit_id")
        vitals = [cells.number(name, MAX_CLS if name == "cls" else MAX_VITAL_MS) for name in _VITALS]
        campaign = [cells.text(name, MAX_CAMPAIGN_CHARS) for name in CAMPAIGN_PARAMS]
        if kind not in (EVENT_PAGEVIEW, EVENT_CUSTOM, EVENT_PERFORMANCE):
            self.counts["skipped link and pixel events"] += 1
            return
        if self.conn.execute("SELECT 1 FROM umami_event WHERE event_id = ?", (event_id,)).fetchone():
            self.counts["events already there"] += 1
            return
        self.conn.execute(
            "INSERT OR IGNORE INTO visit (visit_id, session_key, started_at) VALUES (?, ?, ?)", (visit_id, session, created)
        )
        self.conn.execute("UPDATE visit SET started_at = min(started_at, ?) WHERE visit_id = ?", (created, visit_id))
        visit = self.conn.execute("SELECT visit_key FROM visit WHERE visit_id = ?", (visit_id,)).fetchone()[0]
        ref_domain = cells.text("referrer_domain", MAX_URL_CHARS)
        hostname = cells.text("hostname", MAX_HOSTNAME_CHARS)
        cur = self.conn.execute(
            f"INSERT INTO website_event (website_key, session_key, visit_key, {', '.join(EventRow._fields)}) "
            f"VALUES ({', '.join('?' * (len(EventRow._fields) + 3))})",
            (
                website,
                session,
                visit,
                created,
                kind,
                cells.text("event_name", MAX_EVENT_NAME_CHARS),
                cells.text("url_path", MAX_URL_CHARS) or "",
                cells.text("url_query", MAX_URL_CHARS),
                cells.text("referrer_path", MAX_URL_CHARS),
                cells.text("referrer_query", MAX_URL_CHARS),
                ref_domain,
                int(bool(ref_domain) and ref_domain == strip_www(hostname)),
                cells.text("page_title", MAX_URL_CHARS),
                hostname,
                cells.text("tag", MAX_TAG_CHARS),
                *campaign,
                *vitals,
                None,
            ),
        )
        event_key = int(cur.lastrowid or 0)
        self.conn.execute("INSERT INTO umami_event (event_id, event_key) VALUES (?, ?)", (event_id, event_key))
        self.first_event_key = event_key if self.first_event_key is None else min(self.first_event_key, event_key)
        self.counts["events"] += 1

    def _data(self, table: str, cells: _Cells) -> None:
        key = cells.row.get("data_key") or ""
        if not key or len(key) > MAX_DATA_KEY_CHARS:
            raise _BadValue("data_key", f"a data key must be 1 to {MAX_DATA_KEY_CHARS} characters")
        data = (
            key,
            cells.choice("data_type", range(DATA_STRING, DATA_ARRAY + 1)),
            cells.text("string_value", MAX_DATA_STRING_CHARS),
            cells.number("number_value"),
            cells.time("date_value"),
        )
        if table == "event_data":
            found = self.conn.execute(
                "SELECT event_key FROM umami_event WHERE event_id = ?", (cells.uuid("website_event_id"),)
            ).fetchone()
            if found is None:
                self.counts["skipped event data without its event"] += 1
                return
            inserted = self.conn.execute(
                "INSERT OR IGNORE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
                "date_value) VALUES (?,?,?,?,?,?)",
                (found[0], *data),
            ).rowcount
            self.counts["event data" if inserted else "event data already there"] += 1
            return
        created = cells.time("created_at") or 0
        session = self.session_key(cells.uuid("session_id"), self.website_key(cells.uuid("website_id")), created)
        self.conn.execute(
            "INSERT INTO session_data (session_key, data_key, data_type, string_value, number_value, date_value, "
            "distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (session_key, data_key) DO UPDATE SET "
            "data_type = excluded.data_type, string_value = excluded.string_value, number_value = excluded.number_value, "
            "date_value = excluded.date_value, distinct_id = excluded.distinct_id, created_at = excluded.created_at",
            (session, *data, cells.text("distinct_id", MAX_DISTINCT_ID_CHARS), created),
        )
        self.counts["session data"] += 1


def import_umami(
    db: str,
    paths: Sequence[Path],
    progress: Callable[[int, str], None] | None = None,
    now: float | None = None,
) -> dict[str, int]:
    """Load Umami CSVs into footfall in one transaction (all files or nothing), checking every value as the collection
    API would; websites keep their Umami ids (and names, from website.csv), so tracking snippets keep working.

    Importing the same export again inserts nothing twice (events are keyed by their Umami id in ``umami_event``).
    A bad value, a malformed file or a missing column is a ConfigError of one line naming the file, line and column.
    """
    import csv

    now = time.time() if now is None else now
    files: dict[str, list[Path]] = collections.defaultdict(list)
    for path in paths:
        files[_umami_table(_read_header(path))].append(path)
    with contextlib.closing(connect(db)) as conn:
        job = _Import(conn, now)
        with transaction(conn):  # all files or nothing
            for table, _ in _UMAMI_TABLE_KEYS:
                for path in files.get(table, []):
                    with open(path, newline="", encoding="utf-8") as handle:
                        reader = csv.DictReader(handle, strict=True)
                        started = 2  # the file line the row being read starts on (line 1 is the header)
                        try:
                            for number, row in enumerate(reader, 1):
                                missing = [name for name in _REQUIRED_COLUMNS[table] if name not in row]
                                if missing:  # (a file of its header alone imports nothing, whatever its columns)
                                    raise ConfigError(f"{path}: the {table} CSV has no column {', '.join(missing)}")
                                if None in row or None in row.values():
                                    raise csv.Error("a row with a different number of fields than the header")
                                job.row(table, _Cells(row, now))
                                started = reader.line_num + 1
                                if progress is not None and number % 1000 == 0:
                                    progress(1000, path.name)
                        except _BadValue as bad:
                            raise ConfigError(f"{path}, line {started}, column {bad.column}: {bad}") from None
                        except (csv.Error, UnicodeDecodeError) as exc:
                            raise ConfigError(f"{path}, line {started}: not a CSV psql wrote ({exc})") from None
                        except sqlite3.IntegrityError as exc:
                            raise ConfigError(f"{path}, line {started}: refused by the schema ({exc})") from None
        if job.first_event_key is not None:  # imported keys may lie below the rollups' watermark: lower it
            conn.execute(
                "UPDATE setting SET value = min(CAST(value AS INTEGER), ?) WHERE name = 'rollup_event_key'",
                (job.first_event_key - 1,),
            )
    return dict(job.counts)


def _read_header(path: Path) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}, line 1: not a CSV psql wrote ({exc})") from None


def export_umami(db: str, folder: Path, website_id: str | None = None) -> dict[str, int]:
    """Write website_event.csv, session.csv, event_data.csv and session_data.csv in Umami's columns, ready for
    `\\copy TABLE FROM 'TABLE.csv' WITH CSV HEADER` into Umami's PostgreSQL. Event ids are stable UUIDs."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        key = website_key_for(conn, website_id)
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
        }
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
                        writer.writerow(
                            ["" if v is None else _to_psql_time(v) if i in times else v for i, v in enumerate(values)]
                        )
                    count += len(batch)
            counts[table] = count
    return counts


def _stable_uuid(website_id: str, kind: str, key: object) -> str:
    """A UUID for a row footfall keys by integer: the same row always gets the same id."""
    return str(uuid.uuid5(uuid.UUID(website_id), f"footfall:{kind}:{key}"))
