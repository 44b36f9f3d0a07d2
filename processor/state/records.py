"""The records of the processor's state tables: typed in memory, compact JSON arrays in Kafka and in the tables.

Each record is an orjson array whose first element is the format number, so Faust's changelog recovery stores
the bytes as they are (the tables' values are raw bytes) and only the state layer decodes them; the readable
forms (`*_view`) are for the web views. Records of the earlier format (JSON objects) are still read, so a worker
upgraded in place restores the state its predecessor wrote.

    window  <p>|<group>|<ws>  [1, closed, dirty, closed_off, [lo, hi, lo, hi, ...], bag]
    clock   <p>|clock         [1, now_ms, off]
    chain   <root>            [1, p, last_news_ms, first_ms, [root_flow_id, root_flow_name], seen, execs,
                               closed_ms, closed_off, summary]

`summary` is null while the chain is open, then the closed chain's summary as the values of `_SUMMARY`
(root_flow_id, root_flow_name, status, ..., failing_flow and error as short lists, path), not an object.

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
    # the bag's encoded form, made once for both the partial a tick emits and the record written after it
    # (encoding the sketches was a fifth of a close-out's engine time); whoever changes the bag clears it
    _bag_dict: dict | None = field(default=None, compare=False, repr=False)

    def bag_dict(self) -> dict:
        """Bag.to_dict() of the bag as it is now (cached until `bag_changed`)."""
        if self._bag_dict is None:
            self._bag_dict = self.bag.to_dict()
        return self._bag_dict

    def bag_changed(self) -> None:
        self._bag_dict = None

    def to_bytes(self) -> bytes:
        return dumps([FORMAT, self.closed, self.dirty, self.closed_off, self.applied.flat(), self.bag_dict()])

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
    """A partition's stream time (latest tick, or event time in replay), the last raw offset applied, and when
    ingest last received an event of each org ("" for events without one): pipeline.silence_seconds."""

    now: int = 0
    off: int = -1
    seen: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return dumps([FORMAT, self.now, self.off, self.seen] if self.seen else [FORMAT, self.now, self.off])

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Clock:
        if not data:
            return cls()
        v = orjson.loads(data)
        if isinstance(v, dict):
            return cls(v.get("now", 0), v.get("off", -1), dict(v.get("seen") or {}))
        return cls(v[1], v[2], dict(v[3]) if len(v) > 3 else {})

    def view(self) -> dict:
        return {"now": self.now, "off": self.off, "seen": self.seen}


# A closed chain's summary (processor/core/chains.py `close`) is stored as the values of these keys, in this
# order; its root_execution_id is the chain's key. Names spelled out in every closed chain were ~210 of its
# ~780 bytes on the bench's backlog (25,600 closed chains held for the lateness horizon).
_SUMMARY = ("root_flow_id", "root_flow_name", "status", "had_failures", "duration_ms", "start_ms", "end_ms",
            "executions", "helper_flows", "failing_flow", "error", "path")
_NESTED = {"failing_flow": ("flow_name", "flow_id", "execution_id"), "error": ("type", "code", "message")}


def _pack_summary(summary: dict | None) -> list | None:
    if summary is None:
        return None
    return [[summary[k][n] for n in _NESTED[k]] if k in _NESTED and summary[k] is not None else summary[k]
            for k in _SUMMARY]


def _unpack_summary(root: str, packed: list | dict | None) -> dict | None:
    if packed is None or isinstance(packed, dict):  # the earlier format kept the summary as an object
        return packed
    summary = {"root_execution_id": root}
    for k, v in zip(_SUMMARY, packed, strict=True):
        summary[k] = dict(zip(_NESTED[k], v, strict=True)) if k in _NESTED and v is not None else v
    return summary


def encode_chain(ch: Chain) -> bytes:
    return dumps([FORMAT, ch.partition, ch.last_news_ms, ch.first_ms, ch.root_flow, ch.seen, ch.execs,
                         ch.closed_ms, ch.closed_off, _pack_summary(ch.closed)])


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
    ch.closed = _unpack_summary(root, v[9])
    return ch

