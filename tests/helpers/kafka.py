"""Reading a topic back, for assertions on what really landed in Kafka."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from common.kafka import KafkaSecurity, client_kwargs
from ingest.report import REPORT_KIND


async def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 10.0,
                     partitions: int | None = None, security: KafkaSecurity | None = None,
                     reports: bool = False) -> list:
    """Every record of a topic (from the beginning), waiting until `expect` records arrived or timeout.
    Kafka security from `security`, else the environment's settings. Ingest's window reports
    (ingest/report.py: one whenever a minute with requests ended) only with `reports`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **client_kwargs(security))
    await consumer.start()
    try:
        if partitions is None:
            parts = None
            for _ in range(50):
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            partitions = len(parts or [0])
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(r for r in records if reports or dict(r.headers or ()).get("els-kind") != REPORT_KIND)
            if expect is not None and len(out) >= expect:
                break
            if expect is None:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
        return out
    finally:
        await consumer.stop()


def events_only(records: list) -> list:
    """The raw records that are events: not the processor's ticks nor ingest's window reports (header els-kind)."""
    return [r for r in records if "els-kind" not in dict(r.headers or ())]
