"""The sink's merge: per group and window, the latest partial of every processor partition, summed on demand.

Why: a window's value is spread over the processor's partitions, and each re-sends its full share (a partial)
while the window is open. Datadog keeps the last value per series and timestamp, so the sink must always send the
sum of every partition's latest share, never one share alone (that would replace the whole value). The merged
windows live in the `sink` table, as JSON (Faust's changelog codec):
- `<group>|<window start ms>` -> MergedWindow.to_dict(): `{"group", "ws", "op", "parts": {"<p>": {"seq", "bag"}}}`,
  `op` being the outbox partition that owns it (its changelog partition), each `bag` the partial's bag as JSON
  text (a string: held so, a part costs a fifth of the memory of the decoded dict, and the sink table held the
  most of a worker's memory after a backlog; the earlier format, the bag as an object, is still read);
- `retries|<outbox partition>|<window start ms>` -> SinkCounts.to_dict(): the sink's own counters (agent.py);
- `position|<outbox partition>` -> `{"group": "position", "op", "next"}`: where the sink's delivered records end
  (position.py).

Retention (keep_after_end_ms, docs/design.md "The sink's merge"): a merged window is deleted once the sink's
clock has passed its end by the processor's lateness plus the lag between processor partitions it tolerates.
The sink's clock, per outbox partition, is the latest window end among the partials it merged from it (never ahead
of the wall clock): an outbox partition is read in the order the processor wrote it, so a backlog, the sink's own
or the processor's, does not age windows whose other partials are still to come.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

import orjson

from processor.core.bag import Bag
from processor.core.windows import month_start
from processor.outbox import unpacked

ORG_PREFIX = "org:"
RETRIES = "retries"


def window_key(group: str, ws: int) -> str:
    """The `sink` table's key of a merged window (also the outbox key of its partials)."""
    return f"{group}|{ws}"


def retries_key(op: int, ws: int) -> str:
    """The `sink` table's key of the retry count of outbox partition `op` in window `ws`."""
    return f"{RETRIES}|{op}|{ws}"


def keep_after_end_ms(window_s: float, lateness_s: float, failover_s: float) -> int:
    """How long after its window ended a merged window is kept: partials keep coming for `lateness_s` (the processor
    closes a window that late), and a processor partition may run behind the others; the tolerated lag is one more
    window + lateness period, and at least a failover (a dead worker's partitions resume after the session
    timeout and a rebalance). A partial arriving later would be sent alone and replace the merged value."""
    lag = max(window_s + lateness_s, failover_s)
    return int((lateness_s + lag) * 1000)


def held_form(value: dict) -> dict:
    """An outbox value as the sink holds it until its flush: each partial's bag as JSON text, what a Part keeps.
    Held decoded, the ~80 packed records of a backlog's tick burst were tens of MB of dicts in the worker's peak;
    as text a bag costs about a fifth (the one dump a Part makes anyway, made at once)."""
    for item in unpacked([value]):
        if item.get("kind") == "partial":
            item["bag"] = bag_text(item["bag"])
    return value


def bag_text(bag: dict | str) -> str:
    """A partial's bag as the JSON text a Part keeps (Bag.to_dict() dumped; text already is)."""
    return bag if isinstance(bag, str) else orjson.dumps(bag).decode()


@dataclass(slots=True)
class Part:
    """One processor partition's latest share of a window: `seq` orders its re-sends (its raw offset)."""

    seq: int
    bag: str  # Bag.to_dict() as JSON text: decoded only when rendering

    @classmethod
    def of(cls, seq: int, bag: dict | str) -> Part:
        return cls(seq, bag_text(bag))


@dataclass(slots=True)
class MergedWindow:
    group: str
    ws: int
    op: int
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def is_org(self) -> bool:
        return self.group.startswith(ORG_PREFIX)

    def absorb(self, p: str, seq: int, bag: dict) -> None:
        """Keep this share unless a later one (higher seq) of the same partition is already here."""
        old = self.parts.get(p)
        if old is None or old.seq <= seq:
            self.parts[p] = Part.of(seq, bag)

    def bag(self) -> Bag:
        merged = Bag()
        for part in self.parts.values():
            merged.merge_dict(orjson.loads(part.bag))
        return merged

    def to_dict(self) -> dict:
        return {"group": self.group, "ws": self.ws, "op": self.op,
                "parts": {p: {"seq": part.seq, "bag": part.bag} for p, part in self.parts.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> MergedWindow:
        return cls(d["group"], d["ws"], d["op"], {p: Part.of(v["seq"], v["bag"]) for p, v in d["parts"].items()})


@dataclass(slots=True)
class SinkCounts:
    """The sink's own counters of one outbox partition in one window (pipeline.sink_retries, and
    pipeline.deadletters{stage:sink} by reason), as totals; expired like the merged windows."""

    counts: dict[str, float]
    ws: int
    op: int

    def to_dict(self) -> dict:
        return {"c": self.counts, "ws": self.ws, "op": self.op, "group": RETRIES}

    @classmethod
    def from_dict(cls, d: dict) -> SinkCounts:
        counts = d.get("c") or {"pipeline.sink_retries": d.get("n", 0)}  # the earlier form held the retries only
        return cls(dict(counts), d["ws"], d["op"])


class Merge:
    """The merged windows of a table (a Faust table live, a plain dict in replay) and the rules to expire them."""

    def __init__(self, table: MutableMapping, window_ms: int, lateness_ms: int, keep_ms: int):
        self.table = table
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.keep_ms = keep_ms
        self.clocks: dict[int, int] = {}  # outbox partition -> the latest window end merged from it (org aside)

    def absorb(self, values: Iterable[dict], op: int = 0) -> tuple[dict[str, MergedWindow], list[dict]]:
        """Fold outbox values into their merged windows; return the windows touched (to store) and the log items."""
        touched: dict[str, MergedWindow] = {}
        logs: list[dict] = []
        for v in unpacked(values):
            kind = v.get("kind")
            if kind == "log":
                logs.append(v["item"])
            elif kind == "partial":
                key = window_key(v["group"], v["ws"])
                merged = touched.get(key)
                if merged is None:
                    stored = self.table.get(key)
                    merged = MergedWindow.from_dict(stored) if stored else MergedWindow(v["group"], v["ws"], op)
                    merged.op = op
                    touched[key] = merged
                merged.absorb(str(v["p"]), v["seq"], v["bag"])
                if not merged.is_org and merged.ws + self.window_ms > self.clocks.get(op, 0):
                    self.clocks[op] = merged.ws + self.window_ms
        return touched, logs

    def keep(self, windows: dict[str, MergedWindow]) -> None:
        """Store merged windows in the table directly (replay; the worker persists them through its changelog)."""
        for key, merged in windows.items():
            self.table[key] = merged.to_dict()

    def take_closed(self, clock_ms: float) -> dict[str, MergedWindow]:
        """Remove and return the windows every partition has closed at `clock_ms` (math.inf: all of them)."""
        out = {}
        for key, stored in list(self.table.items()):
            if "ws" not in stored:  # the sink's outbox positions (position.py): not a window
                continue
            if clock_ms == math.inf or stored["ws"] + self.window_ms + self.lateness_ms <= clock_ms:
                out[key] = MergedWindow.from_dict(self.table.pop(key))
        return out

    def expired_keys(self, op: int, now_ms: int) -> list[str]:
        """Keys of outbox partition `op` past their retention (org months: kept until the month is over)."""
        clock = min(self.clocks.get(op, 0), now_ms)
        out = []
        for key, stored in list(self.table.items()):
            if stored.get("op") != op or "ws" not in stored:  # positions (position.py) never expire
                continue
            ws = stored["ws"]
            end = month_start(ws + 32 * 86_400_000) if stored["group"].startswith(ORG_PREFIX) else ws + self.window_ms
            if end + self.keep_ms < clock:
                out.append(key)
        return out
