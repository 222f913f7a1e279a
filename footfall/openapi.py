"""The OpenAPI 3.1 document of footfall's JSON API, built from the collector's msgspec Structs.

Owns: ``openapi_document(config)`` and GET /api/openapi.json. Imports collector and footfall.summary.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response

from collector import (
    MAX_CLS,
    MAX_VITAL_MS,
    UUID_RE,
    BatchResponse,
    BotAnswer,
    Config,
    ErrorBody,
    SendRequest,
    SendResponse,
    __version__,
)
from footfall.summary import FILTERS


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 description of footfall's JSON API.

    The collection handlers decode their bodies themselves (msgspec, with Umami's error messages), so Litestar cannot see
    their request types; the bodies and answers are described here from the very Structs that decode and encode them.
    """
    (send, batch, accepted, bot, batch_answer, error), components = msgspec.json.schema_components(
        (SendRequest, list[SendRequest], SendResponse, BotAnswer, BatchResponse, ErrorBody),
        ref_template="#/components/schemas/{name}",
    )
    # A batch item is judged on its own: a bad one is listed in the 200 answer's details, not refused with the batch.
    batch = {
        "type": "array",
        "maxItems": config.batch_max_items,
        "items": {"description": "An /api/send body (see SendRequest); checked on its own"},
    }
    # The Struct decodes leniently so that each mistake gets Umami's own message; the document states what is accepted.
    payload = components["Payload"]
    payload["required"] = ["website"]
    fields = payload["properties"]
    fields["website"] = {"type": "string", "pattern": f"^({UUID_RE.pattern})$", "description": "The website's UUID."}
    fields["link"] = fields["pixel"] = {"type": "null", "description": "Umami's links and pixels are not supported."}
    for name, most in (
        ("lcp", MAX_VITAL_MS),
        ("inp", MAX_VITAL_MS),
        ("fcp", MAX_VITAL_MS),
        ("ttfb", MAX_VITAL_MS),
        ("cls", MAX_CLS),
        ("duration", None),
    ):
        number: dict[str, Any] = {"type": "number", "minimum": 0, **({"maximum": most} if most is not None else {})}
        fields[name] = {"anyOf": [number, {"type": "null"}]}

    def answers(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
        result = {"200": {"description": "Accepted", "content": {"application/json": {"schema": ok}}}}
        for status in statuses:
            result[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": error}},
            }
        return result

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    cache_header = {
        "name": "x-umami-cache",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The cache token of an earlier answer (skips work for a known session).",
    }
    user_agent = {
        "name": "user-agent",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "The visitor's browser; required unless payload.userAgent is given.",
    }
    summary_parameters = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("website", "period", "start", "end", "share", *FILTERS)
    ]
    collect = {
        "summary": "Record a pageview, custom event, identify or performance report (Umami's /api/send)",
        "parameters": [cache_header, user_agent],
        "requestBody": body(send),
        "responses": answers({"oneOf": [accepted, bot]}, 400, 403, 413, 429, 503),
    }
    paths: dict[str, Any] = {
        "/api/send": {"post": {**collect, "operationId": "send"}},
        "/api/batch": {
            "post": {
                "summary": "Record many hits at once; each item is checked on its own (Umami's /api/batch)",
                "operationId": "batch",
                "parameters": [cache_header, user_agent],
                "requestBody": body(batch),
                "responses": answers(batch_answer, 400, 413, 429, 503),
            }
        },
        "/api/heartbeat": {
            "get": {
                "summary": "Liveness",
                "operationId": "heartbeat",
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]}
                            }
                        },
                    }
                },
            }
        },
        "/api/summary": {
            "get": {
                "summary": "The summary page's numbers (log in first, or pass a share token)",
                "operationId": "summary",
                "parameters": summary_parameters,
                "responses": answers({"type": "object"}, 400, 401, 403, 404),
            }
        },
    }
    if config.collect_path:
        paths[config.collect_path] = {"post": {**collect, "operationId": "collect-alias"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "footfall",
            "version": __version__,
            "description": "Umami-compatible collection API and the summary's JSON.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


async def get_openapi(request: Request) -> Response:
    """GET /api/openapi.json: the OpenAPI description of the JSON API."""
    return Response(content=request.app.state.openapi, media_type="application/json")
