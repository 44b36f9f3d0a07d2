"""A lean Datadog intake for the processor benches: answers like Datadog's metrics and logs intake (202, or a
scripted 413/429/5xx), counts requests, bytes and items, and keeps a timeline of the requests.

tests/helpers/fakedatadog.py is the full fake (it validates every body with datadog-api-client's models, stores
every point); at ~100-250 us of CPU per item it would compete with the worker for the machine's cores during a
close-out of tens of thousands of series, so the benches that time the worker use this one: it gunzips and
parses each body only to count its items (and the `okta.workflows.events` points, to check completeness).
tests/unit/sink/test_encode.py holds the bodies to the models instead.

    async with Intake(api_key="bench-key") as dd:
        env["DD_URL"] = dd.url
        dd.fail(429, count=3)   # the next 3 requests answer 429 (X-RateLimit-Reset: 1)
"""

from __future__ import annotations

import gzip
import time
import zlib
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from els.broker import free_port


@dataclass
class Request:
    at: float           # time.monotonic() when answered
    at_wall_ms: int     # time.time() in ms
    path: str
    status: int
    sent_bytes: int     # as sent (compressed)
    json_bytes: int     # uncompressed
    items: int


@dataclass
class Intake:
    api_key: str | None = None
    requests: list[Request] = field(default_factory=list)
    faults: list[tuple[int, dict]] = field(default_factory=list)  # the next answers, in order
    events: float = 0.0  # sum of okta.workflows.events points (re-sends overwrite in Datadog; here they add)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int, count: int = 1, headers: dict | None = None) -> None:
        if status == 429 and headers is None:
            headers = {"X-RateLimit-Reset": "1"}
        self.faults += [(status, headers or {})] * count

    def reset(self) -> None:
        self.requests, self.faults, self.events = [], [], 0.0

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        if self.api_key is not None and request.headers.get("DD-API-KEY") != self.api_key:
            return self._answer(path, 403, body, b"", 0, {})
        if self.faults:
            status, headers = self.faults.pop(0)
            return self._answer(path, status, body, b"", 0, headers)
        enc = request.headers.get("Content-Encoding", "identity")
        try:
            raw = gzip.decompress(body) if enc == "gzip" else zlib.decompress(body) if enc == "deflate" else body
            doc = orjson.loads(raw)
        except (OSError, zlib.error, orjson.JSONDecodeError, EOFError):
            return self._answer(path, 400, body, b"", 0, {})
        if path == "/api/v2/series":
            items = doc.get("series", [])
            limit = len(body) > 512_000 or len(raw) > 5_242_880
            for s in items:
                if s.get("metric") == "okta.workflows.events":
                    self.events += sum(p.get("value", 0) for p in s.get("points", ()))
        else:
            items = doc if isinstance(doc, list) else [doc]
            limit = len(raw) > 5_242_880 or len(items) > 1000
        if limit:
            return self._answer(path, 413, body, raw, len(items), {})
        return self._answer(path, 202, body, raw, len(items), {})

    def _answer(self, path: str, status: int, body: bytes, raw: bytes, items: int, headers: dict) -> web.Response:
        self.requests.append(Request(time.monotonic(), int(time.time() * 1000), path, status, len(body), len(raw),
                                     items))
        text = b'{"errors":[]}' if status == 202 and path.endswith("series") else b"{}"
        return web.Response(status=status, body=text, headers=headers, content_type="application/json")

    def since(self, t: float) -> dict:
        """Requests answered from time.monotonic() t on: counts, bytes, items, and the last 2xx's time."""
        rs = [r for r in self.requests if r.at >= t]
        ok = [r for r in rs if 200 <= r.status < 300]
        return {"requests": len(rs), "requests_2xx": len(ok), "bytes_sent": sum(r.sent_bytes for r in rs),
                "json_bytes": sum(r.json_bytes for r in rs),
                "series": sum(r.items for r in ok if r.path.endswith("series")),
                "logs": sum(r.items for r in ok if r.path.endswith("logs")),
                "last_2xx_at": max((r.at for r in ok), default=None)}

    async def __aenter__(self) -> Intake:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v2/series", self._post)
        app.router.add_post("/api/v2/logs", self._post)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()
