"""Where each raw partition's processing stands, and the batches put in offset order from there, without gaps.

Faust acks (and may commit) records it skips while a rebalance or recovery is under way, may hand over later
records before earlier ones after a restart, and commits offsets the worker processed but has not flushed yet
(processor/state/transaction.py). So the position that counts is our own: the next offset after the last one
applied, in memory while a transaction is open, else the partition's clock record (written last at every
flush). Records before it were applied already; a gap after it means records were skipped: seek back to it and
drop the rest of the batch (they come again; records fetched before the seek may still arrive first, and are
dropped the same way). A gap that persists for GAP_ACCEPT_SECONDS after the first seek is a real hole in the
log (retention deleted it) and is accepted, loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processor.engine.records import Record

log = logging.getLogger("els.processor")

GAP_ACCEPT_SECONDS = 30.0


@dataclass(slots=True)
class PositionStats:
    already_applied: int = 0
    gap_seeks: int = 0


class Positions:
    """Next raw offset to apply per partition, and the gap seeks under way."""

    def __init__(self, applied: Callable[[int], int], earliest: Callable[[int], Awaitable[int]],
                 seek: Callable[[int, int], Awaitable[None]], gap_accept_s: float = GAP_ACCEPT_SECONDS,
                 stats=None):
        self._applied = applied      # p -> last offset applied (-1: none), from the engine's clock
        self._earliest = earliest    # p -> the log's first offset
        self._seek = seek            # (p, offset) -> seek the consumer there
        self._gap_accept_s = gap_accept_s
        self._expected: dict[int, int] = {}
        self._seeked: dict[int, tuple[int, float]] = {}  # p -> (offset sought, when first sought)
        self.stats = stats if stats is not None else PositionStats()  # anything with these two counters

    def forget(self) -> None:
        """After any assignment change (or a failed batch): positions are re-read from the state."""
        self._expected.clear()
        self._seeked.clear()

    def processed(self, p: int, last_offset: int) -> None:
        self._expected[p] = last_offset + 1

    async def _start(self, p: int) -> int:
        exp = self._expected.get(p)
        if exp is None:
            last = self._applied(p)
            # nothing applied yet: start at the log's beginning, whatever Faust committed or hands over
            exp = self._expected[p] = last + 1 if last >= 0 else await self._earliest(p)
        return exp

    async def in_order(self, p: int, records: list[Record]) -> list[Record]:
        """The records to apply: in offset order, from the partition's position, without gaps."""
        exp = await self._start(p)
        if all(r.offset == exp + i for i, r in enumerate(records)):
            return records  # the usual case: the next records, in order, without gaps
        keep: list[Record] = []
        for r in sorted(records, key=lambda r: r.offset):
            if r.offset < exp:
                self.stats.already_applied += 1
                continue
            sought = self._seeked.get(p)
            hole = (sought is not None and sought[0] == exp
                    and time.monotonic() - sought[1] > self._gap_accept_s)
            if r.offset == exp or hole:
                if hole:
                    log.error("raw records %s..%s are gone from the topic (retention?); continuing after them",
                              exp, r.offset - 1, extra={"partition": p})
                keep.append(r)
                exp = r.offset + 1
                self._seeked.pop(p, None)
                continue
            self.stats.gap_seeks += 1
            if sought is None or sought[0] != exp:
                self._seeked[p] = (exp, time.monotonic())
                log.warning("records skipped by the consumer; seeking back",
                            extra={"partition": p, "to": exp, "got": r.offset})
            await self._seek(p, exp)
            break
        return keep
