"""The ingest bench's baseline: an aiohttp server that reads the body and answers 202 without any work.

    python -m bench.bare PORT

Same aiohttp, same server options as `els ingest` (no access log, no auto-decompression), so the ratio
between the two is the cost of authentication, parsing and the Kafka acknowledgement.
"""

from __future__ import annotations

import sys

from aiohttp import web

ANSWER = b'{"accepted":1,"rejected":0}'


async def post_events(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(status=200, body=b'{"status":"alive"}', content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, auto_decompress=False)


if __name__ == "__main__":
    main()
