"""What footfall gives back once it falls quiet: the memos and the summary's page cache (upkeep's 'memory' task)."""

from __future__ import annotations

from pathlib import Path

import pytest

import collector
from conftest import FIREFOX, AppClient, flush, hit, rows

pytestmark = pytest.mark.anyio


async def test_memory_is_released_only_once_the_server_is_quiet(client: AppClient, website: str, db_path: Path) -> None:
    """While events arrive the memos stay; a tick later without commits they are empty, the events all stored."""
    upkeep, collection = client.app.state.upkeep, client.app.state.collection
    await upkeep.close()  # its rounds are run by hand here, in order
    assert "memory" in [task.name for task in upkeep.tasks]
    for n in range(20):
        response = await client.post("/api/send", json=hit(website, url=f"/quiet/{n}"), headers={"User-Agent": FIREFOX})
        assert response.status_code == 200
    await flush(client)
    await client.app.state.summary.refresh()
    assert len(collection.parse_agent) == 1 and len(collector._page_memo) > 0
    await upkeep.release_memory()  # events were committed since the last tick: still busy, nothing dropped
    assert len(collection.parse_agent) == 1 and len(collector._page_memo) > 0
    await upkeep.release_memory()  # a tick without commits: quiet
    assert len(collection.parse_agent) == 0 and len(collector._page_memo) == 0
    runs = client.app.state.summary.runs
    await upkeep.release_memory()  # nothing new since: the summary connection is left alone
    assert client.app.state.summary.runs == runs
    response = await client.post("/api/send", json=hit(website, url="/quiet/after"), headers={"User-Agent": FIREFOX})
    assert response.status_code == 200  # the memos refill
    await flush(client)
    assert len(collection.parse_agent) == 1
    assert rows(db_path, "SELECT count(*) FROM website_event")[0][0] == 21
