"""schema.sql is a public contract: everything documented, limits enforced, versions and migrations applied."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import pytest

import collector
from conftest import ROOT, rows

SCHEMA = (ROOT / "schema.sql").read_text()


def _objects(db_path: Path) -> list[tuple[str, str]]:
    collector.prepare_database(str(db_path))
    return rows(db_path, "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")


def test_every_table_view_and_column_is_commented(db_path: Path) -> None:
    """Each table and view has a comment block above it, and each table column a trailing -- comment."""
    objects = _objects(db_path)
    assert {name for _, name in objects} >= {
        "website",
        "session",
        "visit",
        "website_event",
        "event_data",
        "session_data",
        "bot_counter",
        "salt",
        "setting",
        "events",
        "pageviews",
        "custom_events",
        "sessions",
        "visits",
        "daily_visitors",
    }
    lines = SCHEMA.splitlines()
    for kind, name in objects:
        start = next(i for i, line in enumerate(lines) if re.match(rf"CREATE {kind.upper()} IF NOT EXISTS {name}\b", line))
        assert lines[start - 1].startswith("--"), f"{name} has no comment block"
        if kind != "table":
            continue
        end = next(i for i in range(start, len(lines)) if lines[i].startswith(")"))
        block = lines[start + 1 : end]
        for (column,) in rows(db_path, f"SELECT name FROM pragma_table_info('{name}')"):
            at = next((i for i, line in enumerate(block) if re.match(rf"\s+{column}\s", line)), None)
            assert at is not None, f"{name}.{column} not in schema.sql"
            commented = "--" in block[at] or (at + 1 < len(block) and "--" in block[at + 1] and "CHECK" in block[at + 1])
            assert commented, f"{name}.{column} has no comment"


def test_fresh_database_has_current_version_and_wal(db_path: Path) -> None:
    """A new database is at SCHEMA_VERSION, in WAL mode, with one 'default' website and an install secret."""
    collector.prepare_database(str(db_path))
    assert rows(db_path, "PRAGMA user_version") == [(collector.SCHEMA_VERSION,)]
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(db_path, "SELECT name FROM website") == [("default",)]
    assert len(rows(db_path, "SELECT value FROM setting WHERE name = 'install_secret'")[0][0]) == 64


def test_prepare_is_idempotent(db_path: Path) -> None:
    """Preparing an existing database changes nothing: no second default site, same secret."""
    first = collector.prepare_database(str(db_path))
    second = collector.prepare_database(str(db_path))
    assert first.secret == second.secret and second.default_website_id is None
    assert rows(db_path, "SELECT count(*) FROM website") == [(1,)]


def test_migrations_run_in_order_in_their_own_transaction(db_path: Path) -> None:
    """Numbered migrations bump user_version with their change; a failing one leaves both untouched."""
    collector.prepare_database(str(db_path))

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE website ADD COLUMN colour TEXT")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE website ADD COLUMN shape TEXT")
        raise RuntimeError("half done")

    with contextlib.closing(collector.connect(str(db_path))) as conn:
        assert collector.apply_migrations(conn, {2: add_column}) == 2
        with pytest.raises(RuntimeError):
            collector.apply_migrations(conn, {2: add_column, 3: broken})
    assert rows(db_path, "PRAGMA user_version") == [(2,)]
    columns = {c for (c,) in rows(db_path, "SELECT name FROM pragma_table_info('website')")}
    assert "colour" in columns and "shape" not in columns


def test_newer_database_is_refused(db_path: Path) -> None:
    """A database from a newer footfall is not touched; the error says to upgrade."""
    collector.prepare_database(str(db_path))
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(collector.ConfigError, match="newer than this footfall"):
        collector.prepare_database(str(db_path))


@pytest.mark.parametrize(
    ("column", "limit"),
    [
        ("url_path", collector.MAX_URL_CHARS),
        ("page_title", collector.MAX_URL_CHARS),
        ("event_name", collector.MAX_EVENT_NAME_CHARS),
        ("tag", collector.MAX_TAG_CHARS),
        ("hostname", collector.MAX_HOSTNAME_CHARS),
        ("utm_source", collector.MAX_CAMPAIGN_CHARS),
        ("twclid", collector.MAX_CAMPAIGN_CHARS),
    ],
)
def test_schema_checks_mirror_the_limits(db_path: Path, column: str, limit: int) -> None:
    """The CHECKs in schema.sql hold exactly the limits the collector truncates to: at the limit passes, one more fails."""
    collector.prepare_database(str(db_path))
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        insert = (
            f"INSERT INTO website_event (website_key, session_key, visit_key, created_at, event_type, url_path, {column}) "
            "VALUES (1, 1, 1, 0, 1, '/', ?)"
            if column != "url_path"
            else "INSERT INTO website_event (website_key, session_key, visit_key, created_at, event_type, url_path) VALUES (1, 1, 1, 0, 1, ?)"
        )  # noqa: E501
        conn.execute(insert, ("x" * limit,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(insert, ("x" * (limit + 1),))


def test_views_answer_the_documented_examples(db_path: Path) -> None:
    """Every 'Example:' query in schema.sql runs against a real database."""
    collector.prepare_database(str(db_path))
    examples = re.findall(r"^--\s+(?:Example:\s+)?(SELECT .*;)$", SCHEMA, flags=re.MULTILINE)
    assert len(examples) >= 7
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        for sql in examples:
            conn.execute(sql).fetchall()


def test_a_database_from_before_the_summary_indexes_upgrades_to_a_fresh_one(tmp_path: Path) -> None:
    """A database without the goal-visitor rollups and the filter indexes, with the page index since dropped (an older
    footfall's), gains exactly them and loses it on the next start: its schema then equals a fresh database's."""
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    collector.prepare_database(str(fresh))
    collector.prepare_database(str(old))
    older = ("idx_website_event_website_key_created_at", "idx_website_event_visit_key_created_at")
    added = [
        name
        for (name,) in rows(old, "SELECT name FROM sqlite_master WHERE name LIKE 'rollup%event_visitors' "
                                 "OR name LIKE 'idx_website_event_%' OR name = 'idx_session_website_key_country'")
        if name not in older
    ]  # fmt: skip
    assert len(added) == 8, added  # two tables, six indexes
    with contextlib.closing(collector.connect(str(old))) as conn:
        for name in added:
            conn.execute(f"DROP {'TABLE' if name.startswith('rollup') else 'INDEX'} {name}")
        # The page index of footfall 0.1's first filtered summaries, since dropped (schema.sql says why).
        conn.execute(
            "CREATE INDEX idx_website_event_page ON website_event (website_key, url_path, created_at) WHERE event_type = 1"
        )
    collector.prepare_database(str(old))
    assert "idx_website_event_page" not in [name for (name,) in rows(old, "SELECT name FROM sqlite_master")]
    schema = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    assert rows(old, schema) == rows(fresh, schema)
