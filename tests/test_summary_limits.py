"""What a summary request may cost: bad dates and numbers are 400s, a slow summary is a 503, and none waits long."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import collector
import footfall.app
import footfall.summary
from conftest import Clock, assert_api_error, open_client

pytestmark = pytest.mark.anyio

#: A query that runs for minutes unless something stops it.
FOREVER = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n"


async def test_a_summary_waits_only_briefly_behind_another(
    db_path: Path, website: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While other work holds the summary connection, a summary answers 503 with Retry-After after a short wait, as JSON
    and as a page, instead of queueing behind it; once the work is done it answers again."""
    monkeypatch.setattr(footfall.summary, "SUMMARY_QUEUE_SECONDS", 0.2)
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())
    async with open_client(app) as client:
        release = threading.Event()
        busy = asyncio.create_task(app.state.summary.run(lambda conn: release.wait(10)))
        await asyncio.sleep(0.05)
        response = await client.get("/api/summary", params={"website": website})
        assert_api_error(response, 503, "service-unavailable", "Another summary is still being computed")
        assert response.headers["retry-after"] == "1"
        page = await client.get("/", params={"website": website})
        assert page.status_code == 503 and "Another summary is still being computed" in page.text
        release.set()
        await busy
        assert (await client.get("/api/summary", params={"website": website})).status_code == 200


async def test_a_slow_summary_is_interrupted_with_503(db_path: Path, website: str) -> None:
    """Work past the summary's time limit is interrupted inside SQLite: 503 saying what to do, the connection left clean
    (no open transaction, lock free) for the next summary."""
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())
    async with open_client(app) as client:
        reader = app.state.summary

        def slow(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN")
            return conn.execute(FOREVER).fetchone()[0]

        with pytest.raises(collector.ApiError) as caught:
            await reader.run(slow, 0.3)
        assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}
        assert caught.value.message == (
            "This summary took longer than 0.3 s to compute; choose a shorter period or fewer filters, "
            "or try again in a moment."
        )
        assert not reader.lock.locked()
        assert await reader.run(lambda conn: conn.in_transaction) is False
        assert await reader.run(lambda conn: conn.execute("SELECT 42").fetchone()[0], 0.3) == 42
        assert (await client.get("/api/summary", params={"website": website})).status_code == 200
