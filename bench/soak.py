"""A long steady load at half of footfall's measured capacity: does memory stay flat after warm-up?

    python bench/soak.py                 # 30 minutes (the issue's figure): capacity measured first, then half of it
    python bench/soak.py --minutes 5     # a shorter run

Method: `footfall serve` pinned to CPU 0 (as bench/run.py starts it), wrk on CPU 1 with bench/send.lua. First 10 s at full
load give the capacity (acknowledged requests per second); then wrk runs paced (send.lua's DELAY_MS: each of the 64
connections waits between requests) at half that rate for the whole soak. RSS is sampled every 10 s; the figure is the
growth from the end of warm-up (the first sixth, at most 5 minutes) to the highest sample after it. Afterwards the database
must hold every acknowledged event. A measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import CONNECTIONS, Server, event_rows, footfall_server, rss_mb, website_of, wrk  # noqa: E402


def soak(server: Server, website: str, db: Path, minutes: float, rate: float) -> dict[str, float]:
    """Run wrk paced at ``rate`` requests/s for ``minutes`` against a running server; RSS samples and counts."""
    seconds = max(30, int(minutes * 60))
    delay_ms = max(1, int(CONNECTIONS / rate * 1000))
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not done.wait(10):
            samples.append((time.monotonic() - began, rss_mb(server.process.pid)))

    before = event_rows(db)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = wrk(server.port, website, seconds, DELAY_MS=str(delay_ms))
    done.set()
    sampler.join()
    time.sleep(1)
    stored = event_rows(db) - before
    warm = min(300, seconds / 6)
    start = next((rss for at, rss in samples if at >= warm), samples[0][1] if samples else float("nan"))
    later = [rss for at, rss in samples if at > warm] or [start]
    return {
        "seconds": seconds,
        "rate": result["rps"],
        "target": rate,
        "rss_start": start,
        "rss_max": max(later),
        "rss_end": later[-1],
        "growth": max(later) / start - 1,
        "acknowledged": result["acknowledged"],
        "stored": stored,
        "p99": result["p99"],
    }


def describe(figures: dict[str, float]) -> str:
    return (
        f"{figures['seconds'] / 60:.1f} min at {figures['rate']:,.0f} req/s (half capacity): RSS {figures['rss_start']:.1f} MB "
        f"after warm-up, max {figures['rss_max']:.1f} MB ({figures['growth']:+.1%}); p99 {figures['p99']:.1f} ms; "
        f"{figures['acknowledged']:,} acknowledged, {figures['stored']:,} stored"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "footfall.db"
        server = footfall_server(db)
        website = website_of(db)
        wrk(server.port, website, 2)  # warm-up
        capacity = wrk(server.port, website, 10)["rps"]
        figures = soak(server, website, db, args.minutes, capacity / 2)
        server.stop()
    print(f"capacity {capacity:,.0f} req/s; soak {describe(figures)}")
    if not figures["acknowledged"] <= figures["stored"] <= figures["acknowledged"] + CONNECTIONS:
        raise SystemExit(f"LOST EVENTS: {figures['acknowledged']} acknowledged, {figures['stored']} stored")


if __name__ == "__main__":
    main()
