"""Property-based tests of the JSON API against its own OpenAPI document (schemathesis), on a real server.

Every operation gets thousands of generated requests, valid and invalid; each answer must be documented (status, content
type, body schema), none may be a 5xx, and requests that break the document must be refused. Schema-valid requests may be
refused too (an unknown website id gets 400 'Website not found.', as in Umami), so that one check is left out. Each
operation's count is checked after its run, so the run cannot quietly shrink.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

import collector
import footfall.openapi
import conftest
from conftest import LiveServer, rows

pytestmark = pytest.mark.slow

#: Generated requests per operation of footfall's own API; the read API's operations, asked without a token here
#: (test_readapi_fuzz.py asks them with one, and deeper), get fewer.
EXAMPLES = 3500
READ_API_EXAMPLES = 100
#: Requests each operation's run must have made (issue 8 asks for at least 10,000 in all, every run). Heartbeat's space is
#: a handful of requests, so hypothesis stops there early. Each operation is checked on its own, so the operations can
#: run on different pytest-xdist workers (each with its own server) and the run still cannot quietly shrink.
REQUIRED = {"POST /api/send": EXAMPLES, "POST /api/batch": EXAMPLES, "GET /api/summary": EXAMPLES, "GET /api/heartbeat": 1}
MINIMUM_REQUESTS = 10_000
assert sum(REQUIRED.values()) >= MINIMUM_REQUESTS
SENT: collections.Counter[str] = collections.Counter()


@pytest.fixture
def counted(request: pytest.FixtureRequest) -> Iterator[None]:
    """After an operation's whole hypothesis run: it sent what REQUIRED (or READ_API_EXAMPLES) asks of it."""
    label = request.node.name.split("[", 1)[1].rstrip("]")
    yield
    assert SENT[label] >= REQUIRED.get(label, READ_API_EXAMPLES), (label, SENT[label])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("openapi") / "footfall.db"
    collector.prepare_database(str(db))
    live = LiveServer(db)
    conftest._LIVE_SERVERS.remove(live)  # it outlives single tests; stopped here
    try:
        yield live
    finally:
        code = live.stop()
        output = live.log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in output, output
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


#: Refusals of schema-breaking requests may also be 413 (a batch over the item limit), which footfall documents.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 413, 415, 429]},
            "positive_data_acceptance": {"enabled": False},
        }
    }
)
#: The document the server serves (test_openapi_document_is_served checks they are the same).
schema = schemathesis.openapi.from_dict(footfall.openapi.openapi_document(collector.Config()), config=CONFIG)
READ_API = "Umami read API"


@schema.exclude(tag=READ_API).parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_documented(case: Any, server: LiveServer, counted: None) -> None:
    """Generated requests: every answer is documented and none is a server error."""
    response = case.call_and_validate(base_url=server.url)
    SENT[case.operation.label] += 1
    assert response.status_code < 500, response.text


@schema.include(tag=READ_API).parametrize()
@settings(
    max_examples=READ_API_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_read_api_answers_as_documented(case: Any, server: LiveServer, counted: None) -> None:
    """Generated requests to Umami's read API without a token: 400 for bad parameters, else 401, as documented."""
    response = case.call_and_validate(base_url=server.url)
    SENT[case.operation.label] += 1
    if response.status_code == 204:  # Litestar's own OPTIONS answer (Allow, and no CORS header)
        assert case.method.upper() == "OPTIONS" and "access-control-allow-origin" not in response.headers, case.method
    else:
        assert response.status_code in (400, 401, 404, 405, 413, 429), response.text  # 429: the login limiter


def test_openapi_document_is_served(server: LiveServer) -> None:
    """The document names every route of the JSON API with the Structs' schemas."""
    document = httpx.get(server.url + "/api/openapi.json").json()
    assert document == footfall.openapi.openapi_document(collector.Config())
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/api/send", "/api/batch", "/api/heartbeat", "/api/summary"} | {
        "/api/auth/login",
        "/api/auth/verify",
        "/api/auth/logout",
        "/api/me",
        "/api/websites",
        "/api/me/websites",
        *(f"/api/websites/{{website_id}}{route}" for route in ("", "/active", "/stats", "/pageviews", "/metrics")),
        *(f"/api/websites/{{website_id}}{route}" for route in ("/daterange", "/events/series")),
    }
    assert (
        document["paths"]["/api/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["maxItems"]
        == collector.MAX_BATCH_ITEMS
    )
    assert {"SendRequest", "Payload", "ErrorBody"} <= set(document["components"]["schemas"])
