"""--rate-limit: per-client request limits on the collection endpoints (off by default, as in Umami)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import litestar
import pytest

import collector
import footfall.app
import footfall.auth
from conftest import FIREFOX, Clock, assert_api_error, hit, open_client

pytestmark = pytest.mark.anyio


async def test_rate_limit_per_client(db_path: Path, clock: Clock, website: str) -> None:
    """With 2/s a client's third request in a second gets 429 + Retry-After; others are unaffected; tokens come back."""
    config = collector.Config(db=str(db_path), rate_limit="2/s", embedded_geo=False)
    app = footfall.app.create_app(config, clock)
    async with open_client(app, peer="198.51.100.7") as client:
        send = lambda: client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX})  # noqa: E731
        assert [(await send()).status_code for _ in range(2)] == [200, 200]
        limited = await send()
        assert_api_error(limited, 429, "too-many-requests", "Too many requests")
        assert limited.headers["retry-after"] == "1"
        batch = await client.post("/api/batch", json=[hit(website, url="/")], headers={"User-Agent": FIREFOX})
        assert batch.status_code == 429  # batches count against the same budget
        clock.advance(1)  # two tokens back at 2/s
        assert [(await send()).status_code for _ in range(2)] == [200, 200]
        # a trusted proxy's forwarded client has a budget of its own
        proxied = await client.post(
            "/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX, "x-real-ip": "203.0.113.5"}
        )
        assert proxied.status_code == 429  # 198.51.100.7 is not a trusted proxy: the header is ignored
    async with open_client(footfall.app.create_app(config, clock), peer="127.0.0.1") as client:
        for n in range(3):
            response = await client.post(
                "/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX, "x-real-ip": f"203.0.113.{n}"}
            )
            assert response.status_code == 200


async def test_no_limit_by_default(client, website: str) -> None:  # type: ignore[no-untyped-def]
    """Without --rate-limit, many requests from one client all pass."""
    for _ in range(30):
        assert (await client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX})).status_code == 200


def test_bucket_refills_and_sweeps() -> None:
    """Tokens refill at the rate up to the burst; idle full buckets are forgotten."""
    limiter = collector.RateLimiter(rate=2, burst=120)
    address = ipaddress.ip_address("192.0.2.1")
    for _ in range(120):
        limiter.check(address, 0.0)
    with pytest.raises(collector.ApiError) as caught:
        limiter.check(address, 0.0)
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "1"
    limiter.check(address, 0.5)  # one token back after half a second at 2/s
    limiter.sweep(1000.0)
    assert len(limiter) == 0


@pytest.mark.parametrize(("text", "rate"), [("4/s", 4.0), ("120/m", 2.0), (" 10 / S ", 10.0), ("", None)])
def test_parse_rate(text: str, rate: float | None) -> None:
    assert collector.parse_rate(text) == rate


@pytest.mark.parametrize("text", ["4", "0/s", "fast", "4/h"])
def test_bad_rates_are_explained(text: str) -> None:
    with pytest.raises(collector.ConfigError, match="rate_limit must look like"):
        collector.load_config({"rate_limit": text}, {})


async def send_from(app: litestar.Litestar, peer: str, website: str) -> int:
    """The status of one pageview sent to the running ``app`` from address ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        response = await client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX})
        return response.status_code


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # 2/s: two from one /64 use its budget, a third address in it is refused, the next /64 is another client
        (64, [200, 200, 429, 200]),
        (128, [200, 200, 200, 200]),  # --ipv6-prefix 128: every address its own client
    ],
)
async def test_one_ipv6_64_is_one_client(db_path: Path, clock: Clock, website: str, prefix: int, expected: list[int]) -> None:
    """Two addresses in one /64 share a limit bucket (a household rotates them for free); another /64 has its own."""
    config = collector.Config(db=str(db_path), rate_limit="2/s", embedded_geo=False, ipv6_prefix=prefix)
    app = footfall.app.create_app(config, clock)
    async with open_client(app):
        peers = ("2001:db8:1:2::1", "2001:db8:1:2:ffff:0:0:7", "2001:db8:1:2::9", "2001:db8:1:3::1")
        assert [await send_from(app, peer, website) for peer in peers] == expected


async def test_ignore_ip_covers_the_addresses_ipv6_64(db_path: Path, clock: Clock, website: str) -> None:
    """--ignore-ip 2001:db8:1:2::5 ignores its whole /64 (the same household's next address), not the next /64."""
    config = collector.Config(db=str(db_path), embedded_geo=False, ignore_ip="2001:db8:1:2::5")
    app = footfall.app.create_app(config, clock)
    async with open_client(app):
        peers = ("2001:db8:1:2::5", "2001:db8:1:2:abcd::1", "2001:db8:1:3::5")
        assert [await send_from(app, peer, website) for peer in peers] == [403, 403, 200]
    assert collector.parse_networks("2001:db8:1:2::5, 2001:db8::/32, 192.0.2.1", "x", 64) == (
        ipaddress.ip_network("2001:db8:1:2::/64"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.1/32"),
    )


def test_limiter_memory_is_bounded() -> None:
    """40,000 addresses in a minute leave at most max_buckets buckets; the least recently seen go first."""
    limiter = collector.RateLimiter(rate=1 / 12, burst=5, max_buckets=1000)
    for n in range(40_000):
        limiter.check(ipaddress.ip_address(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"), n / 1000)
        assert len(limiter) <= 1000
    assert len(limiter) == 1000
    newest = ipaddress.ip_address("10.0.156.63")  # n = 39,999: remembered, one of its five attempts used
    for _ in range(4):
        limiter.check(newest, 40.0)
    with pytest.raises(collector.ApiError):
        limiter.check(newest, 40.0)
    limiter.sweep(40.0 + 5 * 12)  # a minute later every bucket is full again
    assert len(limiter) == 0


async def test_upkeep_sweeps_the_login_limiter(db_path: Path, clock: Clock, website: str) -> None:
    """Failed logins from many clients are remembered for a minute, then upkeep forgets them (the table does not grow)."""
    hashed = footfall.auth.hash_password("a long enough password")
    app = footfall.app.create_app(collector.Config(db=str(db_path), password_hash=hashed), clock)
    async with open_client(app):
        for n in range(3):
            transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{n}", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                response = await client.post(
                    "/login", data={"password": "wrong password"}, headers={"sec-fetch-site": "same-origin"}
                )
                assert response.status_code == 403
        limiter = app.state.auth.login_limiter
        assert len(limiter) == 3
        await app.state.upkeep.sweep_login_limiter()
        assert len(limiter) == 3  # an attempt a moment ago is still counted
        clock.advance(footfall.auth.LOGIN_BURST * footfall.auth.LOGIN_REFILL_SECONDS)
        assert "login-limiter" in [task.name for task in app.state.upkeep.tasks]
        await app.state.upkeep.sweep_login_limiter()
        assert len(limiter) == 0
