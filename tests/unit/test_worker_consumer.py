"""The worker's consumer: the fetch size docs/configuration.md documents, Faust's variable overriding it, and the
fetch loop that hands messages to the streams a batch at a time."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from types import SimpleNamespace

import pytest
from faust.types import TP, Message

from common.config import Config
from processor.worker import CONSUMER_FETCH_BYTES, create_app


async def _fetch_bytes(tmp_path) -> int:
    app = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path)}))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # the real aiokafka consumer, not started
    try:
        return consumer._max_partition_fetch_bytes
    finally:
        await consumer.stop()


async def test_the_consumer_fetches_2_mib_per_partition(tmp_path, monkeypatch):
    monkeypatch.delenv("CONSUMER_MAX_FETCH_SIZE", raising=False)
    assert CONSUMER_FETCH_BYTES == 2 * 1024 * 1024
    assert await _fetch_bytes(tmp_path) == CONSUMER_FETCH_BYTES


@pytest.mark.parametrize("size", [1024 * 1024, 4 * 1024 * 1024])
async def test_fausts_consumer_max_fetch_size_overrides_it(tmp_path, monkeypatch, size):
    monkeypatch.setenv("CONSUMER_MAX_FETCH_SIZE", str(size))
    assert await _fetch_bytes(tmp_path) == size


# --- the fetch loop (processor/transport.py TrueEndConsumer._drain_messages) ---

# Faust's fetch loop as processor/transport.py copies it; a faust-streaming upgrade that changes it fails here, so
# whoever upgrades compares the two again and updates this digest.
FAUSTS_DRAIN_MESSAGES_SHA256 = "44a2500309e83c63"
TOPIC = "els-raw"


def test_the_copied_fetch_loop_is_fausts_current_one():
    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FAUSTS_DRAIN_MESSAGES_SHA256


def _message(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None)


class Fetches:
    """getmany's answers, one list of offsets per call; after the last, the fetcher is told to stop."""

    def __init__(self, *rounds: list[int]):
        self.rounds = list(rounds)
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def getmany(self, timeout: float):
        if not self.rounds:
            self.fetcher._stopped.set()
            return
        for offset in self.rounds.pop(0):
            yield TP(TOPIC, 0), _message(offset)


async def _drain(tmp_path, fetches: Fetches, callback) -> None:
    consumer = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path)})).consumer
    consumer.callback, consumer.getmany = callback, fetches.getmany
    return consumer, asyncio.create_task(consumer._drain_messages(fetches.fetcher))


async def test_fetched_messages_are_delivered_in_order_and_a_refetch_is_dropped(tmp_path):
    delivered = []

    async def callback(message):
        delivered.append(message.offset)

    # the second fetch starts again at 2: as Faust's loop, offsets below the last one read are dropped (the read
    # offset itself, where a seek points, goes through)
    _, task = await _drain(tmp_path, Fetches(list(range(0, 5)), list(range(2, 250))), callback)
    await asyncio.wait_for(task, 5)
    assert delivered == list(range(5)) + list(range(4, 250))


async def test_a_rebalance_interrupts_a_delivery_stuck_on_a_full_stream_buffer(tmp_path):
    delivered, stuck = [], asyncio.Event()

    async def callback(message):
        delivered.append(message.offset)
        if message.offset == 1:
            stuck.set()
            await asyncio.Future()  # the stream's buffer stays full: only the rebalance gets the loop going

    consumer, task = await _drain(tmp_path, Fetches([0, 1, 2, 3]), callback)
    await asyncio.wait_for(stuck.wait(), 5)
    consumer.stop_flow()  # what a rebalance does first
    await asyncio.wait_for(task, 5)
    assert delivered == [0, 1]


async def test_a_rebalance_does_not_interrupt_a_fetch_under_way(tmp_path):
    """The fetch is a call into the consumer's thread: cancelling it midway left that thread's method queue with
    an answer for no one, and a worker of a rolling restart on Apache Kafka never became ready again."""
    fetching, release, fetched, cancelled = asyncio.Event(), asyncio.Event(), [], []

    class SlowFetch(Fetches):
        async def getmany(self, timeout: float):
            if not self.rounds:
                self.fetcher._stopped.set()
                return
            fetching.set()
            try:
                await release.wait()  # the broker's long poll
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            fetched.append(self.rounds.pop(0))
            for offset in fetched[-1]:
                yield TP(TOPIC, 0), _message(offset)

    async def callback(message):
        pass

    consumer, task = await _drain(tmp_path, SlowFetch([0, 1]), callback)
    await asyncio.wait_for(fetching.wait(), 5)
    consumer.stop_flow()
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(task, 5)
    assert cancelled == [] and fetched == [[0, 1]]
