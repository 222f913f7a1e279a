"""Where a visitor is: trusted CDN headers, a MaxMind database, or the embedded country data; never the IP itself."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import pytest

import collector
import footfall.app
import footfall.cli
import footfall.geo
from conftest import FIREFOX, Clock, flush, hit, open_client, rows

pytestmark = pytest.mark.anyio


async def located(
    db_path: Path,
    clock: Clock,
    website: str,
    peer: str,
    headers: dict[str, str] | None = None,
    payload: dict[str, Any] | None = None,
    **config: Any,
) -> tuple[Any, ...]:
    """(country, region, city) stored for one pageview from ``peer``."""
    app = footfall.app.create_app(collector.Config(db=str(db_path), **config), clock)
    async with open_client(app, peer=peer) as client:
        response = await client.post(
            "/api/send", json=hit(website, url="/", **(payload or {})), headers={"User-Agent": FIREFOX, **(headers or {})}
        )
        assert response.status_code == 200, response.text
        await flush(client)
    return rows(db_path, "SELECT country, region, city FROM sessions WHERE session_id = ?", (response.json()["sessionId"],))[0]


CLOUDFLARE = {"cf-ipcountry": "DE", "cf-region-code": "BE", "cf-ipcity": "Berlin"}


@pytest.mark.parametrize(
    ("cdn", "headers", "expected"),
    [
        ("cloudflare", CLOUDFLARE, ("DE", "DE-BE", "Berlin")),
        ("cloudflare", {"cf-ipcountry": "de", "cf-ipcity": "Zurich"}, ("DE", None, "Zurich")),
        (
            "vercel",
            {"x-vercel-ip-country": "BR", "x-vercel-ip-country-region": "SP", "x-vercel-ip-city": "S%C3%A3o%20Paulo"},
            ("BR", "BR-SP", "São Paulo"),
        ),
        (
            "cloudfront",
            {
                "cloudfront-viewer-country": "FR",
                "cloudfront-viewer-country-region": "FR-IDF",
                "cloudfront-viewer-city": "Paris",
            },
            ("FR", "FR-IDF", "Paris"),
        ),
        ("edgeone", {"eo-ipcountry": "JP", "eo-region-code": "13"}, ("JP", "JP-13", None)),
        ("cloudflare", {"cf-ipcountry": "XX"}, (None, None, None)),
        ("cloudflare", {"cf-ipcountry": "T1", "cf-ipcity": "Nowhere"}, (None, None, None)),
        ("cloudflare", {"cf-ipcountry": "DE", "x-vercel-ip-country": "US"}, ("DE", None, None)),  # only the named CDN
        ("vercel", {"cf-ipcountry": "DE", "x-vercel-ip-country": "US"}, ("US", None, None)),
    ],
)
async def test_cdn_headers_from_a_trusted_proxy(
    db_path: Path, clock: Clock, website: str, cdn: str, headers: dict[str, str], expected: tuple[Any, ...]
) -> None:
    """With --cdn-geo naming the CDN, its location headers from a trusted proxy are used: region made 'CC-RR', UTF-8 and
    percent-encoding decoded; another CDN's headers are not read."""
    assert await located(db_path, clock, website, "127.0.0.1", headers, cdn_geo=cdn) == expected


async def test_cdn_headers_are_not_believed_unless_the_cdn_is_named(db_path: Path, clock: Clock, website: str) -> None:
    """By default a CDN header from a trusted proxy (which may pass a visitor's own headers on) sets nothing: the address
    locates the client, here a forwarded 8.8.8.8."""
    forged = {**CLOUDFLARE, "x-vercel-ip-country": "BR", "x-forwarded-for": "8.8.8.8"}
    assert await located(db_path, clock, website, "127.0.0.1", forged) == ("US", None, None)


async def test_latin1_header_bytes_are_read_as_utf8(db_path: Path, clock: Clock, website: str) -> None:
    """A city sent as raw UTF-8 bytes (which arrive as latin-1 text) is stored as the right characters."""
    city = "München".encode("utf-8")  # type: ignore[assignment]
    headers = {"cf-ipcountry": "DE", "cf-ipcity": city}  # type: ignore[dict-item]
    assert await located(db_path, clock, website, "127.0.0.1", headers, cdn_geo="cloudflare") == ("DE", None, "München")


async def test_cdn_headers_from_anyone_else_are_ignored(db_path: Path, clock: Clock, website: str) -> None:
    """A client cannot set its own country: from an untrusted peer the embedded data locates the peer instead."""
    assert await located(db_path, clock, website, "8.8.8.8", CLOUDFLARE, cdn_geo="cloudflare") == ("US", None, None)


async def test_payload_ip_skips_cdn_headers(db_path: Path, clock: Clock, website: str) -> None:
    """With payload.ip from a trusted server the CDN headers describe the server's request, so they are skipped."""
    assert await located(db_path, clock, website, "127.0.0.1", CLOUDFLARE, {"ip": "8.8.8.8"}, cdn_geo="cloudflare") == (
        "US",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("peer", "country"),
    [
        ("8.8.8.8", "US"),
        ("2001:4860:4860::8888", "US"),
        ("10.0.0.1", None),
        ("127.0.0.1", None),
        ("169.254.1.1", None),
        ("fe80::1", None),
        ("192.168.1.10", None),
        ("::1", None),
    ],
)
async def test_embedded_country_data(db_path: Path, clock: Clock, website: str, peer: str, country: str | None) -> None:
    """The data shipped with the package locates public IPv4 and IPv6 addresses; private and local ones get nothing."""
    assert await located(db_path, clock, website, peer) == (country, None, None)


async def test_embedded_geo_can_be_turned_off(db_path: Path, clock: Clock, website: str) -> None:
    """--no-embedded-geo leaves the country empty when nothing else knows it."""
    assert await located(db_path, clock, website, "8.8.8.8", embedded_geo=False) == (None, None, None)


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    """A small MaxMind-format City database with one network, written by mmdb-writer."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    writer.insert_network(
        IPSet(["81.2.69.0/24"]),
        {"country": {"iso_code": "NZ"}, "subdivisions": [{"iso_code": "AUK"}], "city": {"names": {"en": "Auckland"}}},
    )
    writer.insert_network(IPSet(["1.0.0.0/24"]), {"registered_country": {"iso_code": "AU"}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.mark.parametrize(
    ("peer", "expected"),
    [("81.2.69.160", ("NZ", "NZ-AUK", "Auckland")), ("1.0.0.5", ("AU", None, None)), ("8.8.8.8", ("US", None, None))],
)
async def test_maxmind_database(
    db_path: Path, clock: Clock, website: str, city_db: Path, peer: str, expected: tuple[Any, ...]
) -> None:
    """--geoip-db gives country, region and city; addresses it does not know fall back to the embedded data."""
    assert await located(db_path, clock, website, peer, geoip_db=str(city_db)) == expected


def test_unreadable_maxmind_database_stops_start_up(db_path: Path, tmp_path: Path) -> None:
    """A --geoip-db that is not a MaxMind file is a one-line start-up error, not a silent lack of cities."""
    from click.testing import CliRunner

    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    result = CliRunner().invoke(footfall.cli.cli, ["serve", "--db", str(db_path), "--geoip-db", str(bad)])
    assert result.exit_code == 1 and "geoip_db: cannot read" in result.output and "Traceback" not in result.output


def test_embedded_data_matches_geoip2fast() -> None:
    """footfall's compact file answers like geoip2fast itself for random public IPv4 addresses and IPv6 networks."""
    from geoip2fast import GeoIP2Fast

    ours = footfall.geo.load_embedded_geo()
    assert ours is not None
    reference = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    rng = random.Random(7)
    checked = 0
    for _ in range(4000):
        if rng.random() < 0.7:
            address: Any = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            address = ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(125) >> 3)  # 2000::/3, the global unicast space
        if footfall.geo.is_local(address):
            continue
        theirs = reference.lookup(str(address))
        if address.version == 6 and int(theirs.cidr.rpartition("/")[2] or 0) > 64:
            continue  # documented: prefixes longer than /64 are approximated
        expected = footfall.geo.valid_country(theirs.country_code)
        found = ours.lookup(address)
        assert (found.country if found else None) == expected, (address, theirs.country_code)
        checked += 1
    assert checked > 3000
    ours.close()


async def test_cache_token_skips_the_location_lookup(
    db_path: Path, clock: Clock, website: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid token for the same session skips the lookup (the session's first-seen country stays); a forged one does not."""
    looked_up: list[Any] = []
    real = footfall.geo.locate

    def counting(*args: Any) -> Any:
        looked_up.append(args[0].address)
        return real(*args)

    monkeypatch.setattr(footfall.geo, "locate", counting)
    app = footfall.app.create_app(collector.Config(db=str(db_path)), clock)
    async with open_client(app, peer="8.8.8.8") as client:
        first = await client.post("/api/send", json=hit(website, url="/"), headers={"User-Agent": FIREFOX})
        token = first.json()["cache"]
        again = await client.post(
            "/api/send", json=hit(website, url="/2"), headers={"User-Agent": FIREFOX, "x-umami-cache": token}
        )
        forged = await client.post(
            "/api/send",
            json=hit(website, url="/3"),
            headers={"User-Agent": FIREFOX, "x-umami-cache": token[:-2] + ("BB" if token.endswith("AA") else "AA")},
        )
        assert again.json()["sessionId"] == first.json()["sessionId"] == forged.json()["sessionId"]
        await flush(client)
    assert len(looked_up) == 2  # the first hit and the forged-token hit; not the one with a valid token
    assert rows(db_path, "SELECT country FROM sessions") == [("US",)]
