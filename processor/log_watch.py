"""Whether Kafka still holds what the worker's state says it applied.

A broker that comes back without its data (the embedded broker keeps nothing across a restart; a cluster
rebuilt, a topic deleted) leaves a running worker with state that no longer matches any log: the raw topic is
gone, or it ends before offsets already applied. Nothing can continue from there: the worker would skip or
double-count. So every CHECK_EVERY_S the watch compares, for each raw partition whose state the worker holds,
the offset applied with the topic's true end (common/end_offsets.py); a loss seen twice in a row is reported, and the
worker stops with one line (processor/worker.py). A broker that cannot be reached is not a loss: the clients
retry, and the watch looks again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from common.end_offsets import true_end_offsets

CHECK_EVERY_S = 10.0
CONFIRMATIONS = 2
REQUEST_TIMEOUT_S = 5.0


class LogWatch:
    def __init__(self, bootstrap: list[str], topic: str, partitions: int, applied: Callable[[int], int],
                 auth: Mapping[str, Any] | None = None):
        self.bootstrap, self.topic, self.partitions, self.auth = bootstrap, topic, partitions, dict(auth or {})
        self._applied = applied  # raw partition -> last offset applied (-1: none, or no state held for it)
        self._consumer: AIOKafkaConsumer | None = None
        self._seen = 0

    async def _ends(self, applied: dict[int, int]) -> dict[int, int]:
        """The raw partitions' ends; {} when the topic is gone. Only an end at or before the offset applied is
        probed for the true end (common/end_offsets.py): a short report is all the embedded broker gets wrong."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                              request_timeout_ms=int(REQUEST_TIMEOUT_S * 1000), **self.auth)
            await self._consumer.start()
        if self.topic not in await self._consumer.topics():
            return {}
        reported = await self._consumer.end_offsets([TopicPartition(self.topic, p) for p in applied])
        suspect = {tp: end for tp, end in reported.items() if end is not None and end <= applied[tp.partition]}
        if suspect:
            reported.update(await true_end_offsets(self.bootstrap, suspect, self.auth, REQUEST_TIMEOUT_S))
        return {tp.partition: end for tp, end in reported.items() if end is not None}

    async def loss(self) -> str | None:
        """What was lost, once seen CONFIRMATIONS times in a row; else None."""
        applied = {p: off for p in range(self.partitions) if (off := self._applied(p)) >= 0}
        if not applied:
            self._seen = 0
            return None
        try:
            ends = await asyncio.wait_for(self._ends(applied), REQUEST_TIMEOUT_S * 3)
        except Exception:  # unreachable or answering slowly: not a loss; the clients retry and say so
            await self.close()
            return None
        if not ends:
            found = f"topic {self.topic} is gone"
        else:
            short = {p: (ends[p], off) for p, off in applied.items() if p in ends and ends[p] <= off}
            if not short:
                self._seen = 0
                return None
            found = "; ".join(f"partition {p} of {self.topic} ends at offset {end}, but offset {off} was applied"
                              for p, (end, off) in sorted(short.items()))
        self._seen += 1
        return found if self._seen >= CONFIRMATIONS else None

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()
