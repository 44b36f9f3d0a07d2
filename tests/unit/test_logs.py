"""Repeated warnings are throttled: one line per logger, message and interval, the next saying how many were held."""

from __future__ import annotations

import logging

from common.logs import RepeatThrottle


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.consumer.group_coordinator", args=()):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_retry_loop_gives_one_line_per_interval_with_a_count():
    clock = Clock()
    throttle = RepeatThrottle(10.0, clock)
    shown = []
    for i in range(200):  # 10 a second for 20 s, as aiokafka's heartbeat retries while Kafka is down
        clock.now = i / 10
        r = record("Heartbeat send request failed: %s. Will retry.", args=("[Error 15]",))
        if throttle.filter(r):
            shown.append(r.getMessage())
    assert shown == ["Heartbeat send request failed: [Error 15]. Will retry.",
                     "Heartbeat send request failed: [Error 15]. Will retry. [99 more like this in the last 10 s]"]


def test_info_lines_and_other_messages_are_never_held():
    throttle = RepeatThrottle(10.0, Clock())
    assert all(throttle.filter(record("fetched", logging.INFO)) for _ in range(5))
    assert throttle.filter(record("one thing"))
    assert throttle.filter(record("another thing"))
    assert throttle.filter(record("one thing", name="faust.transport"))
    assert not throttle.filter(record("one thing"))
