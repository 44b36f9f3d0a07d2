"""Outbox records held until one flush sends them: one series request and one logs request per tick.

The processor emits partials in a burst at every tick (ELS_FLUSH_SECONDS); logs trickle in between. The buffer is
flushed once a burst of partials has settled (no partial for SETTLE_SECONDS), and anyway when its oldest record
has waited ELS_FLUSH_SECONDS or it holds a request's worth. Records are acked (their outbox offsets become
committable) only after the flush delivered them.
"""

from __future__ import annotations

from collections import defaultdict

from processor.outbox import unpacked
from processor.sink.delivery import LOGS_MAX_ENTRIES


class Buffer:
    SETTLE_SECONDS = 0.5
    MAX_RECORDS = 20_000

    def __init__(self, hold_seconds: float):
        self.hold_seconds = hold_seconds
        self.clear()

    def clear(self) -> None:
        self.events: list = []
        self.values: dict[int, list[dict]] = defaultdict(list)
        self.logs = 0
        self.first_at: float | None = None
        self.last_partial_at: float | None = None
        self.not_before = 0.0

    def add(self, event, partition: int, value: dict, now: float) -> None:
        self.events.append(event)
        self.values[partition].append(value)
        if self.first_at is None:
            self.first_at = now
        for item in unpacked([value]):
            if item.get("kind") == "partial":
                self.last_partial_at = now
            else:
                self.logs += 1

    def full(self) -> bool:
        """Holds as many records as one flush takes, or a logs request's worth: the agent flushes before reading
        more (back-pressure). A tick closing thousands of chains after a backlog sends their logs at once; held
        until the flush timer, they were ~15 MB of the worker's peak memory (docs/benchmarks.md)."""
        return len(self.events) >= self.MAX_RECORDS or self.logs >= LOGS_MAX_ENTRIES

    def due(self, now: float) -> bool:
        if not self.events or now < self.not_before:
            return False
        return (self.full() or self.logs >= LOGS_MAX_ENTRIES
                or (self.last_partial_at is not None and now - self.last_partial_at >= self.SETTLE_SECONDS)
                or now - self.first_at >= self.hold_seconds)

    def restore(self, events: list, values: dict[int, list[dict]], not_before: float) -> None:
        """Put back records a failed flush took (ahead of what arrived since); no flush before not_before."""
        self.events[:0] = events
        for p, vals in values.items():
            self.values[p][:0] = vals
            self.logs += sum(1 for v in unpacked(vals) if v.get("kind") != "partial")
        self.first_at = not_before - self.hold_seconds  # due again as soon as not_before has passed
        self.not_before = not_before

    def take(self) -> tuple[list, dict[int, list[dict]]]:
        events, values = self.events, self.values
        self.clear()
        return events, values
