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
  buffer. The consumer here waits that way once per fetched batch while the flow runs (`BatchDrain`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from common.end_offsets import true_end_offsets
from common.kafka import faust_client_kwargs
from common.producer import start_producer

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
    and which hands fetched messages to the streams a batch at a time (`_drain_messages`)."""

    async def _drain_messages(self, fetcher) -> None:
        """Faust's fetch loop (faust.transport.consumer.Consumer._drain_messages, faust-streaming 0.15), with one
        change: while the flow runs, a fetched batch is delivered under one `wait_first(..., suspend_flow)` rather
        than one per message. A rebalance still interrupts a delivery at once, as Faust's does: its getmany stops
        yielding when the flow stops, so the rest of the batch was never delivered there either. The fetch itself
        is never interrupted, and while the flow is stopped each message is waited for, both as in Faust's loop.
        tests/unit/test_worker_consumer.py pins the Faust method this copies, so an upgrade that changes it is
        noticed."""
        drain = BatchDrain(self)
        should_stop = (self._stopped.is_set, fetcher._stopped.is_set)
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        try:
            while not any(stop() for stop in should_stop):
                set_flag(faust_consumer.CONSUMER_FETCHING)
                batch = self.getmany(timeout=1.0)
                await self.sleep(0)  # as Faust's: getmany may return at once, again and again
                # the fetch itself (getmany's first step, a call into the consumer's thread) is never interrupted,
                # as in Faust's loop: only the deliveries are
                if not self.should_stop and (first := await anext(batch, None)) is not None:
                    if self.flow_active:
                        await self.wait_first(drain.deliver(first, batch, drain.callback), self.suspend_flow.wait())
                    else:
                        await drain.deliver(first, batch, drain.one_interruptible)
                unset_flag(faust_consumer.CONSUMER_FETCHING)
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
            unset_flag(faust_consumer.CONSUMER_FETCHING)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        reported = await super().highwaters(*partitions)
        bootstrap = faust_aiokafka.server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(bootstrap, reported, faust_client_kwargs(self.app))


class BatchDrain:
    """Delivers one getmany's messages to Faust's streams (the consumer's callback) as Faust's fetch loop does: in
    read order, dropping what was already read, noting gaps and committing every `commit_every` acks."""

    YIELD_EVERY = 100  # messages between two turns of the event loop, as Faust's

    def __init__(self, consumer: TrueEndConsumer) -> None:
        self.consumer = consumer
        self.callback = consumer.callback
        self.acks_enabled_for = consumer.app.topics.acks_enabled_for
        self.since_yield = 0

    async def one_interruptible(self, message) -> None:
        c = self.consumer
        await c.wait_first(self.callback(message), c.suspend_flow.wait())

    async def deliver(self, first: tuple, batch, deliver_one) -> None:
        """The first fetched message, then the rest of the batch."""
        try:
            await self._deliver(first, deliver_one)
            async for tp_message in batch:
                await self._deliver(tp_message, deliver_one)
        finally:
            await batch.aclose()

    async def _deliver(self, tp_message: tuple, deliver_one) -> None:
        c = self.consumer
        tp, message = tp_message
        self.since_yield += 1
        if self.since_yield > self.YIELD_EVERY:
            await asyncio.sleep(0)
            self.since_yield = 0
        offset = message.offset
        r_offset = c._read_offset[tp]
        if r_offset is None or offset >= r_offset:
            if offset - (r_offset or 0) > 1 and r_offset and self.acks_enabled_for(message.topic):
                await c._add_gap(tp, r_offset + 1, offset)
            if c._commit_every is not None and c._n_acked >= c._commit_every:
                c._n_acked = 0
                await c.commit()
            await deliver_one(message)
            c._read_offset[tp] = offset


class Transport(faust_aiokafka.Transport):
    Consumer = TrueEndConsumer
    Producer = IdempotentProducer
