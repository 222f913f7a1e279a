"""footfall under hostile load: memory under the largest batches, and the summary after a visit-chaining storm.

    python bench/hostile.py              # 3 rounds of each, ~6 minutes on a 2-core machine
    python bench/hostile.py --rounds 1   # one round, for a quick look

Method: `footfall serve` runs as users start it (one process, pinned to CPU 0 when there are two cores); this script sends
from CPU 1 over 127.0.0.1 and reads the server's memory from /proc.

1. Batches: 48 clients post at once one maximal /api/batch each: 500 items (the most a batch may hold) of 50 data keys
   (the most an event may have), values as long as keeps the body under the 1 MiB limit. Reported: RSS before; peak RSS
   until the last answer (VmHWM, reset through /proc/PID/clear_refs before the burst); RSS 10 s and IDLE_SECONDS after
   it, and the peak in between (upkeep refreshes the rollups of what was written then); the answers.
2. Backward storm: 17,505 pageviews of one visitor sent (in batches of 500) with timestamps 30 minutes apart going back a
   year, the attack that once chained one 364-day visit and made a summary take 39.8 s. Reported: visits stored and the
   longest, the first year's summary (which refreshes the rollups), then the year's summary (median of 5).

Each figure is the median over the rounds. These are measurements, not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector  # noqa: E402
from common import PIN, Server, free_port, rss_mb  # noqa: E402

#: A desktop browser's user agent (a bot's would only be counted).
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


#: Concurrent maximal batches in the memory test (the issue's figure).
CLIENTS = 48


#: Seconds after the burst at which the server counts as idle (upkeep refreshes the rollups of the burst meanwhile).
IDLE_SECONDS = 60


#: Events of the backward storm: one every 30 minutes for a year.
STORM_EVENTS = 17_505


def serve(db: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "footfall", "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"]
    return Server(command, port, db.parent)


def website_of(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT website_id FROM website ORDER BY website_key LIMIT 1").fetchone()[0]


def maximal_batch(website: str, client: int) -> bytes:
    """The largest batch footfall accepts: MAX_BATCH_ITEMS items of MAX_DATA_KEYS keys, just under the byte limit."""
    value_chars = 40
    while True:
        items = [
            {
                "type": "event",
                "payload": {
                    "website": website,
                    "url": f"/hostile/{client}/{i}",
                    "name": "flood",
                    "data": {
                        f"k{k:02d}": f"{client}-{i}-{k}-".ljust(value_chars, "x") for k in range(collector.MAX_DATA_KEYS)
                    },
                },
            }
            for i in range(collector.MAX_BATCH_ITEMS)
        ]
        body = msgspec.json.encode(items)
        if len(body) <= collector.MAX_BATCH_BODY_BYTES:
            return body
        value_chars -= 1


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)


def batches_round(workdir: Path) -> dict[str, float]:
    db = workdir / "batches.db"
    server = serve(db)
    try:
        website = website_of(db)
        bodies = [maximal_batch(website, n) for n in range(CLIENTS)]
        url = f"http://127.0.0.1:{server.port}/api/batch"
        headers = {"User-Agent": FIREFOX, "Content-Type": "application/json"}
        time.sleep(2)
        before = rss_mb(server.process.pid)
        reset_peak(server.process.pid)
        start = threading.Barrier(CLIENTS)

        def post(body: bytes) -> int:
            with httpx.Client(timeout=120) as http:
                start.wait()
                return http.post(url, content=body, headers=headers).status_code

        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(post, bodies))
        peak = rss_mb(server.process.pid, "VmHWM")
        time.sleep(10)
        after = rss_mb(server.process.pid)
        time.sleep(IDLE_SECONDS - 10)
        idle, later_peak = rss_mb(server.process.pid), rss_mb(server.process.pid, "VmHWM")
    finally:
        server.stop()
    return {
        "body_bytes": len(bodies[0]),
        "before": before,
        "peak": peak,
        "after": after,
        "later_peak": later_peak,
        "idle": idle,
        "ok": statuses.count(200),
        "unavailable": statuses.count(503),
        "other": len(statuses) - statuses.count(200) - statuses.count(503),
    }


def storm_round(workdir: Path) -> dict[str, float]:
    db = workdir / f"storm-{uuid.uuid4().hex[:8]}.db"
    server = serve(db)
    try:
        website = website_of(db)
        now = int(time.time())
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base, timeout=120, headers={"User-Agent": FIREFOX}) as http:
            for first in range(0, STORM_EVENTS, collector.MAX_BATCH_ITEMS):
                batch = [
                    {"type": "event", "payload": {"website": website, "url": f"/p{i % 50}", "timestamp": now - i * 1800}}
                    for i in range(first, min(STORM_EVENTS, first + collector.MAX_BATCH_ITEMS))
                ]
                answer = http.post("/api/batch", json=batch)
                assert answer.status_code == 200 and answer.json()["errors"] == 0, answer.text
            params = {"website": website, "start": str(now - 365 * 86400), "end": str(now + 3600)}
            started = time.perf_counter()
            first_answer = http.get("/api/summary", params=params)
            first_s = time.perf_counter() - started
            assert first_answer.status_code == 200, first_answer.text
            times = []
            for _ in range(5):
                started = time.perf_counter()
                assert http.get("/api/summary", params=params).status_code == 200
                times.append(time.perf_counter() - started)
        visits = first_answer.json()["totals"]["visits"]["value"]
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        stored, longest = conn.execute("SELECT count(*), max(duration_s) FROM visits").fetchone()
    return {
        "stored": stored,
        "longest_s": longest,
        "counted": visits,
        "first_s": first_s,
        "summary_s": statistics.median(times),
    }


def median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if PIN:
        os.sched_setaffinity(0, {1})
    load = os.getloadavg()[0]  # the machine may be shared: a busy one stretches every time below
    with tempfile.TemporaryDirectory(prefix="footfall-hostile-") as tmp:
        workdir = Path(tmp)
        batches, storms = [], []
        for n in range(args.rounds):
            batches.append(batches_round(workdir))
            (workdir / "batches.db").unlink()
            storms.append(storm_round(workdir))
            print(f"round {n + 1}: {batches[-1]} {storms[-1]}", file=sys.stderr)
    machine = f"{platform.machine()}, {os.cpu_count()} cores (nproc), Linux {platform.release()}"
    print(f"footfall under hostile load, {dt.date.today()}, {machine}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, load average {load:.1f} at the start; medians of {args.rounds} rounds")  # fmt: skip
    print(f"{CLIENTS} concurrent maximal batches ({collector.MAX_BATCH_ITEMS} items x {collector.MAX_DATA_KEYS} data keys, "
          f"{int(batches[0]['body_bytes']):,} bytes each):")  # fmt: skip
    print(f"  RSS before                        {median(batches, 'before'):7.1f} MB")
    print(f"  peak RSS until the last answer    {median(batches, 'peak'):7.1f} MB")
    print(f"  RSS 10 s after the last answer    {median(batches, 'after'):7.1f} MB")
    print(f"  peak RSS within {IDLE_SECONDS} s after it      {median(batches, 'later_peak'):7.1f} MB")
    print(f"  RSS {IDLE_SECONDS} s after the last answer    {median(batches, 'idle'):7.1f} MB")
    print(f"  answers                           {median(batches, 'ok'):.0f} x 200, {median(batches, 'unavailable'):.0f} x 503, "
          f"{median(batches, 'other'):.0f} other")  # fmt: skip
    print(f"{STORM_EVENTS:,} pageviews of one visitor sent backwards in time, 30 minutes apart:")
    print(
        f"  visits stored                     {median(storms, 'stored'):7,.0f} (longest {median(storms, 'longest_s'):.0f} s)"
    )
    print(f"  visits the year's summary counts  {median(storms, 'counted'):7,.0f}")
    print(f"  first year's summary (refreshes)  {median(storms, 'first_s'):7.2f} s")
    print(f"  year's summary (median of 5)      {median(storms, 'summary_s'):7.3f} s")
    print(f"reproduce: python bench/hostile.py --rounds {args.rounds}")


if __name__ == "__main__":
    main()
