"""The replay's range: what `--since` and `--until` mean, and how they are aligned."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from processor.core.windows import window_start

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReplayError(ValueError):
    """A replay that cannot start (bad range, missing topic); the message says what to change."""


def parse_time(text: str, now_ms: int) -> int:
    """ms since epoch from ISO 8601 (UTC when no offset) or a duration ago: `90s`, `30m`, `2h`, `7d`, `1w`."""
    s = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", s)
    if m:
        return now_ms - int(float(m.group(1)) * UNITS[m.group(2)] * 1000)
    try:
        d = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise ReplayError(f"{text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor a duration ago "
                          "(30m, 2h, 7d)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp() * 1000)


def label(ms: int) -> str:
    """A time as it appears in the replay's group id and held file name: 20240501T120000Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Range:
    """Events whose own time is in [since_ms, until_ms) are replayed: both bounds aligned to window boundaries
    (since down, until up), so no window is sent with only part of its events (its value would replace the full
    one in Datadog). Chains are closed as the live pipeline would have closed them at `close_ms`: the --until the
    user gave, never later than the replay's start (the live pipeline cannot have seen later news)."""

    since_ms: int
    until_ms: int
    close_ms: int

    @classmethod
    def of(cls, since_ms: int, until_ms: int, window_ms: int, started_ms: int) -> Range:
        if until_ms <= since_ms:
            raise ReplayError("--until must be after --since")
        return cls(window_start(since_ms, window_ms), -(-until_ms // window_ms) * window_ms,
                   min(until_ms, started_ms))

    def __contains__(self, ts_ms: int) -> bool:
        return self.since_ms <= ts_ms < self.until_ms
