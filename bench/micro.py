"""Micro-benchmarks of footfall's per-request enrichment, and the idle memory of a real `footfall serve`.

Not a test: it prints medians of repeated runs, with ratios against a baseline measured in the same run.

    python bench/micro.py            # from the repository, after `pip install -e .`

Figures:
  * user-agent parsing: cached (memo hit), uncached through ua-parser's compiled resolver (footfall's path for unseen
    agents), and uncached through user-agents' own parser (the slow path footfall avoids);
  * geo lookup in the embedded country data, and through the whole locate() step;
  * RSS of `footfall serve` with and without the embedded geo data, right after start and idle again after 200 pageviews
    from 20 user agents (what a user sees once the server has answered a few requests).
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector
import footfall.agents  # noqa: E402
import footfall.geo  # noqa: E402
import footfall.upkeep  # noqa: E402

REPEATS = 5


def unique_agents(count: int, seed: int) -> list[str]:
    """Realistic, never-seen-before user agents (varying build numbers, as spoofers and bot storms send)."""
    rng = random.Random(seed)
    templates = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{a}.0.{b}.{c} Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{a} Safari/605.{b}.{c}",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{a} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{b} Mobile/15E{c} Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SM-S9{a}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{b}.0.0.{c} Mobile Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.{b}.{c}",
    ]
    return [rng.choice(templates).format(a=rng.randint(10, 140), b=rng.randint(0, 9999), c=i) for i in range(count)]


def per_call_us(fn: Callable[[str], object], inputs: list[str]) -> float:
    start = time.perf_counter()
    for value in inputs:
        fn(value)
    return (time.perf_counter() - start) / len(inputs) * 1e6


def median_of(make_inputs: Callable[[int], list], fn: Callable, count: int) -> float:
    return statistics.median(per_call_us(fn, make_inputs(seed)) for seed in range(REPEATS))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idle_rss_mb(*args: str) -> tuple[float, float, float]:
    """RSS of `footfall serve` in MB (from /proc): right after start-up, 1 s after 200 pageviews from 20 agents, and idle
    again (upkeep's quiet tick has passed)."""

    def rss(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "footfall", "serve", "--db", f"{tmp}/f.db", "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/heartbeat", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            time.sleep(1.0)
            at_start = rss(process.pid)
            import sqlite3

            with sqlite3.connect(f"{tmp}/f.db") as conn:
                website = conn.execute("SELECT website_id FROM website").fetchone()[0]
            agents = unique_agents(20, 7)
            for n in range(200):
                body = f'{{"type":"event","payload":{{"website":"{website}","url":"/p/{n % 37}"}}}}'.encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/send", body, {"User-Agent": agents[n % 20]})
                urllib.request.urlopen(request, timeout=5).read()
            time.sleep(1.0)
            right_after = rss(process.pid)
            # Idle again: a tick of upkeep without commits, then the next one, which hands what the traffic freed back.
            time.sleep(3 * footfall.upkeep.TICK_SECONDS)
            return at_start, right_after, rss(process.pid)
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    print(f"footfall micro-benchmarks — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {REPEATS} runs\n")
    rows: list[tuple[str, float, str]] = []

    cached = collector.Memo(footfall.agents.parse_agent, collector.AGENT_MEMO_BYTES)
    warm = unique_agents(1000, 99)
    for agent in warm:
        cached(agent)
    hit_us = statistics.median(per_call_us(cached, warm) for _ in range(REPEATS))
    fast_us = median_of(lambda seed: unique_agents(2000, seed), footfall.agents.parse_agent, 2000)
    slow_us = median_of(lambda seed: unique_agents(200, 1000 + seed), footfall.agents.parse_agent_slow, 200)
    rows += [
        ("UA parse, cached (memo hit)", hit_us, f"{slow_us / hit_us:,.0f}x faster than user-agents"),
        ("UA parse, uncached, ua-parser compiled resolver", fast_us, f"{slow_us / fast_us:,.1f}x faster than user-agents"),
        ("UA parse, uncached, user-agents (baseline)", slow_us, "1.0x"),
    ]

    geo = footfall.geo.load_embedded_geo()
    assert geo is not None, "embedded geo data unavailable"

    def addresses(seed: int) -> list:
        rng = random.Random(seed)
        return [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(20000)]

    lookup_us = median_of(addresses, geo.lookup, 20000)
    client = lambda address: collector.Client(address, False, False)  # noqa: E731
    locate_us = median_of(
        lambda seed: [client(a) for a in addresses(seed)], lambda c: footfall.geo.locate(c, {}, [geo]), 20000
    )
    rows += [("geo lookup, embedded country data", lookup_us, ""), ("locate() (local-address check + lookup)", locate_us, "")]
    geo.close()

    for name, value, note in rows:
        print(f"{name:<52} {value:>10.2f} µs  {note}")
    print()
    for label, args in (("no geo (baseline)", ("--no-embedded-geo",)), ("embedded geo", ())):
        runs = [idle_rss_mb(*args) for _ in range(3)]
        start, after, idle = (statistics.median(r[n] for r in runs) for n in range(3))
        print(f"{'RSS of footfall serve, ' + label + ', after start':<64} {start:>10.1f} MB")
        print(f"{'RSS of footfall serve, ' + label + ', 1 s after traffic':<64} {after:>10.1f} MB  (200 pageviews)")
        print(f"{'RSS of footfall serve, ' + label + ', idle after traffic':<64} {idle:>10.1f} MB  (target ≤ 60 MB)")


if __name__ == "__main__":
    main()
