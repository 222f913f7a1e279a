"""Where a client is: a named CDN's headers, a MaxMind-format database, or the country data shipped with geoip2fast.

Owns: CDN location headers (opt-in, --cdn-geo), the MaxMind reader, the embedded data's compact cache file (built once in a child process,
``python -m footfall.geo OUT``), and ``Locator``, the Locate callable the app hands the collector. Imports collector only.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote

import msgspec

from collector import NOWHERE, Client, ConfigError, IPAddress, Location, clip

log = logging.getLogger("footfall")


#: CDN location headers (country, region, city) per provider, as Umami reads them (src/lib/detect.ts). Umami believes the
#: first present of any provider from anyone; footfall reads only the provider named by --cdn-geo, from trusted proxies.
CDN_GEO_HEADERS = {
    "cloudflare": ("cf-ipcountry", "cf-region-code", "cf-ipcity"),
    "vercel": ("x-vercel-ip-country", "x-vercel-ip-country-region", "x-vercel-ip-city"),
    "cloudfront": ("cloudfront-viewer-country", "cloudfront-viewer-country-region", "cloudfront-viewer-city"),
    "edgeone": ("eo-ipcountry", "eo-region-code", "eo-ipcity"),
}


MAX_REGION_CHARS = 20


MAX_CITY_CHARS = 50


#: Version of the embedded-geo cache file layout; a new one is built when this or geoip2fast's version changes.
GEO_CACHE_VERSION = 1


_GEO_MAGIC = b"FFGEO\x00\x00\x01"


_GEO_HEADER = struct.Struct("<8sIII")  # magic, IPv4 ranges, IPv6 ranges, countries


def _header_text(value: str | None) -> str | None:
    """A CDN header value: latin-1 bytes re-read as UTF-8, then percent-decoded, as Umami does."""
    if not value:
        return None
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    with contextlib.suppress(UnicodeDecodeError):
        value = unquote(value, errors="strict")
    return value.strip() or None


def _region_code(country: str, region: str | None) -> str | None:
    if not region:
        return None
    return clip(region if "-" in region else f"{country}-{region}", MAX_REGION_CHARS)


def valid_country(code: str | None) -> str | None:
    code = (code or "").strip().upper()
    # XX (unknown) and T1 (Tor) are Cloudflare's non-countries.
    return code if len(code) == 2 and code.isalpha() and code.isascii() and code not in ("XX", "T1") else None


def is_local(address: IPAddress) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def location_from_headers(headers: Mapping[str, str], provider: str) -> Location | None:
    """The location the CDN ``provider`` (a CDN_GEO_HEADERS key) put in its headers, or None when it sent none."""
    country_header, region_header, city_header = CDN_GEO_HEADERS[provider]
    raw = headers.get(country_header)
    if not raw:
        return None
    country = valid_country(_header_text(raw))
    if country is None:
        return NOWHERE
    city = _header_text(headers.get(city_header))
    return Location(country, _region_code(country, _header_text(headers.get(region_header))), clip(city, MAX_CITY_CHARS))


class MaxMindGeo:
    """A MaxMind-format City (or Country) database, memory-mapped with maxminddb."""

    def __init__(self, path: str) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(path, maxminddb.MODE_MMAP)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(f"geoip_db: cannot read {path}: {exc}") from None

    def lookup(self, address: IPAddress) -> Location | None:
        try:
            record = self._reader.get(address)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        country = valid_country((record.get("country") or record.get("registered_country") or {}).get("iso_code"))
        if country is None:
            return None
        subdivisions = record.get("subdivisions") or [{}]
        city = ((record.get("city") or {}).get("names") or {}).get("en")
        return Location(country, _region_code(country, subdivisions[0].get("iso_code")), clip(city, MAX_CITY_CHARS))

    def close(self) -> None:
        self._reader.close()


def geo_cache_path() -> Path:
    """Where the embedded country data is cached: systemd's CacheDirectory, else the XDG cache directory."""
    import importlib.metadata

    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    source_version = importlib.metadata.version("geoip2fast")
    return Path(base) / "footfall" / f"geo-{source_version}-{GEO_CACHE_VERSION}-{sys.byteorder}.bin"


def build_geo_cache(out: Path) -> None:
    """Convert geoip2fast's bundled country data into footfall's compact file: sorted range arrays, 10-18 bytes a range.

    Loading geoip2fast's pickle costs 35-85 MB of RSS, so footfall runs this once, in a child process, and afterwards only
    memory-maps the result (~6 MB). IPv6 ranges keep the top 64 bits of their bounds (allocations are /64 or wider; a few
    hundred longer prefixes resolve to a neighbour's country).
    """
    import array
    import gzip
    import importlib.util
    import pickle

    spec = importlib.util.find_spec("geoip2fast")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).with_name("geoip2fast-ipv6.dat.gz")
    with gzip.open(source, "rb") as handle:
        _version, _info, _total, database = pickle.load(handle)  # the installed package's own data file  # noqa: S301
    _index, names, starts, country_ids, netlengths = database
    codes = [name.split(":", 1) for name in names]
    v4 = (array.array("I"), array.array("I"), array.array("H"))
    v6 = (array.array("Q"), array.array("Q"), array.array("H"))
    for chunk in zip(starts, netlengths, country_ids):
        for start, netlength, country_id in zip(*chunk):
            if country_id < 16 or not valid_country(codes[country_id][0]):
                continue  # private, reserved or unknown: no location
            if start < 2**32 and netlength <= 32:
                target, first, last = v4, start, start + 2 ** (32 - netlength) - 1
            else:
                target, first, last = v6, start >> 64, (start + 2 ** (128 - netlength) - 1) >> 64
            target[0].append(first)
            target[1].append(last)
            target[2].append(country_id)
    table = msgspec.json.encode([[code, name] for code, name in codes])
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(f".tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(_GEO_HEADER.pack(_GEO_MAGIC, len(v4[0]), len(v6[0]), len(codes)))
        for part in (*v6[:2], *v4[:2], v4[2], v6[2]):  # 8-byte arrays first, so every array stays aligned
            handle.write(part.tobytes())
        handle.write(table)
    os.replace(temporary, out)


class EmbeddedGeo:
    """Country lookup in the compact file made by build_geo_cache: bisection over memory-mapped arrays (a few µs)."""

    def __init__(self, path: Path) -> None:
        import mmap

        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        magic, n4, n6, ncodes = _GEO_HEADER.unpack_from(self._map)
        if magic != _GEO_MAGIC:
            raise ValueError(f"{path} is not a footfall geo file")
        view = memoryview(self._map)
        offset = _GEO_HEADER.size

        def take(count: int, width: int, code: str) -> memoryview:
            nonlocal offset
            part = view[offset : offset + count * width].cast(code)
            offset += count * width
            return part

        self._v6_first, self._v6_last = take(n6, 8, "Q"), take(n6, 8, "Q")
        self._v4_first, self._v4_last = take(n4, 4, "I"), take(n4, 4, "I")
        self._v4_country, self._v6_country = take(n4, 2, "H"), take(n6, 2, "H")
        table = msgspec.json.decode(bytes(view[offset:]))
        self.codes: list[str] = [code for code, _ in table]
        #: ISO country code → English name (the summary page shows names).
        self.names: dict[str, str] = {code: name for code, name in table if valid_country(code)}
        view = None  # type: ignore[assignment]  # drop the whole-file view; the casts above are all that is kept

    def lookup(self, address: IPAddress) -> Location | None:
        if address.version == 4:
            number, first, last, country = int(address), self._v4_first, self._v4_last, self._v4_country
        else:
            number, first, last, country = int(address) >> 64, self._v6_first, self._v6_last, self._v6_country
        index = bisect.bisect_right(first, number) - 1
        if index < 0 or number > last[index]:
            return None
        return Location(self.codes[country[index]], None, None)

    def close(self) -> None:
        self._v4_first = self._v4_last = self._v4_country = self._v6_first = self._v6_last = self._v6_country = None  # type: ignore[assignment]
        self._map.close()


def load_embedded_geo() -> EmbeddedGeo | None:
    """The embedded country data, building its cache file first (in a child process) when missing; None if unavailable."""
    path = geo_cache_path()
    try:
        if not path.exists():
            subprocess.run([sys.executable, "-m", "footfall.geo", str(path)], check=True, timeout=300, capture_output=True)
        return EmbeddedGeo(path)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("event=geo-unavailable path=%s error=%r", path, str(exc))
        return None


def locate(client: Client, headers: Mapping[str, str], geo: Sequence[MaxMindGeo | EmbeddedGeo], cdn: str = "off") -> Location:
    """The client's location: the named CDN's headers from a trusted proxy, else each geo database in turn; nothing for
    local addresses."""
    if cdn != "off" and client.trusted_peer and not client.from_payload:
        found = location_from_headers(headers, cdn)
        if found is not None:
            return found
    if client.address is None or is_local(client.address):
        return NOWHERE
    for source in geo:
        found = source.lookup(client.address)
        if found is not None:
            return found
    return NOWHERE


class Locator:
    """The collector's Locate: the --cdn-geo CDN's headers from trusted proxies, then --geoip-db, then the embedded data."""

    def __init__(self, sources: Sequence[MaxMindGeo | EmbeddedGeo], cdn: str = "off") -> None:
        self.sources = list(sources)
        #: The CDN whose location headers are believed (a CDN_GEO_HEADERS key), or 'off'.
        self.cdn = cdn
        #: ISO country code → English name, for the summary page (empty without embedded data).
        self.names: dict[str, str] = next((s.names for s in self.sources if isinstance(s, EmbeddedGeo)), {})

    def __call__(self, client: Client, headers: Mapping[str, str]) -> Location:
        return locate(client, headers, self.sources, self.cdn)

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.sources = []


def open_locator(geoip_db: str, embedded: bool) -> Locator:
    """The Locator for the settings ``geoip_db`` and ``embedded_geo`` (the embedded data is built once, in a child)."""
    sources: list[MaxMindGeo | EmbeddedGeo] = []
    if geoip_db:
        sources.append(MaxMindGeo(geoip_db))
    if embedded:
        found = load_embedded_geo()
        if found is not None:
            sources.append(found)
    return Locator(sources)


if __name__ == "__main__":  # python -m footfall.geo OUT: run by load_embedded_geo in a child process
    build_geo_cache(Path(sys.argv[1]))
