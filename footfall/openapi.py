"""The OpenAPI 3.1 document of footfall's JSON API, built from the msgspec Structs that decode and encode it.

Owns: ``openapi_document(config)`` and GET /api/openapi.json: the collection API, the summary's JSON and Umami's read
API. Imports collector, footfall.readapi, footfall.readnumbers and footfall.summary.
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
from footfall.readapi import (
    COMPARES,
    DEFAULT_METRIC_LIMIT,
    DEFAULT_PAGE_SIZE,
    FILTER_PARAMS,
    MAX_INSTANT_MS,
    MAX_METRIC_LIMIT,
    UNITS,
    Active,
    DateRange,
    EventPoint,
    LoginRequest,
    LoginResponse,
    Me,
    Metric,
    Ok,
    Series,
    Stats,
    User,
    Website,
    WebsitePage,
)
from footfall.readnumbers import METRIC_TYPES
from footfall.summary import FILTERS

#: The read API's answers, in the order openapi_document takes their schemas.
_READ_ANSWERS = (
    LoginRequest,
    LoginResponse,
    User,
    Me,
    Ok,
    WebsitePage,
    Website,
    Active,
    Stats,
    Series,
    list[Metric],
    DateRange,
)


def openapi_document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 description of footfall's JSON API.

    The collection handlers decode their bodies themselves (msgspec, with Umami's error messages), so Litestar cannot see
    their request types; the bodies and answers are described here from the very Structs that decode and encode them.
    """
    (send, batch, accepted, bot, batch_answer, error, events, *read), components = msgspec.json.schema_components(
        (SendRequest, list[SendRequest], SendResponse, BotAnswer, BatchResponse, ErrorBody, list[EventPoint], *_READ_ANSWERS),
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
    paths.update(
        _read_api_paths(
            dict(
                zip(
                    (
                        "login",
                        "token",
                        "user",
                        "me",
                        "ok",
                        "websites",
                        "website",
                        "active",
                        "stats",
                        "series",
                        "metrics",
                        "daterange",
                    ),
                    read,
                )
            ),
            events,
            error,
        )
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "footfall",
            "version": __version__,
            "description": "Umami-compatible collection API and the summary's JSON.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from POST /api/auth/login, or an API key",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-umami-api-key", "description": "An API key"},
            },
        },
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _read_api_paths(schemas: dict[str, Any], events: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """Umami's read API (footfall.readapi): its routes, parameters and answers."""

    def operation(
        op_id: str, summary: str, ok: dict[str, Any], *params: dict[str, Any], public: bool = False
    ) -> dict[str, Any]:
        statuses = (400, 401, 429, 503) if public else (400, 401, 404, 503)
        responses = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
        for status in statuses:
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": error}},
            }
        answer: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": ["Umami read API"], "responses": responses}
        if params:
            answer["parameters"] = list(params)
        answer["security"] = [] if public else [{"bearer": []}, {"apiKey": []}]
        return answer

    instant = {"type": "integer", "minimum": 0, "maximum": MAX_INSTANT_MS}
    date = {"type": "string", "maxLength": 40}
    ranges = [
        _query("startAt", instant, "Start, Unix milliseconds (with endAt; widened to the whole hour)"),
        _query("endAt", instant, "End, Unix milliseconds, included (with startAt; widened to the whole hour)"),
        _query("startDate", date, "Start as an ISO 8601 date or time, instead of startAt"),
        _query("endDate", date, "End as an ISO 8601 date or time, instead of endAt"),
    ]
    unit = _query("unit", {"enum": list(UNITS)}, "Bucket size; one too fine for the range becomes the finest allowed")
    zone = {"type": "string", "maxLength": 64}
    timezone = _query("timezone", zone, "IANA time zone of the buckets (UTC when left out)")
    compare = _query("compare", {"enum": list(COMPARES)}, "Also the previous range (prev) or the one a year earlier (yoy)")
    filters = [
        _query(name, {"type": "string", "maxLength": 500}, f"Only visits matching {target} (equality, one value)")
        for name, target in FILTER_PARAMS.items()
    ]
    website = {
        "name": "website_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
        "description": "The website's UUID",
    }
    count = {"type": "integer", "minimum": 0, "maximum": 999_999_999}
    site = "/api/websites/{website_id}"
    login = operation(
        "login", "Log in with the page's password; the token goes in Authorization: Bearer", schemas["token"], public=True
    )
    login["requestBody"] = {"required": True, "content": {"application/json": {"schema": schemas["login"]}}}
    verify = operation("verify", "The user a token belongs to", schemas["user"])
    pages = {"type": "integer", "minimum": 1, "maximum": 999_999_999}
    websites = operation(
        "websites",
        "Active websites by name, a page at a time",
        schemas["websites"],
        _query("page", pages, "Page number, from 1"),
        _query("pageSize", pages, f"Websites a page (default {DEFAULT_PAGE_SIZE})"),
        _query("search", {"type": "string", "maxLength": 500}, "Part of the name or domain"),
    )
    return {
        "/api/auth/login": {"post": login},
        "/api/auth/verify": {"post": verify, "get": {**verify, "operationId": "verify-get"}},
        "/api/auth/logout": {"post": operation("logout", "End the login session of the token", schemas["ok"])},
        "/api/me": {"get": operation("me", "The user, and how the request authenticated", schemas["me"])},
        "/api/websites": {"get": websites},
        "/api/me/websites": {"get": {**websites, "operationId": "me-websites"}},
        site: {"get": operation("website", "One website", schemas["website"], website)},
        site + "/active": {
            "get": operation("active", "Visitors of the last five minutes", schemas["active"], website, *filters)
        },
        site + "/stats": {
            "get": operation(
                "stats",
                "Headline numbers, and the comparison range's",
                schemas["stats"],
                website,
                *ranges,
                compare,
                unit,
                timezone,
                *filters,
            )
        },
        site + "/pageviews": {
            "get": operation(
                "pageviews",
                "Pageviews and visitors per bucket",
                schemas["series"],
                website,
                *ranges,
                unit,
                timezone,
                compare,
                *filters,
            )
        },
        site + "/metrics": {
            "get": operation(
                "metrics",
                "The values of one type, most first",
                schemas["metrics"],
                website,
                *ranges,
                _query("type", {"enum": list(METRIC_TYPES)}, "What to list", required=True),
                _query("limit", count, f"Rows at most (default {DEFAULT_METRIC_LIMIT}, at most {MAX_METRIC_LIMIT:,})"),
                _query("offset", count, "Rows to skip"),
                _query("search", {"type": "string", "maxLength": 500}, "Only values containing this (any case)"),
                unit,
                timezone,
                *filters,
            )
        },
        site + "/daterange": {
            "get": operation("daterange", "The first and the last event", schemas["daterange"], website, *filters)
        },
        site + "/events/series": {
            "get": operation(
                "events-series",
                "Custom events per name and bucket",
                events,
                website,
                _query("startAt", instant, "Start, Unix milliseconds", required=True),
                _query("endAt", instant, "End, Unix milliseconds, included", required=True),
                _query("timezone", zone, "IANA time zone of the buckets", required=True),
                unit,
                _query("limit", count, "Only the most frequent event names"),
                *filters,
            )
        },
    }


async def get_openapi(request: Request) -> Response:
    """GET /api/openapi.json: the OpenAPI description of the JSON API."""
    return Response(content=request.app.state.openapi, media_type="application/json")
