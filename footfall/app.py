"""The app assembly: ``create_app(config)`` wires the collector's routes, the page, errors and the lifespan.

Owns: start-up and shutdown order (collection, auth, geo, summary reader, upkeep), what goes on ``app.state``, CORS for
the collection routes, the request-body timeout, and systemd's sd_notify; mounts the collector's routes, the page's and
the read API's (footfall.readapi). Imports collector and every footfall module below it; nothing imports it but the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import msgspec
from litestar import Litestar, Router, get
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from collector import (
    DAY_SECONDS,
    ApiError,
    Collection,
    Config,
    asset_path,
    collection_routes,
)
from footfall.agents import load_parser, parse_agent
from footfall.assets import load_tracker, tracker_route
from footfall.auth import PageAuth
from footfall.checkpoint import Checkpointer
from footfall.errors import handle_api_error, handle_http_exception, handle_server_error
from footfall.fastpath import FastPathApp, fast_routes
from footfall.geo import Locator, open_locator
from footfall.openapi import get_openapi, openapi_document
from footfall.readapi import readapi_routes
from footfall.summary import SummaryReader
from footfall.upkeep import Upkeep, release_free_memory
from footfall.web import compression_config, load_static_files, page_routes

log = logging.getLogger("footfall")


def create_app(config: Config, clock: Callable[[], float] = time.time) -> Litestar:
    """The Litestar app: the collector's routes, the page, Umami-shaped errors, and the lifespan that runs them."""
    locator = Locator([], config.cdn_geo)
    # The WAL is checkpointed beside the writer, not in its commits (footfall.checkpoint); with 0, by Litestream.
    checkpointer = (
        Checkpointer(config.db, config.busy_timeout_ms, config.wal_autocheckpoint) if config.wal_autocheckpoint else None
    )
    collection = Collection(
        config,
        clock,
        locate=lambda client, headers: locator(client, headers),
        parse_agent=parse_agent,
        after_commit=checkpointer.after_commit if checkpointer else None,
    )
    summary = SummaryReader(
        config.db, config.busy_timeout_ms, config.timezone, clock, config.summary_timeout, config.wal_autocheckpoint
    )
    auth = PageAuth(config.password_hash, config.login_max_days * DAY_SECONDS, config.ipv6_prefix)
    upkeep = Upkeep(collection, summary, auth)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar):  # type: ignore[no-untyped-def]
        # Started in this order and stopped in reverse: the writer drains before the readers close.
        await collection.start()
        try:
            assert collection.prepared is not None
            auth.start(collection)
            await auth.load(collection.read_setting)
            found = await asyncio.to_thread(open_locator, config.geoip_db, config.embedded_geo)
            locator.sources, locator.names = found.sources, found.names
            await summary.start()
            app.state.collection = collection
            app.state.summary = summary
            app.state.auth = auth
            app.state.upkeep = upkeep
            app.state.checkpointer = checkpointer
            app.state.country_names = locator.names
            app.state.tracker = await asyncio.to_thread(load_tracker, config.collect_path)
            app.state.static = await asyncio.to_thread(load_static_files)
            app.state.openapi = msgspec.json.encode(openapi_document(config))
            await asyncio.to_thread(load_parser)
            upkeep.start()
            # Everything start-up made lives as long as the process: kept out of the collector's way, so the garbage
            # collector's full passes under load walk only what requests made (shorter pauses, fewer slow answers).
            # Its garbage goes first, and the heap pages it leaves free go back to the OS (0.5 MB of RSS at once, not
            # at upkeep's first quiet tick).
            gc.collect()
            gc.freeze()
            release_free_memory()
            yield
        finally:
            await upkeep.close()
            await collection.close()
            if checkpointer is not None:
                await checkpointer.close()
            await summary.close()
            locator.close()

    handlers = [
        Router("/", route_handlers=[*collection_routes(config), tracker_route(config)], middleware=[collection_cors]),
        *page_routes(),
        *readapi_routes(),
        get("/api/openapi.json", include_in_schema=False)(get_openapi),
    ]
    return FastPathApp(
        route_handlers=handlers,
        fast_routes=fast_routes(config),
        fast_middleware=[functools.partial(body_guard, timeout=config.body_timeout), collection_cors],
        lifespan=[lifespan],
        middleware=[functools.partial(body_guard, timeout=config.body_timeout)],
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception, Exception: handle_server_error},
        compression_config=compression_config(config),
        template_config=TemplateConfig(directory=asset_path("templates"), engine=JinjaTemplateEngine),
        request_max_body_size=config.batch_max_bytes,
        openapi_config=None,
        logging_config=None,  # footfall configures logging itself (key=value lines, no IPs); Litestar's would add handlers
        debug=False,
    )


def body_guard(app: ASGIApp, timeout: float) -> ASGIApp:
    """Bound how long a request body may take (--body-timeout, counted from the first read), and turn a client that
    hangs up mid-body into one log line instead of a traceback.

    A stalled body gets 408 and the connection is closed; a client that disconnected gets nothing (it is gone). Both are
    ApiErrors raised from ``receive``, so the handler stops where it is and the error handler renders them.
    """

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def guarded_receive() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            deadline = deadline or asyncio.get_running_loop().time() + timeout
            try:
                # A timer on this task, not wait_for's task per read (a body read is one per request on the hot routes).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.info("event=body-timeout method=%s path=%s seconds=%g", scope["method"], scope["path"], timeout)
                raise ApiError(
                    408, "request-timeout", f"The request body did not arrive within {timeout:g} s.", {"Connection": "close"}
                ) from None
            if message["type"] == "http.disconnect":
                log.info("event=client-disconnected method=%s path=%s", scope["method"], scope["path"])
                raise ApiError(400, "client-disconnected", "The client disconnected before sending the whole body.")
            complete = not message.get("more_body", False)
            return message

        await app(scope, guarded_receive, send)

    return guard


#: CORS answers of the collection routes. The browser tracker posts JSON with an x-umami-cache header from the site's
#: origin, which needs a preflight; any site may send hits and load the tracker, and nothing else is readable cross-origin.
_CORS_PREFLIGHT = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, x-umami-cache"),
    (b"access-control-max-age", str(DAY_SECONDS).encode()),
    (b"content-length", b"0"),
]


def collection_cors(app: ASGIApp) -> ASGIApp:
    """CORS for the collection routes only (mounted on their Router): preflights answered, ``*`` on every answer.

    Litestar's cors_config applies to the whole app, the page and its JSON included, so it is not used; the page, its
    JSON, login and share links send no CORS header and get no CORS preflight.
    """

    async def cors(scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers.from_scope(scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204, "headers": _CORS_PREFLIGHT})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["Access-Control-Allow-Origin"] = "*"
            await send(message)

        await app(scope, receive, send_with_origin)

    return cors


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd our state over $NOTIFY_SOCKET (Type=notify units); False when not run by systemd."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("event=sd-notify-failed error=%r", str(exc))
        return False
    return True
