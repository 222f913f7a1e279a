"""footfall's benchmark: every figure of the performance targets, measured against a baseline in the same run.

    python bench/run.py            # ~40 minutes (30 of them the soak; +11 the first time: the 10M-event database)
    python bench/run.py --quick    # 1 run of each instead of 3, shorter fill, a 1M-event summary database, 2-minute soak
    python bench/run.py --soak-minutes 0   # everything but the soak (bench/soak.py runs it alone)

Method: `footfall serve` (exactly as users start it, one process) and a bare Litestar app that only decodes the same body
(bench/baseline.py) are each loaded by wrk from another process on 127.0.0.1 (bench/send.lua: rotating paths, titles,
referrers, UTM on every fifth URL, 1,000 browser user agents with a skewed popularity). With 2+ cores the server is pinned to
CPU 0 and wrk to CPU 1. Each figure is the median of 3 runs after a warm-up, reported with its ratio to the baseline; after
every footfall run the database is checked to hold every acknowledged event (plus at most the requests in flight when wrk
stopped), and the table prints both counts. Memory: RSS right after start and after the first 4 requests of a fresh server;
the highest RSS while the send figure runs; 48 concurrent maximal batches (500 items x 50 data keys, just under 1 MiB),
twice, against a fresh server (peak, and 10 s after); the soak (bench/soak.py: half the measured capacity, RSS growth after
warm-up). Figure 6 times the summary page on a generated database (bench/summary.py, which reports more). These are
measurements, not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
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

from common import (  # noqa: E402
    CONNECTIONS,
    FIREFOX,
    PIN,
    Server,
    concurrent_posts,
    event_rows,
    footfall_server,
    free_port,
    maximal_batch,
    pinned,
    post,
    rss_mb,
    website_of,
    wrk,
)

import collector  # noqa: E402
import footfall.cli  # noqa: E402
import footfall.rollups  # noqa: E402

EXPORT_PEAK = """
import os, resource, sys
sys.path.insert(0, sys.argv[1])
import footfall.cli
footfall.cli.main(["export", "--db", sys.argv[2], "--format", "csv", "-o", os.devnull])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def baseline(cwd: Path) -> Server:
    port = free_port()
    return Server([sys.executable, str(ROOT / "bench" / "baseline.py"), "--port", str(port)], port, cwd)


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def measure(
    server: Server, website: str, runs: int, seconds: int, db: Path | None, per_request: int = 1, **env: str
) -> list[dict[str, float]]:
    wrk(server.port, website, 2, **env)  # warm-up
    time.sleep(0.5)  # its requests in flight are committed before counting starts
    results = []
    for _ in range(runs):
        before = event_rows(db) if db else 0
        result = wrk(server.port, website, seconds, **env)
        if db is not None:
            time.sleep(0.5)  # let the writer commit what was in flight when wrk stopped
            stored = event_rows(db) - before
            acknowledged = result["acknowledged"] * per_request
            if not acknowledged <= stored <= acknowledged + CONNECTIONS * per_request:
                raise SystemExit(f"LOST EVENTS: {acknowledged} acknowledged, {stored} stored")
            result["stored"] = stored
        results.append(result)
    return results


class RssPeak:
    """The highest RSS of a process while a block runs, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._done = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def first_requests(work: Path) -> tuple[float, float]:
    """RSS of a fresh `footfall serve` (embedded geo on) right after start, and once it has answered 4 pageviews."""
    db = work / "fresh.db"
    server = footfall_server(db)
    website = website_of(db)
    time.sleep(1)
    at_start = rss_mb(server.process.pid)
    for n in range(4):
        body = f'{{"type":"event","payload":{{"website":"{website}","url":"/first/{n}"}}}}'.encode()
        assert post(server.port, "/api/send", body, f"{FIREFOX} first/{n}") == 200
    time.sleep(1)
    after = rss_mb(server.process.pid)
    server.stop()
    return at_start, after


def hostile_batches(work: Path) -> dict[str, float]:
    """48 concurrent maximal batches, twice, against a fresh server: peak RSS, RSS 10 s after, answers and rows."""
    db = work / "hostile.db"
    server = footfall_server(db)
    website = website_of(db)
    statuses: list[int] = []
    for round_ in range(2):
        statuses += concurrent_posts(server.port, "/api/batch", [maximal_batch(website, round_ * 48 + n) for n in range(48)])
    time.sleep(10)
    figures = {
        "peak": rss_mb(server.process.pid, "VmHWM"),
        "after": rss_mb(server.process.pid),
        "accepted": statuses.count(200),
        "refused": statuses.count(503),
        "other": len(statuses) - statuses.count(200) - statuses.count(503),
        "stored": event_rows(db),
    }
    server.stop()
    if figures["stored"] != figures["accepted"] * 500:
        raise SystemExit(f"LOST EVENTS: {figures['accepted']} batches of 500 acknowledged, {figures['stored']} stored")
    return figures


def counts(results: list[dict[str, float]], per_request: int = 1) -> str:
    """Acknowledged events and stored rows over all runs of a figure."""
    acknowledged = int(sum(r["acknowledged"] for r in results)) * per_request
    return f"{acknowledged:,} acknowledged, {int(sum(r['stored'] for r in results)):,} stored"


#: Width of the figure names, so that the rows printed one by one line up.
WIDTH = 52


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run per figure, a 200k-event fill and a 2-minute soak")
    parser.add_argument("--soak-minutes", type=float, help="length of the soak (default 30; --quick: 2; 0: no soak)")
    args = parser.parse_args()
    runs, seconds, fill = (1, 5, 200_000) if args.quick else (3, 10, 1_000_000)
    soak_minutes = args.soak_minutes if args.soak_minutes is not None else (2 if args.quick else 30)
    summary_events = 1_000_000 if args.quick else 10_000_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    print(
        f"footfall benchmark — {os.cpu_count()} CPUs, {'server on CPU 0, wrk on CPU 1' if PIN else 'unpinned'}, "
        f"{CONNECTIONS} connections, median of {runs} × {seconds} s runs, Python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.1f} at the start\n",
        flush=True,
    )

    def row(name: str, value: str, detail: str, note: str = "") -> None:  # printed as measured: a late failure keeps them
        print(f"{name:<{WIDTH}}  {value:>18}  {detail:<48}  {note}", flush=True)

    def lat(results: list[dict[str, float]]) -> str:
        return (
            f"p50 {median(results, 'p50'):.1f} ms, p99 {median(results, 'p99'):.1f} ms, errors {median(results, 'errors'):.0f}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = baseline(work)
        base_runs = measure(base, "00000000-0000-4000-8000-000000000000", runs, seconds, None)
        base_batch_runs = measure(base, "00000000-0000-4000-8000-000000000000", runs, seconds, None, BATCH="100")
        base.stop()
        b_rps, b_p99 = median(base_runs, "rps"), median(base_runs, "p99")
        b_events = median(base_batch_runs, "rps") * 100
        row("baseline: bare Litestar decode + answer", f"{b_rps:,.0f} req/s", lat(base_runs))
        row("baseline: bare Litestar decode of a 100-event batch", f"{b_events:,.0f} events/s", lat(base_batch_runs))

        # Each on a fresh server of its own, before the one the load figures use starts.
        rss_start, rss_first = first_requests(work)
        row(
            "4. RSS right after start / after 4 requests",
            f"{rss_start:.1f} / {rss_first:.1f} MB",
            "fresh server, embedded geo on",
            "target ≤ 60 MB idle after traffic",
        )
        hostile = hostile_batches(work)
        row(
            "4. 48 maximal batches, twice",
            f"{hostile['peak']:.0f} / {hostile['after']:.0f} MB",
            f"peak / 10 s after; {hostile['accepted']:.0f} x 200, {hostile['refused']:.0f} x 503",
            f"target ≤ 150 / ≤ 80 MB; {hostile['accepted'] * 500:,.0f} events acknowledged, {hostile['stored']:,.0f} stored",
        )

        db = work / "footfall.db"
        server = footfall_server(db)
        website = website_of(db)
        time.sleep(1)
        idle = rss_mb(server.process.pid)
        with RssPeak(server.process.pid) as under_send:
            send_runs = measure(server, website, runs, seconds, db)
        f_rps, f_p99 = median(send_runs, "rps"), median(send_runs, "p99")
        row(
            "1. /api/send pageviews",
            f"{f_rps:,.0f} req/s",
            lat(send_runs),
            f"{f_rps / b_rps:.2f} of baseline (target ≥ 0.75); {counts(send_runs)}",
        )
        row("1. p99 at 64 connections", f"{f_p99:.1f} ms", f"baseline {b_p99:.1f} ms", f"{f_p99 / b_p99:.2f}x (target ≤ 1.5x)")
        storm_runs = measure(server, website, runs, seconds, db, UNIQUE_UA="1")
        s_rps = median(storm_runs, "rps")
        row(
            "2. unique user-agent storm",
            f"{s_rps:,.0f} req/s",
            lat(storm_runs),
            f"{s_rps / f_rps:.2f} of figure 1 (target ≥ 0.60, aim 0.8); {counts(storm_runs)}",
        )
        batch_runs = measure(server, website, runs, seconds, db, per_request=100, BATCH="100")
        e_rate = median(batch_runs, "rps") * 100
        row(
            "3. /api/batch of 100 events",
            f"{e_rate:,.0f} events/s",
            lat(batch_runs),
            f"{e_rate / b_events:.2f} of the bare batch decode (target ≥ 0.12, ≥ 30,000 events/s); {counts(batch_runs, 100)}",
        )
        row("4. RSS under the send load", f"{under_send.peak:.0f} MB", f"idle {idle:.0f} MB before it", "target ≤ 100 MB")
        if soak_minutes > 0:  # on its own server, so the fill and the figures above do not count in its memory
            import soak  # bench/soak.py

            soak_db = work / "soak.db"
            soak_server = footfall_server(soak_db)
            soaked = soak.soak(soak_server, website_of(soak_db), soak_db, soak_minutes, f_rps / 2)
            soak_server.stop()
            row(
                f"4. soak, {soaked['seconds'] / 60:.0f} min at half capacity",
                f"{soaked['growth']:+.1%} RSS",
                f"{soaked['rss_start']:.1f} -> max {soaked['rss_max']:.1f} MB, {soaked['rate']:,.0f} req/s",
                f"target ≤ +5% after warm-up; {soaked['acknowledged']:,} acknowledged, {soaked['stored']:,} stored",
            )
        wal_peak = 0
        while event_rows(db) < fill:  # fill to the disk figure's size with batches
            wrk(server.port, website, 5, BATCH="100")
            wal = db.with_name(db.name + "-wal")
            wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
        peak = rss_mb(server.process.pid, "VmHWM")
        idle_after = rss_mb(server.process.pid)
        server.stop()
        row(
            "4. RSS after all the load above",
            f"{idle_after:.0f} MB",
            f"peak {peak:.0f} MB during the fill",
            f"{fill:,}+ events, storms of new sessions included",
        )
        with contextlib.closing(collector.connect(str(db))) as conn:  # the rollups of the filled database, from nothing
            footfall.rollups.reset_rollups(conn, 0)
            rollup_start = time.monotonic()
            footfall.rollups.refresh_rollups(conn, 0)
            rollup_s = time.monotonic() - rollup_start
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            total = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
            on_disk = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master "
                "WHERE tbl_name = 'website_event')"
            ).fetchone()[0]
        row(
            "5. disk per event (table + index)",
            f"{on_disk / total:.0f} bytes",
            f"{total:,} events",
            f"target ≤ 200 bytes; WAL peak {wal_peak / 1e6:.1f} MB; rollups built in {rollup_s:.0f} s",
        )
        export_start = time.monotonic()
        # In a process of its own, which reports its own peak RSS (the children's maximum would be the server's).
        export_rss = float(
            subprocess.run(
                [sys.executable, "-c", EXPORT_PEAK, str(ROOT), str(db)], check=True, capture_output=True, text=True
            ).stdout
        )
        export_s = time.monotonic() - export_start
        starts = []
        for _ in range(3):
            probe = footfall_server(work / f"start{len(starts)}.db")
            starts.append(probe.startup_s)
            probe.stop()

    # 6: the summary page over a generated database (bench/summary.py; made once and kept in /tmp).
    import summary  # bench/summary.py

    big = summary.ensure_database(summary_events)
    website_big = summary.bench_website(big)
    with contextlib.closing(collector.connect(str(big))) as conn:  # rollups current first: figure 6 times reading them
        footfall.rollups.refresh_rollups(conn, 0)
    with contextlib.closing(sqlite3.connect(big)) as conn:  # rollups of events spread over a month, per event
        big_total = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
        rollups = (
            conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name LIKE 'rollup%')"
            ).fetchone()[0]
            or 0
        )
    row(
        "5. summary rollups per event",
        f"{rollups / big_total:.0f} bytes",
        f"{big_total:,} events over 30 days",
        "hourly and daily rollups of the figure-6 database",
    )
    pages, _, summary_peak = summary.time_pages(
        big,
        [
            ("30 d", "/?period=30d"),
            ("JSON 30 d", f"/api/summary?website={website_big}&period=30d"),
            ("12 months", "/?period=12m"),
        ],
        5,
        pinned(0, []),
    )
    timing = {label: middle for label, middle, *_ in pages}
    row(
        "6. summary page 30 d / 12 months",
        f"{timing['30 d']:.0f} / {timing['12 months']:.0f} ms",
        f"JSON 30 d {timing['JSON 30 d']:.0f} ms, {summary_events:,} events",
        f"target ≤ 500 ms / ≤ 2 s; server peak RSS {summary_peak:.0f} MB",
    )
    row("7. start-up to first answer", f"{statistics.median(starts) * 1000:.0f} ms", "median of 3", "target ≤ 1 s")
    row("7. export of all events (CSV)", f"{export_s:.1f} s", f"{total:,} rows", f"peak RSS {export_rss:.0f} MB (constant memory)")


if __name__ == "__main__":
    main()
