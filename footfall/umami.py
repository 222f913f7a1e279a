"""Moving between Umami and footfall: import Umami's PostgreSQL tables (CSV) and export footfall as Umami's tables.

Owns: column mapping both ways and stable ids for rows footfall keys by integer. Imports collector, footfall.geo and
footfall.ops.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from collector import (
    CAMPAIGN_PARAMS,
    EVENT_CUSTOM,
    EVENT_PAGEVIEW,
    EVENT_PERFORMANCE,
    MAX_CAMPAIGN_CHARS,
    MAX_DATA_KEY_CHARS,
    MAX_HOSTNAME_CHARS,
    ConfigError,
    EventRow,
    connect,
    strip_www,
    transaction,
)
from footfall.geo import valid_country
from footfall.ops import EXPORT_BATCH_ROWS, website_key_for

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


#: The column that tells which table a CSV holds, in import order (sessions before their events, events before data).
_UMAMI_TABLE_KEYS = (
    ("session", "browser"),
    ("website_event", "event_id"),
    ("event_data", "event_data_id"),
    ("session_data", "session_data_id"),
)


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
        f"not one of Umami's session, website_event, event_data or session_data CSVs (columns: "
        f"{', '.join(header[:6])}…); export them with \\copy … WITH CSV HEADER"
    )


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
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS umami_event (event_id TEXT PRIMARY KEY, event_key INTEGER) WITHOUT ROWID"
        )
        websites: dict[str, int] = dict(conn.execute("SELECT website_id, website_key FROM website").fetchall())

        def website_key(website_id: str) -> int:
            website_id = website_id.lower()
            if website_id not in websites:
                cur = conn.execute(
                    "INSERT INTO website (website_id, name, created_at) VALUES (?, ?, ?)",
                    (website_id, f"umami {website_id[:8]}", int(time.time())),
                )
                websites[website_id] = int(cur.lastrowid or 0)
                counts["websites"] += 1
            return websites[website_id]

        def session_key(session_id: str, website: int, created_at: int) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO session (session_id, website_key, created_at) VALUES (?, ?, ?)",
                (session_id.lower(), website, created_at),
            )
            return int(
                conn.execute("SELECT session_key FROM session WHERE session_id = ?", (session_id.lower(),)).fetchone()[0]
            )

        with transaction(conn):  # all files or nothing
            for table, _ in _UMAMI_TABLE_KEYS:
                for path in files.get(table, []):
                    number = 0
                    with open(path, newline="", encoding="utf-8") as handle:
                        try:
                            for number, row in enumerate(csv.DictReader(handle), 1):
                                counts[_import_umami_row(conn, table, row, website_key, session_key)] += 1
                                if progress is not None and number % 1000 == 0:
                                    progress(1000)
                        except (KeyError, ValueError) as exc:
                            raise ConfigError(f"{path}: cannot read row {number}: {exc!r}") from None
        first = conn.execute("SELECT min(event_key) FROM temp.umami_event").fetchone()[0]
        if first is not None:  # imported keys may lie below the rollups' watermark: lower it (recomputing is idempotent)
            conn.execute(
                "UPDATE setting SET value = min(CAST(value AS INTEGER), ?) WHERE name = 'rollup_event_key'", (first - 1,)
            )
    return dict(counts)


def _import_umami_row(
    conn: sqlite3.Connection,
    table: str,
    row: dict[str, str],
    website_key: Callable[[str], int],
    session_key: Callable[[str, int, int], int],
) -> str:
    """Insert one Umami row; return what it counted as."""
    get = lambda name, limit=500: (row.get(name) or None) and row[name][:limit]  # noqa: E731
    created = _from_psql_time(row.get("created_at")) or 0
    if table == "session":
        website = website_key(row["website_id"])
        conn.execute(
            "INSERT INTO session (session_id, website_key, browser, os, device, screen, language, country, region, city, "
            "distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (session_id) DO NOTHING",
            (
                row["session_id"].lower(),
                website,
                get("browser", 20),
                get("os", 20),
                get("device", 20),
                get("screen", 11),
                get("language", 35),
                valid_country(row.get("country")),
                get("region", 20),
                get("city", 50),
                get("distinct_id", 50),
                created,
            ),
        )
        return "sessions"
    if table == "website_event":
        kind = int(row.get("event_type") or EVENT_PAGEVIEW)
        if kind not in (EVENT_PAGEVIEW, EVENT_CUSTOM, EVENT_PERFORMANCE):
            return "skipped link and pixel events"
        website = website_key(row["website_id"])
        session = session_key(row["session_id"], website, created)
        visit_id = row["visit_id"].lower()
        conn.execute(
            "INSERT OR IGNORE INTO visit (visit_id, session_key, started_at) VALUES (?, ?, ?)", (visit_id, session, created)
        )
        conn.execute("UPDATE visit SET started_at = min(started_at, ?) WHERE visit_id = ?", (created, visit_id))
        visit = conn.execute("SELECT visit_key FROM visit WHERE visit_id = ?", (visit_id,)).fetchone()[0]
        ref_domain = get("referrer_domain")
        hostname = get("hostname", MAX_HOSTNAME_CHARS)
        cur = conn.execute(
            f"INSERT INTO website_event (website_key, session_key, visit_key, {', '.join(EventRow._fields)}) "
            f"VALUES ({', '.join('?' * (len(EventRow._fields) + 3))})",
            (
                website,
                session,
                visit,
                created,
                kind,
                get("event_name", 50),
                get("url_path") or "",
                get("url_query"),
                get("referrer_path"),
                get("referrer_query"),
                ref_domain,
                int(bool(ref_domain) and ref_domain == strip_www(hostname)),
                get("page_title"),
                hostname,
                get("tag", 50),
                *(get(name, MAX_CAMPAIGN_CHARS) for name in CAMPAIGN_PARAMS),
                *(_num(row.get(name)) for name in ("lcp", "inp", "cls", "fcp", "ttfb")),
                None,
            ),
        )
        conn.execute(
            "INSERT OR REPLACE INTO umami_event (event_id, event_key) VALUES (?, ?)", (row["event_id"].lower(), cur.lastrowid)
        )
        return "events"
    data = (
        row["data_key"][:MAX_DATA_KEY_CHARS],
        int(row["data_type"]),
        get("string_value"),
        _num(row.get("number_value")),
        _from_psql_time(row.get("date_value")),
    )
    if table == "event_data":
        found = conn.execute(
            "SELECT event_key FROM umami_event WHERE event_id = ?", (row["website_event_id"].lower(),)
        ).fetchone()
        if found is None:
            return "skipped event data without its event"
        conn.execute(
            "INSERT OR REPLACE INTO event_data (event_key, data_key, data_type, string_value, number_value, "
            "date_value) VALUES (?,?,?,?,?,?)",
            (found[0], *data),
        )
        return "event data"
    website = website_key(row["website_id"])
    session = session_key(row["session_id"], website, created)
    conn.execute(
        "INSERT OR REPLACE INTO session_data (session_key, data_key, data_type, string_value, number_value, "
        "date_value, distinct_id, created_at) VALUES (?,?,?,?,?,?,?,?)",
        (session, *data, get("distinct_id", 50), created),
    )
    return "session data"


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
