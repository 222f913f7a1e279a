"""The read API answers in Umami's shapes and as its own OpenAPI document says.

RECORDED holds an answer of Umami v3 per endpoint, as ../shared/reference/umami-read-api.md records it (values are
examples; what is compared is every field name and the JSON type of its value, nested). Each real answer of footfall for
the same request must have exactly that shape, and must validate against the schema footfall's OpenAPI document gives
for that operation and status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from click.testing import CliRunner

import collector
import footfall.cli
import footfall.openapi
from test_readapi import DAY, span, traffic

pytestmark = pytest.mark.anyio

PASSWORD_FOR_SHAPES = "correct horse battery"

USER = {
    "id": "41e2b680-648e-4b09-bcd7-3e2b10c06264",
    "username": "admin",
    "role": "admin",
    "createdAt": "2026-01-01T00:00:00.000Z",
    "isAdmin": True,
    "teams": [],
}
WEBSITE = {
    "id": "67fdaff4-97d0-4e97-b367-29bd0e201c2d",
    "name": "blog",
    "domain": "blog.example.com",
    "resetAt": None,
    "userId": USER["id"],
    "teamId": None,
    "createdBy": USER["id"],
    "createdAt": "2026-01-01T00:00:00.000Z",
    "updatedAt": "2026-01-01T00:00:00.000Z",
    "deletedAt": None,
    "replayEnabled": False,
    "replayConfig": None,
    "shareId": None,
}
POINTS = [{"x": "2026-05-01T10:00:00Z", "y": 5}]
NUMBERS = {"pageviews": 7, "visitors": 3, "visits": 3, "bounces": 1, "totaltime": 42}

#: (method, route, query) → Umami's answer to it (reference §3 to §5).
RECORDED: list[tuple[str, str, dict[str, str], Any]] = [
    ("POST", "/api/auth/login", {}, {"token": "eyJhbGciOi", "user": USER}),
    ("POST", "/api/auth/verify", {}, USER),
    ("GET", "/api/me", {}, {"user": USER, "authType": "session"}),
    (
        "GET",
        "/api/websites",
        {},
        {"data": [{**WEBSITE, "user": {"username": "admin", "id": USER["id"]}}], "count": 1, "page": 1, "pageSize": 20},
    ),
    (
        "GET",
        "/api/websites",
        {"search": "blog"},
        {
            "data": [{**WEBSITE, "user": {"username": "admin", "id": USER["id"]}}],
            "count": 1,
            "page": 1,
            "pageSize": 20,
            "search": "blog",
        },
    ),
    ("GET", "/api/websites/{id}", {}, WEBSITE),
    ("GET", "/api/websites/{id}/active", {}, {"visitors": 1}),
    ("GET", "/api/websites/{id}/stats", span(DAY, DAY + 86400), {**NUMBERS, "comparison": dict.fromkeys(NUMBERS, 0)}),
    (
        "GET",
        "/api/websites/{id}/pageviews",
        {**span(DAY, DAY + 86400), "unit": "hour"},
        {"pageviews": POINTS, "sessions": POINTS},
    ),
    (
        "GET",
        "/api/websites/{id}/pageviews",
        {**span(DAY, DAY + 86400), "unit": "hour", "compare": "prev", "timezone": "Europe/Berlin"},
        {
            "pageviews": [{"x": "2026-05-01 12:00:00", "y": 5}],
            "sessions": [{"x": "2026-05-01 12:00:00", "y": 3}],
            "startDate": "2026-05-01T00:00:00.000Z",
            "endDate": "2026-05-01T23:59:59.999Z",
            "compare": {
                "pageviews": [{"x": "2026-04-30 12:00:00", "y": 2}],
                "sessions": [{"x": "2026-04-30 12:00:00", "y": 1}],
                "startDate": "2026-04-30T00:00:00.000Z",
                "endDate": "2026-04-30T23:59:59.999Z",
            },
        },
    ),
    (
        "GET",
        "/api/websites/{id}/metrics",
        {**span(DAY, DAY + 86400), "type": "path"},
        [{"x": "/a", "y": 3}, {"x": "/b", "y": 2}],
    ),
    ("GET", "/api/websites/{id}/metrics", {**span(DAY, DAY + 86400), "type": "event"}, [{"x": "signup", "y": 1}]),
    (
        "GET",
        "/api/websites/{id}/metrics",
        {**span(DAY, DAY + 86400), "type": "city"},
        [{"x": "Berlin", "y": 1, "country": "DE"}],
    ),
    (
        "GET",
        "/api/websites/{id}/daterange",
        {},
        {"startDate": "2026-04-01T08:00:00.000Z", "endDate": "2026-05-01T10:00:00.000Z"},
    ),
    (
        "GET",
        "/api/websites/{id}/events/series",
        {**span(DAY, DAY + 86400), "timezone": "UTC"},
        [{"x": "signup", "t": "2026-05-01T10:00:00Z", "y": 1}],
    ),
    ("POST", "/api/auth/logout", {}, {"ok": True}),
]


def shape(value: Any) -> Any:
    """Field names and JSON types, nested (a list by its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


SCHEMA = schemathesis.openapi.from_dict(footfall.openapi.openapi_document(collector.Config()))


def operation(method: str, route: str) -> Any:
    return SCHEMA[route.replace("{id}", "{website_id}")][method]


async def test_answers_have_umamis_shapes_and_match_the_openapi_document(db_path: Path, website: str) -> None:
    """For each endpoint: the recorded Umami answer and footfall's real one have the same fields and types, and
    footfall's validates against its OpenAPI schema."""
    CliRunner().invoke(footfall.cli.cli, ["password", "--stdin", "--db", str(db_path)], input=PASSWORD_FOR_SHAPES + "\n")
    async with traffic(db_path, website) as api:
        conn = collector.connect(str(db_path))
        conn.execute("UPDATE website SET domain = 'site.example'")  # Umami's sites all have one
        conn.close()
        login = await api.client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD_FOR_SHAPES})
        headers = {"authorization": f"Bearer {login.json()['token']}"}
        checked = 0
        for method, route, query, recorded in RECORDED:
            url = route.replace("{id}", website)
            if route == "/api/auth/login":
                response = login
            elif method == "POST":
                response = await api.client.post(url, headers=headers)
            else:
                response = await api.client.get(
                    url, params={**query, "search": "test"} if "search" in query else query, headers=headers
                )
            assert response.status_code == 200, (route, response.text)
            assert shape(response.json()) == shape(recorded), (route, query, response.json())
            operation(method, route).validate_response(response)
            checked += 1
        assert checked == len(RECORDED)


async def test_errors_match_the_openapi_document(api_with_traffic: Any) -> None:
    """400, 401 and 404 answers are Umami's error shape and validate against the document too."""
    api = api_with_traffic
    cases = [
        ("/api/websites/{id}/stats", {}, {"x-umami-api-key": api.key}, 400),
        ("/api/websites/{id}/stats", span(DAY, DAY + 86400), {}, 401),
        ("/api/websites/{id}/metrics", {**span(DAY, DAY + 86400), "type": "nope"}, {"x-umami-api-key": api.key}, 400),
    ]
    for route, query, headers, status in cases:
        response = await api.client.get(route.replace("{id}", api.website), params=query, headers=headers)
        assert response.status_code == status
        assert shape(response.json()) == {"error": {"message": "str", "code": "str", "status": "number"}}
        operation("GET", route).validate_response(response)
    missing = await api.client.get("/api/websites/6f1c0b8e-2f5a-4c1e-9d3b-7a8e9f0a1b2c", headers={"x-umami-api-key": api.key})
    assert missing.status_code == 404
    operation("GET", "/api/websites/{id}").validate_response(missing)


@pytest.fixture
async def api_with_traffic(db_path: Path, website: str) -> Any:
    async with traffic(db_path, website) as api:
        yield api


def test_every_read_route_is_in_the_openapi_document() -> None:
    """The document lists each read route with its parameters, and the 200 schema names the answer's Struct."""
    document = footfall.openapi.openapi_document(collector.Config())
    stats = document["paths"]["/api/websites/{website_id}/stats"]["get"]
    names = {p["name"] for p in stats["parameters"]}
    assert {"website_id", "startAt", "endAt", "startDate", "endDate", "compare", "path", "country", "utmTerm"} <= names
    assert stats["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Stats"}
    metrics = document["paths"]["/api/websites/{website_id}/metrics"]["get"]
    kinds = next(p for p in metrics["parameters"] if p["name"] == "type")
    assert kinds["required"] and "channel" in kinds["schema"]["enum"] and "path" in kinds["schema"]["enum"]
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "x-umami-api-key"
