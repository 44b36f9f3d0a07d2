"""State records: exact round trips, the earlier (JSON object) format still read, compact sizes."""

from __future__ import annotations

import orjson
import pytest

from processor.core.bag import Bag
from processor.core.chains import Chain
from processor.jsonbytes import dumps
from processor.state import keys
from processor.state.ranges import OffsetRanges
from processor.state.records import (
    Clock,
    WindowRecord,
    decode_chain,
    encode_chain,
    window_flags,
    window_view,
)


def bag() -> Bag:
    b = Bag()
    for i in range(200):
        b.count("events", event_type=("flow_start", "flow_complete", "flow_fail")[i % 3])
        b.sample("duration", 10.0 + i * 37.5)
    b.label("flow_id", "f1", 5)
    b.label("flow_name", "Flow one", 5)
    return b


def test_window_record_round_trip_and_flags():
    rec = WindowRecord(bag(), OffsetRanges([[0, 99], [150, 199]]), closed=True, dirty=False, closed_off=200)
    data = rec.to_bytes()
    back = WindowRecord.from_bytes(data)
    assert back == rec
    assert window_flags(data).closed and window_flags(data).closed_off == 200
    view = window_view(keys.WindowKey(3, "flow:f1", 60_000), data)
    assert view["group"] == "flow:f1" and view["ws"] == 60_000 and Bag.from_dict(view["bag"]) == rec.bag


def test_window_record_is_compact():
    assert len(WindowRecord(bag(), OffsetRanges([[0, 10_000]])).to_bytes()) < 2048


def test_earlier_window_and_clock_formats_are_read():
    old = {"bag": bag().to_dict(), "applied": [[0, 5]], "closed": True, "dirty": False, "emitted_ms": 0,
           "group": "flow:f1", "ws": 0}
    rec = WindowRecord.from_bytes(orjson.dumps(old))
    assert rec.bag == bag() and rec.applied.spans == [[0, 5]] and rec.closed and rec.closed_off is None
    assert Clock.from_bytes(orjson.dumps({"now": 7, "off": 9})) == Clock(7, 9)


def test_clock_round_trip():
    assert Clock.from_bytes(Clock(123, 45).to_bytes()) == Clock(123, 45)
    assert Clock.from_bytes(None) == Clock(0, -1)


def test_chain_round_trip_keeps_the_partition():
    ch = Chain("root-1", 5)
    ch.seen = {"k1": 3}
    ch.execs = {"root-1": ["f", "F", None, None, 1, 2, "completed", None, None, None]}
    data = encode_chain(ch)
    assert decode_chain("root-1", data) == ch and decode_chain("root-1", data).partition == 5


def test_dumps_gives_exact_size_bytes():
    value = {"a": "x" * 3000}
    assert dumps(value) == orjson.dumps(value)


def closed_chain(failed: bool) -> Chain:
    """A chain closed by processor/core/chains.py's own `close`, with a helper that failed or not."""
    from processor.core import chains

    ch = Chain("root-1", 2)
    ch.root_flow = ["100", "Root"]
    status = "failed" if failed else "completed"
    err = ["E_TYPE", "E42", "boom"] if failed else [None, None, None]
    ch.execs = {"root-1": ["100", "Root", None, None, 10, 50, status, None, None, None],
                "h-1": ["200", "Helper", "root-1", "Root", 20, 40, status, *err]}
    chains.close(ch, status, 99)
    return ch


@pytest.mark.parametrize("failed", [False, True])
def test_a_closed_chain_round_trips_with_its_summary_stored_without_its_names(failed):
    ch = closed_chain(failed)
    data = encode_chain(ch)
    back = decode_chain("root-1", data)
    assert back == ch and list(back.closed) == list(ch.closed)  # same values, same key order
    assert (back.closed["error"] == {"type": "E_TYPE", "code": "E42", "message": "boom"}) is failed
    assert b'"had_failures"' not in data and b'"root_execution_id"' not in data


def test_a_closed_chain_of_the_earlier_format_still_reads():
    ch = closed_chain(True)
    earlier = orjson.dumps([1, ch.partition, ch.last_news_ms, ch.first_ms, ch.root_flow, ch.seen, ch.execs,
                            ch.closed_ms, ch.closed_off, ch.closed])
    assert decode_chain("root-1", earlier) == ch
