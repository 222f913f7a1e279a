"""Where an accepted event's time goes on the server's main thread: cProfile of /api/batch requests through the app.

    python bench/hotpath.py            # 200 batches of 100 events (~20 s), then the share of each part and the top functions

The app runs in-process (no uvicorn) behind httpx's ASGI transport, with the same kind of bodies bench/send.lua sends
(rotating paths, titles, referrers, UTM on every fifth URL, user agents from a pool of 1,000). The writer's SQLite work runs
in aiosqlite's thread and is not in the profile; httpx's own share is shown apart, since a real server does not pay it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import collector  # noqa: E402
import footfall.summary  # noqa: E402
import footfall.app  # noqa: E402

AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.{}.0 Safari/537.36"
PARTS = (
    ("footfall (collector.py)", "collector.py"),
    ("Litestar", "/litestar/"),
    ("msgspec", "msgspec"),
    ("user agents (ua-parser)", "ua_parser"),
    ("asyncio and aiosqlite", "asyncio"),
    ("aiosqlite", "aiosqlite"),
    ("httpx test client (not in a real server)", "/httpx/"),
    ("httpcore/anyio (client side)", "/anyio/"),
)


def batch_body(website: str, start: int, size: int = 100) -> bytes:
    items = []
    for n in range(start, start + size):
        query = "?utm_source=newsletter&utm_medium=email&utm_campaign=launch" if n % 5 == 0 else ""
        items.append(
            {
                "type": "event",
                "payload": {
                    "website": website,
                    "hostname": "example.com",
                    "screen": "1920x1080",
                    "language": "en-US",
                    "title": f"Post {n % 200} | Example Blog",
                    "url": f"https://example.com/blog/post-{n * 7919 % 200}{query}",
                    "referrer": ["", "https://www.google.com/", "https://news.ycombinator.com/item?id=4242"][n % 3],
                },
            }
        )
    return msgspec.json.encode(items)


async def run(batches: int, profile: cProfile.Profile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = footfall.app.create_app(collector.Config(db=str(Path(tmp) / "footfall.db"), embedded_geo=False))
        async with app.lifespan():
            website = (await footfall.summary.list_sites(app.state.collection.reader))[0].id
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                bodies = [batch_body(website, i * 100) for i in range(batches)]
                await client.post("/api/batch", content=bodies[0], headers={"User-Agent": AGENT.format(120, 0)})  # warm-up
                profile.enable()
                for i, body in enumerate(bodies):
                    answer = await client.post(
                        "/api/batch", content=body, headers={"User-Agent": AGENT.format(100 + i % 40, i)}
                    )
                    assert answer.status_code == 200 and answer.json()["errors"] == 0, answer.text
                profile.disable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    profile = cProfile.Profile()
    asyncio.run(run(args.batches, profile))
    stats = pstats.Stats(profile)
    shares: collections.Counter[str] = collections.Counter()
    waiting = 0.0
    for (filename, _, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        if "select.epoll" in function:  # the event loop idle, waiting for the writer thread's commits
            waiting += entry[2]
            continue
        part = next((name for name, marker in PARTS if marker in filename), "other (stdlib: urllib.parse, asyncio …)")
        shares[part] += entry[2]
    total = sum(shares.values())
    events = args.batches * 100
    print(
        f"{events:,} events in {args.batches} batches: {total / events * 1e6:.0f} µs of main-thread time per event "
        f"(plus {waiting / events * 1e6:.0f} µs idle, waiting for commits)\n"
    )
    for part, seconds in shares.most_common():
        print(f"  {part:<44} {seconds / total:6.1%}  {seconds / events * 1e6:6.1f} µs/event")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
