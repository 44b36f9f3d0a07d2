"""The sink's fast request bodies (processor/sink/encode.py) pinned to datadog-api-client's own models and to
Datadog's limits, so they cannot drift from the API: a backlog's close-out (engine -> outbox -> sink, no broker)
is delivered to a client that keeps every request's gzip body; sampled bodies must deserialise as MetricPayload /
a list of HTTPLogItem with nothing left unparsed, equal what the client's models serialise the same items to,
and hold Datadog's limits; and the real client posts them to the fake Datadog intake, which validates them too."""

from __future__ import annotations

import asyncio
import gzip
import random
from types import SimpleNamespace

import orjson
import pytest
from datadog_api_client.model_utils import data_to_dict
from datadog_api_client.v2.model.http_log import HTTPLog
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_payload import MetricPayload

from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from processor.outbox import outbox_records
from processor.sink import delivery
from processor.sink.agent import SinkAgent
from processor.sink.client import Answer, DatadogClient, series_model
from processor.sink.encode import (
    Batch,
    Batcher,
    encode_now,
    logs_batcher,
    logs_json,
    series_bodies,
    series_json,
)
from processor.sink.sink import Sink
from processor.state.transaction import apply_writes
from tests.helpers.fakedatadog import FakeDatadog, validate_model

SAMPLE = 150  # items validated with the models per kind (~100-250 us each)


class Keeping:
    """A Datadog client that answers 202 and keeps each request's items and the gzip body sent."""

    dry_run = False

    def __init__(self):
        self.series: list[Batch] = []
        self.logs: list[Batch] = []

    async def post_series(self, batch):
        assert isinstance(batch, Batch) and batch.gz is not None
        self.series.append(batch)
        return Answer(202)

    async def post_logs(self, batch):
        assert isinstance(batch, Batch) and batch.gz is not None
        self.logs.append(batch)
        return Answer(202)


class Table(dict):
    async def persist(self, table: dict, op: int, writes: dict) -> list:
        apply_writes(table, writes)
        return []


class Held:
    def __init__(self, op: int):
        self.value = None
        self.message = SimpleNamespace(partition=op, value=None)

    def ack(self) -> None:
        pass


async def _ack(topic, value, headers) -> asyncio.Future:
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


@pytest.fixture(scope="module")
def closeout() -> Keeping:
    """A 4,000-event backlog's close-out through the sink agent, as the worker flushes it."""
    from bench.__main__ import PARTITIONS
    from bench.closeout import Backlog

    outputs = Backlog(4000).close_out()
    cfg = Config.from_env({"DD_API_KEY": "k", "DD_TAGS": "env:prod,team:IAM,région:Zürich",
                           "ELS_LATENESS_SECONDS": "3600"})
    client = Keeping()
    table = Table()
    sink = Sink(cfg, client, DeadLetterWriter("dl", Stage.SINK, _ack), table)
    agent = SinkAgent(cfg, sink, table, table)

    async def run():
        for q, value in outbox_records(outputs, PARTITIONS):
            agent.buffer.add(Held(q), q, orjson.loads(value), 0.0)
            if agent.buffer.logs_full():
                await agent.flush(series=False)
        await agent.flush()

    asyncio.run(run())
    assert client.series and client.logs
    return client


def _body(batch: Batch):
    return orjson.loads(gzip.decompress(batch.gz))


def _sample(batches: list[Batch], seed: int) -> list[dict]:
    items = [item for b in batches for item in b]
    return random.Random(seed).sample(items, min(SAMPLE, len(items)))


def test_series_bodies_are_the_rendered_series(closeout):
    for batch in closeout.series:
        assert _body(batch) == {"series": list(batch)}


def test_log_bodies_are_the_log_items(closeout):
    for batch in closeout.logs:
        assert _body(batch) == list(batch)


def test_series_bodies_deserialise_as_metric_payload(closeout):
    for batch in closeout.series:
        body = _body(batch)
        body["series"] = random.Random(len(batch)).sample(body["series"], min(SAMPLE, len(batch)))
        assert validate_model(body, (MetricPayload,)) is None


def test_log_bodies_deserialise_as_http_log_items(closeout):
    for batch in closeout.logs:
        body = _body(batch)
        assert validate_model(random.Random(len(batch)).sample(body, min(SAMPLE, len(batch))),
                              ([HTTPLogItem],)) is None


def test_fast_bodies_equal_what_the_clients_models_send(closeout):
    """The same JSON values as MetricPayload / HTTPLog built item by item and serialised by the client."""
    series = _sample(closeout.series, 1)
    via_models = data_to_dict(MetricPayload(series=[series_model(s) for s in series]))
    assert orjson.loads(series_json(encode_now(series))) == orjson.loads(orjson.dumps(via_models))
    logs = _sample(closeout.logs, 2)
    via_models = data_to_dict(HTTPLog([HTTPLogItem(**item) for item in logs]))
    assert orjson.loads(logs_json(encode_now(logs))) == orjson.loads(orjson.dumps(via_models))


def test_bodies_hold_datadogs_limits(closeout):
    for batch in closeout.series:
        raw = gzip.decompress(batch.gz)
        assert len(batch.gz) <= delivery.SERIES_MAX_COMPRESSED and len(raw) <= delivery.SERIES_MAX_UNCOMPRESSED
    for batch in closeout.logs:
        assert len(batch) <= delivery.LOGS_MAX_ENTRIES
        assert len(gzip.decompress(batch.gz)) <= delivery.LOGS_MAX_UNCOMPRESSED


def series(i: int, tags: int = 3) -> dict:
    return {"metric": f"okta.workflows.m{i}", "type": 1, "points": [{"timestamp": 1_790_000_000, "value": i * 1.5}],
            "tags": [f"t{j}:{random.random()}" for j in range(tags)], "interval": 60}


def deliver(client, series_=(), logs=()):
    cfg = Config.from_env({"DD_API_KEY": "k"})
    sink = Sink(cfg, client, DeadLetterWriter("dl", Stage.SINK, _ack), {})
    return asyncio.run(sink.sender.deliver(list(series_), list(logs), now_s=1_790_000_000))


def test_large_deliveries_split_within_the_limits_every_item_once_in_order():
    client = Keeping()
    many = [series(i, tags=40) for i in range(8000)]
    logs = [{"message": "x" * 1000, "i": i} for i in range(2500)] + [{"message": "y" * 900_000}] * 12
    done = deliver(client, many, logs)
    assert done.series_sent == len(many) and done.logs_sent == len(logs)
    assert [s for b in client.series for s in b] == many and [x for b in client.logs for x in b] == logs
    assert len(client.series) > 1
    for b in client.series:
        assert len(b.gz) <= delivery.SERIES_MAX_COMPRESSED
        assert len(gzip.decompress(b.gz)) <= delivery.SERIES_MAX_UNCOMPRESSED
    for b in client.logs:
        assert len(b) <= delivery.LOGS_MAX_ENTRIES and len(gzip.decompress(b.gz)) <= delivery.LOGS_MAX_UNCOMPRESSED


def test_bodies_written_to_a_file_are_the_ones_the_sender_sends():
    """`els replay` writes what it holds back as request bodies: split by the sender's own rule."""
    many = [series(i, tags=40) for i in range(8000)]
    client = Keeping()
    deliver(client, many)
    bodies = list(series_bodies(many))
    assert bodies == [gzip.decompress(b.gz) for b in client.series] and len(bodies) > 1
    assert [s for body in bodies for s in orjson.loads(body)["series"]] == many
    assert list(series_bodies([])) == []


def test_a_refused_request_is_split_and_re_encoded():
    class Refusing(Keeping):
        async def post_series(self, batch):
            if len(batch) > 1:
                return Answer(413, {}, "too big")
            return await super().post_series(batch)

    client = Refusing()
    few = [series(i) for i in range(5)]
    deliver(client, few)
    assert [list(b) for b in client.series] == [[s] for s in few]
    assert [_body(b) for b in client.series] == [{"series": [s]} for s in few]


@pytest.mark.parametrize("sizes,max_entries,max_bytes", [
    ([10] * 7, 3, 1000), ([10] * 7, 100, 35), ([50, 1, 1], 100, 40), ([], 5, 5), ([5, 5, 5, 5], 100, 10**6)])
@pytest.mark.parametrize("pieces", [1, 3])
def test_batcher_fills_requests_in_order_within_the_limits(sizes, max_entries, max_bytes, pieces):
    """However the items arrive (all at once, or in pieces as the sink renders them), every item is in one
    batch, in order, and a batch holds the limits unless an item alone is over them."""
    items = [{"i": i} for i in range(len(sizes))]
    encoded = [b"x" * n for n in sizes]
    batcher = Batcher(max_entries, max_bytes, overhead=2)
    batches = []
    step = max(1, -(-len(items) // pieces))
    for lo in range(0, len(items), step):
        batches += batcher.add(items[lo:lo + step], encoded[lo:lo + step])
    batches += batcher.rest()
    assert [x for b in batches for x in b] == items
    for b in batches:
        assert b.encoded == [encoded[x["i"]] for x in b]
        assert len(b) <= max_entries
        assert len(b) == 1 or 2 + sum(map(len, b.encoded)) + (len(b) - 1) <= max_bytes
    # full batches are full: the next item would not have fitted
    for b, after in zip(batches, batches[1:], strict=False):
        n = len(encoded[after[0]["i"]])
        assert len(b) == max_entries or 2 + sum(map(len, b.encoded)) + len(b) + n > max_bytes


def test_log_requests_written_at_once_are_the_item_by_item_bodies_in_order():
    """Log bodies are written by one call per request; a request over the size limit is filled item by item; the
    bodies are byte for byte the ones joined item by item, every log once, in order."""
    small = [{"message": f"log {i}", "i": i} for i in range(2500)]
    big = [{"message": "y" * 900_000, "i": i} for i in range(7)]
    logs = small[:1500] + big + small[1500:]
    batcher = logs_batcher()
    batches = []
    for lo in range(0, len(logs), 700):  # as the sender takes them: a slice at a time
        batches += batcher.fill(logs[lo:lo + 700])
    batches += batcher.rest()
    assert [x for b in batches for x in b] == logs
    assert [len(b) for b in batches][:1] == [1000] and any(b.body is None for b in batches)
    for b in batches:
        body = b.json_body(logs_json)
        assert body == logs_json(encode_now(b))
        assert len(b) <= delivery.LOGS_MAX_ENTRIES and len(body) <= delivery.LOGS_MAX_UNCOMPRESSED


def test_the_client_posts_the_fast_bodies_through_the_api_classes_to_the_fake_intake(closeout):
    """DatadogClient -> MetricsApi.submit_metrics / LogsApi.submit_log with the encoded body: the fake intake
    (tests/helpers/fakedatadog.py) checks the API key, gzip, the limits and the models, and stores the points."""
    async def run():
        async with FakeDatadog(api_key="test-key") as dd:
            client = DatadogClient(Config.from_env({"DD_API_KEY": "test-key", "DD_URL": dd.url}))
            try:
                sample = Batch(closeout.series[0][:200], encode_now(closeout.series[0][:200]))
                assert (await client.post_series(sample)).status == 202
                logs = Batch(closeout.logs[0][:50], None)  # encoded by the client
                assert (await client.post_logs(logs)).status == 202
                assert (await client.post_series([series(1)])).status == 202  # a plain list is encoded here
                bad = DatadogClient(Config.from_env({"DD_API_KEY": "wrong", "DD_URL": dd.url}))
                assert (await bad.post_series([series(2)])).status == 403
                await bad.close()
            finally:
                await client.close()
            details = dd.request_details
            assert [d.content_encoding for d in details][:3] == ["gzip"] * 3
            assert all(d.headers.get("User-Agent", "").startswith("datadog-api-client-python/") for d in details)
            assert dd.statuses("/api/v2/series")[:2] == [202, 202]
            assert len(dd.logs) == 50
            s = sample[0]
            assert dd.series_value(s["metric"], s["tags"], s["points"][0]["timestamp"]) == s["points"][0]["value"]
            assert dd.series_value("okta.workflows.m1", ["t0:" + series_tag0(dd)]) is not None

    asyncio.run(run())


def series_tag0(dd) -> str:
    return next(t for _, tags, _ in dd.points("okta.workflows.m1") for t in tags if t.startswith("t0:"))[3:]
