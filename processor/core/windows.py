"""Window time rules: which tumbling window holds a timestamp, and the calendar month of the org step bags."""

from __future__ import annotations

from datetime import UTC, datetime


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ts_ms: a multiple of size_ms since the epoch (floor, so negative
    times align down too: window_start(-1, 60_000) == -60_000)."""
    if size_ms <= 0:
        raise ValueError(f"window size must be positive, got {size_ms}")
    return ts_ms - ts_ms % size_ms


def month_start(ts_ms: int) -> int:
    """Start (ms) of the UTC calendar month holding ts_ms: the org step bags' window."""
    d = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()) * 1000
