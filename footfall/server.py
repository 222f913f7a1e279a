"""How `footfall serve` runs uvicorn: its limits and timeouts, the HTTP protocol that bounds a request's headers, and
the server that tells systemd when it is ready and when it drains.

Owns: the uvicorn settings footfall chooses (no proxy-header rewrite, no access log, concurrency limit, keep-alive), the
header timeout uvicorn lacks, signal handling for a clean exit. Imports collector only (sd_notify is handed in).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from collector import Config

#: The answer to a connection that did not finish its request's headers in time (then it is closed).
_HEADER_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


#: Seconds an idle keep-alive connection stays open (uvicorn's default; a slow next request then has --header-timeout).
KEEP_ALIVE_SECONDS = 5


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers do not arrive within ``header_timeout``.

    uvicorn times out idle keep-alive connections only, and stops even that at a request's first byte, so a client
    trickling a request head (slowloris) held its connection forever. The timer runs from the connection's start, and
    again after each response, until the next request's headers are complete.
    """

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete  # no request of this connection is being handled
        if waiting and not self.transport.is_closing():
            self.transport.write(_HEADER_TIMEOUT_ANSWER)
            self.transport.close()


def uvicorn_config(app: Any, config: Config) -> uvicorn.Config:
    """The uvicorn.Config `footfall serve` runs ``app`` with."""
    protocol = type("FootfallHttpProtocol", (HeaderTimeoutProtocol,), {"header_timeout": float(config.header_timeout)})
    # proxy_headers=False: footfall decides itself which forwarding headers to believe (--trusted-proxies); uvicorn's
    # own rewrite would replace a trusted proxy's address with the client's.
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=protocol,
        access_log=False,
        server_header=False,
        log_level=config.log_level,
        lifespan="on",
        proxy_headers=False,
        limit_concurrency=config.max_connections,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


class NotifyingServer(uvicorn.Server):
    """uvicorn's server, telling systemd through ``notify`` (footfall.app.sd_notify) when it is listening (READY=1) and
    when it starts to drain (STOPPING=1)."""

    def __init__(self, config: uvicorn.Config, notify: Callable[[str], object], base: str) -> None:
        super().__init__(config)
        self.notify, self.base = notify, base

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.notify(f"READY=1\nSTATUS=listening on {self.base}")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.notify("STOPPING=1\nSTATUS=committing queued events")
        await super().shutdown(sockets)

    def run_until_stopped(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (closed afterwards) until SIGTERM or SIGINT, then drain and return (exit 0, as systemd wants)."""
        # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler in place before it started. A
        # drained, committed shutdown is a success, so that handler does nothing.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)
        with sock:
            self.run(sockets=[sock])
