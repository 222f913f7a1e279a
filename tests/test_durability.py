"""Nothing acknowledged is lost: kill -9 under load, and people reading the live file while clients send at full rate."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import FIREFOX, LiveServer, rows

pytestmark = pytest.mark.slow


class Senders:
    """Concurrent clients posting unique pageviews to 127.0.0.1 and recording every acknowledged one."""

    def __init__(self, url: str, website: str, clients: int, tag: str) -> None:
        self.url, self.website, self.tag = url, website, tag
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, n: int) -> None:
        sent = 0
        with httpx.Client(base_url=self.url, headers={"User-Agent": f"{FIREFOX} c/{n}"}, timeout=30) as http:
            while not self._stop.is_set():
                path = f"/{self.tag}/{n}/{sent}"
                sent += 1
                try:
                    response = http.post("/api/send", json={"type": "event", "payload": {"website": self.website,
                                                                                          "url": path}})  # fmt: skip
                except httpx.TransportError:
                    continue  # the server died mid-request: not acknowledged
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.append(path)
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def test_kill_9_under_load_loses_nothing_acknowledged(db_path: Path) -> None:
    """Five rounds of SIGKILL mid-stream and restart on the same file: every acknowledged event is stored exactly once
    and the file passes integrity_check."""
    acknowledged: list[str] = []
    rng = random.Random(9)
    website = None
    for round_number in range(5):
        server = LiveServer(db_path)
        website = website or rows(db_path, "SELECT website_id FROM website")[0][0]
        senders = Senders(server.url, website, clients=8, tag=f"r{round_number}")
        time.sleep(rng.uniform(0.8, 1.6))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        senders.stop()
        server.stop()
        assert senders.failures == []
        assert len(senders.acknowledged) > 50, "the load did not get going"
        acknowledged += senders.acknowledged
    stored = [path for (path,) in rows(db_path, "SELECT url_path FROM website_event")]
    counts: dict[str, int] = {}
    for path in stored:
        counts[path] = counts.get(path, 0) + 1
    assert [p for p in acknowledged if counts.get(p, 0) != 1] == []
    assert rows(db_path, "PRAGMA integrity_check") == [("ok",)]


READER = """
import sqlite3, sys, time
db, mode, until = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
while time.time() < until:
    if mode == "count":
        conn.execute("SELECT count(*) FROM website_event").fetchone()
    elif mode == "group":
        conn.execute("SELECT url_path, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 10").fetchall()
    else:  # a person who opened a transaction in the sqlite3 shell and went for coffee
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM website_event").fetchone()
        time.sleep(3)
        conn.execute("COMMIT")
"""


def test_people_reading_the_live_file(db_path: Path) -> None:
    """While clients send at full rate, count(*), GROUP BY and a long read transaction run in other processes: no request
    fails, nothing is lost, and once the long reader leaves the WAL file shrinks back under its limit."""
    import collector

    server = LiveServer(db_path)
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    until = time.time() + 8
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(db_path), mode, str(until)])
               for mode in ("count", "group", "long")]  # fmt: skip
    senders = Senders(server.url, website, clients=8, tag="live")
    wal = db_path.with_name(db_path.name + "-wal")
    sizes_during = []
    while time.time() < until:
        sizes_during.append(wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.5)
    assert [reader.wait(60) for reader in readers] == [0, 0, 0]
    time.sleep(1.5)  # keep sending after the readers left, so checkpoints catch up
    senders.stop()
    assert server.stop() == 0
    assert senders.failures == []
    assert len(senders.acknowledged) > 200
    stored = {path for (path,) in rows(db_path, "SELECT url_path FROM website_event")}
    assert set(senders.acknowledged) <= stored
    size_after = wal.stat().st_size if wal.exists() else 0
    print(f"WAL during: max {max(sizes_during)} bytes; after: {size_after} bytes")
    assert size_after <= collector.WAL_SIZE_LIMIT_BYTES
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
