"""POST /api/batch: items checked one by one, accepted ones written in one transaction, limits answered with 413."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import collector
import footfall.app
from conftest import FIREFOX, AppClient, Clock, assert_api_error, flush, hit, open_client, rows

pytestmark = pytest.mark.anyio


async def batch(client: AppClient, body: Any, agent: str = FIREFOX, **headers: str) -> Any:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return await client.post("/api/batch", content=content, headers={"User-Agent": agent, **headers})


async def test_seed_sample_batch(client: AppClient, db_path: Path, website: str) -> None:
    """The seed's two-item sample answers size 2, processed 2, no errors, a cache token, and stores both events."""
    body = [
        hit(website, hostname="your-hostname", url="/page-1", name="event-name"),
        hit(website, hostname="your-hostname", url="/page-2", name="event-name"),
    ]
    response = await batch(client, body)
    assert response.status_code == 200
    answer = response.json()
    assert {k: answer[k] for k in ("size", "processed", "errors", "details")} == {
        "size": 2,
        "processed": 2,
        "errors": 0,
        "details": [],
    }
    assert collector.read_cache_token(
        answer["cache"], client.app.state.collection.token_key, client.app.state.collection.clock()
    )
    await flush(client)
    assert rows(db_path, "SELECT url_path, event_name FROM events ORDER BY event_key") == [
        ("/page-1", "event-name"),
        ("/page-2", "event-name"),
    ]


async def test_mixed_batch_reports_each_failure(client: AppClient, db_path: Path, website: str) -> None:
    """Good, bad and unknown-site items: failures are listed by index with send's error body; the rest are stored."""
    body = [
        hit(website, url="/ok-1"),
        {"type": "nope", "payload": {}},
        hit(website, url="http://"),
        hit("b59e9c65-ae32-47f1-8400-119fcf4861c4", url="/"),
        "not an object",
        hit(website, url="/ok-2"),
    ]
    answer = (await batch(client, body)).json()
    assert (answer["size"], answer["processed"], answer["errors"]) == (6, 2, 4)
    assert [d["index"] for d in answer["details"]] == [1, 2, 3, 4]
    for detail in answer["details"]:
        assert set(detail["response"]) == {"error"} and detail["response"]["error"]["status"] == 400
    assert detail["response"]["error"]["message"].startswith("Invalid request body")
    assert answer["details"][2]["response"]["error"]["message"] == "Website not found."
    await flush(client)
    assert rows(db_path, "SELECT url_path FROM events ORDER BY event_key") == [("/ok-1",), ("/ok-2",)]


async def test_batch_is_one_transaction(client: AppClient, db_path: Path, website: str) -> None:
    """A batch of 100 accepted items is committed by exactly one transaction."""
    writer = client.app.state.collection.writer
    await flush(client)
    before = writer.commits
    response = await batch(client, [hit(website, url=f"/p{i}") for i in range(100)])
    assert response.json()["processed"] == 100
    assert writer.commits == before + 1
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(100,)]


async def test_each_items_data_lands_on_its_own_event(client: AppClient, db_path: Path, website: str) -> None:
    """In one commit, every item's data rows (queued packed) are stored under that item's event or session, intact."""
    items = [hit(website, url=f"/d{i}", name=f"e{i}", data={"i": i, "tag": f"t{i}", "on": i % 2 == 0}) for i in range(30)]
    items.append(hit(website, type_="identify", id="member-1", data={"plan": "pro", "since": "2026-01-02T03:04:05.000Z"}))
    items.append(hit(website, url="/plain"))
    response = await batch(client, items)
    assert response.json()["processed"] == 32
    await flush(client)
    stored = rows(
        db_path,
        "SELECT e.url_path, d.data_key, d.data_type, d.string_value, d.number_value FROM event_data d "
        "JOIN website_event e USING (event_key) ORDER BY e.event_key, d.data_key",
    )
    assert stored == [
        row
        for i in range(30)
        for row in (
            (f"/d{i}", "i", 2, f"{i:.4f}", float(i)),
            (f"/d{i}", "on", 3, "true" if i % 2 == 0 else "false", None),
            (f"/d{i}", "tag", 1, f"t{i}", None),
        )
    ]
    assert rows(db_path, "SELECT data_key, string_value, date_value, distinct_id FROM session_data ORDER BY 1") == [
        ("plan", "pro", None, "member-1"),
        ("since", "2026-01-02T03:04:05.000Z", 1767323045, "member-1"),
    ]


async def test_bot_items_count_as_processed_and_are_not_stored(client: AppClient, db_path: Path, website: str) -> None:
    """As in Umami, a bot batch is 'processed' without errors, stores nothing, and has no cache token."""
    answer = (await batch(client, [hit(website, url="/a"), hit(website, url="/b")], agent="curl/8.4.0")).json()
    assert answer == {"size": 2, "processed": 2, "errors": 0, "details": []}
    await flush(client)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]
    assert rows(db_path, "SELECT hits FROM bot_counter") == [(2,)]


async def test_batch_items_share_one_session_and_visit(client: AppClient, website: str) -> None:
    """Items from one client in one batch belong to the same session and visit, and the cache is the first item's."""
    response = await batch(client, [hit(website, url="/1"), hit(website, url="/2")])
    token = collector.read_cache_token(
        response.json()["cache"], client.app.state.collection.token_key, client.app.state.collection.clock()
    )
    single = (await client.post("/api/send", json=hit(website, url="/3"), headers={"User-Agent": FIREFOX})).json()
    assert token is not None and (token.session_id, token.visit_id) == (single["sessionId"], single["visitId"])


@pytest.mark.parametrize(("items", "status"), [(500, 200), (501, 413)])
async def test_batch_item_limit(client: AppClient, db_path: Path, website: str, items: int, status: int) -> None:
    """500 items are accepted; 501 get a 413 and nothing of the batch is written."""
    response = await batch(client, [hit(website, url="/") for _ in range(items)])
    await flush(client)
    if status == 413:
        assert_api_error(response, 413, "payload-too-large", "at most 500")
        assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]
    else:
        assert response.json()["processed"] == 500
        assert rows(db_path, "SELECT count(*) FROM website_event") == [(500,)]


async def test_batch_byte_limit(client: AppClient, db_path: Path, website: str) -> None:
    """A body over 1 MiB gets a 413 and nothing is written."""
    body = msgspec.json.encode([hit(website, url="/", title="t" * 4000) for _ in range(300)])
    assert len(body) > collector.MAX_BATCH_BODY_BYTES
    assert_api_error(await batch(client, body), 413, "payload-too-large")
    await flush(client)
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]


@pytest.mark.parametrize("body", [b"{}", b'{"type":"event"}', b"[", b"", b"null", b"42"])
async def test_non_array_batch_is_400(client: AppClient, body: bytes) -> None:
    """A batch body that is not a JSON array is a 400 in Umami's error shape."""
    assert_api_error(await batch(client, body), 400, "bad-request", "expected a JSON array")


async def test_empty_batch(client: AppClient) -> None:
    """An empty array is fine and has no cache."""
    assert (await batch(client, [])).json() == {"size": 0, "processed": 0, "errors": 0, "details": []}


async def test_batch_limits_follow_config(db_path: Path, clock: Clock, website: str) -> None:
    """--batch-max-items lowers the item limit."""
    config = collector.Config(db=str(db_path), batch_max_items=2)
    async with open_client(footfall.app.create_app(config, clock)) as client:
        assert_api_error(await batch(client, [hit(website, url="/")] * 3), 413, "payload-too-large", "at most 2")
        assert (await batch(client, [hit(website, url="/")] * 2)).json()["processed"] == 2
