"""Window time rules: which tumbling window holds a timestamp, where it ends, and the calendar month of the org
step bags."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ts_ms: a multiple of size_ms since the epoch (floor, so negative
    times align down too: window_start(-1, 60_000) == -60_000)."""
    if size_ms <= 0:
        raise ValueError(f"window size must be positive, got {size_ms}")
    return ts_ms - ts_ms % size_ms


DAY_MS = 86_400_000


def month_start(ts_ms: int) -> int:
    """Start (ms) of the UTC calendar month holding ts_ms: the org step bags' window."""
    return _month_of_day(ts_ms // DAY_MS)


@lru_cache(maxsize=1024)
def _month_of_day(day: int) -> int:
    d = datetime.fromtimestamp(day * 86_400, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()) * 1000


def window_end(start_ms: int, size_ms: int, monthly: bool = False) -> int:
    """End (exclusive) of a window: start + size, or the next month's start for a monthly (org) window."""
    return month_start(start_ms + 32 * DAY_MS) if monthly else start_ms + size_ms
