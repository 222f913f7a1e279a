"""What a summary request may cost: bad dates and numbers are 400s, a slow summary is a 503, and none waits long."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector
import footfall.app
import footfall.summary
from conftest import Clock, assert_api_error, open_client
from test_fuzz import Harness, check

#: A query that runs for minutes unless something stops it.
FOREVER = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n"


@pytest.mark.anyio
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


@pytest.mark.anyio
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


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("summary") / "footfall.db")
    yield h
    h.close()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31", "9999-12-31"),
        ("0001-01-01", "0001-01-02"),
        ("2026-01-01", "9999-12-31"),
        ("253402300799", "253402300800"),
        ("0", "253402300799"),
        ("1", "99999999999999999999"),
        ("2999-12-30", "3000-01-01"),
    ],
)
@pytest.mark.anyio
async def test_dates_and_numbers_out_of_range_are_400(db_path: Path, website: str, start: str, end: str) -> None:
    """Dates and Unix seconds a summary URL can carry, however far out, are a 400 naming the range (once a 500)."""
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock())
    async with open_client(app) as client:
        response = await client.get("/api/summary", params={"website": website, "start": start, "end": end})
        assert_api_error(response, 400, "bad-request", "start and end must lie between 1970-01-01 and 2999-12-31")
        page = await client.get("/", params={"website": website, "start": start, "end": end})
        assert page.status_code == 400 and "start and end must lie between 1970-01-01 and 2999-12-31" in page.text


@pytest.mark.anyio
async def test_the_edges_of_the_range_are_served(db_path: Path, website: str) -> None:
    """The first and last days a summary may cover answer 200, in a zone east and one west of UTC."""
    for zone in ("Asia/Tokyo", "America/Phoenix"):
        app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False, timezone=zone), Clock())
        async with open_client(app) as client:
            for start, end in (("1970-01-01", "1970-01-03"), ("2999-12-29", "2999-12-31")):
                response = await client.get("/api/summary", params={"website": website, "start": start, "end": end})
                assert response.status_code == 200, response.text
                assert response.json()["period"]["label"] == f"{start} – {end}"


#: Where dates and clocks end: the first and last days Python knows, and the last second of 9999-12-31 (UTC).
EDGE_DAYS = [dt.date.min, dt.date.min + dt.timedelta(days=1), dt.date.max, dt.date.max - dt.timedelta(days=1)]
EDGE_SECONDS = [0, 253402300799, 253402300799 - 86400]


times = (
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(dt.date.isoformat)
    | st.integers(0, 10**22).map(str)
    | st.sampled_from(["", " ", "9999-12-31", "0001-01-01", "253402300799", "2026-02-30", "-1", "1e9", "\u00b3", "nan"])
    | st.text(max_size=30)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_summary_query_parameters_never_fail(harness: Harness, data: Any) -> None:
    """Any start, end, period, website and filter values /api/summary and the page can be sent answer 200 or a 4xx in
    Umami's shape, never a 5xx."""
    params: dict[str, str] = {}
    if data.draw(st.booleans()):  # a range that could make sense: end on or shortly after start, anywhere in time
        day = data.draw(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)) | st.sampled_from(EDGE_DAYS))
        later = day + dt.timedelta(days=min(data.draw(st.integers(0, 400)), (dt.date.max - day).days))
        second = data.draw(st.integers(0, 10**13) | st.sampled_from(EDGE_SECONDS))
        params["start"], params["end"] = data.draw(
            st.sampled_from(
                [(day.isoformat(), later.isoformat()), (str(second), str(second + data.draw(st.integers(1, 10**8))))]
            )
        )
    for name, values in (
        ("start", times),
        ("end", times),
        ("period", st.sampled_from([*footfall.summary.PERIODS, "1y", ""]) | st.text(max_size=10)),
        ("website", st.sampled_from([harness.website, "00000000-0000-4000-8000-000000000000"]) | st.text(max_size=40)),
    ):
        if name not in params and data.draw(st.booleans()):
            params[name] = data.draw(values)
    for name in data.draw(st.lists(st.sampled_from(footfall.summary.FILTERS), max_size=3, unique=True)):
        params[name] = data.draw(st.text(max_size=40))
    for path in ("/api/summary", "/"):
        response = harness.loop.run_until_complete(harness.client.get(path, params=params))
        if path == "/api/summary":
            check(response)
        else:
            assert response.status_code < 500, response.text
