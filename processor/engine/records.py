"""What the engine reads: raw-topic records, and the tick records that carry the stream clock.

Ticks: a leader-only timer writes one into every raw partition each ELS_FLUSH_SECONDS (key `__tick__`, header
`els-kind: tick`, value `{"tick": <ms>}`), so window closing happens inside the stream, in order, for every
partition, also after restarts and rebalances. Every consumer other than the processor skips them.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

TICK_KEY = b"__tick__"
TICK_HEADER = "els-kind"
TICK_KIND = b"tick"


@dataclass(frozen=True, slots=True)
class Record:
    """A raw-topic record as the engine needs it."""

    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


def is_tick(rec: Record) -> bool:
    return rec.key == TICK_KEY and rec.headers.get(TICK_HEADER) == TICK_KIND


def tick_value(now_ms: int) -> bytes:
    return orjson.dumps({"tick": now_ms})


def tick_time(rec: Record) -> int | None:
    """A tick's time (ms), None when its value is unusable (it is then skipped)."""
    try:
        return int(orjson.loads(rec.value)["tick"])
    except (ValueError, KeyError, TypeError):
        return None


def received_ms(rec: Record) -> int:
    """When ingest received the event (its `received_at` header), else the record's timestamp (set when it was
    produced, or appended). Both are in the log, so a replay or a restart reads the same time: the placing of an
    event without a timestamp, and the clock that judges an event's time as in the future, never the wall clock."""
    v = rec.headers.get("received_at")
    if v:
        try:
            return int(v)
        except ValueError:
            pass
    return rec.timestamp_ms
