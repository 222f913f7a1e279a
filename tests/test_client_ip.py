"""Who sent a hit: forwarding headers only from trusted proxies, payload.ip rules, and --ignore-ip."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
from conftest import FIREFOX, ROOT, Clock, assert_api_error, flush, free_port, hit, open_client, rows

pytestmark = pytest.mark.anyio


async def session_of(
    db_path: Path,
    clock: Clock,
    website: str,
    peer: str,
    headers: dict[str, str] | None = None,
    payload_ip: str | None = None,
    **config: Any,
) -> str:
    """The sessionId footfall gives one pageview from ``peer`` with ``headers`` (same UA and salt every time)."""
    app = footfall.app.create_app(collector.Config(db=str(db_path), embedded_geo=False, **config), clock)
    async with open_client(app, peer=peer) as client:
        response = await client.post(
            "/api/send", json=hit(website, url="/", ip=payload_ip), headers={"User-Agent": FIREFOX, **(headers or {})}
        )
        assert response.status_code == 200, response.text
        return response.json()["sessionId"]


async def test_spoofed_forwarding_headers_from_untrusted_peers_are_ignored(db_path: Path, clock: Clock, website: str) -> None:
    """A client on the internet cannot pick its own address with X-Forwarded-For or CF-Connecting-IP."""
    plain = await session_of(db_path, clock, website, "203.0.113.9")
    for header in ("x-forwarded-for", "cf-connecting-ip", "x-real-ip", "true-client-ip"):
        assert await session_of(db_path, clock, website, "203.0.113.9", {header: "198.51.100.7"}) == plain


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-for": "198.51.100.7"},
        {"x-forwarded-for": "203.0.113.66, 198.51.100.7"},  # the visitor's own entry on the left, the proxy's on the right
        {"x-forwarded-for": "203.0.113.66,198.51.100.7, 127.0.0.1"},  # two trusted hops: the second proxy is skipped
        {"x-forwarded-for": "198.51.100.7:51234"},
        {"x-real-ip": "198.51.100.7:51234"},
        {"x-real-ip": "192.0.2.1", "x-forwarded-for": "198.51.100.7"},  # X-Real-IP only when there is no X-Forwarded-For
        {"x-forwarded-for": "198.51.100.7", "true-client-ip": "192.0.2.1", "cf-connecting-ip": "192.0.2.2"},
        {"x-forwarded-for": "::ffff:198.51.100.7", "forwarded": "for=192.0.2.3"},
    ],
)
async def test_trusted_proxy_headers_name_the_client(
    db_path: Path, clock: Clock, website: str, headers: dict[str, str]
) -> None:
    """Behind a trusted proxy (loopback by default) the client is the first untrusted X-Forwarded-For entry from the
    right, else X-Real-IP; vendor headers and Forwarded are not read unless named; ports and mapping are removed."""
    direct = await session_of(db_path, clock, website, "198.51.100.7")
    assert await session_of(db_path, clock, website, "127.0.0.1", headers) == direct


async def test_x_forwarded_for_is_walked_past_trusted_proxies_only(db_path: Path, clock: Clock, website: str) -> None:
    """An untrusted hop on the way is the client (it may have written anything left of it); trust it and the walk goes on.
    When every entry is a trusted proxy, the leftmost is the client."""
    chain = {"x-forwarded-for": "198.51.100.7, 10.0.0.2"}
    hop = await session_of(db_path, clock, website, "10.0.0.2")
    assert await session_of(db_path, clock, website, "127.0.0.1", chain) == hop
    direct = await session_of(db_path, clock, website, "198.51.100.7")
    wider = "127.0.0.1/32,10.0.0.0/8"
    assert await session_of(db_path, clock, website, "127.0.0.1", chain, trusted_proxies=wider) == direct
    inside = await session_of(db_path, clock, website, "10.0.0.9")
    assert (
        await session_of(
            db_path, clock, website, "127.0.0.1", {"x-forwarded-for": "10.0.0.9, 10.0.0.2"}, trusted_proxies=wider
        )
        == inside
    )


async def test_named_headers_are_the_only_ones_read(db_path: Path, clock: Clock, website: str) -> None:
    """--client-ip-header cf-connecting-ip (behind Cloudflare) or forwarded reads that header and nothing else."""
    direct = await session_of(db_path, clock, website, "198.51.100.7")
    cloudflare = {"cf-connecting-ip": "::ffff:198.51.100.7", "x-forwarded-for": "192.0.2.1", "true-client-ip": "192.0.2.2"}
    named = {"client_ip_header": "CF-Connecting-IP"}
    assert await session_of(db_path, clock, website, "127.0.0.1", cloudflare, **named) == direct
    forwarded = {"forwarded": 'for=192.0.2.1, for="198.51.100.7:4711";proto=https', "x-forwarded-for": "192.0.2.9"}
    assert await session_of(db_path, clock, website, "127.0.0.1", forwarded, client_ip_header="forwarded") == direct


async def test_forwarded_ipv6_with_port(db_path: Path, clock: Clock, website: str) -> None:
    """Forwarded: for="[2001:db8::1]:4711" is the IPv6 client 2001:db8::1 (with --client-ip-header forwarded)."""
    direct = await session_of(db_path, clock, website, "2001:db8::1")
    headers = {"forwarded": 'for="[2001:db8::1]:4711"'}
    assert await session_of(db_path, clock, website, "::1", headers, client_ip_header="forwarded") == direct


async def test_garbage_in_headers_falls_back_to_the_peer(db_path: Path, clock: Clock, website: str) -> None:
    """An unparsable forwarded address never fails the request; the proxy's own address is used."""
    peer_only = await session_of(db_path, clock, website, "127.0.0.1")
    for value in ("unknown", "<script>", "999.1.1.1", "", "::::", "1.2.3.4.5", "198.51.100.7, garbage"):
        assert await session_of(db_path, clock, website, "127.0.0.1", {"x-forwarded-for": value}) == peer_only


async def test_trusted_proxies_and_single_header_are_configurable(db_path: Path, clock: Clock, website: str) -> None:
    """--trusted-proxies takes CIDRs; --client-ip-header reads exactly that header and no other."""
    direct = await session_of(db_path, clock, website, "198.51.100.7")
    assert (
        await session_of(db_path, clock, website, "10.1.2.3", {"x-real-ip": "198.51.100.7"}, trusted_proxies="10.0.0.0/8")
        == direct
    )
    assert (
        await session_of(
            db_path,
            clock,
            website,
            "127.0.0.1",
            {"x-client": "198.51.100.7", "cf-connecting-ip": "192.0.2.9"},
            client_ip_header="X-Client",
        )
        == direct
    )
    assert await session_of(db_path, clock, website, "127.0.0.1", {"x-real-ip": "198.51.100.7"}, trusted_proxies="") != direct


async def test_payload_ip_only_from_trusted_senders(db_path: Path, clock: Clock, website: str) -> None:
    """payload.ip counts from a trusted proxy or with --allow-payload-ip, not from anyone on the internet."""
    direct = await session_of(db_path, clock, website, "198.51.100.7")
    assert await session_of(db_path, clock, website, "127.0.0.1", payload_ip="198.51.100.7") == direct
    assert await session_of(db_path, clock, website, "203.0.113.9", payload_ip="198.51.100.7") != direct
    assert await session_of(db_path, clock, website, "203.0.113.9", payload_ip="198.51.100.7", allow_payload_ip=True) == direct
    assert await session_of(db_path, clock, website, "127.0.0.1", payload_ip="not an ip") == await session_of(
        db_path, clock, website, "127.0.0.1"
    )


@pytest.mark.parametrize(
    ("peer", "ignored"),
    [("198.51.100.7", True), ("198.51.100.200", True), ("198.51.101.1", False), ("2001:db8::5", True), ("2001:db9::5", False)],
)
async def test_ignored_ips_get_403_and_store_nothing(
    db_path: Path, clock: Clock, website: str, peer: str, ignored: bool
) -> None:
    """--ignore-ip matches IPv4 and IPv6 addresses and CIDRs: 403 in Umami's shape, and no row."""
    config = collector.Config(db=str(db_path), embedded_geo=False, ignore_ip="198.51.100.0/24, 2001:db8::/32")
    async with open_client(footfall.app.create_app(config, clock), peer=peer) as client:
        response = await client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX})
        bot = await client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": "curl/8.0"})
        await flush(client)
    assert bot.json() == {"beep": "boop"}  # the bot check comes first, as in Umami
    if ignored:
        assert_api_error(response, 403, "forbidden", "Forbidden")
        assert rows(db_path, "SELECT count(*) FROM website_event") == [(0,)]
    else:
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7 ", "198.51.100.7"),
        ("198.51.100.7:80", "198.51.100.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ('"198.51.100.7"', "198.51.100.7"),
        ("garbage", None),
        ("", None),
        (None, None),
        ("[::1", "::1"),
        ("1.2.3", None),
    ],
)
def test_normalize_ip(text: str | None, expected: str | None) -> None:
    """Addresses from headers: quotes, brackets and ports stripped, IPv4-mapped made IPv4, garbage is None."""
    result = collector.normalize_ip(text)
    assert (None if result is None else str(result)) == expected


def test_bad_network_settings_are_explained() -> None:
    """A typo in --trusted-proxies or --ignore-ip stops start-up with the entry named."""
    with pytest.raises(collector.ConfigError, match="trusted_proxies: '10.0.0.0/33'"):
        collector.load_config({"trusted_proxies": "10.0.0.0/33"}, {})
    with pytest.raises(collector.ConfigError, match="ignore_ip: 'nope'"):
        collector.load_config({}, {"FOOTFALL_IGNORE_IP": "1.2.3.4,nope"})
    assert collector.parse_networks("1.2.3.4, ::1/128,", "x") == (
        ipaddress.ip_network("1.2.3.4/32"),
        ipaddress.ip_network("::1/128"),
    )


def through_nginx(visitor: str, sent: dict[str, str]) -> dict[str, str]:
    """The headers the README's nginx block would forward for a request from ``visitor`` (a public address, which a test
    on 127.0.0.1 cannot connect from) carrying ``sent``: every header as the visitor sent it, Host as is, X-Real-IP set
    to $remote_addr, and $proxy_add_x_forwarded_for (the visitor's own X-Forwarded-For, then ", $remote_addr").
    test_forged_headers_through_a_real_nginx runs the block itself."""
    forwarded = {k: v for k, v in sent.items() if k.lower() not in ("x-real-ip", "x-forwarded-for", "x-forwarded-proto")}
    own = sent.get("x-forwarded-for")
    forwarded["x-real-ip"] = visitor
    forwarded["x-forwarded-for"] = f"{own}, {visitor}" if own else visitor
    forwarded["x-forwarded-proto"] = "https"
    return forwarded


@pytest.mark.slow
def test_forged_headers_through_the_readme_nginx_config_change_nothing(db_path: Path) -> None:
    """With the headers the README's nginx config forwards, a visitor's own True-Client-IP, CF-Connecting-IP, leftmost
    X-Forwarded-For and CF-IPCountry change neither the address (--ignore-ip, --rate-limit) nor the country, which
    comes from the real (public) address."""
    import httpx

    from conftest import LiveServer

    collector.prepare_database(str(db_path))
    server = LiveServer(db_path, "--ignore-ip", "9.9.9.9", "--rate-limit", "3/m")
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    forgeries = [
        {"true-client-ip": "1.1.1.1"},
        {"cf-connecting-ip": "1.1.1.1", "cf-ipcountry": "DE", "cf-ipcity": "Berlin"},
        {"x-forwarded-for": "1.1.1.1, 9.9.9.9", "x-real-ip": "1.1.1.1", "cf-ipcountry": "DE"},
    ]
    with httpx.Client(base_url=server.url) as http:

        def send(visitor: str, forged: dict[str, str]) -> httpx.Response:
            headers = through_nginx(visitor, {"user-agent": FIREFOX, **forged})
            return http.post("/api/send", json=hit(website, url="/"), headers=headers)

        answers = [send("8.8.8.8", forged) for forged in forgeries]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.json()["sessionId"] for a in answers}) == 1  # one visitor, whatever they claimed
        limited = send("8.8.8.8", {"x-forwarded-for": "203.0.113.1"})  # a fourth "new" address within the minute
        assert_api_error(limited, 429, "too-many-requests")
        for forged in forgeries:
            assert_api_error(send("9.9.9.9", forged), 403, "forbidden")  # the ignored visitor stays ignored
    server.stop()
    assert rows(db_path, "SELECT country, region, city FROM session") == [("US", None, None)]  # 8.8.8.8, not DE/Berlin


def readme_block(first_line: str) -> str:
    """The README's code block that starts with ``first_line``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", readme, flags=re.S | re.M)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, first_line
    return found[0]


@contextlib.contextmanager
def readme_nginx(tmp_path: Path, footfall_port: int) -> Iterator[int]:
    """Debian's nginx on 127.0.0.1 running the README's nginx server block as printed (only its upstream port changed and
    a listen line added); yields its port."""
    block = readme_block("server {\n    server_name analytics.example.com;")
    assert block.count("http://127.0.0.1:8000") == 1
    port = free_port()
    block = block.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{footfall_port}")
    block = block.replace("server {\n", f"server {{\n    listen 127.0.0.1:{port};\n", 1)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off; master_process off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/nginx-error.log;\n"
        f"events {{}}\nhttp {{\n    access_log off; {temp}\n{block}}}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


#: Debian's nginx (.ci/run installs it).
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.mark.slow
def test_forged_headers_through_a_real_nginx(db_path: Path, tmp_path: Path) -> None:
    """Through Debian's nginx running the README's block, visitors on 127.0.0.2 and 127.0.0.3 who send their own
    True-Client-IP, CF-Connecting-IP, X-Real-IP, leftmost X-Forwarded-For and CF-IPCountry stay who they are: one session
    each, the rate limit counts them, --ignore-ip holds, and no country or city is taken from their headers."""
    import httpx

    from conftest import LiveServer

    collector.prepare_database(str(db_path))
    server = LiveServer(db_path, "--ignore-ip", "127.0.0.3", "--rate-limit", "4/m")
    website = rows(db_path, "SELECT website_id FROM website")[0][0]
    forgeries = [
        {},
        {"true-client-ip": "1.1.1.1"},
        {"cf-connecting-ip": "1.1.1.1", "cf-ipcountry": "DE", "cf-ipcity": "Berlin"},
        {"x-forwarded-for": "1.1.1.1, 127.0.0.9", "x-real-ip": "1.1.1.1", "cf-ipcountry": "DE"},
    ]
    try:
        with readme_nginx(tmp_path, server.port) as port:

            def send(visitor: str, forged: dict[str, str]) -> httpx.Response:
                transport = httpx.HTTPTransport(local_address=visitor)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=transport) as http:
                    headers = {"host": "analytics.example.com", "user-agent": FIREFOX, **forged}
                    return http.post("/api/send", json=hit(website, url="/"), headers=headers)

            answers = [send("127.0.0.2", forged) for forged in forgeries]
            assert [a.status_code for a in answers] == [200, 200, 200, 200], [a.text for a in answers]
            assert len({a.json()["sessionId"] for a in answers}) == 1  # one visitor, whatever they claimed
            assert_api_error(send("127.0.0.2", {"x-forwarded-for": "203.0.113.1"}), 429, "too-many-requests")
            for forged in forgeries:
                assert_api_error(send("127.0.0.3", forged), 403, "forbidden")  # the ignored visitor stays ignored
            claimed = send("127.0.0.4", {"x-forwarded-for": "127.0.0.3", "x-real-ip": "127.0.0.3"})
            assert claimed.status_code == 200, claimed.text  # and nobody is ignored by claiming its address
    finally:
        server.stop()
    assert rows(db_path, "SELECT count(*), count(country), count(city) FROM session") == [(2, 0, 0)]
