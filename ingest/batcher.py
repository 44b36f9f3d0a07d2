"""Raw events into Kafka with little Python per record: ingest's own per-partition batches, handed to aiokafka
whole (`send_batch`), one acknowledgement for all the records of a batch.

aiokafka's `send()` costs tens of microseconds of pure Python per record (a coroutine, the topic's partition
sets rebuilt twice, a future and a RecordMetadata per record); with one event per HTTP request that is a large
share of a request. Here a record is appended straight to its partition's batch builder (C code), and the
request waits on a future of its own (so a cancelled request never cancels the others). A partition's batch is
handed to aiokafka as soon as it is opened and keeps taking records until aiokafka's sender takes it (at the
next produce request; with one request in flight, batches grow with the load) or it is full: exactly how
aiokafka's own accumulator batches, in the same order within a partition.

The partition is aiokafka's DefaultPartitioner for a keyed record (ingest/partition.py), so every producer of
the raw topic puts a chain in the same partition.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.partition import KeyPartitioner


class _Open:
    """One partition's batch, and the requests waiting for its acknowledgement."""

    __slots__ = ("builder", "waiters")

    def __init__(self, builder):
        self.builder = builder
        self.waiters: list[asyncio.Future] = []


class Batcher:
    def __init__(self, producer: AIOKafkaProducer, topic: str):
        self.producer = producer
        self.topic = topic
        self._loop = asyncio.get_running_loop()
        self._open: dict[int, _Open] = {}
        self._partitions: list[int] = []
        self._partitioner = KeyPartitioner()
        self._tasks: set[asyncio.Task] = set()

    def add(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future:
        """Queue one keyed record; the future is done (None, or the Kafka error) once Kafka acknowledged it."""
        p = self._partition(key)
        batch = self._open.get(p)
        # append() refuses once the batch is full or aiokafka's sender has taken it: the record starts the next
        if batch is None or batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            batch = self._new_batch(p)
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                waiter = self._loop.create_future()
                waiter.set_exception(KafkaError("record larger than the producer's max_batch_size"))
                return waiter
        waiter = self._loop.create_future()
        batch.waiters.append(waiter)
        return waiter

    def _partition(self, key: bytes) -> int:
        parts = self._partitions
        if not parts:
            parts = self._partitions = sorted(self.producer.client.cluster.partitions_for_topic(self.topic) or ())
            if not parts:
                raise LookupError(f"no partitions known for topic {self.topic}")
        return self._partitioner(key, parts)

    def refresh_partitions(self) -> None:
        """Re-read the partition ids on the next record (a topic re-created after an outage)."""
        self._partitions = []

    def _new_batch(self, p: int) -> _Open:
        """A new batch for partition p, handed to aiokafka at once: records join it until the sender takes it."""
        batch = self._open[p] = _Open(self.producer.create_batch())
        task = self._loop.create_task(self._deliver(p, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    async def _deliver(self, p: int, batch: _Open) -> None:
        try:
            acked = await self.producer.send_batch(batch.builder, self.topic, partition=p)
            await acked
        except BaseException as exc:  # every waiter learns why, whatever it was
            batch.builder.close()
            err = exc if isinstance(exc, KafkaError | OSError) else KafkaError(f"batch not delivered: {exc!r}")
            for w in batch.waiters:
                if not w.done():
                    w.set_exception(err)
            if not isinstance(exc, Exception):
                raise
            return
        for w in batch.waiters:
            if not w.done():
                w.set_result(None)

    async def drain(self) -> None:
        """Wait until every batch handed to aiokafka is acknowledged or failed (before the producer stops)."""
        for batch in self._open.values():
            batch.builder.close()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
