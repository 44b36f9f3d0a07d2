"""Duration sketches: DDSketch (1% relative accuracy), mergeable across partitions, re-sends and windows.

Why a sketch: a window's percentiles must be computable from the merge of several partitions' partials, and a
re-sent partial must replace rather than add; exact samples would not fit in a Kafka record, averages of
percentiles are wrong. DDSketch merges exactly (bin counts add) and keeps every quantile within 1% of the truth.

Why this encoding: ddsketch's own serialisation is protobuf (an extra dependency). The compact form here is a
small JSON-able dict holding exactly the sketch's state, so a round trip gives the very same bins and quantiles:
    {"n": count, "s": sum, "lo": min, "hi": max,          # summary (min/max absent when empty)
     "z": zero_count,                                      # only when non-zero
     "k": first key, "b": [bin counts...],                 # positive store, only when non-empty
     "nk": ..., "nb": [...]}                               # negative store (durations never use it)
Bin counts run from the first to the last non-empty bin; a negative entry -r stands for r empty bins (a count is
never negative), so sparse data stays small. Integral numbers are written as ints. Canonical: equal sketches
(same bins, whatever their in-memory layout) give equal compact forms.
"""

from __future__ import annotations

from ddsketch import DDSketch
from ddsketch.store import DenseStore

RELATIVE_ACCURACY = 0.01
_GAMMA = DDSketch(RELATIVE_ACCURACY)._mapping.gamma


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def merge(into: DDSketch, other: DDSketch) -> DDSketch:
    """Adds `other` into `into` (DDSketch.merge: bin counts add, min/max/sum/count combine); returns `into`."""
    into.merge(other)
    return into


def quantile(s: DDSketch, q: float) -> float | None:
    """The q-quantile (0..1), within 1% relative error, clamped to the exact [min, max]; None when empty."""
    if not s.count:
        return None
    v = s.get_quantile_value(q)
    return min(max(v, s._min), s._max)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def _encode_store(store: DenseStore) -> tuple[int, list] | None:
    if not store.count:
        return None
    bins, off = store.bins, store.offset
    lo, hi = store.min_key - off, store.max_key - off
    while lo <= hi and not bins[lo]:
        lo += 1
    while hi >= lo and not bins[hi]:
        hi -= 1
    if lo > hi:
        return None
    out: list = []
    zeros = 0
    for c in bins[lo:hi + 1]:
        if c:
            if zeros:
                out.extend((0,) if zeros == 1 else (-zeros,))
                zeros = 0
            out.append(int(c) if c.is_integer() else c)
        else:
            zeros += 1
    return lo + off, out


def _decode_store(store: DenseStore, first_key: int, encoded: list) -> None:
    bins: list[float] = []
    for c in encoded:
        if c < 0:
            bins.extend([0.0] * int(-c))
        else:
            bins.append(float(c))
    if not bins:
        return
    # DenseStore's own state, as DenseStore.copy would set it; any length works for later adds and merges
    store.bins = bins
    store.offset = first_key
    store.min_key = first_key
    store.max_key = first_key + len(bins) - 1
    store.count = sum(bins)


def to_compact(s: DDSketch) -> dict:
    """The sketch's full state as a small JSON-able dict (see the module docstring)."""
    if s._mapping.gamma != _GAMMA:
        raise ValueError("only sketches made by new_sketch() (1% relative accuracy) can be encoded")
    if not s.count:
        return {"n": 0}
    out: dict = {"n": _num(s._count), "s": _num(s._sum), "lo": _num(s._min), "hi": _num(s._max)}
    if s._zero_count:
        out["z"] = _num(s._zero_count)
    pos = _encode_store(s._store)
    if pos:
        out["k"], out["b"] = pos
    neg = _encode_store(s._negative_store)
    if neg:
        out["nk"], out["nb"] = neg
    return out


def from_compact(obj: dict) -> DDSketch:
    """The DDSketch that to_compact encoded: same bins, count, sum, min, max, hence the same quantiles."""
    s = new_sketch()
    if not obj or not obj.get("n"):
        return s
    if "b" in obj:
        _decode_store(s._store, int(obj["k"]), obj["b"])
    if "nb" in obj:
        _decode_store(s._negative_store, int(obj["nk"]), obj["nb"])
    s._zero_count = float(obj.get("z", 0))
    s._count = float(obj["n"])
    s._sum = float(obj["s"])
    s._min = float(obj["lo"])
    s._max = float(obj["hi"])
    return s
