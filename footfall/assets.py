"""Files footfall serves as they are: the tracker script (/script.js and --tracker-path) and the page's static files.

Owns: reading them once at start-up, their gzip form and ETag, and answering with 304 or gzip as the client allows.
The tracker's route is mounted with the collector's routes (and their CORS) by the app. Imports collector only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec
from litestar import Request, Response, get

from collector import DAY_SECONDS, Config, asset_path


class Asset(NamedTuple):
    """A file served as is: plain and gzipped bytes, media type and a strong ETag, prepared once at start-up."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


def make_asset(body: bytes, media_type: str) -> Asset:
    """An Asset of ``body``: gzipped once (level 9, no timestamp) and tagged with a hash of its bytes."""
    import gzip

    bare = media_type.partition(";")[0].strip()  # Litestar adds "; charset=utf-8" to text/*: a second one would follow
    return Asset(body, gzip.compress(body, 9, mtime=0), bare, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def serve_asset(request: Request, asset: Asset, headers: Mapping[str, str]) -> Response:
    """Answer with an Asset: 304 when the client's ETag matches, gzip when it accepts it (the one ETag/gzip path)."""
    headers = {**headers, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(content=asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(content=asset.body, media_type=asset.media_type, headers=headers)


def load_tracker(collect_path: str = "") -> Asset:
    """Read assets/script.js, point it at ``collect_path`` when set, and precompute its gzip form and ETag."""
    body = asset_path("script.js").read_bytes()
    if collect_path:
        body = body.replace(b'"/api/send"', msgspec.json.encode(collect_path))
    return make_asset(body, "text/javascript")


_SCRIPT_HEADERS = {"Cache-Control": f"public, max-age={DAY_SECONDS}"}  # CORS: the app assembly's, for these routes only


async def get_script(request: Request) -> Response:
    """GET /script.js (and --tracker-path): the tracker, cacheable for a day, revalidated by ETag."""
    return serve_asset(request, request.app.state.tracker, _SCRIPT_HEADERS)


def tracker_route(config: Config) -> Any:
    """GET /script.js (and --tracker-path), for the app to mount beside the collection routes."""
    paths = ["/script.js", *([config.tracker_path] if config.tracker_path else [])]
    return get(paths, include_in_schema=False)(get_script)
