"""What the bench scripts share: a free port, CPU pinning, waiting for a server, RSS, and a server process.

run.py and summary.py import this module (and run.py imports summary.py); nothing here imports them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

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
