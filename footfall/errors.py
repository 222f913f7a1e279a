"""Every error answer of the app, in Umami's shape: ``{"error": {"message", "code", "status"}}``.

The collector raises ApiError (collector.py's Errors section: the statuses and messages); this module renders it, and
Litestar's own errors (404, 405, 413 …) and anything unexpected, as the same JSON body and never with internal detail.

Owns: the app's exception handlers (footfall.app registers them; footfall.fastpath uses them for its routes). Imports
collector and Litestar.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException

from collector import ApiError, json_response, too_large

log = logging.getLogger("footfall")

#: The code of each status Litestar raises itself (any other 4xx answers "bad-request").
_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    429: "too-many-requests",
}


def handle_api_error(request: Request, exc: ApiError) -> Response:
    """Render an ApiError."""
    return json_response(exc.body(), exc.status, exc.headers)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    """Render Litestar's own errors (404, 405, 413 …) in Umami's shape, never with internal detail."""
    status = exc.status_code
    if status == 413:
        return handle_api_error(request, too_large("Request body is too large."))
    if status >= 500:
        return handle_server_error(request, exc)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    return handle_api_error(request, ApiError(status, _CODES.get(status, "bad-request"), message, dict(exc.headers or {})))


def handle_server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: log the traceback with method and route, answer a fixed 500 (Umami sends its stack; we don't)."""
    log.error("event=server-error method=%s path=%s", request.method, request.url.path, exc_info=exc)
    return handle_api_error(request, ApiError(500, "server-error", "Server error"))
