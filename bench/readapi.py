"""How fast Umami's read API answers over bench/summary.py's database: 30 days of 10 million events (issue #18's target:
stats and metrics?type=path in ≤ 150 ms unfiltered and ≤ 500 ms filtered by a country or a page).

    python bench/readapi.py                   # 10M events (generated once by bench/summary.py's code, kept in /tmp)
    python bench/readapi.py --events 1000000  # a smaller run

Method: the database is bench/summary.py's (``ensure_database``: same generator, same shape), kept in a file of its own so
the two benchmarks never rebuild each other's rollups; its rollups are brought up to date first (timed). Then `footfall
serve` is started on it exactly as users start it, an API key is made with the code behind `footfall api-key create`, and
each request goes over loopback with the key, as an Umami client would send it. The summary page's 30-day figures are
measured in the same run, against the same server, as the baseline: the API reads the same rollups with the same
functions. Each figure is the median of --runs fetches after one warm-up (reported beside it as "first fetch": a filter's
first request computes and keeps its closed days, see footfall/segments.py). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector  # noqa: E402
import footfall.auth  # noqa: E402
import footfall.rollups  # noqa: E402
from common import free_port, rss_mb, wait_ready  # noqa: E402
from summary import bench_website, ensure_database  # noqa: E402

#: Targets of issue #18, in ms: unfiltered, and filtered by a country or a page.
TARGET_MS = {"unfiltered": 150, "filtered": 500}


def fetch_ms(url: str, headers: dict[str, str]) -> tuple[float, int, int]:
    """One GET: milliseconds, status, body bytes."""
    request = urllib.request.Request(url, headers=headers)
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        size, status = len(response.read()), response.status
    return (time.perf_counter() - start) * 1000, status, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, help="where to keep the database (default: /tmp/footfall-readapi-bench-N.db)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--filtered-runs", type=int, default=3, help="fetches of each filtered request (they are slower)")
    args = parser.parse_args()
    db = ensure_database(args.events, args.db or Path(f"/tmp/footfall-readapi-bench-{args.events}.db"))
    website = bench_website(db)
    with contextlib.closing(collector.connect(str(db))) as conn:
        count = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
        started = time.perf_counter()
        footfall.rollups.refresh_rollups(conn, 0)  # UTC, as `footfall serve` runs by default
        print(f"{count:,} events; rollups brought up to date in {time.perf_counter() - started:.0f} s", flush=True)
        name = f"bench-{int(time.time())}"
        key = footfall.auth.create_api_key(conn, name, time.time())
        country, page = conn.execute(  # the most common country and a mid-popular page, as bench/summary.py filters
            "SELECT (SELECT country FROM session GROUP BY 1 ORDER BY count(*) DESC LIMIT 1), '/docs/3'"
        ).fetchone()
    now_ms = int(time.time() * 1000)
    month = f"startAt={now_ms - 30 * 86_400_000}&endAt={now_ms}"
    site = f"/api/websites/{website}"
    cases = [
        ("page, 30 days (baseline)", "/?period=30d", "", None),
        ("JSON twin, 30 days (baseline)", f"/api/summary?website={website}&period=30d", "", None),
        ("stats, 30 days", f"{site}/stats?{month}", "unfiltered", None),
        ("metrics?type=path, 30 days", f"{site}/metrics?type=path&{month}", "unfiltered", None),
        ("pageviews by day, 30 days", f"{site}/pageviews?unit=day&{month}", "", None),
        ("metrics?type=country, 30 days", f"{site}/metrics?type=country&{month}", "", None),
        ("page, 30 days, country filter (baseline)", f"/?period=30d&country={country}", "", "filtered"),
        ("stats, 30 days, country filter", f"{site}/stats?country={country}&{month}", "filtered", "filtered"),
        (
            "metrics?type=path, 30 days, country filter",
            f"{site}/metrics?type=path&country={country}&{month}",
            "filtered",
            "filtered",
        ),
        ("stats, 30 days, page filter", f"{site}/stats?path={page}&{month}", "filtered", "filtered"),
        ("metrics?type=path, 30 days, page filter", f"{site}/metrics?type=path&path={page}&{month}", "filtered", "filtered"),
    ]
    port = free_port()
    command = [sys.executable, "-m", "footfall", "serve", "--db", str(db), "--port", str(port), "--no-embedded-geo"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        wait_ready(port, 600)
        base, headers = f"http://127.0.0.1:{port}", {"x-umami-api-key": key}
        for label, path, target, slow in cases:
            first = fetch_ms(base + path, headers)[0]  # warm-up (any rollup refresh; a filter's closed days kept)
            fetched = [fetch_ms(base + path, headers) for _ in range(args.filtered_runs if slow else args.runs)]
            assert all(status == 200 for _, status, _ in fetched), (label, fetched)
            times = [t for t, _, _ in fetched]
            results.append((label, statistics.median(times), min(times), max(times), fetched[0][2], target, first))
        peak = rss_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(60)
        with contextlib.closing(collector.connect(str(db))) as conn:
            footfall.auth.revoke_api_key(conn, name)
    print(f"\n| request ({count:,} events over 30 days) | median ms | min ms | max ms | bytes | target | first fetch ms |")
    print("|---|---|---|---|---|---|---|")
    for label, middle, low, high, size, target, first in results:
        goal = f"≤ {TARGET_MS[target]} ms: {'met' if middle <= TARGET_MS[target] else 'not met'}" if target else ""
        print(f"| {label} | {middle:,.0f} | {low:,.0f} | {high:,.0f} | {size:,} | {goal} | {first:,.0f} |")
    print(f"\nserver peak RSS {peak:.0f} MB; reproduce: python bench/readapi.py --events {args.events}")


if __name__ == "__main__":
    main()
