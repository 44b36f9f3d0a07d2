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
    assert b.logs == 1000 and b.logs_full()  # a logs request's worth


def test_a_logs_request_s_worth_makes_the_agent_send_logs_before_reading_more():
    """A tick closing thousands of chains sends their logs at once: the agent must not hold them all."""
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, {"kind": "batch", "items": [log_item()] * 999}, now=100.0)
    assert not b.logs_full()
    b.add("e2", 0, log_item(), now=100.0)
    assert b.logs_full() and not b.full()


def test_after_a_logs_only_flush_the_owed_series_are_due_when_the_burst_would_have_been():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, partial(), now=100.0)
    b.add("e2", 0, {"kind": "batch", "items": [log_item()] * 1000}, now=100.2)
    events, _ = b.take_for_logs()
    assert events == ["e1", "e2"] and b.events == [] and b.logs == 0
    assert not b.due(100.3)                          # the burst of partials may still be arriving
    assert b.due(100.0 + Buffer.SETTLE_SECONDS)      # settled: the owed series are due, with nothing held
    b.add("e3", 1, partial(), now=100.4)             # it was not: a later partial of the same burst
    assert not b.due(100.6) and b.due(100.4 + Buffer.SETTLE_SECONDS)
    b.take()
    assert b.owed_since is None and not b.due(200.0)


def test_owed_series_wait_at_most_the_hold_time_while_partials_keep_coming():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, {"kind": "batch", "items": [partial()] + [log_item()] * 1000}, now=100.0)
    b.take_for_logs()
    for i in range(1, 25):  # a partial every 0.4 s: never settled
        b.add("e", 0, partial(), now=100.0 + i * 0.4)
        assert not b.due(100.0 + i * 0.4)
    b.add("e", 0, partial(), now=110.0)
    assert b.due(110.0)  # ELS_FLUSH_SECONDS after the first owed record


def test_a_failed_flush_of_owed_series_alone_stays_due():
    b = Buffer(hold_seconds=10)
    events, values = b.take()
    b.restore(events, values, not_before=103.0, owed=True)
    assert not b.due(102.0) and b.due(103.0)


def test_a_failed_flush_restores_its_records_ahead_of_newer_ones():
    b = Buffer(hold_seconds=10)
    b.add("e1", 0, partial(), now=100.0)
    events, values = b.take()
    assert not b.due(200.0)
    b.add("e2", 0, partial(60_000), now=101.0)
    b.restore(events, values, not_before=103.0)
    assert b.events == ["e1", "e2"] and [v["ws"] for v in b.values[0]] == [0, 60_000]
    assert not b.due(102.0) and b.due(103.0)
