"""The app assembly: ``create_app(config)`` wires the collector's routes, the page, errors and the lifespan.

Owns: start-up and shutdown order (collection, auth, geo, summary reader, upkeep), what goes on ``app.state``, CORS, and
systemd's sd_notify. Imports collector and every footfall module below it; nothing imports it but the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import msgspec
from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from collector import (
    DAY_SECONDS,
    ApiError,
    Collection,
    Config,
    asset_path,
    collection_routes,
    handle_api_error,
    handle_http_exception,
    handle_server_error,
    load_tracker,
)
from footfall.auth import PageAuth
from footfall.fastpath import FastPathApp, fast_routes
from footfall.geo import Locator, open_locator
from footfall.openapi import get_openapi, openapi_document
from footfall.summary import SummaryReader
from footfall.upkeep import Upkeep
from footfall.web import load_static_files, page_routes

log = logging.getLogger("footfall")


def create_app(config: Config, clock: Callable[[], float] = time.time) -> Litestar:
    """The Litestar app: the collector's routes, the page, Umami-shaped errors, and the lifespan that runs them."""
    locator = Locator([])
    collection = Collection(config, clock, locate=lambda client, headers: locator(client, headers))
    summary = SummaryReader(config.db, config.busy_timeout_ms, config.timezone, clock)
    auth = PageAuth(config.password_hash)
    upkeep = Upkeep(collection, summary, auth)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar):  # type: ignore[no-untyped-def]
        # Started in this order and stopped in reverse: the writer drains before the readers close.
        await collection.start()
        try:
            assert collection.prepared is not None
            auth.start(collection.prepared.secret)
            await auth.load(collection.read_setting)
            found = await asyncio.to_thread(open_locator, config.geoip_db, config.embedded_geo)
            locator.sources, locator.names = found.sources, found.names
            await summary.start()
            app.state.collection = collection
            app.state.summary = summary
            app.state.auth = auth
            app.state.upkeep = upkeep
            app.state.country_names = locator.names
            app.state.tracker = await asyncio.to_thread(load_tracker, config.collect_path)
            app.state.static = await asyncio.to_thread(load_static_files)
            app.state.openapi = msgspec.json.encode(openapi_document(config))
            upkeep.start()
            # Everything start-up made lives as long as the process: kept out of the collector's way, so the garbage
            # collector's full passes under load walk only what requests made (shorter pauses, fewer slow answers).
            gc.freeze()
            yield
        finally:
            await upkeep.close()
            await collection.close()
            await summary.close()
            locator.close()

    handlers = [*collection_routes(config), *page_routes(), get("/api/openapi.json", include_in_schema=False)(get_openapi)]
    return FastPathApp(
        route_handlers=handlers,
        fast_routes=fast_routes(config),
        lifespan=[lifespan],
        # The browser tracker posts JSON with an x-umami-cache header from the site's origin, which needs a preflight.
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["content-type", "x-umami-cache"],
            max_age=DAY_SECONDS,
        ),
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception, Exception: handle_server_error},
        template_config=TemplateConfig(directory=asset_path("templates"), engine=JinjaTemplateEngine),
        request_max_body_size=config.batch_max_bytes,
        openapi_config=None,
        logging_config=None,  # footfall configures logging itself (key=value lines, no IPs); Litestar's would add handlers
        debug=False,
    )


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
