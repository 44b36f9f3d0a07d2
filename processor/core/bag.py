"""Window aggregates ("bags"): mergeable counters and sketches.

Why bags: a window's value is spread over raw partitions and re-sent while the window is open. A bag holds only
what adds (counters) or merges (sketches), so the sink can merge the latest partial of every partition and send
the full value each time; Datadog keeps the last value per series and timestamp, so a re-send replaces. Gauges
(error rate, percentiles, averages) are derived from the merged bag when rendering, never stored.
Labels are the group's identifying tags (flow_name, flow_id, ...), kept raw and normalised when rendering.
"""

from __future__ import annotations

import math

from processor.core.sketch import Sketch, from_compact, to_compact
from processor.core.tags import counter_key

OUTCOMES = ("completed", "failed", "canceled")
ENDED = "_ended"      # counter of ended executions, tag outcome; the error_rate's inputs
STEPS_N = "_steps_n"  # ended executions that reported a step_count; steps.avg = steps / _steps_n

class Bag:
    """A mergeable window aggregate: counters add, sketches merge, maxima keep the largest, labels are
    last-writer-wins registers.

    Labels: each tag keeps the value written with the latest event time (`at_ms`); equal times keep the greater
    value. So a bag's labels do not depend on the order in which events or partials arrive, and merge is
    commutative, associative and idempotent for them (a plain dict.update would let the merge order pick a
    renamed flow's name, and the same window could then be re-sent under another flow_name tag).
    """

    __slots__ = ("counters", "sketches", "labels", "label_ms", "maxima")

    def __init__(self):
        self.counters: dict[str, float] = {}
        self.sketches: dict[str, Sketch] = {}
        self.labels: dict[str, str] = {}
        self.label_ms: dict[str, int] = {}
        self.maxima: dict[str, float] = {}  # e.g. the latest receive time of an org's events, over partitions

    def count(self, metric: str, n: float = 1, **tags) -> None:
        key = counter_key(metric, tuple(tags.items())) if tags else metric
        c = self.counters
        c[key] = c.get(key, 0) + n

    def sample(self, sketch_name: str, value: float) -> None:
        sk = self.sketches.get(sketch_name)
        if sk is None:
            sk = self.sketches[sketch_name] = Sketch()
        sk.add(value)

    def at_least(self, key: str, value: float) -> None:
        """Keep the larger of the stored maximum and `value`."""
        m = self.maxima
        if value > m.get(key, -math.inf):
            m[key] = value

    def label(self, tag: str, value: str, at_ms: int = 0) -> None:
        """Set a label unless a later (event time) write already set it."""
        cur = self.label_ms.get(tag)
        if cur is None or at_ms > cur or (at_ms == cur and value > self.labels[tag]):
            self.labels[tag] = value
            self.label_ms[tag] = at_ms

    def merge(self, other: Bag) -> None:
        c = self.counters
        for k, v in other.counters.items():
            c[k] = c.get(k, 0) + v
        for k, sk in other.sketches.items():
            mine = self.sketches.get(k)
            if mine is None:
                mine = self.sketches[k] = Sketch()  # merging into an empty sketch copies, never aliases
            mine.merge(sk)
        for tag, value in other.labels.items():
            self.label(tag, value, other.label_ms.get(tag, 0))
        for k, v in other.maxima.items():
            self.at_least(k, v)

    def merge_dict(self, d: dict) -> None:
        """merge(Bag.from_dict(d)) without building the other Bag (the sink's rendering merges encoded shares)."""
        c = self.counters
        for k, v in (d.get("c") or {}).items():
            c[k] = c.get(k, 0) + v
        for k, compact in (d.get("s") or {}).items():
            mine = self.sketches.get(k)
            if mine is None:
                mine = self.sketches[k] = Sketch()
            mine.merge_compact(compact)
        lt = d.get("lt") or {}
        for tag, value in (d.get("l") or {}).items():
            self.label(tag, value, lt.get(tag, 0))
        for k, v in (d.get("m") or {}).items():
            self.at_least(k, v)

    def to_dict(self) -> dict:
        d: dict = {"c": self.counters}
        if self.sketches:
            d["s"] = {k: to_compact(v) for k, v in self.sketches.items()}
        if self.labels:
            d["l"] = self.labels
            if any(self.label_ms.values()):
                d["lt"] = self.label_ms
        if self.maxima:
            d["m"] = self.maxima
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Bag:
        b = cls()
        b.counters = dict(d.get("c") or {})
        b.sketches = {k: from_compact(v) for k, v in (d.get("s") or {}).items()}
        b.labels = dict(d.get("l") or {})
        lt = d.get("lt") or {}
        b.label_ms = {k: lt.get(k, 0) for k in b.labels}
        b.maxima = dict(d.get("m") or {})
        return b

    def __eq__(self, other) -> bool:
        if not isinstance(other, Bag):
            return NotImplemented
        return (self.counters == other.counters and self.labels == other.labels
                and self.label_ms == other.label_ms and self.maxima == other.maxima
                and {k: to_compact(v) for k, v in self.sketches.items()}
                == {k: to_compact(v) for k, v in other.sketches.items()})

    __hash__ = None

    def __repr__(self) -> str:
        return f"Bag(labels={self.labels}, counters={self.counters}, sketches={sorted(self.sketches)})"
