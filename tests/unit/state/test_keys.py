"""Keys are built and parsed in one module: what is built parses back to the same thing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.state import keys


@given(st.integers(0, 1000), st.text(min_size=1, max_size=40), st.integers(-10**13, 10**13))
def test_window_keys_round_trip_whatever_the_group_holds(p, ident, start):
    group = keys.flow_group(ident)
    k = keys.WindowKey(p, group, start)
    assert keys.parse(str(k)) == k
    assert keys.partition_of(str(k)) == p
    assert not keys.is_clock(str(k))


def test_clock_keys():
    assert str(keys.ClockKey(3)) == "3|clock" == keys.clock_key(3)
    assert keys.parse("3|clock") == keys.ClockKey(3)
    assert keys.is_clock("3|clock") and not keys.is_clock("3|flow:clock|5")


@pytest.mark.parametrize("bad", ["", "x|clock", "3", "3|", "3|flow:a|notanumber", "|flow:a|1"])
def test_other_strings_are_refused(bad):
    with pytest.raises(ValueError):
        keys.parse(bad)


def test_groups_and_their_kinds():
    assert keys.flow_group(None) == "flow:unknown" and keys.chain_group("") == "chain:unknown"
    assert keys.org_group("Acme") == "org:Acme"
    assert keys.WindowKey(0, "org:Acme", 0).kind is keys.GroupKind.ORG
    assert keys.WindowKey(0, keys.PIPELINE, 0).kind is keys.GroupKind.PIPELINE
    assert keys.outbox_key("flow:a", 60_000) == b"flow:a|60000"
