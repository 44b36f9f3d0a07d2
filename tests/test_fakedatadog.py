"""The fake Datadog intake, driven by the product's own client (datadog-api-client underneath)."""

from __future__ import annotations

import aiohttp

from els.config import Config
from processor.aggregate import Bag, render_series
from processor.datadog import DatadogClient
from tests.fakedatadog import FakeDatadog

WS = 1_790_000_040_000


def client_for(dd: FakeDatadog, key: str = "test-key") -> DatadogClient:
    return DatadogClient(Config.from_env({"DD_API_KEY": key, "DD_URL": dd.url}))


def some_series(value: float) -> list[dict]:
    b = Bag()
    b.count("events", value, event_type="flow_start")
    b.labels.update(flow_id="f1", flow_name="Flow 1")
    return render_series("flow:f1", WS, 60, b)


async def test_gzip_series_and_logs_are_accepted_and_last_value_wins():
    async with FakeDatadog() as dd:
        c = client_for(dd)
        try:
            assert (await c.post_series(some_series(3))).status == 202
            assert (await c.post_series(some_series(5))).status == 202
            assert dd.sum("okta.workflows.events", flow_id="f1") == 5
            assert (await c.post_logs([{"message": "m", "ddsource": "okta-workflows", "chain": {"path": ["a"]}}])).status == 202
            assert dd.logs[0]["chain"] == {"path": ["a"]}
            assert all(r[2] < r[3] or r[3] < 200 for r in dd.requests)  # bodies arrived compressed
        finally:
            await c.close()


async def test_wrong_key_is_403_and_scripted_faults():
    async with FakeDatadog() as dd:
        bad, good = client_for(dd, "wrong"), client_for(dd)
        try:
            assert (await bad.post_series(some_series(1))).status == 403
            dd.fail(503, count=2)
            assert (await good.post_series(some_series(1))).status == 503
            assert (await good.post_series(some_series(1))).status == 503
            assert (await good.post_series(some_series(1))).status == 202
            dd.fail(429, count=1, headers={"X-RateLimit-Reset": "2"})
            answer = await good.post_logs([{"message": "x"}])
            assert answer.status == 429 and answer.headers.get("X-RateLimit-Reset") == "2"
        finally:
            await bad.close()
            await good.close()


async def test_invalid_and_oversized_bodies():
    async with FakeDatadog() as dd, aiohttp.ClientSession() as s:
        h = {"DD-API-KEY": "test-key", "Content-Type": "application/json"}
        async with s.post(dd.url + "/api/v2/series", data=b'{"series": [{"metric": 5}]}', headers=h) as r:
            assert r.status == 400
        async with s.post(dd.url + "/api/v2/logs", data=b"[" + b",".join([b'{"message":"x"}'] * 1001) + b"]",
                          headers=h) as r:
            assert r.status == 413


async def test_a_hanging_intake_surfaces_as_no_answer(monkeypatch):
    import processor.datadog as ddmod

    monkeypatch.setattr(ddmod, "REQUEST_TIMEOUT_S", 0.5)
    async with FakeDatadog() as dd:
        dd.hang(3)
        c = client_for(dd)
        try:
            assert (await c.post_series(some_series(1))).status is None
        finally:
            await c.close()
