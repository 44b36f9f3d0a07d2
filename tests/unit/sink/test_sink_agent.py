"""The sink agent's flushes (processor.sink.agent.SinkAgent) against a scripted Datadog and a dict as the table:
a logs-only flush sends the logs and acks nothing; the burst's full flush sends every window it touched once and
acks every record."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from common.config import Config
from processor.sink.agent import SinkAgent
from processor.state.transaction import apply_writes
from tests.unit.sink.test_delivery import ScriptedClient, make_sink, partial

WS_A = int(time.time()) // 60 * 60_000 - 60_000  # recent windows: Datadog would drop points over an hour old
WS_B = WS_A + 60_000
KEY_A, KEY_B = f"flow:f1|{WS_A}", f"flow:f1|{WS_B}"


class Event:
    def __init__(self, op: int):
        self.value = b"the record"
        self.message = SimpleNamespace(partition=op, value=self.value)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class TableWriter:
    """The agent's producer: persist applies the writes to the table (what ChangelogWriter does locally)."""

    async def persist(self, table: dict, op: int, writes: dict) -> list[asyncio.Future]:
        apply_writes(table, writes)
        return []


def with_logs(*items: dict, n: int = 1000) -> dict:
    return {"kind": "batch", "items": [*items] + [{"kind": "log", "item": {"message": f"chain {i}"}} for i in range(n)]}


def agent_on(client: ScriptedClient, **env) -> SinkAgent:
    sink, _ = make_sink(client, **env)
    return SinkAgent(Config.from_env(env), sink, TableWriter(), sink.table)


def events_values_sent(client: ScriptedClient) -> list[float]:
    return [s["points"][0]["value"] for what, batch in client.sent if what == "series" for s in batch
            if s["metric"] == "okta.workflows.events"]


async def test_a_logs_only_flush_acks_nothing_and_the_full_flush_sends_each_window_once():
    client = ScriptedClient()
    agent = agent_on(client)
    first = Event(0)
    agent.buffer.add(first, 0, with_logs(partial(0, 5, 3, WS_A)), 1.0)
    assert agent.buffer.logs_full()
    await agent.flush(series=False)
    assert [what for what, _ in client.sent] == ["logs"] and len(client.sent[0][1]) == 1000
    assert not first.acked and agent.owed == {KEY_A} and KEY_A in agent.sink.table
    assert first.value is None and first.message.value is None  # waiting without its bytes

    second = Event(0)
    agent.buffer.add(second, 0, partial(1, 7, 4, WS_A), 2.0)
    agent.buffer.add(second, 0, partial(0, 8, 2, WS_B), 2.0)
    await agent.flush()
    assert sorted(events_values_sent(client)) == [2, 7]  # window A once, both partitions merged (3 + 4); B
    assert first.acked and second.acked and agent.owed == set() and agent.taken == []


async def test_owed_windows_are_sent_and_waiting_records_acked_even_when_nothing_new_arrived():
    client = ScriptedClient()
    agent = agent_on(client)
    first = Event(0)
    agent.buffer.add(first, 0, with_logs(partial(0, 5, 3, WS_A)), 1.0)
    await agent.flush(series=False)
    assert agent.buffer.due(1.0 + agent.buffer.hold_seconds)
    await agent.flush()  # nothing held: the owed window alone
    assert events_values_sent(client) == [3] and first.acked and agent.owed == set()


async def test_records_of_logs_only_are_acked_by_the_next_full_flush():
    client = ScriptedClient()
    agent = agent_on(client)
    first = Event(0)
    agent.buffer.add(first, 0, with_logs(), 1.0)
    await agent.flush(series=False)
    assert not first.acked and agent.owed == set()
    await agent.flush()
    assert first.acked and [what for what, _ in client.sent] == ["logs"]


async def test_a_failed_logs_only_flush_keeps_its_records_held():
    client = ScriptedClient()
    agent = agent_on(client)

    async def refused(table, op, writes):
        raise ConnectionError("the broker refused the sink's state writes")

    agent.producer.persist = refused
    first = Event(0)
    agent.buffer.add(first, 0, with_logs(partial(0, 5, 3, WS_A)), 1.0)
    await agent.flush(series=False)
    assert agent.buffer.events == [first] and first.value is not None and agent.taken == []


async def test_an_owed_window_past_its_retention_is_sent_before_it_is_deleted():
    """The table's cleanup runs only in full flushes, after the owed windows were sent."""
    client = ScriptedClient()
    agent = agent_on(client, ELS_WINDOW_SECONDS="60", ELS_LATENESS_SECONDS="0", ELS_SESSION_TIMEOUT_SECONDS="6",
                     ELS_REBALANCE_TIMEOUT_SECONDS="3")  # kept 60 s after its end
    old = WS_A - 4 * 60_000
    agent.last_cleanup = time.monotonic()  # no cleanup in this first flush: the window is in the table
    agent.buffer.add(Event(0), 0, partial(0, 5, 3, old), 1.0)
    await agent.flush()
    agent.last_cleanup = 0.0  # cleanup due from here on
    agent.buffer.add(Event(0), 0, with_logs(partial(1, 6, 1, old), partial(0, 6, 1, WS_B)), 2.0)
    await agent.flush(series=False)
    assert agent.sink.expired_keys(0, int(time.time() * 1000)) == [f"flow:f1|{old}"]
    assert f"flow:f1|{old}" in agent.sink.table
    await agent.flush()
    assert sorted(events_values_sent(client)) == [1, 3, 4]  # old (3), then old (3 + 1) and B (1)
