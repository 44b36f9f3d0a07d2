"""The sink's own outbox position (processor/sink/position.py): what a full flush delivered is never merged
twice, and records Faust skipped (acked during a rebalance, never handed to the sink) are read on their own (or
sought back without a reader), not lost."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from common.config import Config
from processor.sink.agent import SinkAgent
from processor.sink.position import OutboxPositions, position_key
from tests.unit.sink.test_delivery import ScriptedClient, make_sink, partial
from tests.unit.sink.test_sink_agent import WS_A, TableWriter, events_values_sent


class Event:
    def __init__(self, op: int, offset: int):
        self.value = b"the record"
        self.message = SimpleNamespace(partition=op, offset=offset, value=self.value)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class Consumer:
    def __init__(self):
        self.seeks: list[tuple[int, int]] = []

    async def earliest(self, op: int) -> int:
        return 0

    async def seek(self, op: int, offset: int) -> None:
        self.seeks.append((op, offset))


def agent_with_positions(consumer: Consumer) -> SinkAgent:
    sink, _ = make_sink(ScriptedClient())
    return SinkAgent(Config.from_env({}), sink, TableWriter(), sink.table,
                     positions=OutboxPositions(sink.table, consumer.earliest, consumer.seek))


async def test_a_full_flush_writes_the_position_after_what_it_acked():
    agent = agent_with_positions(Consumer())
    agent.table[position_key(2)] = {"group": "position", "op": 2, "next": 7}  # an earlier flush delivered 0..6
    for off in (7, 8):
        ev = Event(2, off)
        assert await agent.positions.admit(ev.message)
        agent.buffer.add(ev, 2, partial(0, off, 1, WS_A), 1.0)
    await agent.flush()
    assert agent.table[position_key(2)] == {"group": "position", "op": 2, "next": 9}
    agent.sink.merge.clocks[2] = 10**13
    assert agent.sink.expired_keys(2, 10**13) == [f"flow:f1|{WS_A}"]  # the window expires, the position never
    assert list(agent.sink.take_closed()) == [f"flow:f1|{WS_A}"]


async def test_after_a_rebalance_delivered_records_are_dropped_and_a_gap_is_sought_back():
    consumer = Consumer()
    agent = agent_with_positions(consumer)
    agent.table[position_key(1)] = {"group": "position", "op": 1, "next": 10}
    agent.positions.forget()  # as after an assignment
    assert not await agent.positions.admit(Event(1, 9).message)  # delivered before the rebalance
    # Faust acked and committed 10 and 11 while it skipped them in the rebalance: the consumer starts at 12
    assert not await agent.positions.admit(Event(1, 12).message)
    assert consumer.seeks == [(1, 10)]
    assert [len(await agent.positions.admit(Event(1, off).message)) for off in (10, 11, 12)] == [1, 1, 1]


async def test_the_sink_sends_values_of_skipped_records_once_sought_back():
    consumer = Consumer()
    agent = agent_with_positions(consumer)
    agent.table[position_key(0)] = {"group": "position", "op": 0, "next": 5}
    for off in (6, 5, 6):  # 6 first (5 was skipped), then both after the seek
        ev = Event(0, off)
        if await agent.positions.admit(ev.message):
            agent.buffer.add(ev, 0, partial(off, off, off, WS_A), 1.0)
    await agent.flush()
    assert events_values_sent(agent.sink.client) == [11]  # 5 + 6: both partials merged
    assert agent.table[position_key(0)]["next"] == 7


async def test_a_gap_is_read_on_its_own_and_merged_before_the_record_after_it():
    consumer = Consumer()
    log = {5: partial(5, 5, 5, WS_A), 6: partial(6, 6, 6, WS_A)}

    async def read(op, start, end):
        import orjson

        return [SimpleNamespace(partition=op, offset=o, value=orjson.dumps(log[o])) for o in range(start, end)]

    sink, _ = make_sink(ScriptedClient())
    agent = SinkAgent(Config.from_env({}), sink, TableWriter(), sink.table,
                      positions=OutboxPositions(sink.table, consumer.earliest, consumer.seek, read))
    agent.table[position_key(0)] = {"group": "position", "op": 0, "next": 5}
    event = Event(0, 7)
    kept = await agent.positions.admit(event.message)
    assert [m.offset for m in kept] == [5, 6, 7] and consumer.seeks == []
    import orjson

    from processor.sink.position import ReadEvent
    for m in kept:
        held = event if m is event.message else ReadEvent(m)
        agent.buffer.add(held, 0, orjson.loads(m.value) if m is not event.message else partial(7, 7, 7, WS_A), 1.0)
    await agent.flush()
    assert events_values_sent(agent.sink.client) == [18]  # the shares of processor partitions 5, 6 and 7
    assert agent.table[position_key(0)]["next"] == 8 and event.acked


async def test_with_nothing_delivered_yet_the_records_before_the_first_handed_over_are_read_and_merged():
    """Faust committed offsets 0..2 of outbox partition 3 without the sink delivering them (held records let go at
    a rebalance, processor/revocation.py): the next owner starts at the log's beginning, not where Faust starts."""
    async def read(op, start, end):
        return [SimpleNamespace(partition=op, offset=off, value=orjson.dumps(partial(0, off, 1, WS_A)))
                for off in range(start, end)]

    consumer = Consumer()
    sink, _ = make_sink(ScriptedClient())
    agent = SinkAgent(Config.from_env({}), sink, TableWriter(), sink.table,
                      positions=OutboxPositions(sink.table, consumer.earliest, consumer.seek, read))
    first = Event(3, 3)
    assert [m.offset for m in await agent.positions.admit(first.message)] == [0, 1, 2, 3]
    assert consumer.seeks == []
