"""Real Umami clients: the requests captured in shared/reference/umami-clients.md, replayed byte for byte to a live footfall."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

import footfall.cli
from conftest import LiveServer, rows

pytestmark = pytest.mark.slow

WEBSITE = "67fdaff4-97d0-4e97-b367-29bd0e201c2d"
TRACKER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
PAGE = '"website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","screen":"800x600","language":"en-US","title":"Anchor Test Page","hostname":"localhost"'  # noqa: E501


def raw_request(head: str, body: str = "") -> bytes:
    """An HTTP/1.1 request from a capture: header lines joined with CRLF, Content-Length as captured or computed."""
    data = body.encode()
    lines = head.strip("\n").split("\n")
    if body and not any(line.lower().startswith("content-length:") for line in lines):
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


NODE_HEAD = """POST /api/send HTTP/1.1
host: 127.0.0.1:8765
connection: keep-alive
Content-Type: application/json
User-Agent: Mozilla/5.0 Umami/v20.20.2
accept: */*
accept-language: *
sec-fetch-mode: cors
accept-encoding: gzip, deflate
"""
PYPI_HEAD = """POST /api/send HTTP/1.1
Host: 127.0.0.1:8765
Accept: */*
Accept-Encoding: gzip, deflate
Connection: keep-alive
User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36
Authorization: Bearer None
Content-Type: application/json
"""
TRACKER_HEAD = f"""POST /api/send HTTP/1.1
Host: 127.0.0.1:8765
Connection: keep-alive
sec-ch-ua-platform: "Linux"
User-Agent: {TRACKER_UA}
sec-ch-ua: "Not:A-Brand";v="8", "Chromium";v="156"
Content-Type: application/json
sec-ch-ua-mobile: ?0
Accept: */*
Origin: http://localhost:8765
Sec-Fetch-Site: cross-site
Sec-Fetch-Mode: cors
Sec-Fetch-Dest: empty
Referer: http://localhost:8765/
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-US,en;q=0.9
"""
PREFLIGHT = """OPTIONS /api/send HTTP/1.1
Host: 127.0.0.1:8765
Connection: keep-alive
Accept: */*
Access-Control-Request-Method: POST
Access-Control-Request-Headers: content-type
Origin: http://localhost:8765
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36
Sec-Fetch-Mode: cors
Sec-Fetch-Site: cross-site
Sec-Fetch-Dest: empty
Referer: http://localhost:8765/
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-US,en;q=0.9
"""

# (client, head, body), in the order the clients sent them.
CAPTURES = [
    (
        "node",
        NODE_HEAD + "content-length: 208\n",
        '{"type":"event","payload":{"website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","url":"/home","title":"Home","hostname":"example.com","language":"en-US","screen":"1920x1080","referrer":"https://www.google.com/"}}',
    ),  # noqa: E501
    (
        "node",
        NODE_HEAD,
        '{"type":"event","payload":{"website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","name":"signup-click","data":{"plan":"pro","seats":3}}}',
    ),  # noqa: E501
    (
        "node",
        NODE_HEAD,
        '{"type":"identify","payload":{"website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","data":{"userId":"u-123","email":"a@example.com"}}}',
    ),  # noqa: E501
    (
        "pypi",
        PYPI_HEAD.replace("Content-Type", "Content-Length: 208\nContent-Type"),
        '{"payload":{"hostname":"example.com","language":"en-US","referrer":"https://www.google.com/","screen":"1920x1080","title":"Home","url":"/home","website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d"},"type":"event"}',
    ),  # noqa: E501
    (
        "pypi",
        PYPI_HEAD,
        '{"payload":{"hostname":"example.com","language":"en-US","referrer":"","screen":"1920x1080","title":"signup-click","url":"/pricing","website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","name":"signup-click","data":{"plan":"pro","seats":3}},"type":"event"}',
    ),  # noqa: E501
    (
        "pypi",
        PYPI_HEAD,
        '{"payload":{"hostname":"example.com","language":"en-US","referrer":"","screen":"1920x1080","title":"revenue","url":"/checkout","website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","name":"revenue","data":{"revenue":19.99,"currency":"EUR"}},"type":"event"}',
    ),  # noqa: E501
    (
        "pypi",
        PYPI_HEAD,
        '{"payload":{"hostname":"example.com","language":"en-US","referrer":"","screen":"1920x1080","title":"api-call","url":"/","website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","name":"api-call","data":{},"ip":"203.0.113.7","id":"user-42"},"type":"event"}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "Content-Length: 234\n",
        '{"type":"event","payload":{"website":"67fdaff4-97d0-4e97-b367-29bd0e201c2d","screen":"800x600","language":"en-US","title":"Anchor Test Page","hostname":"localhost","url":"http://localhost:8765/page.html","referrer":"","tag":"anchor"}}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "x-umami-cache: CACHE\n",
        '{"type":"event","payload":{'
        + PAGE
        + ',"url":"http://localhost:8765/page.html","referrer":"","tag":"anchor","name":"custom-evt","data":{"a":1,"nested":{"b":"two"}}}}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "x-umami-cache: \n",
        '{"type":"identify","payload":{'
        + PAGE
        + ',"url":"http://localhost:8765/page.html","referrer":"","tag":"anchor","id":"user-9","data":{"plan":"pro"}}}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "x-umami-cache: CACHE\n",
        '{"type":"event","payload":{'
        + PAGE
        + ',"url":"http://localhost:8765/page.html","referrer":"","tag":"anchor","id":"user-9","name":"signup-button","data":{"plan":"pro"}}}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "x-umami-cache: CACHE\n",
        '{"type":"performance","payload":{'
        + PAGE
        + ',"url":"http://localhost:8765/page.html","referrer":"","tag":"anchor","id":"user-9","ttfb":5.900000000023283,"fcp":88,"lcp":88,"duration":1056}}',
    ),  # noqa: E501
    (
        "tracker",
        TRACKER_HEAD + "x-umami-cache: CACHE\n",
        '{"type":"event","payload":{'
        + PAGE
        + ',"url":"http://localhost:8765/page2?utm_source=test&x=1","referrer":"http://localhost:8765/page.html","tag":"anchor","id":"user-9"}}',
    ),  # noqa: E501
]


def exchange(sock: socket.socket, request: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    """Send one request on a keep-alive connection and read the whole answer."""
    sock.sendall(request)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, response.read()


def test_captured_client_requests_all_succeed(db_path: Path) -> None:
    """Every captured request from @umami/node, umami-analytics and the browser tracker gets a 200 on one keep-alive
    connection each, and the rows match what the real Umami stored for them."""
    assert (
        CliRunner().invoke(footfall.cli.cli, ["site", "add", "capture", "--id", WEBSITE, "--db", str(db_path)]).exit_code == 0
    )
    server = LiveServer(db_path)
    try:
        connections: dict[str, socket.socket] = {}
        cache = ""
        with socket.create_connection(("127.0.0.1", server.port)) as preflight_sock:
            preflight, _ = exchange(preflight_sock, raw_request(PREFLIGHT))
            assert preflight.status == 204 and preflight.getheader("access-control-allow-origin") == "*"
        for client, head, body in CAPTURES:
            sock = connections.get(client) or socket.create_connection(("127.0.0.1", server.port))
            connections[client] = sock
            response, answer = exchange(sock, raw_request(head.replace("CACHE", cache), body))
            assert response.status == 200, (client, body, answer)
            assert set(json.loads(answer)) == {"cache", "sessionId", "visitId"}
            if client == "tracker":
                assert response.getheader("access-control-allow-origin") == "*"
                cache = json.loads(answer)["cache"]  # the tracker echoes the last token in x-umami-cache
        for sock in connections.values():
            sock.close()
        assert server.stop() == 0
    finally:
        if server.process.poll() is None:
            server.stop(9)
    events = rows(db_path, "SELECT event_type, event_name, url_path, url_query, hostname, tag FROM events ORDER BY event_key")
    assert events == [
        (1, None, "/home", None, "example.com", None),
        (2, "signup-click", "", None, "localhost", None),  # @umami/node sends no url or hostname: Umami stores localhost
        (1, None, "/home", None, "example.com", None),
        (2, "signup-click", "/pricing", None, "example.com", None),
        (2, "revenue", "/checkout", None, "example.com", None),
        (2, "api-call", "/", None, "example.com", None),
        (1, None, "/page.html", None, "localhost", "anchor"),
        (2, "custom-evt", "/page.html", None, "localhost", "anchor"),
        (2, "signup-button", "/page.html", None, "localhost", "anchor"),
        (5, None, "/page.html", None, None, None),
        (1, None, "/page2", "utm_source=test&x=1", "localhost", "anchor"),
    ]
    assert rows(db_path, "SELECT data_key, string_value FROM custom_events WHERE event_name = 'signup-click' ORDER BY 1") == [
        ("plan", "pro"),
        ("plan", "pro"),
        ("seats", "3.0000"),
        ("seats", "3.0000"),
    ]
    assert rows(db_path, "SELECT number_value FROM custom_events WHERE data_key = 'revenue'") == [(19.99,)]
    assert rows(db_path, "SELECT utm_source FROM events WHERE url_path = '/page2'") == [("test",)]
    assert sorted(rows(db_path, "SELECT data_key, string_value, distinct_id FROM session_data")) == [
        ("email", "a@example.com", None),
        ("plan", "pro", "user-9"),
        ("userId", "u-123", None),
    ]
    assert rows(db_path, "SELECT DISTINCT distinct_id FROM sessions WHERE distinct_id IS NOT NULL ORDER BY 1") == [
        ("user-42",),
        ("user-9",),
    ]
    assert rows(db_path, "SELECT count(*) FROM custom_events WHERE event_name = 'api-call'") == [(1,)]  # data {} → no rows
