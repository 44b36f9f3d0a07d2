"""The fake Datadog intake, driven by the REAL datadog-api-client (sync ApiClient and AsyncApiClient) with
``Configuration(host=dd.url)``, by raw HTTP for what the client cannot send, and by the product's own client.

Sync-client tests run the fake in its own thread (``FakeDatadog.in_thread``): a blocking client on the test's
event loop would block the fake too. Async-client tests run it on the test's loop (``async with``).
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
import zlib

import aiohttp
import pytest
import urllib3
from datadog_api_client import ApiClient, AsyncApiClient, Configuration
from datadog_api_client.exceptions import ApiException, ForbiddenException, ServiceException
from datadog_api_client.v1.api.authentication_api import AuthenticationApi
from datadog_api_client.v2.api.logs_api import LogsApi
from datadog_api_client.v2.api.metrics_api import MetricsApi
from datadog_api_client.v2.model.content_encoding import ContentEncoding
from datadog_api_client.v2.model.http_log import HTTPLog
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries

from common.config import Config
from processor.core.bag import Bag
from processor.sink.client import DatadogClient
from processor.sink.render import render_series
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.paths import ROOT

KEY = "test-key"
NOW = int(time.time()) // 60 * 60  # a window start inside Datadog's accepted range
H = {"DD-API-KEY": KEY, "Content-Type": "application/json"}

needs_aiosonic = pytest.mark.skipif(
    __import__("importlib").util.find_spec("aiosonic") is None,
    reason="AsyncApiClient needs aiosonic (datadog-api-client[async])")


def conf(dd: FakeDatadog, key: str = KEY, **kw) -> Configuration:
    return Configuration(host=dd.url, api_key={"apiKeyAuth": key}, **kw)


def payload(value: float, ts: int = NOW, tags: list[str] | None = None, metric: str = "okta.workflows.events",
            mtype: MetricIntakeType = MetricIntakeType.COUNT) -> MetricPayload:
    tags = ["flow_name:flow_1", "flow_id:f1", "event_type:flow_start"] if tags is None else tags
    return MetricPayload(series=[MetricSeries(metric=metric, type=mtype, interval=60, tags=tags,
                                              points=[MetricPoint(timestamp=ts, value=value)])])


def logs(*messages: str, **attrs) -> HTTPLog:
    return HTTPLog([HTTPLogItem(message=m, ddsource="okta-workflows", service="okta-workflows", **attrs)
                    for m in messages])


def header(exc: ApiException, name: str) -> str | None:
    return {k.lower(): v for k, v in (exc.headers or {}).items()}.get(name.lower())


@pytest.fixture
def tdd():
    with FakeDatadog.in_thread(api_key=KEY) as dd:
        yield dd


# ---------------------------------------------------------------------------- the sync ApiClient
def test_sync_client_gzip_metrics_and_logs_reach_the_one_port(tdd):
    with ApiClient(conf(tdd)) as api:
        answer = MetricsApi(api).submit_metrics(body=payload(3), content_encoding=MetricContentEncoding.GZIP)
        assert answer.errors == []
        # the logs operation has its own server list (http-intake.logs.<site>); host= overrides it too
        assert LogsApi(api).submit_log(body=logs("hello", trace_id="r1", error={"kind": "X"}),
                                       content_encoding=ContentEncoding.GZIP) == {}
    assert tdd.points("okta.workflows.events") == [
        (NOW, ("event_type:flow_start", "flow_id:f1", "flow_name:flow_1"), 3.0)]
    assert tdd.metric_type("okta.workflows.events") == "count"
    assert tdd.logs == [{"message": "hello", "ddsource": "okta-workflows", "service": "okta-workflows",
                         "trace_id": "r1", "error": {"kind": "X"}}]
    assert tdd.find_logs({"error.kind": "X"}, trace_id="r1") == tdd.logs
    details = tdd.request_details
    assert [(d.path, d.status, d.content_encoding) for d in details] == [
        ("/api/v2/series", 202, "gzip"), ("/api/v2/logs", 202, "gzip")]
    assert all(d.compressed_bytes != d.uncompressed_bytes for d in details)
    assert all(d.headers["DD-API-KEY"] == "<redacted>" for d in details)
    assert tdd.warnings == []


def test_last_value_wins_per_series_and_timestamp(tdd):
    with ApiClient(conf(tdd)) as api:
        m = MetricsApi(api)
        for v in (3, 7, 5):  # the same window re-emitted: replaces, never adds
            m.submit_metrics(body=payload(v), content_encoding=MetricContentEncoding.GZIP)
        m.submit_metrics(body=payload(2, ts=NOW - 60), content_encoding=MetricContentEncoding.GZIP)
        m.submit_metrics(body=payload(4, tags=["flow_id:f2", "flow_name:flow_2", "event_type:flow_start"]),
                         content_encoding=MetricContentEncoding.GZIP)
        # tag order does not make another series
        m.submit_metrics(body=payload(6, tags=["event_type:flow_start", "flow_name:flow_1", "flow_id:f1"]))
    ev = "okta.workflows.events"
    assert tdd.series_value(ev, {"flow_id": "f1"}, NOW) == 6
    assert tdd.series_value(ev, ["flow_id:f1"], NOW - 60) == 2
    assert tdd.series_value(ev, {"flow_id": "f1"}) == 6  # latest timestamp
    assert tdd.series_value(ev, {"flow_id": "nope"}) is None
    with pytest.raises(ValueError):
        tdd.series_value(ev, {"event_type": "flow_start"})  # two series match
    assert tdd.sum(ev, flow_id="f1") == 8
    assert tdd.sum(ev, event_type="flow_start") == 12
    assert tdd.sum(ev, {"flow_id": "f2"}) == 4
    assert tdd.last(ev, flow_id="f1") == 6
    assert len(tdd.points(ev)) == 3
    assert tdd.points_received[ev] == 6 and tdd.points_overwritten[ev] == 3


def test_stored_point_says_when_its_value_arrived(tdd):
    """Freshness benches read when a value became visible: received_at is the time of the write that set it."""
    with ApiClient(conf(tdd)) as api:
        m = MetricsApi(api)
        before = time.time()
        m.submit_metrics(body=payload(1))
        (first,) = tdd.stored_points("okta.workflows.events")
        time.sleep(0.05)
        m.submit_metrics(body=payload(2))
        (second,) = tdd.stored_points("okta.workflows.events")
    assert before <= first.received_at < second.received_at <= time.time()
    assert second.value == 2 and second.writes == 2


def test_wrong_key_is_403_and_stores_nothing(tdd):
    with ApiClient(conf(tdd, key="wrong")) as api:
        with pytest.raises(ForbiddenException) as exc:
            MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
        assert exc.value.status == 403 and exc.value.body == {"errors": ["Forbidden"]}
        with pytest.raises(ApiException) as exc:
            LogsApi(api).submit_log(body=logs("x"), content_encoding=ContentEncoding.GZIP)
        assert exc.value.status == 403
        with pytest.raises(ApiException) as exc:
            AuthenticationApi(api).validate()
        assert exc.value.status == 403
    with ApiClient(conf(tdd)) as api:
        assert AuthenticationApi(api).validate().valid is True
    assert tdd.points("okta.workflows.events") == [] and tdd.logs == []
    assert [(r.status, r.api_key_ok) for r in tdd.requests] == [(403, False), (403, False), (403, False),
                                                                 (200, True)]


def test_scripted_503_then_heal_and_path_filters(tdd):
    with ApiClient(conf(tdd)) as api:
        m, lg = MetricsApi(api), LogsApi(api)
        tdd.fail(503)  # until heal()
        for _ in range(3):
            with pytest.raises(ServiceException) as exc:
                m.submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
            assert exc.value.status == 503
        tdd.heal()
        m.submit_metrics(body=payload(2), content_encoding=MetricContentEncoding.GZIP)
        fault = tdd.fail(500, count=2, paths=["logs"])
        m.submit_metrics(body=payload(3), content_encoding=MetricContentEncoding.GZIP)  # not for series
        for _ in range(2):
            with pytest.raises(ServiceException):
                lg.submit_log(body=logs("a"), content_encoding=ContentEncoding.GZIP)
        lg.submit_log(body=logs("b"), content_encoding=ContentEncoding.GZIP)  # count used up
        assert fault.hits == 2
        tdd.fail(408, seconds=0.3)
        with pytest.raises(ApiException) as exc:
            lg.submit_log(body=logs("c"))
        assert exc.value.status == 408
        time.sleep(0.35)
        lg.submit_log(body=logs("d"))
    assert tdd.statuses("series") == [503, 503, 503, 202, 202]
    assert tdd.statuses("logs") == [500, 500, 202, 408, 202]
    assert [item["message"] for item in tdd.logs] == ["b", "d"]  # failed requests are not stored
    assert tdd.series_value("okta.workflows.events", {"flow_id": "f1"}) == 3
    assert tdd.request_count() == 4 and tdd.request_count(ok_only=False) == 10


def test_429_carries_x_ratelimit_reset_and_the_clients_retry_honours_it(tdd):
    with ApiClient(conf(tdd)) as api:
        tdd.fail(429, count=1, headers={"X-RateLimit-Reset": "2"})
        with pytest.raises(ApiException) as exc:
            MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
        assert exc.value.status == 429 and header(exc.value, "X-RateLimit-Reset") == "2"
        tdd.fail(429, count=1)  # default rate-limit headers
        with pytest.raises(ApiException) as exc:
            LogsApi(api).submit_log(body=logs("x"))
        assert header(exc.value, "x-ratelimit-reset") == "1" and header(exc.value, "X-RateLimit-Remaining") == "0"
    tdd.fail(429, count=1, headers={"X-RateLimit-Reset": "1"})
    started = time.monotonic()
    with ApiClient(conf(tdd, enable_retry=True, max_retries=2)) as api:
        MetricsApi(api).submit_metrics(body=payload(5), content_encoding=MetricContentEncoding.GZIP)
    assert time.monotonic() - started >= 0.9  # urllib3's ClientRetry waited X-RateLimit-Reset
    assert tdd.statuses("series")[-2:] == [429, 202]


def test_oversized_requests_get_413(tdd):
    big_tags = [f"t{i}:" + os.urandom(6000).hex() for i in range(100)]  # ~1.2 MB, ~600 KB gzipped
    with ApiClient(conf(tdd)) as api:
        m, lg = MetricsApi(api), LogsApi(api)
        with pytest.raises(ApiException) as exc:  # over 512,000 bytes as sent
            m.submit_metrics(body=payload(1, tags=big_tags), content_encoding=MetricContentEncoding.GZIP)
        assert exc.value.status == 413
        with pytest.raises(ApiException) as exc:  # small gzip, over 5,242,880 bytes inflated
            m.submit_metrics(body=payload(1, tags=["x:" + "a" * 5_300_000]),
                             content_encoding=MetricContentEncoding.GZIP)
        assert exc.value.status == 413
        with pytest.raises(ApiException) as exc:  # 1,001 entries
            lg.submit_log(body=logs(*["x"] * 1001), content_encoding=ContentEncoding.GZIP)
        assert exc.value.status == 413
        with pytest.raises(ApiException) as exc:  # over 5 MB uncompressed
            lg.submit_log(body=logs(*["y" * 200_000] * 27), content_encoding=ContentEncoding.GZIP)
        assert exc.value.status == 413
        lg.submit_log(body=logs(*["x"] * 1000), content_encoding=ContentEncoding.GZIP)  # at the limit: fine
        lg.submit_log(body=logs("z" * 1_100_000), content_encoding=ContentEncoding.GZIP)  # truncated, accepted
    assert tdd.statuses() == [413, 413, 413, 413, 202, 202]
    assert len(tdd.logs) == 1001 and tdd.truncated_logs == 1
    assert tdd.points("okta.workflows.events") == []
    compressed = [r.compressed_bytes for r in tdd.requests]
    assert compressed[0] > 512_000 and compressed[1] < 512_000 and tdd.requests[1].uncompressed_bytes is None


def test_hang_makes_a_client_with_a_short_timeout_fail(tdd):
    tdd.hang(3)
    started = time.monotonic()
    with ApiClient(conf(tdd, request_timeout=0.5)) as api:
        with pytest.raises(urllib3.exceptions.HTTPError):  # ReadTimeoutError
            MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
        assert time.monotonic() - started < 2.5
        tdd.heal()  # wakes the hanging handler; its client is gone, so nothing is stored
        tdd.wait_for(lambda dd: dd.requests, timeout=5)
        MetricsApi(api).submit_metrics(body=payload(2), content_encoding=MetricContentEncoding.GZIP)
    assert tdd.statuses() == [499, 202]
    assert tdd.series_value("okta.workflows.events", ["flow_id:f1"]) == 2


def test_deflate_identity_and_zstd_encodings(tdd):
    with ApiClient(conf(tdd)) as api:
        m, lg = MetricsApi(api), LogsApi(api)
        m.submit_metrics(body=payload(1, metric="a.deflate"), content_encoding=MetricContentEncoding.DEFLATE)
        m.submit_metrics(body=payload(2, metric="a.identity"))
        lg.submit_log(body=logs("deflated"), content_encoding=ContentEncoding.DEFLATE)
        lg.submit_log(body=logs("plain"), content_encoding=ContentEncoding.IDENTITY)
        try:
            import zstandard  # noqa: F401
        except ImportError:
            pass
        else:
            m.submit_metrics(body=payload(3, metric="a.zstd"), content_encoding=MetricContentEncoding.ZSTD1)
            assert tdd.sum("a.zstd") == 3
    assert tdd.sum("a.deflate") == 1 and tdd.sum("a.identity") == 2
    assert [item["message"] for item in tdd.logs] == ["deflated", "plain"]


# ---------------------------------------------------------------------------- raw HTTP: what the client won't send
BAD_SERIES = [
    b"not json",
    b"[]",
    b'{"series": [{"metric": 5, "points": [{"timestamp": 1, "value": 1}]}]}',
    b'{"series": [{"metric": "m"}]}',
    b'{"series": [{"metric": "m", "points": [{"timestamp": "abc", "value": 1}]}]}',
    b'{"series": [{"metric": "m", "points": [{"timestamp": 1, "value": "x"}]}]}',
    b'{"series": [{"metric": "m", "type": 9, "points": [{"timestamp": 1, "value": 1}]}]}',
    b'{"series": [{"metric": "m", "tags": [1], "points": [{"timestamp": 1, "value": 1}]}]}',
    b'{"series": "m"}',
    b'{"no_series": []}',
    b'{"series": [{"metric": "m", "points": [{"timestamp": 1, "value": null}]}]}',
    b'{"series": [{"metric": null, "points": [{"timestamp": 1, "value": 1}]}]}',
]
BAD_LOGS = [b"[1, 2]", b'"x"', b'[{"message": 1}]', b'[{"ddsource": "no message"}]', b"{", b"42"]


@pytest.mark.parametrize("body", BAD_SERIES)
async def test_invalid_series_body_is_400(body):
    async with FakeDatadog(api_key=KEY) as dd, aiohttp.ClientSession() as s:
        async with s.post(dd.url + "/api/v2/series", data=gzip.compress(body),
                          headers=H | {"Content-Encoding": "gzip"}) as r:
            assert r.status == 400
            answer = await r.json()
            assert len(answer["errors"]) == 1 and answer["errors"][0]
        assert dd.stored_points() == []


@pytest.mark.parametrize("body", BAD_LOGS)
async def test_invalid_logs_body_is_400(body):
    async with FakeDatadog(api_key=KEY) as dd, aiohttp.ClientSession() as s:
        async with s.post(dd.url + "/api/v2/logs", data=body, headers=H) as r:
            assert r.status == 400, await r.text()
        assert dd.logs == []


async def test_corrupt_compression_unknown_encoding_missing_key_and_unknown_path():
    async with FakeDatadog(api_key=KEY) as dd, aiohttp.ClientSession() as s:
        ok = b'{"series": [{"metric": "m", "points": [{"timestamp": %d, "value": 1}]}]}' % NOW
        cases = [
            ("/api/v2/series", gzip.compress(ok)[:-12], {"Content-Encoding": "gzip"}, 400),  # truncated
            ("/api/v2/series", b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400),
            ("/api/v2/logs", b"garbage", {"Content-Encoding": "deflate"}, 400),
            ("/api/v2/series", ok, {"Content-Encoding": "br"}, 415),
            ("/api/v2/series", gzip.compress(b" " * 6_000_000), {"Content-Encoding": "gzip"}, 413),  # bomb
            ("/api/v2/nope", ok, {}, 404),
        ]
        for path, body, extra, status in cases:
            async with s.post(dd.url + path, data=body, headers=H | extra) as r:
                assert r.status == status, (path, extra, await r.text())
        async with s.post(dd.url + "/api/v2/series", data=ok, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 403 and await r.json() == {"errors": ["Forbidden"]}
        async with s.get(dd.url + "/api/v1/validate") as r:
            assert r.status == 403
        async with s.post(dd.url + "/api/v2/series", data=zlib.compress(ok),
                          headers=H | {"Content-Encoding": "deflate"}) as r:
            assert r.status == 202 and await r.json() == {"errors": []}
        assert dd.sum("m") == 1


async def test_single_log_object_ddtags_query_and_warnings():
    old = int(time.time()) - 2 * 3600
    async with FakeDatadog(api_key=KEY) as dd, aiohttp.ClientSession() as s:
        async with s.post(dd.url + "/api/v2/logs?ddtags=env:test", data=b'{"message": "one", "ddtags": "a:b"}',
                          headers=H) as r:
            assert r.status == 202 and await r.json() == {}
        body = b'{"series": [{"metric": "m", "tags": ["Flow_Name:My Flow"], "points": [{"timestamp": %d, "value": 1}]}]}'
        async with s.post(dd.url + "/api/v2/series", data=body % old, headers=H) as r:
            assert r.status == 202
    assert dd.logs == [{"message": "one", "ddtags": "a:b,env:test"}]
    assert dd.find_logs(tags=["env:test"]) == dd.logs and dd.find_logs(tags=["env:prod"]) == []
    assert dd.out_of_window_points == [("m", old, ("Flow_Name:My Flow",))]
    assert any("flow_name:my_flow" in w for w in dd.warnings)
    assert dd.sum("m") == 1  # stored anyway unless drop_out_of_window=True
    async with FakeDatadog(api_key=KEY, drop_out_of_window=True) as dd, aiohttp.ClientSession() as s:
        async with s.post(dd.url + "/api/v2/series", data=body % old, headers=H) as r:
            assert r.status == 202
        assert dd.sum("m") == 0 and len(dd.out_of_window_points) == 1


# ---------------------------------------------------------------------------- the AsyncApiClient (aiosonic)
@needs_aiosonic
async def test_async_client_gzip_submission_is_accepted_and_stored():
    async with FakeDatadog(api_key=KEY) as dd:
        async with AsyncApiClient(conf(dd)) as api:
            answer = await MetricsApi(api).submit_metrics(body=payload(4), content_encoding=MetricContentEncoding.GZIP)
            assert answer.errors == []
            await MetricsApi(api).submit_metrics(body=payload(9), content_encoding=MetricContentEncoding.GZIP)
            assert await LogsApi(api).submit_log(body=logs("async"), content_encoding=ContentEncoding.GZIP) == {}
        assert dd.series_value("okta.workflows.events", {"flow_id": "f1"}, NOW) == 9  # last value wins
        assert dd.find_logs(message="async")
        assert [(d.path, d.status, d.content_encoding) for d in dd.request_details] == [
            ("/api/v2/series", 202, "gzip"), ("/api/v2/series", 202, "gzip"), ("/api/v2/logs", 202, "gzip")]


@needs_aiosonic
async def test_async_client_errors_faults_and_timeouts():
    import aiosonic.exceptions

    async with FakeDatadog(api_key=KEY) as dd:
        async with AsyncApiClient(conf(dd, key="wrong")) as api:
            with pytest.raises(ForbiddenException) as exc:
                await MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
            assert exc.value.status == 403
        async with AsyncApiClient(conf(dd, request_timeout=0.5)) as api:
            m = MetricsApi(api)
            dd.fail(503, count=1)
            with pytest.raises(ServiceException):
                await m.submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
            dd.fail(429, count=1, headers={"X-RateLimit-Reset": "2"})
            with pytest.raises(ApiException) as exc:
                await LogsApi(api).submit_log(body=logs("x"), content_encoding=ContentEncoding.GZIP)
            assert exc.value.status == 429 and header(exc.value, "X-RateLimit-Reset") == "2"
            dd.hang(3)
            started = time.monotonic()
            with pytest.raises((aiosonic.exceptions.AiosonicError, TimeoutError)):
                await m.submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
            assert time.monotonic() - started < 2.5
            dd.heal()
        await dd.await_for(lambda d: len(d.requests) == 4, timeout=5)
        assert dd.statuses() == [403, 503, 429, 499]
        assert dd.stored_points() == [] and dd.logs == []


# ---------------------------------------------------------------------------- modes, accounting, CLI
def test_accounting_and_reset(tdd):
    with ApiClient(conf(tdd)) as api:
        MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
        LogsApi(api).submit_log(body=logs("a", "b"), content_encoding=ContentEncoding.GZIP)
        LogsApi(api).submit_log(body=logs("a"), content_encoding=ContentEncoding.GZIP)  # duplicates are kept
    assert [(r.path, r.status, r.api_key_ok) for r in tdd.requests] == [
        ("/api/v2/series", 202, True), ("/api/v2/logs", 202, True), ("/api/v2/logs", 202, True)]
    assert tdd.request_counts == {"/api/v2/series": 1, "/api/v2/logs": 2}
    assert tdd.bytes_compressed["/api/v2/logs"] == sum(r.compressed_bytes for r in tdd.requests[1:])
    assert tdd.bytes_uncompressed["/api/v2/series"] == tdd.requests[0].uncompressed_bytes > 0
    assert [item["message"] for item in tdd.logs] == ["a", "b", "a"]
    assert tdd.stats()["points_stored"] == 1 and tdd.stats()["logs"] == 3
    tdd.fail(503)
    tdd.reset()
    assert tdd.requests == [] and tdd.logs == [] and tdd.stored_points() == [] and tdd.request_counts == {}
    with ApiClient(conf(tdd)) as api:  # reset also cleared the fault
        MetricsApi(api).submit_metrics(body=payload(2))
    assert tdd.sum("okta.workflows.events") == 2


def test_cli_serves_until_interrupted_and_prints_a_summary():
    secret = "cli-secret-key-123"
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.fakedatadog", "--port", "0", "--api-key", secret],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "http://127.0.0.1:" in first, first
        url = first.split("DD_URL=")[1].split(")")[0]
        dd_like = type("U", (), {"url": url})()
        with ApiClient(conf(dd_like, key=secret)) as api:
            MetricsApi(api).submit_metrics(body=payload(1), content_encoding=MetricContentEncoding.GZIP)
            assert AuthenticationApi(api).validate().valid is True
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert '"points_stored": 1' in out and '"/api/v2/series": 1' in out
    assert secret not in first + out


# ---------------------------------------------------------------------------- through the product's own client
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
    import processor.sink.client as ddmod

    monkeypatch.setattr(ddmod, "REQUEST_TIMEOUT_S", 0.5)
    async with FakeDatadog() as dd:
        dd.hang(3)
        c = client_for(dd)
        try:
            assert (await c.post_series(some_series(1))).status is None
        finally:
            await c.close()
