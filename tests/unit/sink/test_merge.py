"""The sink's merge (processor.sink.merge): latest share per partition, the table's format, and retention by the
sink's own clock (the windows it merged), so a backlog never ages windows whose other shares are still to come."""

from __future__ import annotations

import math

from processor.core.bag import Bag
from processor.sink.merge import Merge, MergedWindow, SinkCounts, keep_after_end_ms, retries_key, window_key

W = 60_000
LATENESS = 300_000
KEEP = keep_after_end_ms(60, 300, 90)
T0 = 1_790_000_040_000 - 1_790_000_040_000 % W


def partial(p: int, seq: int, ws: int = T0, group: str = "flow:f1", n: int = 1) -> dict:
    b = Bag()
    b.count("events", n)
    return {"kind": "partial", "p": p, "group": group, "ws": ws, "seq": seq, "final": False, "bag": b.to_dict()}


def merge() -> Merge:
    return Merge({}, W, LATENESS, KEEP)


def absorb_and_keep(m: Merge, values: list[dict], op: int = 0) -> dict:
    touched, logs = m.absorb(values, op)
    m.keep(touched)
    return touched


def test_retention_follows_window_lateness_and_failover():
    assert keep_after_end_ms(60, 300, 90) == (300 + 360) * 1000  # lateness, then a window + lateness of lag
    assert keep_after_end_ms(10, 10, 9) == (10 + 20) * 1000
    assert keep_after_end_ms(10, 0, 90) == (0 + 90) * 1000       # at least a failover


def test_latest_share_of_each_partition_is_merged_and_stored_in_the_table_format():
    m = merge()
    absorb_and_keep(m, [partial(0, 5, n=3), partial(1, 7, n=4)])
    touched = absorb_and_keep(m, [{"kind": "batch", "items": [partial(0, 4, n=99), partial(0, 9, n=5)]}], op=2)
    (merged,) = touched.values()
    assert merged.bag().counters["events"] == 9 and merged.op == 2
    stored = m.table[window_key("flow:f1", T0)]
    assert set(stored) == {"group", "ws", "op", "parts"} and stored["parts"]["0"]["seq"] == 9
    assert MergedWindow.from_dict(stored) == merged
    assert SinkCounts({"pipeline.sink_retries": 3}, T0, 1).to_dict() == {
        "c": {"pipeline.sink_retries": 3}, "ws": T0, "op": 1, "group": "retries"}
    assert SinkCounts.from_dict({"n": 3, "ws": T0, "op": 1}).counts == {"pipeline.sink_retries": 3}
    assert retries_key(1, T0) == f"retries|1|{T0}"


def test_a_part_holds_its_bag_as_json_text_and_the_earlier_format_still_reads():
    m = merge()
    (merged,) = absorb_and_keep(m, [partial(0, 5, n=3)]).values()
    stored = m.table[window_key("flow:f1", T0)]
    assert isinstance(stored["parts"]["0"]["bag"], str)  # a string in memory and in the changelog
    earlier = {**stored, "parts": {"0": {"seq": 5, "bag": partial(0, 5, n=3)["bag"]}}}  # the bag as an object
    assert MergedWindow.from_dict(earlier) == merged
    assert MergedWindow.from_dict(earlier).bag().counters["events"] == 3


def test_windows_expire_by_the_sink_clock_not_the_wall_clock():
    m = merge()
    absorb_and_keep(m, [partial(0, 1)])
    hours_later = T0 + 10 * 3600_000
    assert m.expired_keys(0, hours_later) == []  # a backlog: the other partitions' shares may still come
    absorb_and_keep(m, [partial(0, 2, ws=T0 + W + KEEP - W)])
    assert m.expired_keys(0, hours_later) == []  # its end + KEEP not yet passed
    absorb_and_keep(m, [partial(0, 3, ws=T0 + W + KEEP)])
    assert m.expired_keys(0, hours_later) == [window_key("flow:f1", T0)]
    assert m.expired_keys(1, hours_later) == []  # only the outbox partition asked for


def test_each_outbox_partition_has_its_own_clock():
    """A partition read ahead (its backlog consumed first) does not age another partition's windows."""
    m = merge()
    absorb_and_keep(m, [partial(0, 1)], op=0)
    absorb_and_keep(m, [partial(0, 2, ws=T0 + 3600_000, group="pipeline")], op=1)
    assert m.expired_keys(0, T0 + 7200_000) == []


def test_a_window_far_ahead_does_not_expire_the_present():
    m = merge()
    absorb_and_keep(m, [partial(0, 1), partial(0, 2, ws=T0 + 86_400_000)])  # a skewed event clock
    assert m.expired_keys(0, T0 + W) == []


def test_org_months_are_kept_until_the_month_is_over():
    m = merge()
    month = 1_788_220_800_000  # 2026-09-01T00:00:00Z
    absorb_and_keep(m, [partial(0, 1, ws=month, group="org:acme"), partial(0, 1, ws=month + 20 * 86_400_000)])
    assert m.clocks == {0: month + 20 * 86_400_000 + W}  # org months do not move the clock
    assert window_key("org:acme", month) not in m.expired_keys(0, month + 40 * 86_400_000)


def test_take_closed_returns_what_every_partition_closed():
    m = merge()
    absorb_and_keep(m, [partial(0, 1), partial(1, 1, ws=T0 + W)])
    closed = m.take_closed(T0 + W + LATENESS)
    assert list(closed) == [window_key("flow:f1", T0)] and list(m.table) == [window_key("flow:f1", T0 + W)]
    assert list(m.take_closed(math.inf)) == [window_key("flow:f1", T0 + W)] and m.table == {}
