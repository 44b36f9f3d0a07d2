"""A fake Datadog intake: a real HTTP server that behaves like Datadog's metrics and logs endpoints.

It checks the DD-API-KEY header (403 otherwise), decompresses gzip/deflate, enforces Datadog's documented limits
(series: 500 KB compressed, 5 MB uncompressed; logs: 5 MB uncompressed, 1,000 entries, 1 MB per entry -> 413),
validates bodies with datadog-api-client's own models (400 otherwise), and stores metrics the way Datadog does:
for one (metric, tags, timestamp) the last value received wins. It can be told to fail (status, for a count or
for a while) or to hang, to test retries. One port serves every path, as DD_URL makes the product send there.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib

import orjson
from aiohttp import web
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_payload import MetricPayload

SERIES_MAX_COMPRESSED = 512_000
MAX_UNCOMPRESSED = 5_242_880
LOGS_MAX_ENTRIES = 1000
LOG_MAX_BYTES = 1_048_576

_CONF = Configuration()


def _validate(value, model, path: str):
    """Deserialise with the client's models; raise ValueError when Datadog's schema refuses it."""
    try:
        obj = validate_and_convert_types(value, (model,), [path], True, True, _CONF)
    except Exception as exc:  # the client raises several types for schema errors
        raise ValueError(str(exc)) from None
    if getattr(obj, "_unparsed", False):
        raise ValueError(f"{path} does not match {model.__name__}")
    return obj


class FakeDatadog:
    def __init__(self, api_key: str = "test-key", port: int = 0):
        self.api_key = api_key
        self.port = port
        self.series: dict[tuple, float] = {}  # (metric, tags tuple, timestamp) -> last value
        self.logs: list[dict] = []
        self.requests: list[tuple] = []  # (path, status, compressed bytes, uncompressed bytes, key ok)
        self._faults: list[dict] = []
        self._hang_s = 0.0
        self._runner: web.AppRunner | None = None

    # -- control -------------------------------------------------------------------------------------------
    def fail(self, status: int, count: int | None = None, seconds: float | None = None,
             headers: dict | None = None, paths: list[str] | None = None) -> None:
        self._faults.append({"status": status, "count": count, "until": time.monotonic() + seconds if seconds else None,
                             "headers": headers or {}, "paths": paths})

    def hang(self, seconds: float) -> None:
        self._hang_s = seconds

    def heal(self) -> None:
        self._faults.clear()
        self._hang_s = 0.0

    def reset(self) -> None:
        self.series.clear()
        self.logs.clear()
        self.requests.clear()
        self.heal()

    # -- queries -------------------------------------------------------------------------------------------
    def points(self, metric: str) -> list[tuple[int, tuple, float]]:
        return [(ts, tags, v) for (m, tags, ts), v in self.series.items() if m == metric]

    def _match(self, tags: tuple, filters: dict) -> bool:
        return all(f"{k}:{v}" in tags for k, v in filters.items())

    def sum(self, metric: str, **tag_filters) -> float:
        return sum(v for ts, tags, v in self.points(metric) if self._match(tags, tag_filters))

    def last(self, metric: str, **tag_filters) -> float | None:
        pts = sorted((ts, v) for ts, tags, v in self.points(metric) if self._match(tags, tag_filters))
        return pts[-1][1] if pts else None

    def request_count(self, path: str | None = None, ok_only: bool = True) -> int:
        return sum(1 for r in self.requests if (path is None or r[0] == path) and (not ok_only or r[1] < 300))

    def bytes_received(self, path: str | None = None) -> int:
        return sum(r[2] for r in self.requests if path is None or r[0] == path)

    # -- server --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v2/series", self._series)
        app.router.add_post("/api/v2/logs", self._logs)
        app.router.add_get("/api/v1/validate", self._validate_key)
        return app

    async def start(self) -> FakeDatadog:
        self._runner = web.AppRunner(self._app(), access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDatadog:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @classmethod
    def in_thread(cls, api_key: str = "test-key", port: int = 0) -> _Threaded:
        return _Threaded(cls(api_key, port))

    # -- handlers ------------------------------------------------------------------------------------------
    def _fault_for(self, path: str) -> dict | None:
        now = time.monotonic()
        for f in list(self._faults):
            if f["paths"] and path not in f["paths"]:
                continue
            if f["until"] is not None and now > f["until"]:
                self._faults.remove(f)
                continue
            if f["count"] is not None:
                if f["count"] <= 0:
                    self._faults.remove(f)
                    continue
                f["count"] -= 1
            return f
        return None

    async def _intake(self, request: web.Request) -> tuple[int, object, bytes | None, bool]:
        if self._hang_s:
            await asyncio.sleep(self._hang_s)
        raw = await request.read()
        key_ok = request.headers.get("DD-API-KEY") == self.api_key
        path = request.path
        status, answer, body = 202, None, None
        fault = self._fault_for(path)
        if not key_ok:
            status, answer = 403, {"errors": ["Forbidden"]}
        elif fault:
            status, answer = fault["status"], {"errors": [f"scripted {fault['status']}"]}
        else:
            enc = request.headers.get("Content-Encoding", "identity")
            try:
                if enc == "gzip":
                    body = gzip.decompress(raw)
                elif enc == "deflate":
                    body = zlib.decompress(raw)
                else:
                    body = raw
            except (OSError, zlib.error, EOFError):
                status, answer = 400, {"errors": ["could not decompress the body"]}
        self.requests.append((path, status, len(raw), len(body or b""), key_ok))
        headers = fault["headers"] if fault and key_ok else {}
        return status, answer, body, headers

    def _answer(self, status, answer, headers=None) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(answer), content_type="application/json",
                            headers=headers)

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.requests[-1] = (*self.requests[-1][:1], status, *self.requests[-1][2:])
        return self._answer(status, {"errors": [reason]})

    async def _series(self, request: web.Request) -> web.Response:
        status, answer, body, headers = await self._intake(request)
        if status != 202:
            return self._answer(status, answer, headers)
        if self.requests[-1][2] > SERIES_MAX_COMPRESSED or len(body) > MAX_UNCOMPRESSED:
            return self._refuse(413, "Payload too large")
        try:
            payload = orjson.loads(body)
            _validate(payload, MetricPayload, "body")
        except (orjson.JSONDecodeError, ValueError) as exc:
            return self._refuse(400, f"invalid series payload: {exc}")
        for s in payload["series"]:
            tags = tuple(sorted(s.get("tags") or ()))
            for p in s["points"]:
                self.series[(s["metric"], tags, p["timestamp"])] = p["value"]
        return self._answer(202, {"errors": []})

    async def _logs(self, request: web.Request) -> web.Response:
        status, answer, body, headers = await self._intake(request)
        if status != 202:
            return self._answer(status, answer, headers)
        if len(body) > MAX_UNCOMPRESSED:
            return self._refuse(413, "Payload too large")
        try:
            items = orjson.loads(body)
            if not isinstance(items, list):
                items = [items]
            if len(items) > LOGS_MAX_ENTRIES:
                return self._refuse(413, f"more than {LOGS_MAX_ENTRIES} log entries")
            for item in items:
                if len(orjson.dumps(item)) > LOG_MAX_BYTES:
                    return self._refuse(413, "a log entry is larger than 1 MB")
                _validate(item, HTTPLogItem, "item")
        except (orjson.JSONDecodeError, ValueError) as exc:
            return self._refuse(400, f"invalid logs payload: {exc}")
        self.logs.extend(items)
        return self._answer(202, {})

    async def _validate_key(self, request: web.Request) -> web.Response:
        if request.headers.get("DD-API-KEY") != self.api_key:
            return self._answer(403, {"errors": ["Forbidden"]})
        return self._answer(200, {"valid": True})


class _Threaded:
    """The fake on its own loop in a daemon thread, for sync code."""

    def __init__(self, fake: FakeDatadog):
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeDatadog:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)




if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A fake Datadog intake on loopback.")
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args()

    async def main():
        fake = await FakeDatadog(args.api_key, args.port).start()
        print(f"fake Datadog on {fake.url}; Ctrl-C stops it", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            print(f"requests: {len(fake.requests)}, bytes: {fake.bytes_received()}, series: {len(fake.series)}, "
                  f"logs: {len(fake.logs)}")
            await fake.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
