"""The hot collection routes (``POST /api/send``, ``/api/batch`` and --collect-path) answered before Litestar's routing.

Litestar's per-request work (routing, the kwargs and signature model, the Response object, the middleware stack) costs
about as much as footfall's own work for a pageview, so ``FastPathApp`` — the Litestar app footfall runs — takes these
three POST routes itself, as bare ASGI: the body read once with the route's size limit, the collector's
``collect_send``/``collect_batch`` called with it, and the pre-encoded answer sent. Everything else (other methods on
these paths, CORS preflights, every other route) goes through Litestar unchanged, and the fast path stays identical to
it where a client can tell: the collection routes' own middleware (CORS, the body timeout) wraps it too, and every error
is rendered by the app's own exception handlers (the Umami-shaped bodies, 413 for a large body, 429, 503 + Retry-After).
The routes are still registered with Litestar (collector.collection_routes), so they answer the same if called there.

Owns: FastPathApp and the fast path's body reading. Imports collector, footfall.errors and Litestar; only footfall.app
imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar
from litestar.datastructures import Headers
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.middleware._internal.exceptions.middleware import get_exception_handler

from collector import Collect, Collection, Config, Origin, collect_batch, collect_send
from footfall.errors import handle_server_error


def fast_routes(config: Config) -> dict[str, tuple[Collect, int]]:
    """POST paths the fast path answers, each with its collect function and body limit (the same as the Litestar route's)."""
    routes: dict[str, tuple[Collect, int]] = {
        "/api/send": (collect_send, config.max_body_bytes),
        "/api/batch": (collect_batch, config.batch_max_bytes),
    }
    if config.collect_path:
        routes[config.collect_path] = (collect_send, config.max_body_bytes)
    return routes


async def read_body(headers: Headers, receive: Callable[[], Awaitable[Any]], limit: int) -> bytes:
    """The request body, refused as Litestar's Request.body() refuses it: a bad Content-Length, more than ``limit`` bytes
    announced or sent (413), or a client gone before the end."""
    announced = headers.get("content-length")
    if announced is not None:
        try:
            if int(announced) > limit:
                raise RequestEntityTooLarge
        except ValueError:
            raise ClientException(f"Invalid content-length: {announced!r}") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.request":
            chunk = event.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not event.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif event["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")


_JSON = (b"content-type", b"application/json")


class FastPathApp(Litestar):
    """footfall's Litestar app, answering the hot collection routes itself (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        fast_routes: Mapping[str, tuple[Collect, int]] = {},  # noqa: B006
        fast_middleware: Sequence[Callable[[Any], Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fast_routes = dict(fast_routes)
        #: The fast routes get the same ASGI middleware as their Litestar routes (the collection routes' CORS, the body
        #: timeout), applied around the bare handler in the same order.
        self._fast: Any = self._answer_fast
        for wrap in reversed(fast_middleware):
            self._fast = wrap(self._fast)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.fast_routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = scope["litestar_app"] = self
        scope.setdefault("state", {})
        await self._fast(scope, receive, self._wrap_send(send=send, scope=scope))

    async def _answer_fast(self, scope: Any, receive: Any, send: Any) -> None:
        collect, limit = self.fast_routes[scope["path"]]
        headers = Headers.from_scope(scope)
        try:
            collection: Collection = self.state.collection
            now = collection.clock()
            client = scope.get("client")
            origin = Origin(client[0] if client else "", headers)
            collection.check_rate(origin, now)  # before the body is read, as the Litestar route does
            answer = await collect(collection, origin, await read_body(headers, receive, limit), now)
        except Exception as exc:  # noqa: BLE001 - rendered by the app's exception handlers, as Litestar would
            await self._answer_error(scope, receive, send, exc)
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [_JSON, (b"content-length", b"%d" % len(answer))]}
        )
        await send({"type": "http.response.body", "body": answer})

    async def _answer_error(self, scope: Any, receive: Any, send: Any, exc: Exception) -> None:
        handler = get_exception_handler(self.exception_handlers, exc) or handle_server_error
        request = self.request_class(scope=scope, receive=receive, send=send)
        await handler(request, exc).to_asgi_response(app=None, request=request)(scope, receive, send)
