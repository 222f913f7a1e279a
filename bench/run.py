"""footfall's benchmark: every figure of the performance targets, measured against a baseline in the same run.

    python bench/run.py            # ~7 minutes (+11 the first time: the 10M-event database); needs wrk; prints a table
    python bench/run.py --quick    # 1 run of each instead of 3, shorter fill, a 1M-event summary database

Method: `footfall serve` (exactly as users start it, one process) and a bare Litestar app that only decodes the same body
(bench/baseline.py) are each loaded by wrk from another process on 127.0.0.1 (bench/send.lua: rotating paths, titles,
referrers, UTM on every fifth URL, 1,000 browser user agents with a skewed popularity). With 2+ cores the server is pinned to
CPU 0 and wrk to CPU 1. Each figure is the median of 3 runs after a warm-up, reported with its ratio to the baseline; after
every footfall run the database is checked to hold every acknowledged event (plus at most the requests in flight when wrk
stopped). Figure 6 times the summary page on a generated database (bench/summary.py, which reports more). These are
measurements, not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector  # noqa: E402
import footfall.cli  # noqa: E402
import footfall.rollups  # noqa: E402
from common import PIN, Server, free_port, pinned, rss_mb  # noqa: E402

CONNECTIONS = 64


EXPORT_PEAK = """
import os, resource, sys
sys.path.insert(0, sys.argv[1])
import footfall.cli
footfall.cli.main(["export", "--db", sys.argv[2], "--format", "csv", "-o", os.devnull])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def footfall(db: Path) -> Server:
    port = free_port()
    return Server(
        [sys.executable, "-m", "footfall", "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
        port,
        db.parent,
    )


def baseline(cwd: Path) -> Server:
    port = free_port()
    return Server([sys.executable, str(ROOT / "bench" / "baseline.py"), "--port", str(port)], port, cwd)


def wrk(port: int, website: str, seconds: int, **env: str) -> dict[str, float]:
    """One wrk run; requests/s, p50/p99 latency in ms, errors, acknowledged (200) responses."""
    out = subprocess.run(
        pinned(
            1,
            [
                "wrk",
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(ROOT / "bench" / "send.lua"),
                f"http://127.0.0.1:{port}",
            ],
        ),
        capture_output=True,
        text=True,
        env={**os.environ, "WEBSITE": website, **env},
        check=True,
    ).stdout

    def latency_ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([0-9.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency_ms("50%"),
        "p99": latency_ms("99%"),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "acknowledged": int(re.search(r"ACKNOWLEDGED (\d+)", out).group(1)),
    }  # type: ignore[union-attr]


def event_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM website_event").fetchone()[0]


def website_of(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT website_id FROM website WHERE name = 'default'").fetchone()[0]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run per figure and a 200k-event fill")
    args = parser.parse_args()
    runs, seconds, fill = (1, 5, 200_000) if args.quick else (3, 10, 1_000_000)
    summary_events = 1_000_000 if args.quick else 10_000_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = baseline(work)
        base_runs = measure(base, "00000000-0000-4000-8000-000000000000", runs, seconds, None)
        base.stop()
        b_rps, b_p99 = median(base_runs, "rps"), median(base_runs, "p99")

        db = work / "footfall.db"
        starts = []
        for _ in range(3):
            probe = footfall(work / f"start{len(starts)}.db")
            starts.append(probe.startup_s)
            probe.stop()
        server = footfall(db)
        website = website_of(db)
        time.sleep(1)
        idle = rss_mb(server.process.pid)
        send_runs = measure(server, website, runs, seconds, db)
        f_rps, f_p99 = median(send_runs, "rps"), median(send_runs, "p99")
        storm_runs = measure(server, website, runs, seconds, db, UNIQUE_UA="1")
        batch_runs = measure(server, website, runs, seconds, db, per_request=100, BATCH="100")
        wal_peak = 0
        while event_rows(db) < fill:  # fill to the disk figure's size with batches
            wrk(server.port, website, 5, BATCH="100")
            wal = db.with_name(db.name + "-wal")
            wal_peak = max(wal_peak, wal.stat().st_size if wal.exists() else 0)
        peak = rss_mb(server.process.pid, "VmHWM")
        idle_after = rss_mb(server.process.pid)
        server.stop()
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
        export_start = time.monotonic()
        # In a process of its own, which reports its own peak RSS (the children's maximum would be the server's).
        export_rss = float(
            subprocess.run(
                [sys.executable, "-c", EXPORT_PEAK, str(ROOT), str(db)], check=True, capture_output=True, text=True
            ).stdout
        )
        export_s = time.monotonic() - export_start

    # 6: the summary page over a generated database (bench/summary.py; made once and kept in /tmp).
    import summary  # bench/summary.py

    big = summary.ensure_database(summary_events)
    website_big = summary.bench_website(big)
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
    with contextlib.closing(sqlite3.connect(big)) as conn:  # rollups of events spread over a month, per event
        big_total = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
        rollups = (
            conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name LIKE 'rollup%')"
            ).fetchone()[0]
            or 0
        )

    def lat(results: list[dict[str, float]]) -> str:
        return (
            f"p50 {median(results, 'p50'):.1f} ms, p99 {median(results, 'p99'):.1f} ms, errors {median(results, 'errors'):.0f}"
        )

    rows.append(("baseline: bare Litestar decode + answer", f"{b_rps:,.0f} req/s", lat(base_runs), ""))
    rows.append(
        (
            "1. /api/send pageviews",
            f"{f_rps:,.0f} req/s",
            lat(send_runs),
            f"{f_rps / b_rps:.0%} of baseline (target ≥ 75%); p99 {f_p99 / b_p99:.2f}x baseline (target ≤ 1.5x)",
        )
    )
    s_rps = median(storm_runs, "rps")
    rows.append(
        (
            "2. unique user-agent storm",
            f"{s_rps:,.0f} req/s",
            lat(storm_runs),
            f"{s_rps / f_rps:.0%} of target 1 (target ≥ 60%)",
        )
    )
    e_rate = median(batch_runs, "rps") * 100
    rows.append(("3. /api/batch of 100 events", f"{e_rate:,.0f} events/s", lat(batch_runs), "target ≥ 30,000 events/s"))
    rows.append(
        (
            "4. RSS idle / peak / idle after",
            f"{idle:.0f} / {peak:.0f} / {idle_after:.0f} MB",
            "",
            "target idle ≤ 60 MB with embedded geo, peak ≤ 100 MB",
        )
    )
    rows.append(
        (
            "5. disk per event (table + index)",
            f"{on_disk / total:.0f} bytes",
            f"{total:,} events",
            f"target ≤ 200 bytes; WAL peak {wal_peak / 1e6:.1f} MB; rollups built in {rollup_s:.0f} s",
        )
    )
    rows.append(
        (
            "5. summary rollups per event",
            f"{rollups / big_total:.0f} bytes",
            f"{big_total:,} events over 30 days",
            "hourly and daily rollups of the figure-6 database",
        )
    )
    rows.append(
        (
            "6. summary page 30 d / 12 months",
            f"{timing['30 d']:.0f} / {timing['12 months']:.0f} ms",
            f"JSON 30 d {timing['JSON 30 d']:.0f} ms, {summary_events:,} events",
            f"target ≤ 500 ms / ≤ 2 s; server peak RSS {summary_peak:.0f} MB",
        )
    )
    rows.append(("7. start-up to first answer", f"{statistics.median(starts) * 1000:.0f} ms", "median of 3", "target ≤ 1 s"))
    rows.append(
        (
            "7. export of all events (CSV)",
            f"{export_s:.1f} s",
            f"{total:,} rows",
            f"peak RSS {export_rss:.0f} MB (constant memory)",
        )
    )
    print(
        f"footfall benchmark — {os.cpu_count()} CPUs, {'server on CPU 0, wrk on CPU 1' if PIN else 'unpinned'}, "
        f"{CONNECTIONS} connections, median of {runs} × {seconds} s runs, Python {sys.version.split()[0]}\n"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, detail, note in rows:
        print(f"{name:<{width}}  {value:>22}  {detail:<44}  {note}")


if __name__ == "__main__":
    main()
