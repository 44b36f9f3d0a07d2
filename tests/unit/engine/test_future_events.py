"""Events stamped too far ahead of their receive time: judged against the receive time in the record,
they move no clock and no window, and are counted in pipeline.future_events and dead-lettered; a few minutes
ahead is an ordinary event."""

from __future__ import annotations

import orjson
import pytest

from processor.core.bag import Bag
from processor.engine import Record
from processor.engine.events import FUTURE_TOLERANCE_MS
from tests.unit.engine.test_engine import T0, Harness, W, count, ev

HOUR = 3_600_000


def pipeline_total(h: Harness, metric: str) -> float:
    return sum(count(Bag.from_dict(v["bag"]), metric) for (group, _ws), v in h.partials.items() if group == "pipeline")


def flow_windows(h: Harness) -> list[str]:
    return sorted(k for k in h.windows if "|flow:" in k or "|org:" in k)


@pytest.mark.parametrize("replay", [False, True])
def test_an_event_two_hours_ahead_moves_no_clock_and_no_window_and_is_dead_lettered(replay):
    h = Harness(replay=replay)
    h.run([h.rec(ev("FLOW_START", T0 + 5, ex="a"), received_ms=T0 + 5), h.tick(T0 + 10_000)])
    clock, windows = h.engine.clock(0).now, flow_windows(h)
    future = ev("FLOW_COMPLETE", T0 + 2 * HOUR, ex="b", duration=5, step_count=3)
    h.run([h.rec(future, received_ms=T0)])
    assert h.engine.clock(0).now == clock  # replay: the clock is event time, and stayed at T0 + 5
    assert flow_windows(h) == windows and "b" not in h.chains
    h.run([h.tick(T0 + 20_000)])
    assert [ws for group, ws in h.partials if group == "flow:f1"] == [T0]
    assert count(h.bag("flow:f1", T0), "events") == 1
    pipe = h.bag("pipeline", T0)
    assert count(pipe, "pipeline.future_events") == 1 and count(pipe, "pipeline.deadletters") == 1
    assert count(pipe, "pipeline.events_in") == 1
    [(value, reason, received)] = h.deadletters
    assert value == orjson.dumps(future) and received == T0
    assert reason == "future_timestamp: event time 7200 s ahead of its receive time (more than 600 s)"


@pytest.mark.parametrize("ahead", [5 * W, FUTURE_TOLERANCE_MS])
def test_an_event_up_to_ten_minutes_ahead_counts_normally(ahead):
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + ahead), received_ms=T0), h.tick(T0 + 1_000)])
    assert count(h.bag("flow:f1", T0 + ahead), "events") == 1
    assert h.deadletters == [] and pipeline_total(h, "pipeline.future_events") == 0
    assert count(h.bag("pipeline", T0), "pipeline.events_in") == 1


def test_a_millisecond_past_the_tolerance_is_a_future_event():
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + FUTURE_TOLERANCE_MS + 1), received_ms=T0), h.tick(T0 + 1_000)])
    assert "600.001 s ahead" in h.deadletters[0][1]
    assert count(h.bag("pipeline", T0), "pipeline.future_events") == 1


def test_the_kafka_record_time_judges_when_ingest_set_no_receive_time():
    h = Harness()
    h.run([Record(0, b"k", orjson.dumps(ev("FLOW_START", T0 + HOUR)), {}, T0), h.tick(T0 + 1_000, offset=1)])
    assert count(h.bag("pipeline", T0), "pipeline.future_events") == 1


@pytest.mark.parametrize("replay", [False, True])
def test_ordinary_events_after_a_future_one_land_in_their_windows_exactly(replay):
    """In replay a future event taken as event time would have closed every window: all 480 would be late."""
    h = Harness(replay=replay)
    h.run([h.rec(ev("FLOW_START", T0 + 2 * HOUR, ex="future"), received_ms=T0)])
    for minute in range(8):
        batch = [h.rec(ev("FLOW_START", t, ex=f"e{t}"), received_ms=t)
                 for t in range(T0 + minute * W, T0 + (minute + 1) * W, 1_000)]
        h.run([*batch, h.tick(T0 + (minute + 1) * W)])
    h.run([h.tick(T0 + 8 * W + 300_000)])  # live: closes every window
    assert {ws: count(h.bag("flow:f1", ws), "events") for group, ws in h.partials if group == "flow:f1"} == {
        T0 + m * W: 60 for m in range(8)}
    assert pipeline_total(h, "pipeline.events_in") == 480
    assert pipeline_total(h, "pipeline.late_events") == 0
    assert pipeline_total(h, "pipeline.future_events") == 1
    if not replay:
        assert all(v["final"] for (group, _ws), v in h.partials.items() if group == "flow:f1")
