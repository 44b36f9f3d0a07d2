"""Duration sketches: DDSketch (1% relative accuracy), mergeable across partitions and windows.

Serialised compactly as the dense run of bucket counts of the positive store (first key + counts), about 1-2 KB
for durations spanning 10 ms to 10 min. Durations are never negative; zero goes to the zero bucket.
"""

from __future__ import annotations

from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def to_compact(s: DDSketch) -> dict:
    store = s._store
    bins = store.bins
    lo = next((i for i, c in enumerate(bins) if c), len(bins))
    hi = next((i for i in range(len(bins) - 1, -1, -1) if bins[i]), -1)
    counts = [int(c) if c == int(c) else c for c in bins[lo:hi + 1]]
    return {"o": lo + store.offset, "c": counts, "z": s._zero_count, "n": s._count, "s": s._sum,
            "lo": s._min if s._count else None, "hi": s._max if s._count else None}


def from_compact(d: dict) -> DDSketch:
    s = new_sketch()
    for i, count in enumerate(d["c"]):
        if count:
            s._store.add(d["o"] + i, count)
    s._zero_count = d["z"]
    s._count = d["n"]
    s._sum = d["s"]
    s._min = d["lo"] if d["lo"] is not None else float("inf")
    s._max = d["hi"] if d["hi"] is not None else float("-inf")
    return s


def quantile(s: DDSketch, q: float) -> float | None:
    return s.get_quantile_value(q) if s.count else None
