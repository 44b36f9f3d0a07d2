"""The inbox between the worker's consumer and the processor's agent (processor/inbox.py): batches as soon as
they are whole or after a wait, back-pressure on the consumer, and what a rebalance drops."""

from __future__ import annotations

import asyncio

from faust.types import Message

from processor.inbox import Inbox

TOPIC = "els-raw"


def message(offset: int, generation: int = 1) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation)


def inbox(batch_max: int = 3, capacity: int = 6, generation=lambda: 1) -> tuple[Inbox, list[int]]:
    acked: list[int] = []
    return Inbox(TOPIC, batch_max, capacity, generation, lambda m: acked.append(m.offset)), acked


async def test_a_whole_batch_is_taken_at_once_and_the_rest_waits_for_the_next():
    box, _ = inbox()
    for offset in range(5):
        assert box.put(message(offset))
    batch = await asyncio.wait_for(box.take(within=60), 1)  # whole: no wait
    assert [m.offset for m in batch] == [0, 1, 2] and len(box) == 2


async def test_a_partial_batch_is_taken_after_the_wait_and_an_empty_one_is_empty():
    box, _ = inbox()
    assert await box.take(within=0.01) == []
    box.put(message(0))
    assert [m.offset for m in await box.take(within=0.01)] == [0]


async def test_a_waiting_take_gets_the_batch_as_soon_as_it_is_whole():
    box, _ = inbox()
    taking = asyncio.ensure_future(box.take(within=60))
    for offset in range(3):
        await asyncio.sleep(0)
        box.put(message(offset))
    assert [m.offset for m in await asyncio.wait_for(taking, 1)] == [0, 1, 2]


async def test_a_full_inbox_holds_the_consumer_until_a_batch_is_taken():
    box, _ = inbox(batch_max=2, capacity=4)
    assert [box.put(message(offset)) for offset in range(4)] == [True, True, True, False]
    room = asyncio.ensure_future(box.room())
    await asyncio.sleep(0.01)
    assert not room.done()
    await box.take(within=0)
    await asyncio.wait_for(room, 1)


async def test_a_rebalance_drops_what_waits_unacked_and_frees_the_consumer():
    box, acked = inbox(batch_max=2, capacity=2)
    box.put(message(0))
    assert not box.put(message(1))
    box.clear()
    await asyncio.wait_for(box.room(), 1)
    assert len(box) == 0 and box.dropped == 2 and acked == []
    assert await box.take(within=0) == []


async def test_messages_of_an_earlier_generation_or_during_a_rebalance_are_dropped():
    current = {"generation": 2}
    box, _ = inbox(generation=lambda: current["generation"])
    box.put(message(0, generation=1))
    box.put(message(1, generation=2))
    assert [m.offset for m in await box.take(within=0)] == [1] and box.dropped == 1
    current["generation"] = None  # Faust's flow control holds the streams: nothing is handed over
    box.put(message(2, generation=2))
    assert await box.take(within=0) == [] and box.dropped == 2


async def test_acks_go_to_the_consumer_one_by_one():
    box, acked = inbox()
    for offset in range(3):
        box.put(message(offset))
    box.ack(await box.take(within=0))
    assert acked == [0, 1, 2]
