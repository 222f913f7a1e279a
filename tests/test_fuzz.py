"""Property-based attacks on /api/send and /api/batch: whatever a client sends, never a 5xx, errors in Umami's shape, and
every 200 is stored and readable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector
import footfall.app
from conftest import FIREFOX, Clock, add_website, open_client

FIELDS = list(collector.Payload.__struct_fields__)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=600)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=8),
    max_leaves=60,
)


@st.composite
def send_bodies(draw: Any, website: str) -> Any:
    """Mostly well-formed hits with odd values in random fields; sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    payload = {"website": website}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        payload[field] = draw(json_values | st.text(max_size=80))
    if draw(st.booleans()):
        payload["website"] = website
    return {"type": draw(st.sampled_from(["event", "identify", "performance", "record", ""])), "payload": payload}


class Harness:
    """One app and client kept open across examples, driven from synchronous hypothesis tests."""

    def __init__(self, db_path: Path) -> None:
        collector.prepare_database(str(db_path))
        self.website = add_website(db_path, "fuzz")
        self.db_path = db_path
        self.loop = asyncio.new_event_loop()
        self._ready: asyncio.Future[Any] = self.loop.create_future()
        self._done = asyncio.Event()
        # The app's lifespan must be entered and left by one task: it lives in this one for the whole module.
        self._holder = self.loop.create_task(
            self._hold(footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False), Clock()))
        )
        self.client = self.loop.run_until_complete(self._ready)

    async def _hold(self, app: Any) -> None:
        async with open_client(app) as client:
            self._ready.set_result(client)
            await self._done.wait()

    def post(self, path: str, content: bytes, headers: dict[str, Any]) -> Any:
        return self.loop.run_until_complete(self.client.post(path, content=content, headers=headers))

    def stored(self) -> int:
        self.loop.run_until_complete(self.client.app.state.collection.writer.flush())
        with contextlib.closing(sqlite3.connect(self.db_path)) as conn:
            events = conn.execute("SELECT count(*) FROM website_event").fetchone()[0]
            conn.execute("SELECT * FROM events").fetchall()  # every stored row reads back through the public view
            return events

    def close(self) -> None:
        self._done.set()
        self.loop.run_until_complete(self._holder)
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz") / "footfall.db")
    yield h
    h.close()


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        body = response.json()
        assert set(body) == {"error"} and body["error"]["status"] == response.status_code
        assert {"message", "code", "status"} <= set(body["error"]) and "Traceback" not in response.text


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@FUZZ
@given(data=st.data())
def test_send_never_fails_on_input(harness: Harness, data: st.DataObject) -> None:
    """Random hits (wrong types, deep data, unicode, huge numbers and strings) answer 200 or a 4xx, never 5xx; a 200
    event is stored and readable."""
    body = data.draw(send_bodies(harness.website))
    before = harness.stored()
    response = harness.post("/api/send", json.dumps(body).encode(), {"User-Agent": FIREFOX})
    check(response)
    stored_now = harness.stored()
    if response.status_code == 200 and "cache" in response.json() and body.get("type") != "identify":
        assert stored_now == before + 1
    else:
        assert stored_now == before


@FUZZ
@given(raw=st.binary(max_size=400), content_type=st.sampled_from(["application/json", "text/plain", "", "x/y; q=\u00e9"]))
def test_arbitrary_bytes(harness: Harness, raw: bytes, content_type: str) -> None:
    """Invalid UTF-8, truncated JSON and any bytes with any Content-Type get a 4xx in Umami's shape."""
    for path in ("/api/send", "/api/batch"):
        check(harness.post(path, raw, {"User-Agent": FIREFOX, "Content-Type": content_type.encode("latin-1")}))  # type: ignore[dict-item]


@FUZZ
@given(data=st.data())
def test_batches(harness: Harness, data: st.DataObject) -> None:
    """Batches of random items: always 200 with one detail per failed item, and processed + errors == size."""
    items = data.draw(st.lists(send_bodies(harness.website), max_size=8))
    response = harness.post("/api/batch", json.dumps(items).encode(), {"User-Agent": FIREFOX})
    check(response)
    if response.status_code == 200:
        answer = response.json()
        assert answer["size"] == len(items) and answer["processed"] + answer["errors"] == len(items)
        assert len(answer["details"]) == answer["errors"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"event","payload":{"website":"W","url":"/a","url":"/b"}}',  # duplicate keys
        b'{"type":"event","payload":{"website":"W","data":{"n":1e308}}}',
        b'{"type":"event","payload":{"website":"W","data":{"n":123456789012345678901234567890}}}',
        b'{"type":"event","payload":{"website":"W","title":"\\u0000\\ud83d\\ude00"}}',
        b'{"type":"event","payload":{"website":"W","data":' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}}",
    ],
)
def test_edge_bodies(harness: Harness, body: bytes) -> None:
    """Named edge cases: duplicate keys, the largest floats, giant integers, NUL and astral characters, deep nesting."""
    check(harness.post("/api/send", body.replace(b'"W"', f'"{harness.website}"'.encode()), {"User-Agent": FIREFOX}))
