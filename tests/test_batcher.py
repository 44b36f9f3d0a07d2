"""Ingest's own batching of raw events (ingest/batcher.py) and its partitioner (ingest/partition.py): the same
partition as aiokafka's DefaultPartitioner for every key, order kept within a partition, every waiter answered,
and one cancelled request never cancels the others."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from els.topics import ensure_topics
from ingest.batcher import Batcher
from ingest.partition import KeyPartitioner, murmur2
from tests.conftest import read_topic


@given(st.binary(max_size=80))
@settings(max_examples=500)
def test_murmur2_is_aiokafkas(data):
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50), st.integers(1, 16))
@settings(max_examples=200)
def test_key_partitioner_is_the_default_partitioner(keys, n):
    parts = list(range(n))
    ours = KeyPartitioner(cache_size=8)  # small: eviction is exercised too
    for key in keys + keys:
        assert ours(key, parts) == DefaultPartitioner()(key, parts, parts)


@pytest.mark.broker
async def test_batched_records_land_in_aiokafkas_partition_in_order_and_every_waiter_is_answered(kafka_bootstrap):
    topic = f"batch-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 4)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        await producer.partitions_for(topic)
        batcher = Batcher(producer, topic)
        keys = [f"root-{i % 7}".encode() for i in range(600)]
        waiters = []
        for i, key in enumerate(keys):
            waiters.append(batcher.add(key, b"v%d" % i, [("received_at", b"1"), ("idempotency_key", b"%d" % i)]))
            if i % 50 == 0:
                await asyncio.sleep(0)  # several produce requests, some while one is in flight
        waiters[10].cancel()  # a request that gave up: the others are still answered
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(results[10], asyncio.CancelledError)
        assert all(r is None for i, r in enumerate(results) if i != 10)
        await batcher.drain()
    finally:
        await producer.stop()
    records = await read_topic(kafka_bootstrap, topic, expect=600, partitions=4)
    assert len(records) == 600
    parts = [0, 1, 2, 3]
    per_key: dict[bytes, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.partition == DefaultPartitioner()(r.key, parts, parts)
        per_key.setdefault(r.key, []).append(int(r.value[1:]))
        assert dict(r.headers)["idempotency_key"] == r.value[1:]
    for key, seq in per_key.items():
        assert seq == sorted(seq), f"{key!r} out of order"
