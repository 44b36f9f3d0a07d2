"""The records of the processor's state tables: typed in memory, compact JSON arrays in Kafka and in the tables.

Each record is an orjson array whose first element is the format number, so Faust's changelog recovery stores
the bytes as they are (the tables' values are raw bytes) and only the state layer decodes them; the readable
forms (`*_view`) are for the web views. Records of the earlier format (JSON objects) are still read, so a worker
upgraded in place restores the state its predecessor wrote.

    window  <p>|<group>|<ws>  [1, closed, dirty, closed_off, [lo, hi, lo, hi, ...], bag]
    clock   <p>|clock         [1, now_ms, off]
    chain   <root>            [1, p, last_news_ms, first_ms, [root_flow_id, root_flow_name], seen, execs,
                               closed_ms, closed_off, summary]

`bag` is Bag.to_dict() (the outbox carries the same form); `seen` maps idempotency keys to the raw offset they
were first seen at; `execs` maps execution ids to processor/core/chains.py's short lists; absent values are null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from processor.core.bag import Bag
from processor.core.chains import Chain
from processor.jsonbytes import dumps
from processor.state.ranges import OffsetRanges

FORMAT = 1


@dataclass(slots=True)
class WindowRecord:
    """One partition's share of one group's window, and which raw offsets' effects it holds."""

    bag: Bag = field(default_factory=Bag)
    applied: OffsetRanges = field(default_factory=OffsetRanges)
    closed: bool = False
    dirty: bool = False          # changed since its last partial
    closed_off: int | None = None  # the raw offset (a tick, or an event in replay) whose processing closed it

    def to_bytes(self) -> bytes:
        return dumps([FORMAT, self.closed, self.dirty, self.closed_off, self.applied.flat(),
                             self.bag.to_dict()])

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowRecord:
        v = orjson.loads(data)
        if isinstance(v, dict):  # the earlier format
            return cls(Bag.from_dict(v.get("bag") or {}), OffsetRanges([list(r) for r in v.get("applied", ())]),
                       bool(v.get("closed")), bool(v.get("dirty")), None)
        return cls(Bag.from_dict(v[5]), OffsetRanges.from_flat(v[4]), v[1], v[2], v[3])


@dataclass(frozen=True, slots=True)
class WindowFlags:
    """What a tick needs of a window record without decoding its bag."""

    closed: bool
    dirty: bool
    closed_off: int | None


def window_flags(data: bytes) -> WindowFlags:
    v = orjson.loads(data)
    if isinstance(v, dict):
        return WindowFlags(bool(v.get("closed")), bool(v.get("dirty")), None)
    return WindowFlags(v[1], v[2], v[3])


def window_view(key, data: bytes) -> dict:
    """A window record as a readable dict: {"group", "ws", "bag", "applied", "closed", "dirty", "closed_off"}."""
    rec = WindowRecord.from_bytes(data)
    return {"group": key.group, "ws": key.start, "bag": rec.bag.to_dict(), "applied": rec.applied.spans,
            "closed": rec.closed, "dirty": rec.dirty, "closed_off": rec.closed_off}


@dataclass(slots=True)
class Clock:
    """A partition's stream time (latest tick, or event time in replay) and the last raw offset applied."""

    now: int = 0
    off: int = -1

    def to_bytes(self) -> bytes:
        return dumps([FORMAT, self.now, self.off])

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Clock:
        if not data:
            return cls()
        v = orjson.loads(data)
        if isinstance(v, dict):
            return cls(v.get("now", 0), v.get("off", -1))
        return cls(v[1], v[2])

    def view(self) -> dict:
        return {"now": self.now, "off": self.off}


def encode_chain(ch: Chain) -> bytes:
    return dumps([FORMAT, ch.partition, ch.last_news_ms, ch.first_ms, ch.root_flow, ch.seen, ch.execs,
                         ch.closed_ms, ch.closed_off, ch.closed])


def decode_chain(root: str, data: bytes) -> Chain:
    v = orjson.loads(data)
    if isinstance(v, dict):
        return Chain.from_dict(v)
    ch = Chain(root, v[1])
    ch.last_news_ms = v[2]
    ch.first_ms = v[3]
    ch.root_flow = v[4]
    ch.seen = v[5]
    ch.execs = v[6]
    ch.closed_ms = v[7]
    ch.closed_off = v[8]
    ch.closed = v[9]
    return ch

