"""The one way anything is dead-lettered: the original bytes, and headers that say where and why.

Ingest, the processor, the sink and replay all keep what they cannot use in ELS_DEADLETTER_TOPIC, so an operator
reads one format whatever refused it. Headers (all ASCII bytes):
- `reason`: why, human-readable (at most MAX_REASON_BYTES);
- `stage`: which part refused it (Stage);
- `received_at`: when ingest received it, ms since the epoch, when known;
- anything a stage adds (ingest: `content_type`, `content_encoding`; the sink: Datadog's `status`).
The writer only builds and sends; callers await the returned acknowledgement with the rest of their batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum

MAX_REASON_BYTES = 4000


class Stage(StrEnum):
    INGEST = "ingest"
    PROCESSOR = "processor"
    SINK = "sink"
    REPLAY = "replay"


Headers = list[tuple[str, bytes]]
# (topic, value, headers) -> a future resolved when Kafka acknowledged the record
SendFn = Callable[[str, bytes, Headers], Awaitable[asyncio.Future]]


def deadletter_headers(stage: Stage, reason: str, received_ms: int | None = None,
                       extra: dict[str, str] | None = None) -> Headers:
    headers = [("reason", reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]), ("stage", stage.value.encode())]
    if received_ms is not None:
        headers.append(("received_at", str(received_ms).encode()))
    for k, v in (extra or {}).items():
        headers.append((k, v.encode("utf-8", "replace")))
    return headers


class DeadLetterWriter:
    """Sends what a stage cannot use to the dead-letter topic, through whatever producer that stage owns."""

    def __init__(self, topic: str, stage: Stage, send: SendFn):
        self.topic = topic
        self.stage = stage
        self._send = send

    async def write(self, value: bytes, reason: str, received_ms: int | None = None,
                    extra: dict[str, str] | None = None) -> asyncio.Future:
        """Queue one dead letter; returns the acknowledgement future (await it before acking the input)."""
        return await self._send(self.topic, value, deadletter_headers(self.stage, reason, received_ms, extra))
