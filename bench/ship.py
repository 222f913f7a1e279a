"""Past one machine (issue #20): `footfall ship clickhouse` throughput into chDB, and Litestream's replica lag under load.

    python bench/ship.py                                  # 1M events, 3 ship runs, 20 s of replica lag at 500 events/s
    python bench/ship.py --events 200000 --runs 1 --lag-seconds 10

Ship: `footfall ship clickhouse --chdb DIR --once` run as users run it (a subprocess), on bench/summary.py's generated
database (a copy each run, so the position starts at 0) into a fresh chDB directory; events/s = events / wall time of the
command, median of --runs; peak RSS of that process. Baseline, measured in the same run: the very same rows inserted
straight into chDB with clickhouse-connect (footfall reads and maps them first, untimed), so the ratio shows what ship's
reading, mapping and position-keeping add to ClickHouse's own insert cost. Two more runs with --batch-size 2000 and 50000
show that memory follows the batch size, not the database size.

Lag: `litestream replicate -exec "footfall serve --wal-autocheckpoint 0"` with the README's litestream.yml (a directory
replica instead of S3, default sync interval), and `litestream restore -f` following the replica into another file. A
sender posts batches of 50 events at --lag-rate events/s and, every half second, a marker pageview; lag = time from the
marker's 200 to its row appearing in the followed copy, median and 95th percentile. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402

import collector  # noqa: E402
from footfall import clickhouse, ship  # noqa: E402
from summary import ensure_database  # noqa: E402

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
BIN = Path(sys.executable).parent


def copy_db(source: Path, dest: Path) -> None:
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(dest)) as dst:
        src.backup(dst)


def ship_run(db: Path, work: Path, batch_size: int) -> tuple[float, float, int]:
    """One `footfall ship clickhouse --once` on a fresh copy: (wall seconds, peak RSS MB, events shipped)."""
    copy, target = work / "ship.db", work / f"chdb-{batch_size}-{time.monotonic_ns()}"
    copy_db(db, copy)
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            str(BIN / "footfall"),
            "ship",
            "clickhouse",
            "--chdb",
            str(target),
            "--batch-size",
            str(batch_size),
            "--db",
            str(copy),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode() if process.stdout else ""
    assert os.waitstatus_to_exitcode(status) == 0, output
    events = int(output.split()[1])
    shutil.rmtree(target, ignore_errors=True)
    copy.unlink()
    return seconds, usage.ru_maxrss / 1024, events


def insert_baseline(db: Path, work: Path, batch_size: int) -> float:
    """Seconds ClickHouse alone takes to insert the rows ship sends (tables made first; reading and mapping untimed)."""
    target = clickhouse.open_target(None, str(work / "chdb-baseline"), "umami", os.environ)
    try:
        clickhouse.ensure_schema(target)
        spent, after = 0.0, 0
        with contextlib.closing(collector.connect(str(db))) as conn:
            secret = conn.execute("SELECT value FROM setting WHERE name = 'install_secret'").fetchone()[0]
            while (batch := ship.read_batch(conn, secret, after, batch_size)) is not None:
                started = time.perf_counter()
                for table, rows in batch.tables.items():
                    target.insert(table, ship._TABLE_COLUMNS[table], [encoded for _, encoded in rows], f"b-{table}-{after}")
                spent += time.perf_counter() - started
                after = batch.last
        return spent
    finally:
        target.close()


def replica_lag(work: Path, seconds: float, rate: float) -> tuple[list[float], int]:
    """Marker lags (s) while footfall under Litestream takes ``rate`` events/s, and the events acknowledged."""
    db, replica, follower = work / "live.db", work / "replica", work / "followed.db"
    config = work / "litestream.yml"
    config.write_text(f"dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {replica}\n")
    collector.prepare_database(str(db))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        website = conn.execute("SELECT website_id FROM website").fetchone()[0]
    port = 18000 + os.getpid() % 1000
    litestream = str(BIN / "litestream")
    serve = f"{BIN / 'footfall'} serve --db {db} --port {port} --wal-autocheckpoint 0"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    primary = subprocess.Popen([litestream, "replicate", "-config", str(config), "-exec", serve], **quiet)  # type: ignore[call-overload]
    url = f"http://127.0.0.1:{port}"
    follow = None
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/api/heartbeat", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        client = httpx.Client(base_url=url, headers={"User-Agent": FIREFOX}, timeout=10)
        client.post("/api/send", json={"type": "event", "payload": {"website": website, "url": "/warm-up"}})
        time.sleep(3)  # the first snapshot reaches the replica
        follow = subprocess.Popen(
            [litestream, "restore", "-f", "-follow-interval", "100ms", "-o", str(follower), f"file://{replica}"], **quiet
        )  # type: ignore[call-overload]
        while not follower.exists():
            time.sleep(0.1)
        acked: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop = time.monotonic() + seconds
        sent = [0]

        def load() -> None:
            with httpx.Client(base_url=url, headers={"User-Agent": FIREFOX}, timeout=10) as sender:
                n, started = 0, time.monotonic()
                while time.monotonic() < stop:
                    batch = [{"type": "event", "payload": {"website": website, "url": f"/load/{n + i}"}} for i in range(50)]
                    if sender.post("/api/batch", json=batch).status_code == 200:
                        sent[0] += 50
                    n += 50
                    time.sleep(max(0.0, started + n / rate - time.monotonic()))

        def markers() -> None:
            n = 0
            while time.monotonic() < stop:
                path = f"/marker/{n}"
                if (
                    client.post("/api/send", json={"type": "event", "payload": {"website": website, "url": path}}).status_code
                    == 200
                ):
                    acked[path] = time.monotonic()
                n += 1
                time.sleep(0.5)

        threads = [threading.Thread(target=load), threading.Thread(target=markers)]
        for thread in threads:
            thread.start()
        while time.monotonic() < stop + 15 and (time.monotonic() < stop or set(acked) - set(seen)):
            with contextlib.suppress(sqlite3.Error):
                with contextlib.closing(sqlite3.connect(f"file:{follower}?mode=ro", uri=True, timeout=1)) as conn:
                    now = time.monotonic()
                    for (path,) in conn.execute("SELECT url_path FROM website_event WHERE url_path LIKE '/marker/%'"):
                        seen.setdefault(path, now)
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        return sorted(seen[p] - acked[p] for p in acked if p in seen), sent[0]
    finally:
        for process in (follow, primary):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--lag-rate", type=float, default=500)
    args = parser.parse_args()
    db = ensure_database(args.events)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        events = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
        data = conn.execute("SELECT count(*) FROM event_data").fetchone()[0]
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; {events:,} events, {data:,} data rows")
    with tempfile.TemporaryDirectory(prefix="footfall-ship-bench-") as tmp:
        work = Path(tmp)
        runs, bases = [], []
        for _ in range(args.runs):  # interleaved, so each ratio compares runs made under the same load on the machine
            runs.append(ship_run(db, work, ship.DEFAULT_BATCH_SIZE))
            bases.append(insert_baseline(db, work, ship.DEFAULT_BATCH_SIZE))
            shutil.rmtree(work / "chdb-baseline", ignore_errors=True)
        assert all(r[2] == events for r in runs)
        wall, base = statistics.median(r[0] for r in runs), statistics.median(bases)
        ratio = statistics.median(r[0] / b for r, b in zip(runs, bases))
        print(
            f"ship --batch-size {ship.DEFAULT_BATCH_SIZE}: median {wall:.1f} s = {events / wall:,.0f} events/s "
            f"(runs: {', '.join(f'{r[0]:.1f}' for r in runs)} s), peak RSS {max(r[1] for r in runs):.0f} MB"
        )
        print(
            f"baseline, ClickHouse's inserts of the same rows alone: median {base:.1f} s = {events / base:,.0f} events/s "
            f"(runs: {', '.join(f'{b:.1f}' for b in bases)} s); ship / baseline, median of pairs = {ratio:.2f}"
        )
        for size in (2000, 50_000):
            seconds, rss, _ = ship_run(db, work, size)
            print(f"ship --batch-size {size}: {seconds:.1f} s = {events / seconds:,.0f} events/s, peak RSS {rss:.0f} MB")
        lags, sent = replica_lag(work, args.lag_seconds, args.lag_rate)
        if lags:
            p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))]
            print(
                f"replica lag at {sent / args.lag_seconds:,.0f} events/s for {args.lag_seconds:g} s: median "
                f"{statistics.median(lags):.2f} s, p95 {p95:.2f} s, max {lags[-1]:.2f} s ({len(lags)} markers)"
            )
        else:
            print("replica lag: no marker reached the followed copy")


if __name__ == "__main__":
    main()
