"""Table recovery reaches the true end of a changelog, whatever end offset the broker reports.

The embedded broker reports the end of a partition as the offset after the first record of its last record
batch; Faust's recovery stops there. `processor.state.restore.top_up` reads on to the fetched high watermark.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common.topics import ensure_topics
from processor.state.restore import top_up

pytestmark = pytest.mark.broker


class Changelog:
    def __init__(self, name: str):
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class FakeTable:
    """What top_up needs of a Faust table: its store and its changelog topic."""

    def __init__(self, topic: str):
        self.data: dict = {}
        self.changelog_topic = Changelog(topic)


async def read_like_faust(bootstrap: str, topic: str, table: FakeTable) -> None:
    """Faust's recovery: read from the beginning up to the end offset the broker reports."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await c.end_offsets([tp]))[tp]
        while await c.position(tp) < end:
            for records in (await c.getmany(tp, timeout_ms=500)).values():
                for r in records:
                    if r.offset < end:
                        key = orjson.loads(r.key)
                        if r.value is None:
                            table.data.pop(key, None)
                        else:
                            table.data[key] = orjson.loads(r.value)
    finally:
        await c.stop()


async def test_top_up_restores_the_whole_last_batch(kafka_bootstrap):
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

    table = FakeTable(topic)
    await read_like_faust(kafka_bootstrap, topic, table)
    await top_up([kafka_bootstrap], [table], {table: {TopicPartition(topic, 0)}})
    assert table.data == want
    # re-reading the tail again (the next recovery) applies the same values: nothing changes
    await top_up([kafka_bootstrap], [table], {table: {TopicPartition(topic, 0)}})
    assert table.data == want
