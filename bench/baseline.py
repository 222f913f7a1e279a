"""The benchmark's baseline: a bare Litestar app that decodes the same /api/send body with msgspec and answers a small JSON,
served exactly like footfall (one uvicorn process, same options). Not part of footfall.

    python bench/baseline.py --port 8001
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, post

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collector  # noqa: E402

ANSWER = msgspec.json.encode(
    {"cache": "x" * 98, "sessionId": "00000000-0000-4000-8000-000000000000", "visitId": "00000000-0000-4000-8000-000000000000"}
)


@post("/api/send", status_code=200)
async def send(request: Request) -> Response:
    msgspec.json.decode(await request.body(), type=collector.SendRequest)
    return Response(content=ANSWER, media_type="application/json")


@post("/api/batch", status_code=200)
async def batch(request: Request) -> Response:
    for item in msgspec.json.decode(await request.body(), type=list[msgspec.Raw]):
        msgspec.json.decode(item, type=collector.SendRequest)
    return Response(content=ANSWER, media_type="application/json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = Litestar([send, batch], openapi_config=None, logging_config=None, request_max_body_size=1024 * 1024)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, server_header=False, log_level="warning")
