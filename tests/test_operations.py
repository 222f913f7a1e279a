"""Operating commands against real databases: backup, check, prune and retention, forget, export, stats, install-service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import collector
import footfall.upkeep
import footfall.app
import footfall.cli
import footfall.ops
import footfall.umami
from conftest import CHROME, FIREFOX, Clock, LiveServer, add_website, hit, open_client, rows

NOW = time.time()
DAY = 86400


def populate(db_path: Path, hits: list[tuple[str, float, dict[str, Any], str]], now: float = NOW) -> dict[str, str]:
    """Send (website, time, payload, user agent) hits through the real app with its clock at ``now``; return site ids."""
    collector.prepare_database(str(db_path), now=now)
    sites = {name: add_website(db_path, name) for name in sorted({h[0] for h in hits})}

    async def send() -> None:
        app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock(now))
        async with open_client(app) as client:
            for site, at, payload, agent in hits:
                body = hit(sites[site], timestamp=int(at), **payload)
                response = await client.post("/api/send", json=body, headers={"User-Agent": agent})
                assert response.status_code == 200, response.text

    asyncio.run(send())
    return sites


def run(*args: str) -> Any:
    result = CliRunner().invoke(footfall.cli.cli, list(args))
    return result


# A known month: S1 has visit A (2 pageviews, 60 s apart) and visit B (1 pageview, a bounce); S2 has visit C
# (a pageview and a custom event 10 s later); old events 500 days back on both sites; a person who identified as user-42.
KNOWN = [
    ("blog", NOW - 3600, {"url": "/a"}, FIREFOX),
    ("blog", NOW - 3540, {"url": "/b"}, FIREFOX),
    ("blog", NOW - 600, {"url": "/a"}, FIREFOX),
    ("blog", NOW - 500, {"url": "/c"}, CHROME),
    ("blog", NOW - 490, {"url": "/c", "name": "signup"}, CHROME),
    ("blog", NOW - 500 * DAY, {"url": "/ancient"}, FIREFOX),
    ("shop", NOW - 500 * DAY, {"url": "/old-shop"}, FIREFOX),
    ("shop", NOW - 100, {"url": "/cart", "id": "user-42", "name": "buy", "data": {"sku": "x"}}, CHROME),
    ("shop", NOW - 50, {"url": "/cart", "id": "someone-else"}, CHROME),
]


def test_stats_match_a_known_month(db_path: Path) -> None:
    """`footfall stats` gives visitors, visits, pageviews, views per visit, bounce rate, visit length and top pages."""
    sites = populate(db_path, KNOWN)
    numbers = footfall.ops.site_stats(str(db_path), sites["blog"], 30 * DAY, now=NOW)
    assert numbers == {
        "visitors": 2,
        "visits": 3,
        "pageviews": 4,
        "views_per_visit": 1.33,
        "bounce_rate": 33.3,
        "avg_visit_s": 23,
        "top_pages": [
            {"url_path": "/a", "pageviews": 2},
            {"url_path": "/b", "pageviews": 1},
            {"url_path": "/c", "pageviews": 1},
        ],
    }
    result = run("stats", "--site", sites["blog"], "--period", "30d", "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "2 visitors, 3 visits, 4 pageviews" in result.output and "bounce rate 33.3%" in result.output
    assert run("stats", "--period", "soon", "--db", str(db_path)).exit_code == 2  # a usage error


def test_prune_deletes_old_events_in_chunks(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prune --older-than deletes old events (of one site with --site), then visits and sessions left empty."""
    sites = populate(db_path, KNOWN)
    monkeypatch.setattr(footfall.ops, "PRUNE_CHUNK_ROWS", 1)  # several transactions even on this small database
    result = run("prune", "--older-than", "400d", "--site", sites["shop"], "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "deleted 1 events" in result.output
    assert rows(db_path, "SELECT url_path FROM events WHERE created_unix < ? ORDER BY 1", (NOW - 400 * DAY,)) == [
        ("/ancient",)
    ]
    assert run("prune", "--older-than", "400d", "--db", str(db_path)).exit_code == 0
    assert rows(db_path, "SELECT count(*) FROM events WHERE created_unix < ?", (NOW - 400 * DAY,)) == [(0,)]
    assert rows(
        db_path,
        "SELECT count(*) FROM visit v WHERE NOT EXISTS (SELECT 1 FROM website_event e WHERE e.visit_key = v.visit_key)",
    ) == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(7,)]
    assert run("prune", "--older-than", "0d", "--db", str(db_path)).exit_code == 2  # a usage error


def test_prune_through_a_visit_moves_its_start(db_path: Path) -> None:
    """A prune that cuts a visit leaves its started_at at the first event it keeps (visitor counts rely on it)."""
    sites = populate(db_path, KNOWN)
    visit = "SELECT v.started_at FROM visit v JOIN website_event e USING (visit_key) WHERE e.url_path = '/b'"
    assert rows(db_path, visit) == [(int(NOW - 3600),)]
    assert footfall.ops.prune_events(str(db_path), 3570, sites["blog"], now=NOW)["events"] == 2  # /ancient and /a
    assert rows(db_path, visit) == [(int(NOW - 3540),)]


@pytest.mark.anyio
async def test_site_retention_is_applied_by_the_server(db_path: Path) -> None:
    """`footfall site retention ID DAYS` makes the running server delete that site's older events; other sites keep theirs."""
    sites = await asyncio.to_thread(populate, db_path, KNOWN)
    result = await asyncio.to_thread(run, "site", "retention", sites["blog"], "30", "--db", str(db_path))
    assert result.exit_code == 0, result.output
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock(NOW))
    async with open_client(app) as client:
        deleted = await footfall.upkeep.apply_retention(client.app.state.collection, client.app.state.summary, NOW)
    assert deleted == 1
    assert rows(db_path, "SELECT url_path FROM events WHERE created_unix < ? ORDER BY 1", (NOW - 30 * DAY,)) == [
        ("/old-shop",)
    ]
    assert (await asyncio.to_thread(run, "site", "retention", sites["blog"], "off", "--db", str(db_path))).exit_code == 0
    assert rows(db_path, "SELECT retention_days FROM website WHERE website_id = ?", (sites["blog"],)) == [(None,)]
    assert (await asyncio.to_thread(run, "site", "retention", sites["blog"], "soon", "--db", str(db_path))).exit_code == 2


def test_forget_deletes_one_person(db_path: Path) -> None:
    """forget --distinct-id removes that person's sessions, visits, events and data, and nobody else's."""
    populate(db_path, KNOWN)
    result = run("forget", "--distinct-id", "user-42", "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "deleted 1 events" in result.output and "deleted 1 sessions" in result.output
    assert rows(db_path, "SELECT count(*) FROM sessions WHERE distinct_id = 'user-42'") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM event_data") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM sessions WHERE distinct_id = 'someone-else'") == [(1,)]
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(8,)]


def test_export_csv_and_jsonl_with_filters(db_path: Path, tmp_path: Path) -> None:
    """export writes every event with its session attributes; --site, --since and --until filter; formats parse back."""
    sites = populate(db_path, KNOWN)
    out = tmp_path / "all.csv"
    result = run("export", "--format", "csv", "-o", str(out), "--db", str(db_path))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == list(footfall.ops.EXPORT_COLUMNS) and len(lines) == 1 + len(KNOWN)
    since = time.strftime("%Y-%m-%d", time.gmtime(NOW - 2 * DAY))
    jsonl = tmp_path / "shop.jsonl"
    result = run(
        "export", "--site", sites["shop"], "--since", since, "--format", "jsonl", "-o", str(jsonl), "--db", str(db_path)
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["url_path"], r["distinct_id"], r["browser"]) for r in records] == [
        ("/cart", "user-42", "Chrome"),
        ("/cart", "someone-else", "Chrome"),
    ]
    assert all(r["website_id"] == sites["shop"] for r in records)
    assert run("export", "--site", "b59e9c65-ae32-47f1-8400-119fcf4861c4", "--db", str(db_path)).exit_code == 1


def test_export_streams_in_constant_memory(db_path: Path, tmp_path: Path) -> None:
    """Exporting 30,000 events holds a few MB at most: rows are streamed, not collected."""
    populate(db_path, [("blog", NOW - 10, {"url": "/seed"}, FIREFOX)])
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute(
            "INSERT INTO website_event (website_key, session_key, visit_key, created_at, event_type, url_path, "
            "page_title) SELECT e.website_key, e.session_key, e.visit_key, e.created_at, 1, '/bulk/' || n.value, "
            "'a title that makes each row a little longer than a bare path' FROM website_event e, "
            "generate_series(1, 30000) n"
            if sqlite3.sqlite_version_info >= (3, 45)
            else "WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 30000) "
            "INSERT INTO website_event (website_key, session_key, visit_key, created_at, event_type, url_path, "
            "page_title) SELECT e.website_key, e.session_key, e.visit_key, e.created_at, 1, '/bulk/' || n.value, "
            "'a title that makes each row a little longer than a bare path' FROM website_event e, n"
        )
    with open(tmp_path / "big.jsonl", "w", encoding="utf-8") as out:
        tracemalloc.start()
        count = footfall.ops.export_events(str(db_path), out, "jsonl")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert count == 30001
    assert peak < 4 * 1024 * 1024, peak


@pytest.mark.slow
def test_backup_while_footfall_writes(db_path: Path, tmp_path: Path) -> None:
    """backup makes a consistent, complete copy while a live footfall takes events; --keep-days expires old copies."""
    server = LiveServer(db_path)
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    stop = threading.Event()
    sent = [0]

    def keep_sending() -> None:
        with httpx.Client(base_url=server.url, headers={"User-Agent": FIREFOX}) as http:
            while not stop.is_set():
                body = {"type": "event", "payload": {"website": website, "url": f"/w{sent[0]}"}}
                if http.post("/api/send", json=body).status_code == 200:
                    sent[0] += 1

    writer = threading.Thread(target=keep_sending)
    writer.start()
    try:
        while sent[0] < 50:
            time.sleep(0.05)
        folder = tmp_path / "backups"
        folder.mkdir()
        old = folder / "footfall-20000101T000000Z.db"
        old.write_bytes(b"old")
        os.utime(old, (NOW - 30 * DAY, NOW - 30 * DAY))
        result = run("backup", "--keep-days", "14", "--db", str(db_path), str(folder))
        assert result.exit_code == 0, result.output
        assert f"deleted {old}" in result.output and not old.exists()
    finally:
        stop.set()
        writer.join()
        assert server.stop() == 0
    (copy,) = folder.glob("footfall-*.db")
    assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
    copied = rows(copy, "SELECT count(*) FROM website_event")[0][0]
    assert 50 <= copied <= sent[0]
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(sent[0],)]
    assert run("backup", "--db", str(db_path), str(copy)).exit_code == 1  # never overwrites


def test_backup_into_a_directory(db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`backup nightly/` creates the directory and writes a dated copy in it (without --keep-days too); an existing
    directory gets a copy inside; any other name is the copy itself."""
    collector.prepare_database(str(db_path))
    monkeypatch.chdir(tmp_path)
    Path("existing").mkdir()
    for dest in ("nightly/", "nested/deeper/", "existing", "single.db"):
        result = run("backup", "--db", str(db_path), dest)
        assert result.exit_code == 0, result.output
        target = Path(result.output.split("\t")[0])
        assert rows(target, "PRAGMA integrity_check") == [("ok",)]
        if dest == "single.db":
            assert target == Path("single.db")
        else:
            assert target.parent == Path(dest.rstrip("/")) and target.name.startswith("footfall-"), target
    assert sorted(p.parent.name for p in Path(".").glob("*/footfall-*.db")) == ["existing", "nightly"]


def hold_write_lock(db_path: Path, seconds: float) -> threading.Thread:
    """Another program's write transaction holding the lock for ``seconds`` (started before this returns)."""
    taken = threading.Event()

    def hold() -> None:
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(seconds)
            other.execute("ROLLBACK")

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(5)
    return thread


@pytest.mark.parametrize("command", ["prune", "forget"])
def test_prune_and_forget_wait_for_the_lock(db_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """While another program holds the write lock, prune and forget wait, say so, try again and finish."""
    populate(db_path, KNOWN)
    monkeypatch.setattr(footfall.ops, "OPS_BUSY_TIMEOUT_MS", 200)
    holder = hold_write_lock(db_path, 1.5)
    args = ["--older-than", "400d"] if command == "prune" else ["--distinct-id", "user-42"]
    result = run(command, *args, "--db", str(db_path))
    holder.join()
    assert result.exit_code == 0, result.output
    assert "The database is locked by another writer; trying again (2 of 6)…" in result.output
    if command == "prune":
        assert "deleted 2 events" in result.output
        assert rows(db_path, "SELECT count(*) FROM website_event WHERE created_at < ?", (NOW - 400 * DAY,)) == [(0,)]
    else:
        assert "deleted 1 events" in result.output and rows(
            db_path, "SELECT count(*) FROM session WHERE distinct_id = 'user-42'"
        ) == [(0,)]


def test_a_lock_that_is_never_released_is_one_clear_error(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the lock stays taken through every attempt, prune stops with one line saying what to do, no traceback."""
    populate(db_path, KNOWN)
    monkeypatch.setattr(footfall.ops, "OPS_BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(footfall.ops, "OPS_ATTEMPTS", 2)
    holder = hold_write_lock(db_path, 3)
    result = run("prune", "--older-than", "400d", "--db", str(db_path))
    holder.join()
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        "footfall: error: the database stayed locked for 2 tries of 0.1 s; another program holds a long write transaction "
        "(a sqlite3 shell?); end it and run this again"
    )
    assert "Traceback" not in result.output


def test_check_reports_and_detects_damage(db_path: Path, tmp_path: Path) -> None:
    """check prints integrity, version, row counts and salt ages; a damaged file exits 1 with a pointer to backups."""
    populate(db_path, KNOWN)
    result = run("check", "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "integrity: ok" in result.output and f"schema version: {collector.SCHEMA_VERSION}" in result.output
    assert "rows website_event: 9" in result.output and "\ncurrent salt: month " in result.output
    damaged = tmp_path / "damaged.db"
    data = bytearray(db_path.read_bytes())
    page = 4096
    data[2 * page : 4 * page] = b"\xff" * (2 * page)
    damaged.write_bytes(bytes(data))
    broken = run("check", "--db", str(damaged))
    assert broken.exit_code == 1 and "Traceback" not in broken.output
    assert run("check", "--db", str(tmp_path / "missing.db")).exit_code == 1


def test_install_service_writes_units(tmp_path: Path) -> None:
    """install-service writes the three units with ExecStart pointing at this footfall."""
    result = run("install-service", "--unit-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in ("footfall.service", "footfall-backup.service", "footfall-backup.timer", "footfall-report.timer"):
        assert (tmp_path / name).exists()
    service = (tmp_path / "footfall.service").read_text()
    assert "ExecStart=/usr/local/bin/footfall" not in service and "footfall serve" in service


def test_ages() -> None:
    """Ages are whole hours, days or weeks."""
    assert footfall.ops.parse_age("400d") == 400 * DAY and footfall.ops.parse_age("2w") == 14 * DAY
    assert footfall.ops.parse_age("36h") == 36 * 3600
    for bad in ("", "5", "5y", "-3d", "0d"):
        with pytest.raises(collector.ConfigError):
            footfall.ops.parse_age(bad)


UMAMI_SESSION = """session_id,website_id,browser,os,device,screen,language,country,region,city,distinct_id,created_at
0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01,67fdaff4-97d0-4e97-b367-29bd0e201c2d,chrome,Mac OS,laptop,1440x900,en-US,NZ,NZ-AUK,Auckland,,2026-05-14 10:00:00.123+00
"""
UMAMI_EVENTS = """event_id,website_id,session_id,visit_id,created_at,url_path,url_query,utm_source,utm_medium,utm_campaign,utm_content,utm_term,referrer_path,referrer_query,referrer_domain,page_title,gclid,fbclid,msclkid,ttclid,li_fat_id,twclid,event_type,event_name,tag,hostname,lcp,inp,fcp,ttfb,cls
5d7bfa2e-0c1b-4a53-9a2d-1f2b3c4d5e01,67fdaff4-97d0-4e97-b367-29bd0e201c2d,0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01,7a1b2c3d-4e5f-5061-8273-948596a7b8c9,2026-05-14 10:00:00.123+00,/pricing,plan=pro,news,email,,,,/,q=1,google.com,Pricing,,,,,,,1,,,example.com,,,,,
5d7bfa2e-0c1b-4a53-9a2d-1f2b3c4d5e02,67fdaff4-97d0-4e97-b367-29bd0e201c2d,0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01,7a1b2c3d-4e5f-5061-8273-948596a7b8c9,2026-05-14 10:01:30+00,/pricing,,,,,,,,,,Pricing,,,,,,,2,signup,,example.com,,,,,
5d7bfa2e-0c1b-4a53-9a2d-1f2b3c4d5e03,67fdaff4-97d0-4e97-b367-29bd0e201c2d,0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01,7a1b2c3d-4e5f-5061-8273-948596a7b8c9,2026-05-14 10:02:00+00,/go,,,,,,,,,,,,,,,,,3,,,example.com,,,,,
"""
UMAMI_EVENT_DATA = """event_data_id,website_id,website_event_id,data_key,string_value,number_value,date_value,data_type,created_at
9e8d7c6b-5a49-4382-9170-6f5e4d3c2b01,67fdaff4-97d0-4e97-b367-29bd0e201c2d,5d7bfa2e-0c1b-4a53-9a2d-1f2b3c4d5e02,seats,3.0000,3.0000,,2,2026-05-14 10:01:30+00
"""
UMAMI_SESSION_DATA = """session_data_id,website_id,session_id,data_key,string_value,number_value,date_value,data_type,distinct_id,created_at
1e8d7c6b-5a49-4382-9170-6f5e4d3c2b01,67fdaff4-97d0-4e97-b367-29bd0e201c2d,0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01,plan,pro,,,1,u-1,2026-05-14 10:01:00+00
"""


def test_import_umami_csv(db_path: Path, tmp_path: Path) -> None:
    """Umami's tables as psql writes them (header row, any file order) load with their ids, times, data and sessions."""
    files = []
    for name, text in (
        ("event_data", UMAMI_EVENT_DATA),
        ("website_event", UMAMI_EVENTS),
        ("session", UMAMI_SESSION),
        ("session_data", UMAMI_SESSION_DATA),
    ):
        files.append(tmp_path / f"{name}.csv")
        files[-1].write_text(text)
    result = run("import", "umami", *map(str, files), "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "2 events" in result.output and "1 skipped link and pixel events" in result.output
    assert rows(
        db_path,
        "SELECT website_id, session_id, visit_id, created_at, url_path, url_query, utm_source, "
        "referrer_domain, event_name, browser, country, city FROM events ORDER BY event_key",
    ) == [
        (
            "67fdaff4-97d0-4e97-b367-29bd0e201c2d",
            "0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01",
            "7a1b2c3d-4e5f-5061-8273-948596a7b8c9",
            "2026-05-14T10:00:00Z",
            "/pricing",
            "plan=pro",
            "news",
            "google.com",
            None,
            "chrome",
            "NZ",
            "Auckland",
        ),
        (
            "67fdaff4-97d0-4e97-b367-29bd0e201c2d",
            "0f5a0f0e-2f7d-5b1c-9a51-3d7c1b6e9a01",
            "7a1b2c3d-4e5f-5061-8273-948596a7b8c9",
            "2026-05-14T10:01:30Z",
            "/pricing",
            None,
            None,
            None,
            "signup",
            "chrome",
            "NZ",
            "Auckland",
        ),
    ]
    assert rows(db_path, "SELECT event_name, data_key, number_value FROM custom_events") == [("signup", "seats", 3.0)]
    assert rows(db_path, "SELECT data_key, string_value, distinct_id FROM session_data") == [("plan", "pro", "u-1")]
    assert rows(db_path, "SELECT name FROM website WHERE website_id = '67fdaff4-97d0-4e97-b367-29bd0e201c2d'") == [
        ("umami 67fdaff4",)
    ]
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    assert run("import", "umami", str(bad), "--db", str(db_path)).exit_code == 1


def test_umami_csv_round_trip(db_path: Path, tmp_path: Path) -> None:
    """export --format umami-csv writes Umami's tables; importing them into a fresh database gives the same events."""
    populate(db_path, KNOWN)
    folder = tmp_path / "umami"
    result = run("export", "--format", "umami-csv", "-o", str(folder), "--db", str(db_path))
    assert result.exit_code == 0, result.output
    header = (folder / "website_event.csv").read_text().splitlines()[0]
    assert header.split(",") == list(footfall.umami.UMAMI_COLUMNS["website_event"])
    fresh = tmp_path / "fresh.db"
    files = [str(folder / f"{t}.csv") for t in ("website_event", "session", "event_data", "session_data")]
    assert run("import", "umami", *files, "--db", str(fresh)).exit_code == 0
    columns = ", ".join(c for c in footfall.ops.EXPORT_COLUMNS if c not in ("self_referral", "duration"))
    assert rows(fresh, f"SELECT {columns} FROM events ORDER BY created_unix, url_path") == rows(
        db_path, f"SELECT {columns} FROM events ORDER BY created_unix, url_path"
    )
    assert rows(fresh, "SELECT data_key, string_value FROM custom_events WHERE data_key IS NOT NULL") == [("sku", "x")]
    assert run("export", "--format", "umami-csv", "--db", str(db_path)).exit_code == 2  # needs -o FOLDER
