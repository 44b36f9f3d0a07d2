"""Outbox records held until one flush sends them: one series request and one logs request per tick.

The processor emits partials in a burst at every tick (ELS_FLUSH_SECONDS); logs trickle in between. The buffer is
flushed once a burst of partials has settled (no partial for SETTLE_SECONDS), and anyway when its oldest record
has waited ELS_FLUSH_SECONDS or it holds MAX_RECORDS. Records are acked (their outbox offsets become committable)
only after the flush delivered them.

A logs request's worth (a tick closing thousands of chains after a backlog) is flushed at once, logs only: the
windows its records touched are merged into the table and owed (agent.py), and sent with the burst's next full
flush, once. The buffer remembers that series are owed, and when their burst began and last grew, so that full
flush comes when it would have come had the records still been held.
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
        self.owed_since: float | None = None  # a logs-only flush left series owed since then
        self.not_before = 0.0
        self.clear()

    def clear(self) -> None:
        self.events: list = []
        self.values: dict[int, list[dict]] = defaultdict(list)
        self.logs = 0
        self.first_at: float | None = None
        self.last_partial_at: float | None = None

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
        """Holds as many records as one flush takes: the agent flushes before reading more (back-pressure)."""
        return len(self.events) >= self.MAX_RECORDS

    def logs_full(self) -> bool:
        """Holds a logs request's worth: the agent sends the logs before reading more. Held until the burst
        settled, the logs of a backlog's close-out were ~15 MB of the worker's peak memory (docs/benchmarks.md)."""
        return self.logs >= LOGS_MAX_ENTRIES

    def due(self, now: float) -> bool:
        if now < self.not_before:
            return False
        if not self.events:
            return self.owed_since is not None and (self._settled(now) or now - self.owed_since >= self.hold_seconds)
        oldest = self.first_at if self.owed_since is None else min(self.first_at, self.owed_since)
        return self.full() or self._settled(now) or now - oldest >= self.hold_seconds

    def _settled(self, now: float) -> bool:
        return self.last_partial_at is not None and now - self.last_partial_at >= self.SETTLE_SECONDS

    def restore(self, events: list, values: dict[int, list[dict]], not_before: float, owed: bool = False) -> None:
        """Put back records a failed flush took (ahead of what arrived since); no flush before not_before. `owed`:
        series are still owed (the failed flush was to send them)."""
        self.events[:0] = events
        for p, vals in values.items():
            self.values[p][:0] = vals
            self.logs += sum(1 for v in unpacked(vals) if v.get("kind") != "partial")
        self.first_at = not_before - self.hold_seconds  # due again as soon as not_before has passed
        if owed:
            self.owed_since = self.first_at
        self.not_before = not_before

    def take(self) -> tuple[list, dict[int, list[dict]]]:
        """Every held record, for a full flush (it sends what is owed too)."""
        events, values = self.events, self.values
        self.clear()
        self.owed_since = None
        return events, values

    def take_for_logs(self) -> tuple[list, dict[int, list[dict]]]:
        """Every held record, for a logs-only flush: series stay owed, the burst's times are kept."""
        events, values, first, last_partial = self.events, self.values, self.first_at, self.last_partial_at
        self.clear()
        self.owed_since = first if self.owed_since is None else min(self.owed_since, first)
        self.last_partial_at = last_partial
        return events, values
