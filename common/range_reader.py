"""The records of one partition between two offsets, read with a consumer of their own.

Why not seek the worker's consumer back: Faust's fetch loop drops every record below the last offset it handed
over, and keeps handing over the rest of a fetch it was iterating when a seek came; under load, seeking back
never got the skipped records (a rolling restart left a partition stuck behind its gap, values short for good).
A short-lived consumer reads the gap exactly, whatever Faust's consumer does meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

READ_TIMEOUT_S = 30.0


class RangeNotRead(Exception):
    """The range could not be read in time (the broker is unreachable): the caller tries again later."""


async def read_range(bootstrap: list[str], topic: str, partition: int, start: int, end: int,
                     auth: Mapping[str, Any] | None = None,
                     timeout_s: float = READ_TIMEOUT_S) -> list[ConsumerRecord]:
    """The records at offsets start..end-1 that the log still holds (those deleted by retention are not there:
    the first record returned is then later than `start`)."""
    if end <= start:
        return []
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **dict(auth or {}))
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RangeNotRead(f"{topic}[{partition}] offsets {start}..{end - 1} not read within {timeout_s:g} s")
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=5_000)
            out += [r for r in batch.get(tp, ()) if start <= r.offset < end]
    finally:
        await consumer.stop()
    return out
