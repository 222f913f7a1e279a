"""--rate-limit: per-client request limits on the collection endpoints (off by default, as in Umami)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import collector
import footfall.app
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
