"""`footfall import umami`: every value checked as the API checks it, all files or nothing, nothing imported twice, one-line
errors naming file, line and column; Umami's site names and ids kept; no empty 'default' site left behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

import collector
import footfall.app
import footfall.cli
from conftest import Clock, open_client, rows
from test_operations import UMAMI_EVENT_DATA, UMAMI_EVENTS, UMAMI_SESSION, UMAMI_SESSION_DATA

SITE = "67fdaff4-97d0-4e97-b367-29bd0e201c2d"
UMAMI_WEBSITE = f"""website_id,name,domain,share_id,reset_at,user_id,created_at,updated_at,deleted_at
{SITE},Blog,blog.example,,,,2025-01-02 03:04:05+00,,
"""
TABLES = ("website", "session", "visit", "website_event", "event_data", "session_data", "umami_event")


def export(folder: Path, **changed: str) -> list[Path]:
    """Umami's five tables as CSV files in ``folder``; ``changed`` replaces one file's text."""
    folder.mkdir(exist_ok=True)
    texts = {
        "website": UMAMI_WEBSITE,
        "session": UMAMI_SESSION,
        "website_event": UMAMI_EVENTS,
        "event_data": UMAMI_EVENT_DATA,
        "session_data": UMAMI_SESSION_DATA,
        **changed,
    }
    paths = []
    for name, text in texts.items():
        paths.append(folder / f"{name}.csv")
        paths[-1].write_text(text)
    return paths


def run_import(db_path: Path, paths: list[Path]) -> tuple[int, str]:
    result = CliRunner().invoke(footfall.cli.cli, ["import", "umami", *map(str, paths), "--db", str(db_path)])
    return result.exit_code, result.output


def counts(db_path: Path) -> dict[str, int]:
    return {table: rows(db_path, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def with_cell(text: str, column: str, value: str, line: int = 2) -> str:
    """``text`` (a CSV) with ``column`` of file line ``line`` set to ``value``."""
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_sites_keep_their_umami_names_and_no_default_site_is_left(db_path: Path, tmp_path: Path) -> None:
    """With website.csv the site keeps Umami's id, name, domain and creation time; the new database has no 'default'."""
    code, output = run_import(db_path, export(tmp_path / "umami"))
    assert code == 0, output
    assert rows(db_path, "SELECT website_id, name, domain, created_at FROM website") == [
        (SITE, "Blog", "blog.example", 1735787045)
    ]
    assert output == "1 event data, 2 events, 1 session data, 1 sessions, 1 skipped link and pixel events, 1 websites\n"
    assert rows(db_path, "SELECT event_name, data_key, number_value FROM custom_events") == [("signup", "seats", 3.0)]


def test_importing_an_export_twice_changes_nothing(db_path: Path, tmp_path: Path) -> None:
    """The same files imported again insert no row: every table keeps its count, and the output says so."""
    paths = export(tmp_path / "umami")
    assert run_import(db_path, paths)[0] == 0
    first = counts(db_path)
    assert first == {
        "website": 1,
        "session": 1,
        "visit": 1,
        "website_event": 2,
        "event_data": 1,
        "session_data": 1,
        "umami_event": 2,
    }
    code, output = run_import(db_path, paths)
    assert code == 0, output
    assert counts(db_path) == first
    assert "2 events already there" in output and "1 event data already there" in output
    assert "1 sessions already there" in output and "1 websites already there" in output


@pytest.mark.parametrize(
    ("file", "column", "value", "message"),
    [
        ("website_event", "lcp", "1e400", "'1e400' is not a finite number"),
        ("website_event", "cls", "-1", "'-1' is not between 0 and 100"),
        ("website_event", "inp", "fast", "'fast' is not a number"),
        ("website_event", "created_at", "9999-12-31 23:59:59+00", "is before 1970 or more than an hour in the future"),
        ("website_event", "created_at", "yesterday", "'yesterday' is not a time like 2026-05-14 10:00:00+00"),
        ("website_event", "session_id", "not-a-uuid", "'not-a-uuid' is not a UUID"),
        ("website_event", "event_type", "9", "'9' is not one of 1…5"),
        ("event_data", "data_type", "7", "'7' is not one of 1…5"),
        ("event_data", "number_value", "inf", "'inf' is not a finite number"),
        ("event_data", "data_key", "k" * 501, "a data key must be 1 to 500 characters"),
        ("session", "created_at", "2026-13-01 00:00:00+00", "is not a time"),
        ("website", "website_id", "67fdaff4", "'67fdaff4' is not a UUID"),
    ],
)
def test_a_bad_value_is_one_line_and_nothing_is_imported(
    db_path: Path, tmp_path: Path, file: str, column: str, value: str, message: str
) -> None:
    """One bad cell in any file (here in the last row of its table) stops the import with one line naming file, line and
    column; no file is imported, no 'default' site is left, and the summary still answers."""
    texts = {"website": UMAMI_WEBSITE, "session": UMAMI_SESSION, "website_event": UMAMI_EVENTS}
    texts |= {"event_data": UMAMI_EVENT_DATA, "session_data": UMAMI_SESSION_DATA}
    line = texts[file].count("\n")
    paths = export(tmp_path / "umami", **{file: with_cell(texts[file], column, value, line)})
    code, output = run_import(db_path, paths)
    assert code == 1
    assert output.startswith(f"footfall: error: {tmp_path / 'umami' / f'{file}.csv'}, line {line}, column {column}: ")
    assert message in output and output.count("\n") == 1 and "Traceback" not in output
    assert counts(db_path) == dict.fromkeys(TABLES, 0)

    async def summary() -> int:
        app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())
        async with open_client(app) as client:
            return (await client.get("/api/summary")).status_code

    assert asyncio.run(summary()) == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (UMAMI_EVENTS.replace("/pricing,plan=pro", '"/pricing,plan=pro'), "line 2: not a CSV psql wrote"),
        (UMAMI_EVENTS.replace(",example.com,,,,,\n", ",example.com,,,,\n", 1), "a different number of fields"),
        (UMAMI_EVENTS.replace("visit_id,", "visit,", 1), "the website_event CSV has no column visit_id"),
    ],
)
def test_a_malformed_file_is_one_line(db_path: Path, tmp_path: Path, text: str, message: str) -> None:
    """An unterminated quote, a short row or a missing column: one line naming the file, nothing imported."""
    code, output = run_import(db_path, export(tmp_path / "umami", website_event=text))
    assert code == 1 and message in output and output.count("\n") == 1, output
    assert counts(db_path) == dict.fromkeys(TABLES, 0)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, output = run_import(db_path, [binary])
    assert code == 1 and f"footfall: error: {binary}, line 1: not a CSV psql wrote" in output and output.count("\n") == 1


def test_an_import_into_a_database_with_sites_keeps_them(db_path: Path, tmp_path: Path) -> None:
    """Into a database that has sites already, the import adds Umami's and touches nothing else."""
    collector.prepare_database(str(db_path))
    (default,) = rows(db_path, "SELECT website_id FROM website")[0]
    assert run_import(db_path, export(tmp_path / "umami"))[0] == 0
    assert rows(db_path, "SELECT website_id, name FROM website ORDER BY website_key") == [(default, "default"), (SITE, "Blog")]
