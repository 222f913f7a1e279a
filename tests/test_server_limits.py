"""`footfall serve`'s limits against slow, stalled and abandoned clients, on a live server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

import collector
from conftest import FIREFOX, LiveServer, rows

pytestmark = pytest.mark.slow


def started_server(db_path: Path, *args: str) -> tuple[LiveServer, str]:
    collector.prepare_database(str(db_path))
    server = LiveServer(db_path, *args)
    return server, rows(db_path, "SELECT website_id FROM website")[0][0]


def head(port: int, length: int, path: str = "/api/send") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {FIREFOX}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, since: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds from ``since`` until then."""
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - since


def send_one(server: LiveServer, website: str) -> int:
    body = {"type": "event", "payload": {"website": website, "url": "/ok"}}
    return httpx.post(server.url + "/api/send", json=body, headers={"User-Agent": FIREFOX}, timeout=5).status_code


def test_a_stalled_body_is_dropped_within_the_timeout(db_path: Path) -> None:
    """A body that stops arriving gets 408 in Umami's shape after --body-timeout and the connection is closed; one log
    line says so, with no traceback; everyone else is served meanwhile."""
    server, website = started_server(db_path, "--body-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(server.port, 200) + b'{"type": "event", ')
        since = time.monotonic()
        assert send_one(server, website) == 200
        answer, waited = read_until_closed(sock, since)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer
    assert 0.9 <= waited <= 3, waited
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "error": {"message": "The request body did not arrive within 1 s.", "code": "request-timeout", "status": 408}
    }
    server.stop()
    log = server.log.read_text()
    assert log.count("event=body-timeout method=POST path=/api/send seconds=1") == 1
    assert "Traceback" not in log and "level=ERROR" not in log


def test_slow_request_headers_are_cut_off(db_path: Path) -> None:
    """A request head trickling in (slowloris), or a connection that never sends one, is closed after --header-timeout;
    a keep-alive connection gets the same time for its next request."""
    server, website = started_server(db_path, "--header-timeout", "1")
    since = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as trickle,
        socket.create_connection(("127.0.0.1", server.port)) as silent,
    ):
        trickle.sendall(b"POST /api/send HTTP/1.1\r\nHost: x\r\n")
        trickle.sendall(b"X-Slow: 1\r\n")
        answer, waited = read_until_closed(trickle, since)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and 0.9 <= waited <= 3, (answer, waited)
        assert read_until_closed(silent, since)[0].startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", server.port)) as keep:
        body = json.dumps({"type": "event", "payload": {"website": website, "url": "/k"}}).encode()
        keep.sendall(head(server.port, len(body)) + body)
        time.sleep(0.2)  # the first answer arrives
        since = time.monotonic()
        keep.sendall(b"POST /api/send HTTP/1.1\r\n")  # the next request starts, and stalls
        answer, waited = read_until_closed(keep, since)
        first, _, second = answer.partition(b"}HTTP/1.1 ")
        assert first.startswith(b"HTTP/1.1 200 OK") and second.startswith(b"408 Request Timeout"), answer
        assert 0.7 <= waited <= 3, waited  # its clock starts when the first answer went out, up to 0.2 s before ours
    assert send_one(server, website) == 200
    server.stop()
    assert "Traceback" not in server.log.read_text()


def test_a_thousand_aborted_clients_leave_no_traceback(db_path: Path) -> None:
    """1,000 clients that hang up half-way through their body (50 at a time; half with a reset) leave one info line
    each and no traceback; the server goes on serving."""
    server, website = started_server(db_path)
    for _ in range(20):
        sockets = []
        for n in range(50):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if n % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            sock.sendall(head(server.port, 1000) + b'{"type":"event","payload":{"website":"')
            sockets.append(sock)
        time.sleep(0.05)
        for sock in sockets:
            sock.close()
    assert send_one(server, website) == 200
    deadline = time.monotonic() + 10
    while server.output().count("event=client-disconnected") < 1000 and time.monotonic() < deadline:
        time.sleep(0.1)
    server.stop()
    log = server.log.read_text()
    assert log.count("event=client-disconnected method=POST path=/api/send") == 1000
    assert "Traceback" not in log and "level=ERROR" not in log and "Exception in ASGI application" not in log
    assert rows(db_path, "SELECT count(*) FROM website_event") == [(1,)]


def test_connections_beyond_the_limit_get_503(db_path: Path) -> None:
    """With --max-connections 20, a request while 20 connections are open gets 503; once they close, 200 again."""
    server, website = started_server(db_path, "--max-connections", "20")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    time.sleep(0.2)
    try:
        assert send_one(server, website) == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert send_one(server, website) == 200
    server.stop()
