"""The true end of partitions, where a broker's ListOffsets answer falls short.

The embedded broker (Tansu) answers ListOffsets with the offset after the *first* record of a partition's last
record batch, not after the last record. The high watermark in a fetch response is right on every broker. So
the end of each partition is read from a fetch: seek just before the reported end (a record is there, so the
broker answers at once) and take the response's high watermark. On a broker that reports ends correctly the
answer equals the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_TIMEOUT_S = 15.0


async def true_end_offsets(bootstrap: list[str], reported: Mapping[TopicPartition, int | None],
                           auth: Mapping[str, Any] | None = None,
                           timeout_s: float = FETCH_TIMEOUT_S) -> dict[TopicPartition, int | None]:
    """Each partition's end offset: the larger of the reported one and the fetched high watermark. Partitions
    reported empty (0) or unknown (None) are returned as reported: a partition with records is never reported
    empty. `auth`: the aiokafka security arguments, as the caller's own clients use them."""
    ends = dict(reported)
    probe = [tp for tp, end in reported.items() if end]
    if not probe:
        return ends
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=64 * 1024, **dict(auth or {}))
    await consumer.start()
    try:
        consumer.assign(probe)
        for tp in probe:
            consumer.seek(tp, reported[tp] - 1)
        pending = set(probe)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None:
                    ends[tp] = max(reported[tp], hw)
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return ends
