"""Writes state records to the tables' local stores and to their changelog partitions, and other records to
Kafka, through the worker's own producer.

Why not Faust's table write path: it puts every write in a buffer that Faust's commit does not always drain (it
gives up after 0.1 s without progress), and picks the changelog partition from the last event of a batch, which
may be another partition's; here the partition is the raw partition the state belongs to, always. And why not
Faust's Topic.send: it costs ~200-300 us a record (schemas, callbacks, futures of its own). State records go out
as aiokafka record batches (one future per batch, not per record), so a flush of thousands of records costs
little more than their encoding. The caller awaits the returned futures: a batch counts as done (and its offsets
become committable) only once its state is in Kafka.

Keys are JSON strings, as Faust's key serializer for `key_type=str` reads them; values are written as they
are when they are bytes (the processor's tables, value type bytes: processor/state/records.py) and as JSON
otherwise (the sink's table, read back by Faust's JSON codec).
"""

from __future__ import annotations

import asyncio
import time

import faust
import orjson

from processor.state.transaction import apply_writes


class KafkaOut:
    """The worker's producer: plain sends, and state writes (local store + changelog partition)."""

    def __init__(self, app: faust.App):
        self.app = app

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future:
        return await self.app.producer.send(topic, key, value, partition, None, headers)

    async def persist(self, table: faust.Table, p: int, writes: dict) -> list[asyncio.Future]:
        """Apply writes (None = delete) to a table's local store and send them to changelog partition p;
        returns the acknowledgement futures."""
        if not writes:
            return []
        data = table.data
        topic = table.changelog_topic.get_topic_name()
        # the aiokafka producer Faust started (and configured), through Faust's one private accessor: record
        # batches need aiokafka's create_batch/send_batch, which Faust's Producer does not expose. A producer of
        # our own was measured and not kept (0.75-0.82 of the minimal agent against 0.93-0.94: branch
        # `own-producer`, docs/benchmarks.md)
        producer = self.app.producer._ensure_producer()
        ts = int(time.time() * 1000)
        dumps = orjson.dumps
        futures = []
        apply_writes(data, writes)
        batch = producer.create_batch()
        for key, value in writes.items():
            encoded = value if value is None or isinstance(value, bytes) else dumps(value)
            kb = dumps(key)
            if batch.append(timestamp=ts, key=kb, value=encoded) is None:  # full: send it, start another
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = producer.create_batch()
                batch.append(timestamp=ts, key=kb, value=encoded)  # the first record always fits
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=p))
        return futures
