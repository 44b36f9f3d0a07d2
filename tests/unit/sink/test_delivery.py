"""Datadog delivery rules: request limits, the retry decision table, what Datadog would drop, and the sink's
merge-and-retry logic against a scripted client."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from processor.core.bag import Bag
from processor.sink import delivery
from processor.sink.client import Answer
from processor.sink.delivery import decide, metric_point_droppable
from processor.sink.sink import Sink


def series(i: int, tags: int = 3) -> dict:
    return {"metric": f"okta.workflows.m{i}", "type": 1, "points": [{"timestamp": 1_790_000_000, "value": i}],
            "tags": [f"t{j}:{random.random()}" for j in range(tags)], "interval": 60}


@pytest.mark.parametrize("status,headers,size,action", [
    (202, {}, 10, "done"), (200, {}, 10, "done"),
    (None, {}, 10, "retry"), (408, {}, 10, "retry"), (500, {}, 10, "retry"), (502, {}, 10, "retry"),
    (503, {}, 10, "retry"), (429, {"X-RateLimit-Reset": "7"}, 10, "retry"),
    (413, {}, 10, "split"), (413, {}, 1, "deadletter"),
    (400, {}, 10, "split"), (400, {}, 1, "deadletter"), (422, {}, 1, "deadletter"),
    (401, {}, 10, "auth"), (403, {}, 10, "auth"),
])
def test_decision_table(status, headers, size, action):
    assert decide(status, headers, 0, size).action == action


def test_rate_limit_reset_is_honoured_and_backoff_is_capped():
    assert decide(429, {"x-ratelimit-reset": "7"}, 0, 1).delay_s == 7
    delays = [decide(503, {}, attempt, 1).delay_s for attempt in range(40)]
    assert max(delays) <= delivery.BACKOFF_CAP_S
    assert decide(401, {}, 0, 1).delay_s >= 30


def test_drop_rules():
    now = 1_790_000_000
    assert metric_point_droppable(now - 3599, now) is None
    assert "1 hour" in metric_point_droppable(now - 3601, now)
    assert metric_point_droppable(now - 86400, now, historical=True) is None
    assert "future" in metric_point_droppable(now + 601, now)
    assert delivery.log_droppable((now - 18 * 3600 - 1) * 1000, now)
    assert delivery.log_droppable((now - 3600) * 1000, now) is None


class ScriptedClient:
    """Answers from a script, then 202; records what it was asked to send."""

    def __init__(self, script=()):
        self.script = list(script)
        self.sent: list[tuple[str, list]] = []

    async def _answer(self, what, batch) -> Answer:
        if self.script:
            status = self.script.pop(0)
            if callable(status):
                status = status(batch)
            if status != 202:
                return Answer(status, {"X-RateLimit-Reset": "0"} if status == 429 else {}, "nope")
        self.sent.append((what, batch))
        return Answer(202)

    async def post_series(self, batch):
        return await self._answer("series", batch)

    async def post_logs(self, batch):
        return await self._answer("logs", batch)


def make_sink(client, **env) -> tuple[Sink, list]:
    """A sink whose dead letters are collected as (item, headers) with the writer's headers."""
    dead = []

    async def send(topic, value, headers) -> asyncio.Future:
        dead.append((orjson.loads(value), {k: v.decode() for k, v in headers}))
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    cfg = Config.from_env({"DD_TAGS": "env:prod,team:IAM", **env})
    return Sink(cfg, client, DeadLetterWriter(cfg.els_deadletter_topic, Stage.SINK, send), {}), dead


def partial(p: int, seq: int, events: int, ws: int = 1_790_000_040_000) -> dict:
    b = Bag()
    b.count("events", events, event_type="flow_start")
    b.labels.update(flow_id="f1", flow_name="Flow 1")
    return {"kind": "partial", "p": p, "group": "flow:f1", "ws": ws, "seq": seq, "final": False, "bag": b.to_dict()}


def test_sink_merges_the_latest_partial_of_each_partition():
    sink, _ = make_sink(ScriptedClient())
    touched, _ = sink.absorb([partial(0, 5, 3), partial(1, 7, 4), partial(0, 4, 99), partial(0, 9, 5)])
    (entry,) = touched.values()
    series_out = sink.render(touched.values(), 1_790_000_100_000)
    events = [s for s in series_out if s["metric"] == "okta.workflows.events"]
    assert len(events) == 1 and events[0]["points"][0]["value"] == 9  # 5 (p0, seq 9) + 4 (p1)
    assert "env:prod" in events[0]["tags"] and "team:iam" in events[0]["tags"]
    assert "service:okta-workflows" in events[0]["tags"]


async def test_sink_retries_until_taken_and_splits_refused_items():
    client = ScriptedClient([503, 429, None, lambda b: 400 if len(b) > 1 else 202, 202, 400])
    sink, dead = make_sink(client)
    batch = [series(i) for i in range(2)]
    done = await sink.deliver(batch, [], now_s=1_790_000_000)
    assert sink.stats["sink_retries"] == 3 == done.retries
    sent = [s for _, b in client.sent for s in b]
    assert sent == [batch[0]]  # the second item was split off and refused by Datadog
    assert [d[0] for d in dead] == [batch[1]] and "400" in dead[0][1]["reason"]
    assert dead[0][1]["stage"] == "sink" and dead[0][1]["status"] == "400"
    assert (done.series_sent, done.series_refused) == (1, 1)


async def test_sink_drops_what_datadog_would_drop_and_dead_letters_it():
    client = ScriptedClient()
    sink, dead = make_sink(client)
    now = 1_790_000_000
    old = series(1)
    old["points"][0]["timestamp"] = now - 7200
    fresh = series(2)
    fresh["points"][0]["timestamp"] = now - 60
    old_log = {"message": "m", "timestamp": (now - 19 * 3600) * 1000}
    done = await sink.deliver([old, fresh], [old_log, {"message": "ok", "timestamp": now * 1000}], now_s=now)
    assert [b for w, b in client.sent if w == "series"] == [[fresh]]
    assert len(dead) == 2 and sink.stats["dropped_points"] == 1 and sink.stats["dropped_logs"] == 1
    assert all(h["stage"] == "sink" and h["reason"].startswith("not sent to Datadog") for _, h in dead)
    assert (done.points_dropped, done.logs_dropped, done.logs_sent) == (1, 1, 1)
    logs_sent = [b for w, b in client.sent if w == "logs"][0]
    assert logs_sent[0]["service"] == "okta-workflows" and "env:prod" in logs_sent[0]["ddtags"]


async def test_without_deadletter_drops_what_datadog_would_drop_is_only_counted():
    """Replay's mode: points it holds back and logs over 18 h are counted, not dead-lettered."""
    client = ScriptedClient()
    dead = []

    async def send(topic, value, headers):
        dead.append(value)

    cfg = Config.from_env({})
    sink = Sink(cfg, client, DeadLetterWriter("dl", Stage.REPLAY, send), {}, deadletter_drops=False)
    now = 1_790_000_000
    future = series(1)
    future["points"][0]["timestamp"] = now + 3600
    done = await sink.deliver([future], [{"message": "m", "timestamp": (now - 19 * 3600) * 1000}], now_s=now)
    assert (done.points_dropped, done.logs_dropped) == (1, 1) and dead == [] and client.sent == []
