"""The sink's own position in each outbox partition: the offset after the last record a full flush delivered.

Faust's stream acks the records it skips while a rebalance is under way (an older generation, flow control
suspended), on a noack stream too, and commits them while it waits for the streams to finish. The next owner of
that outbox partition then starts after partials the sink never merged, and the windows they carried stay short
in Datadog for good. So the sink keeps its position as the processor does for the raw topic
(processor/state/positions.py): written in the `sink` table with the merged windows of every full flush, re-read
after each assignment; a record before it was delivered already and is dropped, the records of a gap after it are
read on their own and merged first. Before the first full flush of a partition the log's beginning is the start:
records Faust acked without the sink delivering them (a rebalance or a stop lets held records go,
processor/revocation.py) are read again from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import SimpleNamespace

from processor.state.positions import Positions

POSITION = "position"


def position_key(op: int) -> str:
    """The `sink` table's key of outbox partition `op`'s position."""
    return f"{POSITION}|{op}"


def is_position(stored: Mapping) -> bool:
    return stored.get("group") == POSITION


class OutboxPositions:
    """Admits outbox records in offset order from the sink's position, and says what a full flush writes."""

    def __init__(self, table: Mapping, earliest: Callable[[int], Awaitable[int]],
                 seek: Callable[[int, int], Awaitable[None]],
                 read: Callable[[int, int, int], Awaitable[list]] | None = None):
        self.table = table
        self.positions = Positions(self._delivered, earliest, seek, name="outbox", read=read)
        self._reading = asyncio.Lock()  # admit and catch_up read a partition's gap once, not both at once

    def _delivered(self, op: int) -> int:
        stored = self.table.get(position_key(op))
        return int(stored["next"]) - 1 if stored else -1

    async def admit(self, message) -> list:
        """What to merge now, in offset order: the records of a gap before `message` (read on their own:
        partition, offset, value), then `message` itself (a Faust message); [] when it was delivered already or
        is being sought back (it comes again)."""
        op = message.partition
        async with self._reading:
            kept = await self.positions.in_order(op, [message])
            if kept:
                self.positions.processed(op, kept[-1].offset)
        return kept

    async def catch_up(self, starts: Mapping[int, int | None]) -> list:
        """After an assignment, outbox partition -> where Faust starts handing over: the records from the sink's
        position up to there, read on their own (partition, offset, value). An outbox partition may get no new
        record for a long time, so records let go at a rebalance are read now, not when the next one comes."""
        out = []
        async with self._reading:
            for op, until in starts.items():
                if until:
                    out += await self.positions.catch_up(op, until)
        return out

    def forget(self) -> None:
        """After any assignment change: positions are re-read from the table."""
        self.positions.forget()

    @staticmethod
    def writes(messages: Iterable) -> dict[int, dict[str, dict]]:
        """outbox partition -> {position key: record}: the position after the records a full flush acks."""
        last: dict[int, int] = {}
        for m in messages:
            if m.offset > last.get(m.partition, -1):
                last[m.partition] = m.offset
        return {op: {position_key(op): {"group": POSITION, "op": op, "next": off + 1}} for op, off in last.items()}


class ReadEvent:
    """An outbox record read on its own (a gap), held like Faust's events: its ack is our position's business."""

    def __init__(self, record):
        self.message = SimpleNamespace(partition=record.partition, offset=record.offset, value=record.value)
        self.value = record.value

    def ack(self) -> None:
        """Nothing to tell Faust: it never handed this record over."""
