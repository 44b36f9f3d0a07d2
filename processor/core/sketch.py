"""Duration sketches: DDSketch's bins (1% relative accuracy), mergeable across partitions, re-sends and windows.

Why a sketch: a window's percentiles must be computable from the merge of several partitions' partials, and a
re-sent partial must replace rather than add; exact samples would not fit in a Kafka record, averages of
percentiles are wrong. DDSketch merges exactly (bin counts add) and keeps every quantile within 1% of the truth.

Why our own holder: a window's sketch lives mostly encoded (in the state and the outbox) and is decoded, added
to and merged on the hot path. `Sketch` keeps exactly DDSketch's state: the bins of ddsketch's public
`LogarithmicMapping` (the mapping `DDSketch(0.01)` uses) as a sparse {key: count}, the zero count, and the exact
count, sum, min and max; quantiles are read from a `DDSketch` rebuilt through its public API (`add(value of the
bin, count)` lands every count in its own bin), so nothing here touches ddsketch's private attributes.
tests/unit/core/test_sketch.py pins the equivalence with a DDSketch fed the same values.

The compact form, a small JSON-able dict holding exactly that state (a round trip gives the same bins):
    {"n": count, "s": sum, "lo": min, "hi": max,          # summary (min/max absent when empty)
     "z": zero_count,                                      # only when non-zero
     "k": first key, "b": [bin counts...],                 # positive bins, only when non-empty
     "nk": ..., "nb": [...]}                               # negative bins (durations never use them)
Bin counts run from the first to the last non-empty bin; a negative entry -r stands for r empty bins (a count is
never negative), so sparse data stays small. Integral numbers are written as ints. Canonical: equal sketches
give equal compact forms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)  # what DDSketch(RELATIVE_ACCURACY) maps values with
_KEY = _MAPPING.key
_SMALLEST = _MAPPING.min_possible  # values within (-_SMALLEST, _SMALLEST) count as zero, as in DDSketch


class Sketch:
    """DDSketch's state, sparse: positive and negative bins by key, zero count, exact count/sum/min/max."""

    __slots__ = ("pos", "neg", "zero", "count", "sum", "min", "max")

    def __init__(self):
        self.pos: dict[int, float] = {}
        self.neg: dict[int, float] = {}
        self.zero: float = 0
        self.count: float = 0
        self.sum: float = 0.0
        self.min: float = math.inf
        self.max: float = -math.inf

    def add(self, value: float, weight: float = 1) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight!r}")
        if value > _SMALLEST:
            k = _KEY(value)
            self.pos[k] = self.pos.get(k, 0) + weight
        elif value < -_SMALLEST:
            k = _KEY(-value)
            self.neg[k] = self.neg.get(k, 0) + weight
        else:
            self.zero += weight
        self.count += weight
        self.sum += value * weight
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: Sketch) -> None:
        """Add `other` into this one: bin counts add, count/sum add, min/max combine."""
        if not other.count:
            return
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for k, c in theirs.items():
                mine[k] = mine.get(k, 0) + c
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def merge_compact(self, obj: dict) -> None:
        """merge(from_compact(obj)) without building the other Sketch: the sink merges every partition's encoded
        share of a window each time it renders one."""
        if not obj or not obj.get("n"):
            return
        for mine, first, encoded in ((self.pos, obj.get("k"), obj.get("b")), (self.neg, obj.get("nk"), obj.get("nb"))):
            if encoded:
                for k, c in _bins(int(first), encoded):
                    mine[k] = mine.get(k, 0) + c
        self.zero += obj.get("z", 0)
        self.count += obj["n"]
        self.sum += obj["s"]
        self.min = min(self.min, obj["lo"])
        self.max = max(self.max, obj["hi"])

    def get_quantile_value(self, q: float) -> float | None:
        """DDSketch's q-quantile of these bins (unclamped); None when empty."""
        return self.as_ddsketch().get_quantile_value(q) if self.count else None

    def as_ddsketch(self) -> DDSketch:
        """A DDSketch with the same bins, built through its public API (its sum/min/max are not exact)."""
        d = DDSketch(RELATIVE_ACCURACY)
        value = _MAPPING.value
        for k, c in self.pos.items():
            d.add(value(k), c)
        for k, c in self.neg.items():
            d.add(-value(k), c)
        if self.zero:
            d.add(0.0, self.zero)
        return d

    def __eq__(self, other) -> bool:
        return isinstance(other, Sketch) and to_compact(self) == to_compact(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Sketch(n={self.count}, min={self.min}, max={self.max})"


def quantiles(s: Sketch, qs: Iterable[float]) -> dict[float, float]:
    """Each q-quantile (0..1), within 1% relative error, clamped to the exact [min, max]; empty when the sketch
    is. Read from the bins in one sorted pass, as DDSketch.get_quantile_value reads its stores (rank q * (n - 1);
    the negative store from its far end): rebuilding a DDSketch bin by bin for this was most of the sink's
    rendering after a backlog (docs/benchmarks.md, 2026-11-28). tests/unit/core/test_sketch.py pins it against
    DDSketch itself: a DDSketch fed the same values, and one rebuilt from the bins, give the same values."""
    if not s.count:
        return {}
    neg, pos = sorted(s.neg.items()), sorted(s.pos.items())
    neg_n = sum(c for _, c in neg)
    pos_n = sum(c for _, c in pos)
    n = pos_n + neg_n + s.zero
    out = {}
    for q in qs:
        rank = q * (n - 1)
        if rank < neg_n:
            value = -_MAPPING.value(_key_at_rank(neg, neg_n - rank - 1, lower=False))
        elif rank < s.zero + neg_n:
            value = 0
        else:
            value = _MAPPING.value(_key_at_rank(pos, rank - s.zero - neg_n, lower=True))
        out[q] = min(max(value, s.min), s.max)
    return out


def _key_at_rank(bins: list[tuple[int, float]], rank: float, lower: bool) -> int:
    """The key holding `rank` in key-ordered bins: ddsketch's DenseStore.key_at_rank, on sparse bins."""
    running = 0.0
    for k, c in bins:
        running += c
        if (lower and running > rank) or (not lower and running >= rank + 1):
            return k
    return bins[-1][0]


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def _encode_bins(bins: dict[int, float]) -> tuple[int, list] | None:
    """A bin dict as its first key and the run of counts; bins never hold a zero count (add refuses a weight
    that is not positive, decoding skips empty bins), so every key is a bin. Counts are ints unless a caller
    weighted with floats: this runs for every window record written and every partial sent."""
    if not bins:
        return None
    keys = sorted(bins)
    out: list = []
    prev = keys[0] - 1
    for k in keys:
        gap = k - prev - 1
        if gap:
            out.append(0 if gap == 1 else -gap)
        c = bins[k]
        out.append(c if type(c) is int else _num(c))
        prev = k
    return keys[0], out


def _bins(first_key: int, encoded: list):
    """(key, count) of each non-empty bin of an encoded run (_encode_bins)."""
    k = first_key
    for c in encoded:
        if c < 0:
            k += int(-c)
        elif c == 0:
            k += 1
        else:
            yield k, c
            k += 1


def to_compact(s: Sketch) -> dict:
    """The sketch's full state as a small JSON-able dict (see the module docstring)."""
    if not isinstance(s, Sketch):
        raise ValueError(f"only Sketch (1% relative accuracy) can be encoded, not {type(s).__name__}")
    if not s.count:
        return {"n": 0}
    out: dict = {"n": _num(s.count), "s": _num(s.sum), "lo": _num(s.min), "hi": _num(s.max)}
    if s.zero:
        out["z"] = _num(s.zero)
    pos = _encode_bins(s.pos)
    if pos:
        out["k"], out["b"] = pos
    neg = _encode_bins(s.neg)
    if neg:
        out["nk"], out["nb"] = neg
    return out


def from_compact(obj: dict) -> Sketch:
    """The Sketch that to_compact encoded: same bins, count, sum, min, max, hence the same quantiles."""
    s = Sketch()
    if not obj or not obj.get("n"):
        return s
    if "b" in obj:
        s.pos = dict(_bins(int(obj["k"]), obj["b"]))
    if "nb" in obj:
        s.neg = dict(_bins(int(obj["nk"]), obj["nb"]))
    s.zero = obj.get("z", 0)
    s.count = obj["n"]
    s.sum = obj["s"]
    s.min = obj["lo"]
    s.max = obj["hi"]
    return s
