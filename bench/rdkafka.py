"""librdkafka's producer (confluent-kafka) for asyncio, for the ingest bench's `confluent` baseline
(`python -m bench.ab ... confluent=confluent`): `produce` returns a future that Kafka's delivery report resolves.

Measured against aiokafka's baseline on this project's embedded broker it is slower (docs/benchmarks.md,
ingest, "librdkafka"), so ingest keeps aiokafka; this stays as the baseline that shows it. BENCH_CK_KIND picks
how delivery reports reach the loop: unset, a poll thread (below); `loop`, poll(0) on the event loop every
0.5 ms while records are outstanding (no thread); `aio`, confluent_kafka.aio.AIOProducer (batch_size 1, no
record headers: it refuses them).

librdkafka does the protocol work in C threads; its delivery reports are served by `poll`, which here runs in
one thread of its own. The reports a poll serves are queued and handed to the event loop in one wake-up
(`call_soon_threadsafe` once per poll, not once per record), where they resolve their futures. A future that
was cancelled meanwhile (the caller's deadline passed) is left alone.

confluent-kafka's own asyncio producer (confluent_kafka.aio.AIOProducer) would not do for ingest: it refuses
record headers, hands records to librdkafka in a worker thread (in batches, after up to buffer_timeout), and
serves delivery reports only when it next produces, or after buffer_timeout without activity.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from functools import partial
from typing import Any

import confluent_kafka


class DeliveryFailed(Exception):
    """librdkafka reported the record as not delivered; `error` is its KafkaError."""

    def __init__(self, error: confluent_kafka.KafkaError):
        super().__init__(error.str())
        self.error = error


class AsyncProducer:
    """A confluent_kafka.Producer whose records are awaited on the event loop that made it."""

    POLL_SECONDS = 0.1  # the poll thread notices `close` within this

    def __init__(self, conf: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop or asyncio.get_running_loop()
        self.producer = confluent_kafka.Producer(conf)
        self._reports: deque[tuple[asyncio.Future, confluent_kafka.KafkaError | None]] = deque()
        self._wake_pending = False
        self._closing = False
        self._thread = threading.Thread(target=self._poll_forever, name="librdkafka-poll", daemon=True)
        self._thread.start()

    # -- producing (event loop thread) ----------------------------------------------------------------------
    def produce(self, topic: str, value: bytes, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future:
        """Hand one record to librdkafka; the future resolves once Kafka acknowledged it (or fails with
        DeliveryFailed). Raises BufferError when librdkafka's queue is full, KafkaException when it refuses."""
        future = self.loop.create_future()
        self.producer.produce(topic, value, key, headers=headers, on_delivery=partial(self._report, future))
        return future

    def _resolve(self) -> None:
        self._wake_pending = False
        reports = self._reports
        while reports:
            future, error = reports.popleft()
            if future.done():  # cancelled: its caller stopped waiting
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(DeliveryFailed(error))

    # -- delivery reports (poll thread) ---------------------------------------------------------------------
    def _report(self, future: asyncio.Future, error, _message) -> None:
        self._reports.append((future, error))

    def _poll_forever(self) -> None:
        while not self._closing:
            self._poll(self.POLL_SECONDS)

    def _poll(self, timeout: float) -> None:
        self.producer.poll(timeout)
        if self._reports and not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                self._reports.clear()

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def flush(self, timeout: float) -> int:
        """Wait (in a worker thread) until every record is acknowledged or failed; the records still queued."""
        return await self.loop.run_in_executor(None, self.producer.flush, timeout)

    async def list_topics(self, topic: str | None, timeout: float):
        """A metadata round trip to the brokers (in a worker thread): raises KafkaException when none answers."""
        return await self.loop.run_in_executor(None, partial(self.producer.list_topics, topic, timeout))

    async def close(self, timeout: float = 10) -> None:
        """Flush for up to `timeout`, then stop the poll thread; records still queued are given up."""
        try:
            await self.flush(timeout)
        finally:
            self._closing = True
            await self.loop.run_in_executor(None, self._thread.join)
            self._resolve()


class LoopPolledProducer:
    """No poll thread: poll(0) on the event loop every 0.5 ms while records are outstanding."""

    POLL_SECONDS = 0.0005

    def __init__(self, conf: dict[str, Any]):
        self.loop = asyncio.get_running_loop()
        self.producer = confluent_kafka.Producer(conf)
        self.outstanding = 0
        self.timer: asyncio.TimerHandle | None = None

    def produce(self, topic: str, value: bytes, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future:
        future = self.loop.create_future()
        self.producer.produce(topic, value, key, headers=headers, on_delivery=partial(self._report, future))
        self.outstanding += 1
        if self.timer is None:
            self.timer = self.loop.call_later(self.POLL_SECONDS, self._poll)
        return future

    def _report(self, future: asyncio.Future, error, _message) -> None:
        self.outstanding -= 1
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(DeliveryFailed(error))

    def _poll(self) -> None:
        self.producer.poll(0)
        self.timer = self.loop.call_later(self.POLL_SECONDS, self._poll) if self.outstanding else None

    async def list_topics(self, topic: str | None, timeout: float):
        return await self.loop.run_in_executor(None, partial(self.producer.list_topics, topic, timeout))

    async def close(self, timeout: float = 10) -> None:
        await self.loop.run_in_executor(None, self.producer.flush, timeout)


class AIOProducerAdapter:
    """confluent_kafka.aio.AIOProducer behind the same calls (batch_size 1; headers are refused by it)."""

    def __init__(self, conf: dict[str, Any]):
        from confluent_kafka.aio import AIOProducer

        self.producer = AIOProducer(conf, batch_size=1, buffer_timeout=0.2)

    async def produce(self, topic: str, value: bytes, key: bytes | None = None, headers=None):
        if headers:
            raise NotImplementedError("AIOProducer refuses record headers")
        return await (await self.producer.produce(topic, value, key))

    async def list_topics(self, topic: str | None, timeout: float):
        return await self.producer.list_topics(topic, timeout)

    async def close(self, timeout: float = 10) -> None:
        await self.producer.close()


KINDS = {"": AsyncProducer, "loop": LoopPolledProducer, "aio": AIOProducerAdapter}
