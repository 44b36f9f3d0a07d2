"""The worker's Kafka transport: Faust's aiokafka transport, with a producer that is idempotent where the broker
allows it, and a consumer that knows where each changelog truly ends. Installed with faust.App's public
`transport` setter (processor/worker.py).

- Faust makes its producer idempotent only with processing_guarantee=exactly_once (transactions). The worker's
  producer writes the outbox, the changelogs and the ticks; with idempotence a send that aiokafka retries after
  a lost acknowledgement (a broker failover) is written once (common/producer.py).
- Faust's table recovery reads each changelog partition up to the end offset the consumer's `highwaters`
  reports, and refuses to start (ConsistencyError) when it has already read further than that, as a standby
  replica has. The embedded broker reports ends short (common/end_offsets.py): recovery then stopped before the
  newest state, and a rolling restart took workers down. The consumer here reports the true ends, so recovery
  reads everything and the check keeps its meaning: it trips only where a changelog really lost records.
- Faust hands each fetched message to its streams under a `wait_first(callback, suspend_flow)`: four tasks and an
  `asyncio.wait` per message (~37 µs here), so a rebalance can interrupt a delivery stuck on a full stream
  buffer. The consumer here waits that way only for a delivery that does wait (`deliver_interruptibly`).
- The raw topic's messages skip Faust's streams: the consumer puts them in the processor's inbox, whose agent
  takes them in batches (processor/inbox.py).
- When Faust stops the consumer's flow (a rebalance or a stop begins), the consumer tells the worker's Fence, and
  the work under way is abandoned (processor/revocation.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator, Mapping
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from common.end_offsets import true_end_offsets
from common.kafka import faust_client_kwargs
from common.producer import start_producer
from processor.inbox import Inbox
from processor.revocation import Fence

log = logging.getLogger("els.processor.kafka")


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, started by common.producer.start_producer."""

    idempotent = True

    def _settings_extra(self) -> Mapping[str, Any]:
        if self.idempotent:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}
        return super()._settings_extra()

    def _new_idempotent(self, idempotent: bool):
        self.idempotent = idempotent
        return self._new_producer()

    async def on_start(self) -> None:
        """As Faust's, but the aiokafka producer is tried idempotent first."""
        await faust_producer.Producer.on_start(self)
        self._producer, self.idempotent = await start_producer(self._new_idempotent, log)
        self.beacon.add(self._producer)
        log.info("Kafka producer started (idempotent=%s)", self.idempotent)


class TrueEndConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, whose `highwaters` (the end offsets table recovery reads to) are the true ends,
    whose fetch loop waits for a rebalance only on deliveries that wait (`_drain_messages`), and which puts the
    raw topic's messages in the processor's inbox (`deliver`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._to_streams = self.callback  # Faust's conductor: decodes a message and queues it for the streams
        self.callback = self.deliver
        self._inbox: Inbox = self.transport.inbox
        self._inbox_topic = self._inbox.topic

    async def deliver(self, message: Message) -> None:
        """A fetched message to the inbox if it is the raw topic's (waiting while the inbox is full), else to
        Faust's streams."""
        if message.topic != self._inbox_topic:
            await self._to_streams(message)
        elif not self._inbox.put(message):
            await self._inbox.room()

    async def _drain_messages(self, fetcher) -> None:
        """Faust's fetch loop (faust.transport.consumer.Consumer._drain_messages) but for one line, the delivery;
        tests/unit/test_worker_consumer.py checks that, so a faust-streaming upgrade that changes it is noticed."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:  # noqa: SIM102 (Faust's lines, unchanged)
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            await self.deliver_interruptibly(callback(message))  # the one change
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    async def deliver_interruptibly(self, delivery: Coroutine) -> None:
        """Faust's `await self.wait_first(callback(message), self.suspend_flow.wait())`, without its four tasks
        and `asyncio.wait` (~37 µs a message here) when they cannot matter: the delivery runs here up to its
        first wait, and only if it has to wait (a full stream buffer, flow control during a rebalance) does it
        go on under `wait_first`, where a rebalance interrupts it, as in Faust's loop. A delivery that never waits
        cannot be interrupted in Faust's loop either: its task runs to the end in one step. (Its first steps run
        in the fetcher's task: Faust's delivery, Conductor.on_message, sets no timeout and reads no current task.)"""
        try:
            waiting_on = delivery.send(None)
        except StopIteration:
            return
        await self.wait_first(Resumed(delivery, waiting_on), self.suspend_flow.wait())

    def stop_flow(self) -> None:
        """Faust stops the flow as a rebalance or a stop begins: the work under way is abandoned at once
        (processor/revocation.py), so the revocation never waits on it."""
        super().stop_flow()
        self.transport.fence.abandon(stopping=self.app.should_stop)

    def resume_flow(self) -> None:
        super().resume_flow()
        self.transport.fence.resume()

    def committed(self, tp: TP) -> int | None:
        """Where Faust starts handing over a partition's records: the committed offset it sought to when the
        assignment's recovery ended (None: nothing committed)."""
        return self._committed_offset.get(tp)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        reported = await super().highwaters(*partitions)
        bootstrap = faust_aiokafka.server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(bootstrap, reported, faust_client_kwargs(self.app))


class Resumed:
    """A coroutine already run up to its first wait, as an awaitable a task carries on from there: the future it
    waits on goes to the task, and what the task sends or throws (a cancellation) goes to the coroutine."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine, waiting_on: Any) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation: the coroutine gets it where it waits
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Transport(faust_aiokafka.Transport):
    Consumer = TrueEndConsumer
    Producer = IdempotentProducer

    def __init__(self, *args: Any, inbox: Inbox, fence: Fence | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fence = fence or Fence()  # what the consumer's flow stopping abandons
        self.inbox = inbox  # where the consumer puts the raw topic's messages
