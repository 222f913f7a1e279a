"""Nothing acknowledged is lost: kill -9 under load, and people reading the live file while clients send at full rate."""

from __future__ import annotations

import os
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

import footfall.upkeep
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
                    response = http.post(
                        "/api/send", json={"type": "event", "payload": {"website": self.website, "url": path}}
                    )
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
        deadline = time.monotonic() + 30  # a busy machine may take seconds to get the first answers back
        while len(senders.acknowledged) <= 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 0.8))  # then kill mid-stream, at a moment that differs per round
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
    print(f"kill -9: 5 rounds, {len(acknowledged)} acknowledged events all stored once, {len(stored)} rows")


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
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(db_path), mode, str(until)]) for mode in ("count", "group", "long")
    ]
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
    print(f"live readers: {len(senders.acknowledged)} events acknowledged, 0 failed")
    stored = {path for (path,) in rows(db_path, "SELECT url_path FROM website_event")}
    assert set(senders.acknowledged) <= stored
    size_after = wal.stat().st_size if wal.exists() else 0
    print(f"WAL during: max {max(sizes_during)} bytes; after: {size_after} bytes")
    assert size_after <= collector.WAL_SIZE_LIMIT_BYTES
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_overload_sheds_with_503_and_recovers(db_path: Path) -> None:
    """When events arrive faster than they can be written (here: the writer held up by another process's lock), the queue
    stays bounded, the excess gets 503 + Retry-After, memory stays bounded, and footfall recovers when the load drops —
    with nothing it acknowledged missing."""
    server = LiveServer(db_path, "--write-queue-max", "8", "--batch-max-items", "1", "--busy-timeout-ms", "30000")
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    retry_after: list[str] = []
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    senders = Senders(server.url, website, clients=16, tag="overload")

    time.sleep(3)  # the writer is stuck: 8 events wait, the other clients' requests are shed
    with httpx.Client(base_url=server.url, headers={"User-Agent": FIREFOX}) as http:
        shed = http.post("/api/send", json={"type": "event", "payload": {"website": website, "url": "/probe"}})
        retry_after.append(shed.headers.get("retry-after", ""))
    assert shed.status_code == 503 and retry_after == ["1"]
    peak_while_stuck = rss_kb(server.process.pid, "VmRSS")
    locker.execute("ROLLBACK")
    locker.close()
    time.sleep(1)  # the backlog drains while the load goes on
    senders.stop()  # the load drops
    failures_before_recovery = len(senders.failures)
    with httpx.Client(base_url=server.url, headers={"User-Agent": FIREFOX}) as http:
        recovered = http.post("/api/send", json={"type": "event", "payload": {"website": website, "url": "/after"}})
    assert server.stop() == 0
    assert recovered.status_code == 200
    assert failures_before_recovery > 0 and all(f.startswith("503") for f in senders.failures)
    assert peak_while_stuck < 200 * 1024, peak_while_stuck  # KB: bounded, not one object per refused request
    stored = {path for (path,) in rows(db_path, "SELECT url_path FROM website_event")}
    assert set(senders.acknowledged) <= stored and "/after" in stored


#: The default suite's soak: two minutes, enough to show a leak of a few hundred bytes per request.
SOAK_SECONDS = int(os.environ.get("FOOTFALL_SOAK_SECONDS", "120"))
#: The long soak runs only when asked for (FOOTFALL_LONG_SOAK=1): 30 minutes, as issue #19's target states it.
LONG_SOAK_SECONDS = 1800


def soak(db_path: Path, seconds: int, clients: int, quiet: bool = False) -> tuple[int, int, int, list[float], list[float]]:
    """A paced load (~100 requests/s per client) for ``seconds``: RSS (KB, median of 5 s) after a warm-up and at the end,
    the WAL's largest size, and the latencies of the first and last windows; every acknowledged event must be stored.

    ``quiet``: take both RSS readings in a pause of the load, once upkeep has handed the burst's free memory back (the
    memory task, after a tick without commits), so that what is compared is what the server keeps, not what a noisy
    neighbour made it queue at that moment."""
    import statistics

    server = LiveServer(db_path)
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    latencies: list[tuple[float, float]] = []
    stop = threading.Event()
    running = threading.Event()
    running.set()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def paced(n: int) -> None:
        with httpx.Client(base_url=server.url, headers={"User-Agent": f"{FIREFOX} soak/{n % 50}"}) as http:
            i = 0
            while not stop.is_set():
                running.wait()
                start = time.monotonic()
                path = f"/soak/{n}/{i}"
                i += 1
                response = http.post("/api/send", json={"type": "event", "payload": {"website": website, "url": path}})
                took = time.monotonic() - start
                with lock:
                    latencies.append((start, took))
                    if response.status_code == 200:
                        acknowledged.append(path)
                time.sleep(max(0.0, 0.01 - took))

    def rss_median() -> int:  # five samples a second apart: one noisy moment does not decide
        if quiet:
            time.sleep(3 * footfall.upkeep.TICK_SECONDS)
        samples = []
        for _ in range(5):
            samples.append(rss_kb(server.process.pid, "VmRSS"))
            time.sleep(1)
        return int(statistics.median(samples))

    threads = [threading.Thread(target=paced, args=(n,), daemon=True) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    warm = min(60, seconds // 4)
    time.sleep(warm)
    if quiet:
        running.clear()
    rss_start = rss_median()
    running.set()
    wal = db_path.with_name(db_path.name + "-wal")
    wal_max = 0
    while time.monotonic() - began < seconds - 5:
        wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
        time.sleep(1)
    if quiet:
        running.clear()
    rss_end = rss_median()
    stop.set()
    running.set()
    for thread in threads:
        thread.join(30)
    assert server.stop() == 0
    assert set(acknowledged) <= {path for (path,) in rows(db_path, "SELECT url_path FROM website_event")}
    first = [t for s, t in latencies if warm <= s - began < warm * 2]
    last = [t for s, t in latencies if s - began >= seconds - warm]
    print(
        f"soak {seconds}s x {clients} clients: {len(latencies)} requests, RSS {rss_start} -> {rss_end} KB, WAL max {wal_max} B"
    )
    return rss_start, rss_end, wal_max, first, last


def p99(values: list[float]) -> float:
    import statistics

    return statistics.quantiles(values, n=100)[98]


def test_soak(db_path: Path) -> None:
    """Two minutes of steady load: RSS, read in a pause after warm-up and at the end, grows by at most 10 MB (a leak of
    100 bytes a request adds ~10; reading in a pause keeps a noisy neighbour's queueing out of it), the WAL stays bounded, latency stays stable, and every acknowledged event is stored."""
    import collector

    rss_start, rss_end, wal_max, first, last = soak(db_path, SOAK_SECONDS, clients=8, quiet=True)
    assert rss_end - rss_start <= 10 * 1024, (rss_start, rss_end)
    assert wal_max <= collector.WAL_SIZE_LIMIT_BYTES
    assert p99(last) <= max(3 * p99(first), 0.05)


@pytest.mark.skipif(not os.environ.get("FOOTFALL_LONG_SOAK"), reason="30 minutes: set FOOTFALL_LONG_SOAK=1 to run it")
def test_long_soak(db_path: Path) -> None:
    """Issue #19's soak: 30 minutes at about half of one core's capacity; RSS at most +5 % after warm-up."""
    rss_start, rss_end, _, first, last = soak(db_path, LONG_SOAK_SECONDS, clients=12)
    assert rss_end <= rss_start * 1.05, (rss_start, rss_end)
    assert p99(last) <= max(3 * p99(first), 0.05)
