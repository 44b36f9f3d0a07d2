"""The transaction: read-your-writes over the stores, offsets a window holds are skipped, spills change nothing."""

from __future__ import annotations

import orjson
import pytest

from processor.core.bag import Bag
from processor.state import keys
from processor.state.index import PartitionIndex
from processor.state.records import WindowRecord, decode_chain
from processor.state.transaction import PartitionTransaction
from tests.unit.engine.test_engine import T0, Harness, ev

WK = keys.WindowKey(0, "flow:f1", 0)
KEY = str(WK)


def txn(chains=None, windows=None) -> PartitionTransaction:
    return PartitionTransaction(0, chains if chains is not None else {}, windows if windows is not None else {},
                                PartitionIndex(30_000, 3_600_000))


def test_reads_see_this_transactions_writes_and_deletes():
    t = txn()
    ch = t.chain("r")
    ch.last_news_ms = 5
    t.chain_changed(ch)
    assert t.chain("r") is ch
    t._spill_chains()
    assert t.chain("r").last_news_ms == 5  # decoded again from the pending write
    t.delete_chain("r")
    assert t.chain("r").last_news_ms == 0  # a new chain: the stored one is deleted in this transaction
    assert t.writes().chains == {"r": None}


def test_an_offset_the_stored_window_holds_is_skipped():
    stored = WindowRecord()
    stored.applied.add(0, 9)
    t = txn(windows={KEY: stored.to_bytes()})
    assert t.add(KEY, WK, 5, Bag.count, "events")       # held: nothing applied
    assert t.add(KEY, WK, 10, Bag.count, "events")
    t.batch_done([10])
    rec = WindowRecord.from_bytes(t.writes().windows[KEY])
    assert rec.bag.counters == {"events": 1} and rec.applied.spans == [[0, 10]]


def test_a_bag_encoded_for_a_partial_is_encoded_again_once_an_event_changed_it():
    """The encoded bag is made once for a tick's partial and the record after it, but never outlives a change."""
    t = txn()
    def sample(bag: Bag, ms: float) -> None:
        bag.sample("duration", ms)

    t.add(KEY, WK, 0, sample, 250.0)
    assert t.window(KEY, WK).bag_dict()["s"]["duration"]["n"] == 1  # what a partial would carry
    t.add(KEY, WK, 1, sample, 900.0)
    t.batch_done([0, 1])
    rec = WindowRecord.from_bytes(t.writes().windows[KEY])
    assert rec.bag.sketches["duration"].count == 2


def test_a_closed_window_takes_nothing():
    t = txn(windows={KEY: WindowRecord(closed=True).to_bytes()})
    assert not t.add(KEY, WK, 3, Bag.count, "events")


def test_writes_are_the_stores_with_the_clock_last():
    chains, windows = {}, {}
    t = txn(chains, windows)
    t.chain_changed(t.chain("r"))
    t.add(KEY, WK, 0, Bag.count, "events")
    t.clock.off = 0
    t.batch_done([0])
    w = t.writes()
    assert set(w.chains) == {"r"} and set(w.windows) == {KEY} and w.clock_key == "0|clock"
    assert decode_chain("r", w.chains["r"]).partition == 0 and orjson.loads(w.clock)[2] == 0


@pytest.mark.parametrize("limit", [1, 3])
def test_spilling_changes_nothing(monkeypatch, limit):
    """The same workload with records spilled all the time gives the same outputs and state."""

    def run() -> tuple:
        h = Harness()
        for i in range(30):
            root = f"r{i % 7}"
            h.run([h.rec(ev("FLOW_START", T0 + i, ex=root)), h.rec(ev("FLOW_START", T0 + i, ex=f"h{i}", root=root)),
                   h.rec(ev("FLOW_COMPLETE", T0 + 60_000 * (i % 3) + i, ex=f"h{i}", root=root, duration=i))])
            if i % 5 == 4:
                h.run([h.tick(T0 + 20_000 * i)])
        return h.partials, h.logs, h.chains, h.windows

    reference = run()
    monkeypatch.setattr(PartitionTransaction, "MAX_DECODED_CHAINS", limit)
    monkeypatch.setattr(PartitionTransaction, "MAX_DECODED_WINDOWS", limit)
    assert run() == reference
