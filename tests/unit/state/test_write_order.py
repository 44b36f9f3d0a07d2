"""The write order of a batch (processor/batch.py): outputs acknowledged, then state records, then the clock.

A fake producer records every send and when its acknowledgement was awaited; the engine and the stores are the
real ones (plain dicts), so what is checked is exactly what the worker does with Kafka.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import orjson
import pytest

from common.deadletter import DeadLetterWriter, Stage
from processor.batch import EMIT_EARLY_ITEMS, BatchApplier
from processor.engine import TICK_KEY, Engine, FlushPolicy
from processor.pipeline import WorkerStats
from processor.state.positions import Positions
from processor.state.transaction import apply_writes
from tests.unit.engine.test_engine import T0, ev, settings


class Table:
    def __init__(self, name: str):
        self.data: dict = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: name)


class Kafka:
    """KafkaOut's interface; futures resolve when awaited, in order, and the log says what was acknowledged."""

    def __init__(self):
        self.log: list[tuple[str, str]] = []

    def _future(self, what: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda _f: self.log.append(("ack", what)))
        asyncio.get_running_loop().call_soon(fut.set_result, None)
        return fut

    async def send(self, topic, key, value, partition=None, headers=None):
        self.log.append(("send", topic))
        return self._future(topic)

    async def persist(self, table, p, writes):
        name = table.changelog_topic.get_topic_name()
        kind = "clock" if all(k.endswith("|clock") for k in writes) else name
        apply_writes(table.data, writes)
        self.log.append(("send", kind))
        return [self._future(kind)]


def message(p: int, offset: int, value: bytes, key: bytes = b"k", headers=None):
    return SimpleNamespace(partition=p, offset=offset, key=key, value=value,
                           headers=headers or [("received_at", str(T0).encode())], timestamp=T0 / 1000)


def applier(policy: FlushPolicy | None = None) -> tuple[BatchApplier, Kafka, Table, Table]:
    chains, windows = Table("chains-changelog"), Table("windows-changelog")
    engine = Engine(settings(), chains.data, windows.data, policy or FlushPolicy(at_tick=True))
    kafka = Kafka()

    async def earliest(p):
        return 0

    async def seek(p, off):
        raise AssertionError("no gaps here")

    positions = Positions(lambda p: engine.clock(p).off, earliest, seek)
    dl = DeadLetterWriter("dl", Stage.PROCESSOR, lambda topic, value, headers: kafka.send(topic, None, value))
    return BatchApplier(engine, positions, kafka, dl, (chains, windows), "out", 4, WorkerStats()), kafka, chains, windows


def tick(p: int, offset: int, at: int):
    return message(p, offset, orjson.dumps({"tick": at}), TICK_KEY, [("els-kind", b"tick")])


async def test_outputs_are_acknowledged_before_the_state_and_the_clock_comes_last():
    a, kafka, _chains, windows = applier()
    events = [message(0, 0, orjson.dumps(ev("FLOW_FAIL", T0 + 5, ex="r", error_type="E"))),
              message(0, 1, b"not json"), tick(0, 2, T0 + 1000)]
    await a.apply(events)
    sends = [what for kind, what in kafka.log if kind == "send"]
    acks = [what for kind, what in kafka.log if kind == "ack"]
    assert sends[:2] == ["dl", "out"] and sends[-1] == "clock"
    state_sent = kafka.log.index(("send", "chains-changelog"))
    assert all(kafka.log.index(("ack", out)) < state_sent for out in ("dl", "out"))
    assert kafka.log.index(("ack", "windows-changelog")) < kafka.log.index(("send", "clock"))
    assert acks[-1] == "clock" and "0|clock" in windows.data


async def test_without_a_tick_the_state_waits_in_the_transaction():
    a, kafka, chains, _windows = applier(FlushPolicy(max_age_s=3600))
    await a.apply([message(0, 0, orjson.dumps(ev("FLOW_START", T0 + 5, ex="r")))])
    assert chains.data == {} and ("send", "clock") not in kafka.log
    assert a.stats.records == 1 and a.stats.flushes == 0


async def test_a_burst_goes_out_partition_by_partition():
    a, kafka, _chains, _windows = applier()
    n = EMIT_EARLY_ITEMS  # chains per partition: their logs make a burst at the tick
    batch = []
    for p in (0, 1):
        batch += [message(p, i, orjson.dumps(ev("FLOW_START", T0 + i, ex=f"r{p}-{i}"))) for i in range(n)]
        batch += [message(p, n + i, orjson.dumps(ev("FLOW_COMPLETE", T0 + i, ex=f"r{p}-{i}"))) for i in range(n)]
    await a.apply(batch)
    kafka.log.clear()
    await a.apply([tick(0, 2 * n, T0 + 100_000), tick(1, 2 * n, T0 + 100_000)])
    sends = [what for kind, what in kafka.log if kind == "send"]
    first_clock = sends.index("clock")
    assert "out" in sends[:first_clock] and "out" in sends[first_clock:]  # partition 0 done before 1's outputs


async def test_a_batch_forgotten_while_the_engine_runs_emits_and_writes_nothing():
    """The engine runs in its own thread; an assignment change meanwhile (forget) leaves its result stale: nothing of
    the batch is emitted or written, and its records are applied again afterwards, once."""
    a, kafka, chains, windows = applier()
    process = a.engine.process

    def slow(p, records, live=None):
        out = process(p, records, live)
        a.forget()  # as the rebalance callback would, on the event loop, while this thread ran
        return out

    a.engine.process = slow
    batch = [message(0, 0, orjson.dumps(ev("FLOW_FAIL", T0 + 5, ex="r", error_type="E"))), tick(0, 1, T0 + 1000)]
    await a.apply(batch)
    assert kafka.log == [] and chains.data == {} and windows.data == {}
    a.engine.process = process
    await a.apply(batch)
    assert ("send", "out") in kafka.log and "0|clock" in windows.data and a.stats.records == 2


async def test_closing_ends_the_engines_thread_and_nothing_more_is_applied():
    a, kafka, _chains, _windows = applier()
    await a.apply([tick(0, 0, T0 + 1000)])
    engine_threads = [t for t in threading.enumerate() if t.name.startswith("els-engine")]
    assert engine_threads
    a.close()
    for t in engine_threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in engine_threads)
    sent = list(kafka.log)
    with pytest.raises(RuntimeError):
        await a.apply([message(0, 1, orjson.dumps(ev("FLOW_FAIL", T0 + 5, ex="r", error_type="E")))])
    assert kafka.log == sent
