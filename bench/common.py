"""What the bench scripts share: a free port, CPU pinning, waiting for a server, RSS, a server process, wrk, bodies.

run.py, soak.py and summary.py import this module (run.py imports the other two); nothing here imports them. Also here:
`footfall serve` and wrk as the benchmarks run them, and the database counts they check.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Connections wrk keeps open.
CONNECTIONS = 64

#: Pin the server to CPU 0 and the load generator to CPU 1 when there are two cores.
PIN = (os.cpu_count() or 1) >= 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if PIN and shutil.which("taskset") else command


def wait_ready(port: int, timeout: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/heartbeat", timeout=1)
            return time.monotonic() - start
        except urllib.error.HTTPError:
            return time.monotonic() - start  # the baseline has no heartbeat: a 404 still means it answers
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing answered on port {port}")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, command: list[str], port: int, cwd: Path) -> None:
        started = time.monotonic()
        self.process = subprocess.Popen(pinned(0, command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = port
        wait_ready(port)
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


#: A desktop browser's user agent (passes the bot check).
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def maximal_batch(website: str, tag: int = 0, items: int = 500, keys: int = 50) -> bytes:
    """The largest batch footfall takes by default: 500 custom events with 50 data keys each, just under 1 MiB."""
    import json

    return json.dumps(
        [
            {
                "type": "event",
                "payload": {
                    "website": website,
                    "url": f"/hostile/{tag}/{i}",
                    "name": "big",
                    "data": {f"key_{k:02d}": f"value {tag}-{i}-{k} xxxxxxxx" for k in range(keys)},
                },
            }
            for i in range(items)
        ],
        separators=(",", ":"),
    ).encode()


def post(port: int, path: str, body: bytes, agent: str = FIREFOX, timeout: float = 120) -> int:
    """One POST over a fresh connection; its status."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", "User-Agent": agent})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def concurrent_posts(port: int, path: str, bodies: list[bytes]) -> list[int]:
    """POST every body at once, each from its own thread and connection; the statuses in order."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: post(port, path, body), bodies))


def footfall_server(db: Path) -> Server:
    port = free_port()
    return Server(
        [sys.executable, "-m", "footfall", "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
        port,
        db.parent,
    )


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
