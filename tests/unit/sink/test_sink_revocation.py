"""The sink as a rebalance or a stop begins (processor/revocation.py). At a rebalance a flush stuck on Datadog is
abandoned, and every record held, waiting or being flushed is acked undelivered at once, so Faust's revocation
never waits on Datadog; the outbox position is not moved, so the next owner delivers those records again. At a
stop Datadog is first given a few seconds to take what is held (delivered and acked), then the same."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from common.config import Config
from processor.revocation import Fence
from processor.sink import agent as sink_agent
from processor.sink.agent import SinkAgent
from processor.sink.position import OutboxPositions, position_key
from tests.unit.sink.test_delivery import ScriptedClient, make_sink, partial
from tests.unit.sink.test_outbox_position import Consumer, Event
from tests.unit.sink.test_sink_agent import WS_A, TableWriter, with_logs


def fenced_agent(client: ScriptedClient) -> tuple[SinkAgent, Fence]:
    sink, _ = make_sink(client)
    fence = Fence()
    consumer = Consumer()
    agent = SinkAgent(Config.from_env({}), sink, TableWriter(), sink.table,
                      positions=OutboxPositions(sink.table, consumer.earliest, consumer.seek), fence=fence)
    fence.on_abandon(agent.flow_stopped)
    return agent, fence


async def hold(agent: SinkAgent, op: int, offset: int, value: dict) -> Event:
    event = Event(op, offset)
    assert await agent.positions.admit(event.message)
    agent.buffer.add(event, op, value, 1.0)
    return event


async def test_a_flush_stuck_on_datadog_is_abandoned_and_its_records_acked_undelivered():
    agent, fence = fenced_agent(ScriptedClient([503] * 10_000))  # Datadog down for good
    agent.table[position_key(0)] = {"group": "position", "op": 0, "next": 7}
    events = [await hold(agent, 0, off, partial(0, off, 1, WS_A)) for off in (7, 8)]
    flush = asyncio.ensure_future(agent.flush())
    await asyncio.sleep(0.2)
    assert not flush.done() and not any(e.acked for e in events)  # retrying Datadog
    fence.abandon()
    await asyncio.wait_for(flush, 2)
    assert all(e.acked for e in events)
    assert agent.table[position_key(0)]["next"] == 7  # not delivered: the next owner starts from here again
    assert not agent.buffer.events and agent.sink.stats["held"] == 0


async def test_records_held_and_records_waiting_for_the_full_flush_are_let_go_as_the_flow_stops():
    client = ScriptedClient()
    agent, fence = fenced_agent(client)
    waiting = await hold(agent, 0, 0, with_logs(partial(0, 5, 3, WS_A)))
    await agent.flush(series=False)  # a logs request's worth: sent, the record waits for the burst's full flush
    assert agent.taken and agent.owed and not waiting.acked
    held = await hold(agent, 0, 1, partial(0, 6, 4, WS_A))
    fence.abandon()
    assert waiting.acked and held.acked
    assert not agent.taken and not agent.owed and not agent.buffer.events
    assert position_key(0) not in agent.table  # nothing was delivered in full: no position moved
    await agent.flush()  # no flush after the flow stopped
    assert [what for what, _ in client.sent] == ["logs"]


async def test_no_flush_starts_while_the_flow_is_stopped_and_what_was_held_is_not_delivered():
    client = ScriptedClient()
    agent, fence = fenced_agent(client)
    fence.abandon()
    late = await hold(agent, 0, 0, partial(0, 5, 3, WS_A))  # handed over as the flow stopped
    await agent.flush()
    assert late.acked and not client.sent and position_key(0) not in agent.table


async def test_a_stop_delivers_what_is_held_when_datadog_takes_it():
    client = ScriptedClient()
    agent, fence = fenced_agent(client)
    held = [await hold(agent, 1, off, partial(0, off, 1, WS_A)) for off in (0, 1)]
    fence.abandon(stopping=True)
    await asyncio.wait_for(agent.last_flush, 2)
    assert all(e.acked for e in held) and [what for what, _ in client.sent] == ["series"]
    assert agent.table[position_key(1)]["next"] == 2  # delivered: the position moved on


async def test_a_stop_while_datadog_is_down_gives_up_after_its_grace(monkeypatch):
    monkeypatch.setattr(sink_agent, "STOP_FLUSH_SECONDS", 0.3)
    agent, fence = fenced_agent(ScriptedClient([503] * 10_000))
    held = await hold(agent, 0, 0, partial(0, 5, 3, WS_A))
    flush = asyncio.ensure_future(agent.flush())  # stuck retrying Datadog when the stop comes
    await asyncio.sleep(0.1)
    late = await hold(agent, 0, 1, partial(0, 6, 4, WS_A))
    fence.abandon(stopping=True)
    await asyncio.wait_for(flush, 2)
    assert not held.acked  # put back for the stop's last flush, which tries again
    await asyncio.wait_for(agent.last_flush, 2)
    assert held.acked and late.acked and not agent.buffer.events
    assert position_key(0) not in agent.table


@pytest.mark.parametrize("stopping", [False, True], ids=["rebalance", "stop"])
async def test_a_record_handed_over_after_the_flow_stopped_is_never_left_unacked(stopping):
    agent, fence = fenced_agent(ScriptedClient())
    fence.abandon(stopping=stopping)
    if stopping:
        await asyncio.wait_for(agent.last_flush, 2)
    late = await hold(agent, 0, 0, partial(0, 5, 3, WS_A))
    agent.flow_stopped()  # what the agent does with it
    assert late.acked


async def test_what_a_rebalance_let_go_is_read_again_as_the_flow_resumes_though_no_new_record_comes():
    """Outbox partition 1: delivered up to 2, records 2..5 let go at the rebalance (Faust committed 6). No record
    of that partition may come for a long time, so the new owner reads 2..5 as soon as its flow resumes."""
    async def read(op, start, end):
        return [SimpleNamespace(partition=op, offset=off, value=orjson.dumps(partial(0, off, 1, WS_A)))
                for off in range(start, end)]

    sink, _ = make_sink(ScriptedClient())
    consumer = Consumer()
    agent = SinkAgent(Config.from_env({}), sink, TableWriter(), sink.table,
                      positions=OutboxPositions(sink.table, consumer.earliest, consumer.seek, read))
    agent.table[position_key(1)] = {"group": "position", "op": 1, "next": 2}
    await agent.catch_up({1: 6, 2: None})
    assert [e.message.offset for e in agent.buffer.events] == [2, 3, 4, 5]
    first = Event(1, 6)  # where Faust starts: next in order, no gap read
    first.message.value = orjson.dumps(partial(0, 6, 1, WS_A))
    await agent.take(first)
    await agent.flush()
    assert agent.table[position_key(1)]["next"] == 7 and consumer.seeks == []
