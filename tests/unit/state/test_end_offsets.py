"""Table recovery reaches the true end of a changelog, whatever end offset the broker reports.

The embedded broker reports the end of a partition as the offset after the first record of its last record
batch. `common.end_offsets.true_end_offsets` (the worker's consumer's `highwaters`, which Faust's recovery reads
to) finds the true end from a fetch's high watermark.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common.end_offsets import true_end_offsets
from common.topics import ensure_topics

pytestmark = pytest.mark.broker


async def read_like_faust(bootstrap: str, topic: str, table: dict) -> None:
    """Faust's recovery: read from the beginning up to the end offset `highwaters` gives, applying each record."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await true_end_offsets([bootstrap], await c.end_offsets([tp])))[tp]
        while await c.position(tp) < end:
            for records in (await c.getmany(tp, timeout_ms=500)).values():
                for r in records:
                    if r.offset < end:
                        key = orjson.loads(r.key)
                        if r.value is None:
                            table.pop(key, None)
                        else:
                            table[key] = orjson.loads(r.value)
    finally:
        await c.stop()


async def test_recovery_to_the_true_end_restores_the_whole_last_batch(kafka_bootstrap):
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        first = [await producer.send(topic, orjson.dumps({"v": 0}), key=orjson.dumps(f"k{i}"), partition=0)
                 for i in range(5)]
        await asyncio.gather(*first)
        # the last batch: updates, a deletion and new keys, sent together
        last = [await producer.send(topic, orjson.dumps({"v": 1}), key=orjson.dumps(f"k{i}"), partition=0)
                for i in range(3, 9)]
        last.append(await producer.send(topic, None, key=orjson.dumps("k0"), partition=0))
        await asyncio.gather(*last)
    finally:
        await producer.stop()
    want = {"k1": {"v": 0}, "k2": {"v": 0}, **{f"k{i}": {"v": 1} for i in range(3, 9)}}

    table: dict = {}
    await read_like_faust(kafka_bootstrap, topic, table)
    assert table == want
    tp = TopicPartition(topic, 0)
    assert (await true_end_offsets([kafka_bootstrap], {tp: 0})) == {tp: 0}, "reported empty: not probed"


async def test_true_end_offsets_of_partitions_never_written(kafka_bootstrap):
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], 2)
    tps = {TopicPartition(topic, 0): 0, TopicPartition(topic, 1): None}
    assert await true_end_offsets([kafka_bootstrap], tps) == tps
