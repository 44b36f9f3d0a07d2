"""Offset ranges stay sorted and merged, and hold exactly the offsets added."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.state.ranges import OffsetRanges


def test_adjacent_and_overlapping_spans_merge():
    r = OffsetRanges()
    r.add(0, 9)
    r.add(10, 19)
    r.add(30, 39)
    r.add(15, 31)
    assert r.spans == [[0, 39]]
    r.add(50, 50)
    assert r.flat() == [0, 39, 50, 50] and OffsetRanges.from_flat(r.flat()) == r


@given(st.lists(st.integers(0, 200), max_size=60), st.lists(st.integers(0, 220), max_size=30))
def test_holds_exactly_what_was_added(offsets, probes):
    r = OffsetRanges()
    r.add_offsets(offsets)
    for off in set(probes) | set(offsets):
        assert r.holds(off) == (off in set(offsets))
    spans = r.spans
    assert all(a[1] + 1 < b[0] for a, b in zip(spans, spans[1:], strict=False))  # disjoint, not adjacent


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), max_size=20))
def test_update_is_the_union(pairs):
    a, b, want = OffsetRanges(), OffsetRanges(), set()
    for i, (lo, n) in enumerate(pairs):
        (a if i % 2 else b).add(lo, lo + n)
        want |= set(range(lo, lo + n + 1))
    a.update(b)
    assert {o for lo, hi in a.spans for o in range(lo, hi + 1)} == want
