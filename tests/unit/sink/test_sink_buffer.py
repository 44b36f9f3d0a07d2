"""The sink's hold-and-flush rules (processor.sink.buffer): one flush per tick's burst of partials."""

from __future__ import annotations

from processor.sink.buffer import Buffer


def partial(ws: int = 0) -> dict:
    return {"kind": "partial", "p": 0, "group": "flow:f", "ws": ws, "seq": 1, "final": False, "bag": {}}


def log_item() -> dict:
    return {"kind": "log", "item": {"message": "m"}}


def test_partials_are_flushed_once_their_burst_settled():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, partial(), now=100.0)
    b.add("e2", 1, partial(), now=100.3)
    assert not b.due(100.5)          # the burst may still be arriving
    assert b.due(100.3 + Buffer.SETTLE_SECONDS)


def test_logs_alone_wait_for_the_hold_time():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, log_item(), now=100.0)
    assert not b.due(105.0)
    assert b.due(110.0)


def test_packed_batches_count_their_items():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, {"kind": "batch", "items": [log_item()] * 1000}, now=100.0)
    assert b.logs == 1000 and b.due(100.0)  # a logs request's worth


def test_a_logs_request_s_worth_makes_the_agent_flush_before_reading_more():
    """A tick closing thousands of chains sends their logs at once: the agent must not hold them all."""
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, {"kind": "batch", "items": [log_item()] * 999}, now=100.0)
    assert not b.full()
    b.add("e2", 0, log_item(), now=100.0)
    assert b.full()


def test_a_failed_flush_restores_its_records_ahead_of_newer_ones():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, partial(), now=100.0)
    events, values = b.take()
    assert not b.due(200.0)
    b.add("e2", 0, partial(60_000), now=101.0)
    b.restore(events, values, not_before=103.0)
    assert b.events == ["e1", "e2"] and [v["ws"] for v in b.values[0]] == [0, 60_000]
    assert not b.due(102.0) and b.due(103.0)
