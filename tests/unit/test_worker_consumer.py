"""The worker's consumer: the fetch size docs/configuration.md documents, Faust's variable overriding it, and the
fetch loop that waits for a rebalance only on deliveries that wait."""

from __future__ import annotations

import ast
import asyncio
import difflib
import inspect
import textwrap
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

TOPIC = "els-raw"


def _code_lines(function) -> list[str]:
    """A function's code as lines, formatted alike whatever its source's layout, without docstring or comments."""
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
        node.body = node.body[1:]
    return ast.unparse(node).splitlines()


def test_the_fetch_loop_is_fausts_but_for_how_a_message_is_delivered():
    """processor/transport.py copies Faust's loop: a faust-streaming upgrade that changes it fails here, and
    whoever upgrades compares the two again."""
    from faust.transport.consumer import Consumer

    from processor.transport import TrueEndConsumer

    fausts, ours = _code_lines(Consumer._drain_messages), _code_lines(TrueEndConsumer._drain_messages)
    changed = [line[:2] + line[2:].strip() for line in difflib.ndiff(fausts, ours) if line[:1] in "+-"]
    assert sorted(changed) == sorted([
        "- async def _drain_messages(self, fetcher: ServiceT) -> None:",
        "+ async def _drain_messages(self, fetcher) -> None:",
        "- consumer_should_stop = cast(Service, self)._stopped.is_set",
        "+ consumer_should_stop = self._stopped.is_set",
        "- fetcher_should_stop = cast(Service, fetcher)._stopped.is_set",
        "+ fetcher_should_stop = fetcher._stopped.is_set",
        "- flag_consumer_fetching = CONSUMER_FETCHING",
        "+ flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING",
        "- ait = cast(AsyncIterator, getmany(timeout=1.0))",
        "+ ait = getmany(timeout=1.0)",
        "- await self.wait_first(callback(message), self.suspend_flow.wait())",
        "+ await self.deliver_interruptibly(callback(message))",
    ])


def _message(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None)


class Fetches:
    """getmany's answers, one list of offsets per call, given while the flow is active, as Faust's getmany; after
    the last, the fetcher is told to stop."""

    def __init__(self, *rounds: list[int]):
        self.rounds = list(rounds)
        self.fetcher = SimpleNamespace(_stopped=asyncio.Event())
        self.consumer = None

    async def getmany(self, timeout: float):
        if not self.rounds:
            self.fetcher._stopped.set()
            return
        for offset in self.rounds.pop(0):
            if not self.consumer.flow_active:
                break
            yield TP(TOPIC, 0), _message(offset)


async def _drain(tmp_path, fetches: Fetches, callback) -> None:
    consumer = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path)})).consumer
    consumer.callback, consumer.getmany, fetches.consumer = callback, fetches.getmany, consumer
    return consumer, asyncio.create_task(consumer._drain_messages(fetches.fetcher))


async def test_fetched_messages_are_delivered_in_order_and_a_refetch_is_dropped(tmp_path):
    delivered = []

    async def callback(message):
        if message.offset % 7 == 0:
            await asyncio.sleep(0)  # a delivery that waits a moment: carried on by wait_first
        delivered.append(message.offset)

    # the second fetch starts again at 2: as Faust's loop, offsets below the last one read are dropped (the read
    # offset itself, where a seek points, goes through)
    _, task = await _drain(tmp_path, Fetches(list(range(0, 5)), list(range(2, 250))), callback)
    await asyncio.wait_for(task, 5)
    assert delivered == list(range(5)) + list(range(4, 250))


async def test_a_rebalance_interrupts_a_delivery_stuck_on_a_full_stream_buffer(tmp_path):
    delivered, stuck, cancelled = [], asyncio.Event(), []

    async def callback(message):
        delivered.append(message.offset)
        if message.offset == 1:
            stuck.set()
            try:
                await asyncio.Future()  # the stream's buffer stays full: only the rebalance gets the loop going
            except asyncio.CancelledError:
                cancelled.append(message.offset)
                raise

    consumer, task = await _drain(tmp_path, Fetches([0, 1, 2, 3]), callback)
    await asyncio.wait_for(stuck.wait(), 5)
    consumer.stop_flow()  # what a rebalance does first
    await asyncio.wait_for(task, 5)
    assert delivered == [0, 1] and cancelled == [1]


async def test_a_delivery_that_waits_gets_what_it_waited_for(tmp_path):
    """A delivery goes on in a task after its first wait: results and errors reach it as they would in one."""
    results, release = [], asyncio.get_running_loop().create_future()

    async def callback(message):
        if message.offset == 0:
            results.append(await release)
            try:
                await _raise_later()
            except KeyError as exc:
                results.append(exc.args[0])

    async def _raise_later():
        await asyncio.sleep(0.01)
        raise KeyError("raised after a wait")

    consumer, task = await _drain(tmp_path, Fetches([0, 1]), callback)
    await asyncio.sleep(0.05)
    release.set_result("sent after the first wait")
    await asyncio.wait_for(task, 5)
    assert results == ["sent after the first wait", "raised after a wait"]


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


# --- the raw topic's messages go to the processor's inbox (processor/inbox.py), the others to Faust's streams ---

OTHER = "els-out"


async def test_the_raw_topics_messages_go_to_the_inbox_and_the_others_to_the_streams(tmp_path):
    consumer = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path), "ELS_RAW_TOPIC": TOPIC})).consumer
    to_streams = []

    async def streams(message):
        to_streams.append(message.offset)

    consumer._to_streams = streams
    inbox = consumer.transport.inbox
    for offset in range(3):
        await consumer.callback(_message(offset))
        await consumer.callback(Message(OTHER, 0, offset, 0.0, 0, None, b"k", b"v", None))
    assert [m.offset for m in inbox._held] == [0, 1, 2] and to_streams == [0, 1, 2]


async def test_a_full_inbox_holds_the_fetch_loop_until_a_rebalance_interrupts_it(tmp_path):
    consumer = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path), "ELS_RAW_TOPIC": TOPIC})).consumer
    inbox = consumer.transport.inbox
    fetches = Fetches(list(range(inbox.capacity + 5)))
    fetches.consumer = consumer
    consumer.getmany = fetches.getmany
    task = asyncio.create_task(consumer._drain_messages(fetches.fetcher))
    await asyncio.sleep(0.1)
    assert len(inbox) == inbox.capacity and not task.done()  # waiting for room
    consumer.stop_flow()  # a rebalance begins: the fence empties the inbox, the loop goes on to the next fetch
    await asyncio.wait_for(task, 5)
    assert len(inbox) == 0 and inbox.dropped == inbox.capacity
