"""Shared fixtures: a database path, a pinned clock, an in-process client, a live server, and small helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import litestar
import pytest

import collector
import footfall.app

ROOT = Path(__file__).resolve().parent.parent
#: A real desktop browser's user agent: passes the bot check.
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)
#: 2026-05-14T10:00:00Z, the hour of the Umami visit test vector.
T0 = 1778752800.0


def pytest_report_header(config: pytest.Config) -> str:
    return f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, Litestar {litestar.__version__}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "footfall.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(db_path: Path) -> collector.Config:
    return collector.Config(db=str(db_path))


@pytest.fixture
def website(db_path: Path) -> str:
    """The id of a website that exists in the database."""
    collector.prepare_database(str(db_path), now=T0)
    return add_website(db_path)


def add_website(db_path: Path, name: str = "test") -> str:
    website_id = str(__import__("uuid").uuid4())
    with contextlib.closing(collector.connect(str(db_path))) as conn:
        conn.execute("INSERT INTO website (website_id, name, created_at) VALUES (?, ?, ?)", (website_id, name, int(T0)))
    return website_id


class AppClient(httpx.AsyncClient):
    """An httpx client wired to the app in this event loop (the writer's futures must share the loop)."""

    app: litestar.Litestar


@contextlib.asynccontextmanager
async def open_client(app: litestar.Litestar, peer: str = "127.0.0.1") -> AsyncIterator[AppClient]:
    """Run the app's lifespan and a client for it (from address ``peer``); leaving drains the writer."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        # The Host a browser on this machine sends to `footfall serve` (the page checks it before a password is set).
        async with AppClient(transport=transport, base_url="http://127.0.0.1:8000") as test_client:
            test_client.app = app
            yield test_client


@pytest.fixture
async def client(config: collector.Config, clock: Clock, website: str) -> AsyncIterator[AppClient]:
    """An in-process client for a fresh database holding ``website``."""
    async with open_client(footfall.app.create_app(config, clock)) as test_client:
        yield test_client


async def flush(client: AppClient) -> None:
    """Wait until every acknowledged event is committed (instead of sleeping)."""
    await client.app.state.collection.writer.flush()


def rows(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run a read-only query against the database file, as a person with sqlite3 would."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def assert_api_error(response: httpx.Response, status: int, code: str, message_part: str = "") -> dict[str, Any]:
    """Check Umami's error shape: {"error": {"message", "code", "status"}}, and no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["status"] == status, body
    assert message_part in body["error"]["message"], body
    assert "Traceback" not in response.text
    return body


def hit(website: str, **payload: Any) -> dict[str, Any]:
    """An /api/send body for ``website`` (type from ``type_``, default 'event')."""
    kind = payload.pop("type_", "event")
    return {"type": kind, "payload": {"website": website, **payload}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Every LiveServer started by the current test; _stop_stray_servers kills any a failing test left running.
_LIVE_SERVERS: list[LiveServer] = []


@pytest.fixture(autouse=True)
def _stop_stray_servers() -> Iterator[None]:
    yield
    while _LIVE_SERVERS:
        server = _LIVE_SERVERS.pop()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)


class LiveServer:
    """`footfall serve` in a subprocess on 127.0.0.1."""

    def __init__(self, db_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.db_path = db_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = db_path.with_suffix(".log")
        self._log_file = self.log.open("wb")
        _LIVE_SERVERS.append(self)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "footfall", "serve", "--db", str(db_path), "--port", str(self.port), *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=db_path.parent,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(self.url + "/api/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("server did not start:\n" + self.output())

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 20) -> int:
        """Send ``sig`` (SIGTERM by default) and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._log_file.close()
        return code


@pytest.fixture
def live_server(db_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(db_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


#: Debian's Chromium, and the flags that keep it quiet and offline.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a browser Playwright downloads itself)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            raise AssertionError(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
