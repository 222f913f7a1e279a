"""How fast the summary page renders over a big database: 30 days of 10 million events, plain and filtered.

Targets (issue #17, at 10M events): 30 days ≤ 150 ms; filtered by a country, a page or a referrer ≤ 500 ms; 12 months
filtered ≤ 1 s; each filtered page ≤ 4× the plain one, measured in the same run (the "× 30 days" column). The last row is
the insert cost of the filter indexes (events a second into a fresh database without and with them).

    python bench/summary.py                  # 10M events (~8 min to generate once, kept in /tmp; ~3 min of rollups)
    python bench/summary.py --events 1000000 # a smaller run

Method: a database of N events over the last 30 days is generated directly with SQL (realistic shape, keys in time order as
footfall writes them: ~3.4 events per visit, ~1.4 visits per session, 300 pages with Zipf popularity, 60 countries, 50
referrers, UTM on 10% of visits, 5% custom events with data, 3% performance events), then its rollups are built from
nothing (timed: that is also what a time-zone change costs), then `footfall serve` is started on it exactly as users start
it and the page is fetched over loopback, as a browser would: full HTML rendering included. Each figure is the median of 7 fetches after one warm-up; the JSON twin, other periods
and the filtered pages (computed from the matching visits' stored facts and their events, found through indexes) are
reported beside it.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import random
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector  # noqa: E402
import footfall.rollups  # noqa: E402
from common import free_port, rss_mb, wait_ready  # noqa: E402

BROWSERS = [("Chrome", 60), ("Safari", 20), ("Firefox", 8), ("Edge", 7), ("Samsung Internet", 3), ("Opera", 2)]
SYSTEMS = [("Windows", 35), ("Android", 30), ("iOS", 20), ("macOS", 10), ("Linux", 5)]
DEVICES = [("mobile", 50), ("desktop", 30), ("laptop", 15), ("tablet", 5)]
SCREENS = ["390x844", "1920x1080", "1536x864", "414x896", "1366x768", "2560x1440", "360x800", "1280x720"]
LANGUAGES = ["en-US", "de-DE", "fr-FR", "es-ES", "en-GB", "pt-BR", "ja-JP", "it-IT", "nl-NL", "pl-PL"]


def generate(path: Path, events: int, now: int, seed: int = 7) -> str:
    """Write a database of ``events`` events over the 30 days before ``now``; return its website id."""
    rng = random.Random(seed)
    collector.prepare_database(str(path), now=now)
    website_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    pages = ["/"] + [f"/{kind}/{i}" for kind in ("blog", "docs", "product", "help") for i in range(75)][:299]
    page_weights = [1 / (rank + 1) for rank in range(len(pages))]
    referrers = [None] * 60 + [f"ref{i}.example" for i in range(50)]
    countries = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(60)]
    start = now - 30 * 86400
    with contextlib.closing(collector.connect(str(path))) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("INSERT INTO website (website_id, name, created_at) VALUES (?, 'bench', ?)", (website_id, start))
        site = conn.execute("SELECT website_key FROM website WHERE website_id = ?", (website_id,)).fetchone()[0]
        session_key = visit_key = event_key = 0
        sessions, visits, rows, data = [], [], [], []

        def flush() -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO session (session_key, session_id, website_key, browser, os, device, screen, "
                "language, country, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                sessions,
            )
            conn.executemany("INSERT INTO visit (visit_key, visit_id, session_key, started_at) VALUES (?,?,?,?)", visits)
            conn.executemany(
                "INSERT INTO website_event (event_key, website_key, session_key, visit_key, created_at, "
                "event_type, event_name, url_path, referrer_domain, utm_source, utm_medium, utm_campaign, "
                "lcp, inp, cls, fcp, ttfb, duration) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.executemany("INSERT INTO event_data (event_key, data_key, data_type, string_value) VALUES (?,?,1,?)", data)
            conn.execute("COMMIT")
            for batch in (sessions, visits, rows, data):
                batch.clear()

        # Sessions arrive in time order and their later visits wait in a heap until their time comes, so events get keys in
        # time order, as a running footfall gives them (by visit: a visit's few minutes of events are written together).
        pending: list[tuple[int, int, int]] = []  # (visit start, session key, visits left after this one)
        rate = events / 4.7 / (30 * 86400)  # sessions a second: ~4.7 events per session
        arrival = float(start)

        def emit(at: int, session: int) -> None:
            nonlocal visit_key, event_key
            visit_key += 1
            visits.append((visit_key, str(uuid.UUID(int=rng.getrandbits(128), version=4)), session, at))
            referrer = rng.choice(referrers)
            utm = ("newsletter", "email", f"c{rng.randint(1, 5)}") if rng.random() < 0.1 else (None, None, None)
            for n in range(min(int(rng.expovariate(1 / 3)) + 1, 40)):
                if at >= now:
                    break
                path_ = rng.choices(pages, page_weights)[0]
                event_key += 1
                kind = 2 if rng.random() < 0.05 else 5 if rng.random() < 0.03 else 1
                vitals = (
                    (
                        rng.uniform(500, 6000),
                        rng.uniform(20, 900),
                        rng.uniform(0, 0.4),
                        rng.uniform(300, 4000),
                        rng.uniform(50, 2000),
                    )
                    if kind == 5
                    else (None,) * 5
                )
                rows.append(
                    (
                        event_key,
                        site,
                        session,
                        visit_key,
                        at,
                        kind,
                        "signup" if kind == 2 else None,
                        path_,
                        referrer if n == 0 else None,
                        *(utm if n == 0 else (None, None, None)),
                        *vitals,
                        rng.randint(1000, 120_000) if rng.random() < 0.2 else None,
                    )
                )
                if kind == 2:
                    data.append((event_key, "plan", rng.choice(["free", "pro", "team"])))
                at += rng.randint(5, 240)

        while event_key < events and arrival < now:
            while pending and pending[0][0] <= arrival:
                at, session, left = heapq.heappop(pending)
                emit(at, session)
                if left:
                    heapq.heappush(pending, (at + rng.randint(3600, 10 * 86400), session, left - 1))
            session_key += 1
            first = int(arrival)
            sessions.append(
                (
                    session_key,
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    site,
                    rng.choices(*zip(*BROWSERS))[0],
                    rng.choices(*zip(*SYSTEMS))[0],
                    rng.choices(*zip(*DEVICES))[0],
                    rng.choice(SCREENS),
                    rng.choice(LANGUAGES),
                    rng.choice(countries),
                    first,
                )
            )
            heapq.heappush(pending, (first, session_key, (rng.random() < 0.3) + (rng.random() < 0.1)))
            arrival += rng.expovariate(rate)
            if len(rows) >= 50_000:
                flush()
        flush()
    return website_id


#: The indexes the filtered summary added (schema.sql); insert_rates() measures what they cost.
FILTER_INDEXES = (
    "idx_session_website_key_country",
    "idx_website_event_name",
    "idx_website_event_referrer",
    "idx_website_event_utm_source",
    "idx_website_event_utm_medium",
    "idx_website_event_utm_campaign",
)

_EVENT_COLUMNS = (
    "event_key, website_key, session_key, visit_key, created_at, event_type, event_name, url_path, referrer_domain, "
    "utm_source, utm_medium, utm_campaign, lcp, inp, cls, fcp, ttfb, duration"
)


def insert_rates(source: Path, count: int = 200_000, batch: int = 500, rounds: int = 3) -> tuple[float, float]:
    """Events a second written into a fresh database without and with FILTER_INDEXES (median of ``rounds``).

    The first ``count`` events of ``source`` with their sessions and visits, in transactions of ``batch`` events as the
    writer commits them, with footfall's PRAGMAs (collector.connect).
    """
    with contextlib.closing(collector.connect(str(source))) as conn:
        events = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM website_event ORDER BY event_key LIMIT ?", (count,)).fetchall()
        last_visit = max(e[3] for e in events)
        visits = conn.execute("SELECT * FROM visit WHERE visit_key <= ? ORDER BY visit_key", (last_visit,)).fetchall()
        last_session = max(v[2] for v in visits)
        sessions = conn.execute(
            "SELECT * FROM session WHERE session_key <= ? ORDER BY session_key", (last_session,)
        ).fetchall()
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for indexed in (False, True):
            target = source.with_name(f"insert-{indexed}.db")
            for suffix in ("", "-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            collector.prepare_database(str(target))
            with contextlib.closing(collector.connect(str(target))) as conn:
                if not indexed:
                    for name in FILTER_INDEXES:
                        conn.execute(f"DROP INDEX {name}")
                conn.execute("PRAGMA foreign_keys = OFF")
                by_session = {s[0]: s for s in sessions}
                by_visit = {v[0]: v for v in visits}
                seen_s: set[int] = set()
                seen_v: set[int] = set()
                marks = ",".join("?" * len(sessions[0]))
                started = time.perf_counter()
                for at in range(0, len(events), batch):
                    chunk = events[at : at + batch]
                    new_s = [by_session[e[2]] for e in chunk if e[2] not in seen_s and not seen_s.add(e[2])]  # type: ignore[func-returns-value]
                    new_v = [by_visit[e[3]] for e in chunk if e[3] not in seen_v and not seen_v.add(e[3])]  # type: ignore[func-returns-value]
                    with collector.transaction(conn):
                        conn.executemany(f"INSERT INTO session VALUES ({marks})", new_s)
                        conn.executemany("INSERT INTO visit VALUES (?,?,?,?)", new_v)
                        conn.executemany(f"INSERT INTO website_event ({_EVENT_COLUMNS}) VALUES ({','.join('?' * 18)})", chunk)
                rates[indexed].append(len(events) / (time.perf_counter() - started))
            for suffix in ("", "-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
    return statistics.median(rates[False]), statistics.median(rates[True])


def fetch_ms(url: str, cookie: str = "") -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        size = len(response.read())
    return (time.perf_counter() - start) * 1000, size


def ensure_database(events: int, db: Path | None = None) -> Path:
    """The benchmark database of ``events`` events (generated once, then reused)."""
    db = db or Path(f"/tmp/footfall-bench-{events}.db")
    if not db.exists():
        started = time.perf_counter()
        generate(db.with_suffix(".tmp"), events, int(time.time()))
        db.with_suffix(".tmp").rename(db)
        print(f"generated a {events:,}-event database in {time.perf_counter() - started:.0f} s → {db}", flush=True)
    collector.prepare_database(str(db))
    return db


def bench_website(db: Path) -> str:
    with contextlib.closing(collector.connect(str(db))) as conn:
        return str(conn.execute("SELECT website_id FROM website WHERE name = 'bench'").fetchone()[0])


def time_pages(
    db: Path,
    cases: list[tuple[str, str]],
    runs: int,
    prefix: list[str] | None = None,
) -> tuple[list[tuple[str, float, float, float, int, float]], float, float]:
    """Start `footfall serve` on ``db`` and fetch each (label, path) ``runs`` times after a first fetch.

    Returns (label, median ms, min ms, max ms, bytes, first fetch ms) per case, and the server's RSS at the end and at its
    peak (MB). The first fetch of a filtered view computes and keeps its closed days (footfall.segments): the later ones
    read them, as every later view of that filter does.
    """
    port = free_port()
    command = [*(prefix or []), sys.executable, "-m", "footfall", "serve", "--db", str(db), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        wait_ready(port, 120)
        base = f"http://127.0.0.1:{port}"
        for label, path in cases:
            first, _ = fetch_ms(base + path)  # warm-up (the first rollup refresh; a filter's days computed and kept)
            fetched = [fetch_ms(base + path) for _ in range(runs)]
            times = [t for t, _ in fetched]
            results.append((label, statistics.median(times), min(times), max(times), fetched[0][1], first))
        return results, rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, help="where to keep the generated database (default: /tmp/footfall-bench-N.db)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep-rollups", action="store_true", help="time the pages only (rollups already built)")
    args = parser.parse_args()
    db = ensure_database(args.events, args.db)
    if not args.keep_rollups:
        with contextlib.closing(collector.connect(str(db))) as conn:  # rollups as this footfall lays them out
            for table in footfall.rollups.ROLLUP_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        collector.prepare_database(str(db))
    website = bench_website(db)
    with contextlib.closing(collector.connect(str(db))) as conn:
        count, first, last = conn.execute("SELECT count(*), min(created_at), max(created_at) FROM website_event").fetchone()
        print(
            f"{count:,} events from {time.strftime('%Y-%m-%d', time.gmtime(first))} to "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(last))} UTC"
        )
        if not args.keep_rollups:
            footfall.rollups.reset_rollups(conn, 0)
            started = time.perf_counter()
            footfall.rollups.refresh_rollups(conn, 0)
            rebuild_s = time.perf_counter() - started
            rollup_rows = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in footfall.rollups.ROLLUP_TABLES)
            print(
                f"rollups rebuilt from nothing in {rebuild_s:.0f} s ({count / rebuild_s:,.0f} events/s), {rollup_rows:,} rows"
            )
    cases = [
        ("page, 30 days", "/?period=30d"),
        ("JSON, 30 days", f"/api/summary?website={website}&period=30d"),
        ("page, 7 days", "/?period=7d"),
        ("page, 24 hours", "/?period=24h"),
        ("page, 90 days", "/?period=90d"),
        ("page, 12 months", "/?period=12m"),
    ]
    results, rss, peak = time_pages(db, cases, args.runs)
    filtered, rss, peak = time_pages(
        db,
        [
            ("page, 30 days, filtered by a country", "/?period=30d&country=AA"),
            ("page, 30 days, filtered by a page", "/?period=30d&page=/docs/3"),
            ("page, 30 days, filtered by a referrer", "/?period=30d&referrer=ref7.example"),
            ("page, 12 months, filtered by a country", "/?period=12m&country=AA"),
        ],
        3,
    )
    base = results[0][1]
    without, with_indexes = insert_rates(db)
    print(
        f"\n| {'request':<40} | median ms | min ms | max ms | × 30 days | bytes | first fetch ms |\n"
        "|---|---|---|---|---|---|---|"
    )
    for label, middle, low, high, size, first in results + filtered:
        print(f"| {label:<40} | {middle:9.0f} | {low:6.0f} | {high:6.0f} | {middle / base:8.1f}× | {size:,} | {first:,.0f} |")
    print(
        f"| {'inserts without / with the filter indexes':<40} | {without:,.0f} events/s | {with_indexes:,.0f} events/s | "
        f"| {with_indexes / without:8.2f}× | | |"
    )
    print(f"\nserver RSS after the filtered pages: {rss:.0f} MB (peak {peak:.0f} MB)")
    print(f"\nreproduce: python bench/summary.py --events {args.events}" + (" --keep-rollups" if args.keep_rollups else ""))


if __name__ == "__main__":
    main()
