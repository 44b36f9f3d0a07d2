"""Raw offset ranges, sorted and merged: which records' effects a window record holds.

A window record lists the spans of the flushes that wrote it (see docs/design.md, "Exactness"); adjacent and
overlapping spans merge, so a window touched by every flush of its life holds a single range.
"""

from __future__ import annotations


class OffsetRanges:
    """Disjoint, sorted, non-adjacent inclusive ranges [lo, hi] of raw offsets."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[list[int]] | None = None):
        self.spans: list[list[int]] = spans if spans is not None else []

    def holds(self, off: int) -> bool:
        spans = self.spans
        if not spans or off > spans[-1][1]:
            return False  # the usual case: beyond everything held
        return any(lo <= off <= hi for lo, hi in spans)

    def add(self, lo: int, hi: int) -> None:
        """Add [lo, hi], merging what it overlaps or touches."""
        spans = self.spans
        if not spans or lo > spans[-1][1] + 1:
            spans.append([lo, hi])
            return
        merged: list[list[int]] = []
        for a, b in sorted([*spans, [lo, hi]]):
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.spans = merged

    def update(self, other: OffsetRanges) -> None:
        for lo, hi in other.spans:
            self.add(lo, hi)

    def add_offsets(self, offsets: list[int]) -> None:
        """Add single offsets (any order), as runs of consecutive ones."""
        run_lo = run_hi = None
        for off in sorted(offsets):
            if run_hi is not None and off <= run_hi + 1:
                run_hi = max(run_hi, off)
                continue
            if run_lo is not None:
                self.add(run_lo, run_hi)
            run_lo = run_hi = off
        if run_lo is not None:
            self.add(run_lo, run_hi)

    def flat(self) -> list[int]:
        """[lo, hi, lo, hi, ...]: the encoded form."""
        return [x for span in self.spans for x in span]

    @classmethod
    def from_flat(cls, flat: list[int]) -> OffsetRanges:
        return cls([[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)])

    def copy(self) -> OffsetRanges:
        return OffsetRanges([list(s) for s in self.spans])

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __eq__(self, other) -> bool:
        return isinstance(other, OffsetRanges) and self.spans == other.spans

    __hash__ = None

    def __repr__(self) -> str:
        return f"OffsetRanges({self.spans})"
