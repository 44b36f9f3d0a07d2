"""Ingest's own counters, and the periodic log line that reports them per interval.

The line's top-level counts are what happened since the previous line (`interval_s` says how long that was),
so a rate is count / interval_s; the counts since the process started are under `since_start`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields

log = logging.getLogger("els.ingest")


@dataclass(slots=True)
class Stats:
    """Counts since start; the request handler bumps them (attribute increments: cheap on the hot path)."""

    requests: int = 0
    bytes_in: int = 0
    events_accepted: int = 0
    items_rejected: int = 0
    status_202: int = 0
    status_400: int = 0
    status_401: int = 0
    status_413: int = 0
    status_503: int = 0

    def refused(self, status: int) -> None:
        """A body answered 400 or 413 (after its dead letter was written)."""
        if status == 413:
            self.status_413 += 1
        else:
            self.status_400 += 1

    def copy(self) -> Stats:
        return Stats(**asdict(self))

    def minus(self, earlier: Stats) -> dict[str, int]:
        """The non-zero counts of what happened since `earlier`."""
        out = {}
        for f in fields(self):
            delta = getattr(self, f.name) - getattr(earlier, f.name)
            if delta:
                out[f.name] = delta
        return out


class IntervalReport:
    """Turns the running totals into one log line per interval."""

    def __init__(self, stats: Stats, now: float):
        self.stats = stats
        self.last = stats.copy()
        self.last_at = now

    def line(self, now: float) -> dict | None:
        """The fields of the line for the interval ending now, None when nothing happened; starts the next."""
        delta = self.stats.minus(self.last)
        out = None
        if delta:
            totals = {k: v for k, v in asdict(self.stats).items() if v}
            out = {"interval_s": round(now - self.last_at, 1), **delta, "since_start": totals}
        self.last = self.stats.copy()
        self.last_at = now
        return out

    def emit(self, now: float) -> None:
        fields_ = self.line(now)
        if fields_ is not None:
            log.info("ingest stats", extra=fields_)
