"""The engine (one partition's dedup -> correlate -> aggregate -> emit) with dict stores: pure and fast.

Covers window assignment and closing by ticks, late events, duplicates, re-processing after a crash (state
ahead of the committed offset), chain closing and its window, replay-mode clocks, and tombstoning.
"""

from __future__ import annotations

import orjson

from els.traffic import iso
from processor.core.bag import Bag
from processor.core.windows import month_start
from processor.engine import TICK_KEY, Engine, Record, Settings
from processor.state.records import WindowRecord, decode_chain

W = 60_000
T0 = 1_790_000_000_000 - (1_790_000_000_000 % W)  # a window boundary


def settings(**kw) -> Settings:
    base = dict(window_ms=W, lateness_ms=300_000, quiet_ms=30_000, timeout_ms=3_600_000,
                logs=frozenset({"failures", "chains"}))
    base.update(kw)
    return Settings(**base)


def ev(kind: str, ts: int, ex: str = "ex-1", root: str | None = None, flow: str = "f1", ik: str | None = None,
       **extra) -> dict:
    e = {"event_type": kind, "execution_id": ex, "timestamp": iso(ts), "flow_id": flow, "flow_name": f"Flow {flow}",
         "org_name": "org", "idempotency_key": ik or f"{kind}-{ex}-{ts}"}
    if root:
        e.update(root_execution_id=root, root_flow_id="f1", root_flow_name="Flow f1", parent_execution_id=root,
                 parent_flow_id="f1", parent_flow_name="Flow f1")
    e.update(extra)
    return e


class Harness:
    """An engine over dict stores that applies its own writes, like the Faust agent does."""

    def __init__(self, s: Settings | None = None, **kw):
        self.chains: dict = {}
        self.windows: dict = {}
        self.engine = Engine(s or settings(**kw), self.chains, self.windows)
        self.offset = 0
        self.partials: dict = {}
        self.logs: list = []
        self.deadletters: list = []

    def rec(self, value: dict | bytes, received_ms: int | None = None, offset: int | None = None) -> Record:
        if offset is None:
            offset = self.offset
            self.offset += 1
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return Record(offset, b"k", raw, {"received_at": str(received_ms or T0).encode()}, received_ms or T0)

    def tick(self, at_ms: int, offset: int | None = None) -> Record:
        if offset is None:
            offset = self.offset
            self.offset += 1
        return Record(offset, TICK_KEY, orjson.dumps({"tick": at_ms}), {"els-kind": b"tick"}, at_ms)

    def run(self, records: list[Record], apply: bool = True, live=None):
        out, writes = self.engine.step(0, records, live)
        if apply and writes is not None:
            writes.apply_to(self.chains, self.windows)
        for _key, value in out.partials:
            self.partials[(value["group"], value["ws"])] = value
        self.logs += [v["item"] for _, v in out.logs]
        self.deadletters += out.deadletters
        return out

    def bag(self, group: str, ws: int) -> Bag:
        return Bag.from_dict(self.partials[(group, ws)]["bag"])


def count(bag: Bag, metric: str) -> float:
    return sum(v for k, v in bag.counters.items() if k.partition("|")[0] == metric)


def test_events_land_in_their_event_time_window_and_emit_on_tick():
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + 5)), h.rec(ev("FLOW_COMPLETE", T0 + W + 5, duration=10, step_count=3))])
    assert h.partials == {}  # nothing is emitted before a tick
    h.run([h.tick(T0 + W + 10)])
    assert count(h.bag("flow:f1", T0), "events") == 1
    assert count(h.bag("flow:f1", T0 + W), "events") == 1
    assert not h.partials[("flow:f1", T0)]["final"]


def test_window_closes_after_lateness_by_the_clock_with_a_final_emission_even_without_events():
    h = Harness(lateness_ms=10_000)
    h.run([h.rec(ev("FLOW_START", T0 + 5)), h.tick(T0 + 1000)])
    h.partials.clear()
    h.run([h.tick(T0 + W + 9_000)])
    assert h.partials == {}  # open, not dirty: nothing new to say
    h.run([h.tick(T0 + W + 10_000)])
    final = h.partials[("flow:f1", T0)]
    assert final["final"] and count(Bag.from_dict(final["bag"]), "events") == 1


def test_late_events_are_counted_not_dropped_silently(caplog):
    h = Harness(lateness_ms=10_000)
    h.run([h.tick(T0 + 10 * W)])
    with caplog.at_level("INFO"):
        h.run([h.rec(ev("FLOW_START", T0 + 5), received_ms=T0 + 10 * W), h.tick(T0 + 10 * W + 1)])
    assert ("flow:f1", T0) not in h.partials
    assert count(h.bag("pipeline", T0 + 10 * W), "pipeline.late_events") == 1
    # the message itself names the flow and the execution: Faust's log format drops `extra`
    [line] = [r.getMessage() for r in caplog.records if "late event" in r.getMessage()]
    assert "flow f1 (" in line and "execution ex-1" in line


def test_duplicates_count_once_and_are_reported():
    h = Harness()
    e = ev("FLOW_START", T0 + 5)
    h.run([h.rec(e), h.rec(e)])
    h.run([h.rec(e), h.tick(T0 + 1000)])
    assert count(h.bag("flow:f1", T0), "events") == 1
    assert count(h.bag("pipeline", T0), "pipeline.duplicates") == 2


def test_reprocessing_after_a_crash_applies_nothing_twice():
    """State was written, offsets were not committed: the same records come again and change nothing."""
    h = Harness()
    batch = [h.rec(ev("FLOW_START", T0 + 5, ex=f"e{i}", ik=f"k{i}")) for i in range(5)]
    h.run(batch)
    h.run(batch)  # same offsets again
    h.run([h.tick(T0 + 1000)])
    assert count(h.bag("flow:f1", T0), "events") == 5
    assert count(h.bag("pipeline", T0), "pipeline.duplicates") == 0


def test_reprocessing_when_only_part_of_the_state_was_written():
    h = Harness()
    batch = [h.rec(ev("FLOW_START", T0 + 5, ex=f"e{i}", ik=f"k{i}")) for i in range(5)]
    _out, writes = h.engine.step(0, batch)
    h.chains.update(writes.chains)  # the chain records made it to the changelog, the windows did not
    h.engine.forget_partition(0)
    h.run(batch)
    h.run([h.tick(T0 + 1000)])
    assert count(h.bag("flow:f1", T0), "events") == 5


def test_chain_closes_after_quiet_period_into_the_window_of_its_end():
    h = Harness()
    root = "root-1"
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex=root)),
           h.rec(ev("FLOW_START", T0 + 2, ex="h1", root=root, flow="h")),
           h.rec(ev("FLOW_FAIL", T0 + 3, ex="h1", root=root, flow="h", error_type="E", error_message="boom")),
           h.rec(ev("FLOW_COMPLETE", T0 + 4, ex=root, duration=3, step_count=2))])
    h.run([h.tick(T0 + 20_000)])
    assert ("chain:f1", T0) not in h.partials  # quiet period not over
    h.run([h.tick(T0 + 31_000)])
    bag = h.bag("chain:f1", T0)
    assert bag.counters and count(bag, "chains") == 1
    assert any("had_failures:true" in k and "status:completed" in k for k in bag.counters)
    failure = [log for log in h.logs if log.get("event_type") == "FLOW_FAIL"][0]
    assert failure["status"] == "error" and failure["chain"]["path"][-1] == "Flow h"
    chain = [log for log in h.logs if "chain" in log and "status" in log["chain"]][0]
    assert chain["chain"]["status"] == "completed" and chain["chain"]["had_failures"] is True
    assert decode_chain(root, h.chains[root]).closed  # a closed marker stays for late duplicates


def test_closed_chain_markers_are_tombstoned_after_lateness():
    h = Harness(lateness_ms=60_000)
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r")), h.rec(ev("FLOW_COMPLETE", T0 + 2, ex="r"))])
    h.run([h.tick(T0 + 40_000)])
    assert "r" in h.chains
    h.run([h.tick(T0 + 40_000 + 60_000)])
    assert "r" not in h.chains


def test_invalid_events_are_dead_lettered_and_counted():
    h = Harness()
    h.run([h.rec(b"{not json"), h.rec({"event_type": "FLOW_START", "execution_id": "x", "timestamp": "nope"}),
           h.tick(T0 + 1)])
    assert len(h.deadletters) == 2
    assert count(h.bag("pipeline", T0), "pipeline.deadletters") == 2


def test_replay_closes_windows_by_event_time():
    h = Harness(replay=True, lateness_ms=60_000)
    h.run([h.rec(ev("FLOW_START", T0 + 5, ex="a"))])
    h.run([h.rec(ev("FLOW_START", T0 + 3 * W, ex="b"))])
    assert h.partials[("flow:f1", T0)]["final"]


def test_replay_counts_a_chain_whose_quiet_time_the_clock_jumped_over():
    """In replay the clock is event time: after a quiet hour the next event moves it far past the chain's quiet
    period and its window's lateness. The chain closes as of when it became due, so it lands in its window."""
    h = Harness(replay=True, lateness_ms=60_000)
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r")), h.rec(ev("FLOW_COMPLETE", T0 + 2, ex="r", duration=1))])
    h.run([h.rec(ev("FLOW_START", T0 + 3_600_000, ex="later"), received_ms=T0 + 3_600_000)])
    assert count(h.bag("chain:f1", T0), "chains") == 1
    assert h.partials[("chain:f1", T0)]["final"]


def test_a_chain_timed_out_after_its_window_closed_counts_in_the_window_of_its_time_out():
    """Live, a chain that times out long after its last end: its end's window closed and went (the lateness
    passed before the chain was due), so it counts in the window of its time-out, not in a new record of the
    old window whose partial would replace that window's full value."""
    h = Harness(lateness_ms=60_000, timeout_ms=600_000)
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r")), h.rec(ev("FLOW_START", T0 + 2, ex="h", root="r", flow="h")),
           h.rec(ev("FLOW_COMPLETE", T0 + 3, ex="r"))])  # the helper never ends: the chain times out
    for minute in range(1, 11):  # due at T0 + 10 min (its marker goes a lateness later)
        h.run([h.tick(T0 + minute * W)])
    assert decode_chain("r", h.chains["r"]).closed["status"] == "timed_out"
    assert ("chain:f1", T0) not in h.partials and f"0|chain:f1|{T0}" not in h.windows
    assert count(h.bag("chain:f1", T0 + 10 * W), "chains") == 1


def test_state_stays_bounded():
    """After windows and chains closed and their retention passed, only the clock remains, and the org's month
    (one record per org and calendar month, kept until the month closes)."""
    h = Harness(lateness_ms=10_000)
    for i in range(50):
        h.run([h.rec(ev("FLOW_START", T0 + i, ex=f"r{i}")), h.rec(ev("FLOW_COMPLETE", T0 + i + 1, ex=f"r{i}"))])
    h.run([h.tick(T0 + 100_000)])
    h.run([h.tick(T0 + 10 * W)])
    assert h.chains == {}
    assert sorted(h.windows) == ["0|clock", f"0|org:org|{month_start(T0)}"]


def test_out_of_order_redelivery_after_a_seek_counts_everything_once():
    """A consumer may hand over later records first and then, after seeking back, the earlier ones."""
    h = Harness()
    batch = [h.rec(ev("FLOW_START", T0 + 5, ex=f"e{i}", ik=f"k{i}")) for i in range(10)]
    h.run(batch[5:])
    h.run(batch[:5])
    h.run(batch)  # and everything once more
    h.run([h.tick(T0 + 1000)])
    assert count(h.bag("flow:f1", T0), "events") == 10
    assert count(h.bag("pipeline", T0), "pipeline.duplicates") == 0


def test_a_chain_is_visible_as_processed_before_its_transaction_is_flushed():
    """The chain view reads through the open transaction: a chain seen a moment ago is there before the next
    flush writes it to the table."""
    h = Harness()
    h.engine.process(0, [h.rec(ev("FLOW_START", T0 + 1, ex="r"))])
    assert "r" not in h.chains
    assert h.engine.chain_as_processed("r").root == "r"
    assert h.engine.chain_as_processed("nobody") is None


def test_a_transaction_over_many_batches_equals_flushing_every_batch():
    """The worker flushes when due (ticks, size, age): the outputs and the state are those of flushing always."""
    batches = []
    h1 = Harness()
    for i in range(12):
        b = [h1.rec(ev("FLOW_START", T0 + i * 7_000, ex=f"r{i}")),
             h1.rec(ev("FLOW_COMPLETE", T0 + i * 7_000 + 5, ex=f"r{i}", duration=5, step_count=1))]
        if i % 4 == 3:
            b.append(h1.tick(T0 + i * 9_000))
        batches.append(b)
    for b in batches:
        h1.run(b)
    h2 = Harness()
    outs = [h2.engine.process(0, b) for b in batches]
    writes = h2.engine.flush(0)
    for store, w in ((h2.chains, writes.chains), (h2.windows, writes.windows)):
        store.update({k: v for k, v in w.items() if v is not None})
    latest = {}
    for out in outs:
        latest.update({(v["group"], v["ws"]): v for _k, v in out.partials})
    assert latest == h1.partials
    assert [v["item"] for out in outs for _k, v in out.logs] == h1.logs
    assert {k: decode_chain(k, v) for k, v in h2.chains.items()} == {k: decode_chain(k, v) for k, v in h1.chains.items()}
    bags = lambda h: {k: WindowRecord.from_bytes(v).bag for k, v in h.windows.items() if not k.endswith("clock")}  # noqa: E731
    assert bags(h2) == bags(h1)


def test_closed_windows_stay_one_window_then_go_once_their_close_is_committed():
    h = Harness(lateness_ms=10_000)
    h.run([h.rec(ev("FLOW_START", T0 + 5)), h.tick(T0 + W + 10_000)])  # closes the window at T0
    key = f"0|flow:f1|{T0}"
    assert WindowRecord.from_bytes(h.windows[key]).closed
    h.run([h.tick(T0 + 2 * W + 9_999)])
    assert key in h.windows  # kept one window after its lateness (the last closed window, for the views)
    h.run([h.tick(T0 + 2 * W + 10_000)])
    assert key not in h.windows


def test_a_close_not_yet_committed_keeps_its_marker():
    h = Harness(lateness_ms=10_000)
    h.run([h.rec(ev("FLOW_START", T0 + 5))])
    h.engine.process(0, [h.tick(T0 + W + 10_000), h.tick(T0 + 5 * W)])  # closed and past retention, one flush
    writes = h.engine.flush(0)
    assert WindowRecord.from_bytes(writes.windows[f"0|flow:f1|{T0}"]).closed  # written closed, not deleted


def test_a_chain_closing_after_its_window_is_gone_does_not_recreate_it():
    h = Harness(lateness_ms=10_000, timeout_ms=300_000)
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="root")), h.rec(ev("FLOW_START", T0 + 2, ex="h", root="root")),
           h.rec(ev("FLOW_COMPLETE", T0 + 3, ex="h", root="root"))])  # the root never ends: a timeout
    h.run([h.tick(T0 + W + 10_000)])
    h.run([h.tick(T0 + 2 * W + 10_000)])  # the chain's end window (T0) closed and is gone
    h.partials.clear()
    h.run([h.tick(T0 + 400_000)])  # timed out at T0 + 300 s, found by a tick 100 s later
    assert ("chain:f1", T0) not in h.partials and f"0|chain:f1|{T0}" not in h.windows
    assert any(log.get("chain", {}).get("status") == "timed_out" for log in h.logs)
    # the window of its time-out was still open when the chain closed: it takes it, and then closes
    timed_out = h.partials[("chain:f1", T0 + 300_000)]
    assert timed_out["final"] and count(Bag.from_dict(timed_out["bag"]), "chains") == 1


def test_the_window_key_cache_stays_bounded_over_a_long_run(monkeypatch):
    """A worker runs for days: its partition's window keys are a cache, not a record of every window seen."""
    from processor.engine import step as step_module

    monkeypatch.setattr(step_module, "KEY_CACHE_MAX", 50)
    h = Harness(lateness_ms=0)
    for i in range(200):  # 200 windows, each with a flow and the pipeline counters: 400 keys
        h.run([h.rec(ev("FLOW_START", T0 + i * W, ex=f"e{i}"), received_ms=T0 + i * W)])
    assert 0 < len(h.engine._keys[0]) <= 50
    h.run([h.tick(T0 + 201 * W)])
    assert count(h.bag("flow:f1", T0 + 199 * W), "events") == 1
