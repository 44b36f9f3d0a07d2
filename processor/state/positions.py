"""Where each partition's processing stands, and the records put in offset order from there, without gaps.

Faust acks (and may commit) records it skips while a rebalance or recovery is under way, may hand over later
records before earlier ones after a restart, and commits offsets the worker processed but has not flushed yet
(processor/state/transaction.py). So the position that counts is our own: the next offset after the last one
applied, in memory while a transaction is open, else the position in the state (the raw partition's clock
record, the sink's outbox position). Records before it were applied already. A gap after it means records were
skipped: they are read with a consumer of their own (common/range_reader.py) and applied first. Seeking Faust's
consumer back did not get them under load: its fetch loop drops records below the last offset it handed over.
Records the log no longer holds (retention) are a hole: logged, and processing continues after it. A gap wider
than GAP_READ_MAX is sought back instead (the records come again through Faust), so memory stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processor.engine.records import Record

log = logging.getLogger("els.processor")

HOLE_CHECK_SECONDS = 5.0  # a gap sought back this long makes us ask where the log starts now (at most this often)
GAP_READ_MAX = 20_000     # records read at once to fill a gap; a wider one is sought back


@dataclass(slots=True)
class PositionStats:
    already_applied: int = 0
    gap_seeks: int = 0
    gap_reads: int = 0


class Positions:
    """Next raw offset to apply per partition, and the gap seeks under way."""

    def __init__(self, applied: Callable[[int], int], earliest: Callable[[int], Awaitable[int]],
                 seek: Callable[[int, int], Awaitable[None]], hole_check_s: float = HOLE_CHECK_SECONDS,
                 stats=None, name: str = "raw",
                 read: Callable[[int, int, int], Awaitable[list]] | None = None):
        self.name = name             # the topic's role, in log lines
        self._applied = applied      # p -> last offset applied (-1: none), from the state
        self._earliest = earliest    # p -> the log's first offset now
        self._seek = seek            # (p, offset) -> seek the consumer there
        self._read = read            # (p, start, end) -> the records start..end-1 the log holds (None: seek)
        self._hole_check_s = hole_check_s
        self._expected: dict[int, int] = {}
        self._seeked: dict[int, tuple[int, float]] = {}  # p -> (offset sought, when the log start was last asked)
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
            # nothing applied yet: the log's beginning (what Faust committed may be past records never applied)
            exp = self._expected[p] = last + 1 if last >= 0 else await self._earliest(p)
        return exp

    async def _gone_until(self, p: int, exp: int) -> int | None:
        """Where the log starts now, when that is past `exp` (retention deleted the records from `exp`); asked
        once a gap is HOLE_CHECK_SECONDS old, and then at most that often."""
        sought = self._seeked.get(p)
        if sought is None or sought[0] != exp or time.monotonic() - sought[1] < self._hole_check_s:
            return None
        self._seeked[p] = (exp, time.monotonic())
        start = await self._earliest(p)
        return start if start > exp else None

    async def in_order(self, p: int, records: list[Record]) -> list[Record]:
        """The records to apply: in offset order, from the partition's position, without gaps."""
        exp = await self._start(p)
        if all(r.offset == exp + i for i, r in enumerate(records)):
            return records  # the usual case: the next records, in order, without gaps
        keep: list = []
        for r in sorted(records, key=lambda r: r.offset):
            if r.offset < exp:
                self.stats.already_applied += 1
                continue
            if r.offset > exp and self._read is not None and r.offset - exp <= GAP_READ_MAX:
                keep += await self._fill(p, exp, r.offset)
                exp = r.offset
            if r.offset > exp and (start := await self._gone_until(p, exp)) is not None:
                log.error("%s records %s..%s of partition %s are gone from the topic (retention?); continuing from "
                          "%s", self.name, exp, start - 1, p, start, extra={"partition": p})
                self._seeked.pop(p, None)
                exp = self._expected[p] = start
                if r.offset < exp:
                    continue
            if r.offset == exp:
                keep.append(r)
                exp = r.offset + 1
                self._seeked.pop(p, None)
                continue
            self.stats.gap_seeks += 1
            if self._seeked.get(p, (None,))[0] != exp:
                self._seeked[p] = (exp, time.monotonic())
                log.warning("%s records skipped by the consumer: partition %s got offset %s, expected %s; seeking "
                            "back", self.name, p, r.offset, exp, extra={"partition": p, "to": exp, "got": r.offset})
            await self._seek(p, exp)
            break
        return keep

    async def catch_up(self, p: int, until: int) -> list[Record]:
        """The records from the partition's position to `until` (where the consumer starts handing over), read on
        their own now: records before it were committed without being applied (let go at a rebalance or a stop,
        skipped during one), and the gap would otherwise be noticed only when a later record comes."""
        exp = await self._start(p)
        if until <= exp or self._read is None or until - exp > GAP_READ_MAX:
            return []
        got = await self._fill(p, exp, until)
        self._expected[p] = until
        return got

    async def _fill(self, p: int, exp: int, until: int) -> list:
        """The records exp..until-1, read on their own; a hole where retention deleted some is logged."""
        got = await self._read(p, exp, until)
        self.stats.gap_reads += 1
        log.info("%s records %s..%s of partition %s were skipped by the consumer; read them on their own",
                 self.name, exp, until - 1, p, extra={"partition": p, "from": exp, "to": until - 1})
        first = got[0].offset if got else until
        if first > exp:
            log.error("%s records %s..%s of partition %s are gone from the topic (retention?); continuing from %s",
                      self.name, exp, first - 1, p, first, extra={"partition": p})
        return got
