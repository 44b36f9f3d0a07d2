"""Every closed chain counts once, in a window still open when it closes, with the shipped defaults
(window 60 s, lateness 300 s, quiet 30 s, time-out 3600 s, ticks every 10 s)."""

from __future__ import annotations

from common.config import Config
from processor.core.bag import Bag
from processor.engine import settings_from
from tests.unit.engine.test_engine import T0, Harness, W, count, ev

CFG = Config.from_env({})
TICK = int(CFG.els_flush_seconds * 1000)
TIMEOUT = CFG.els_chain_timeout_seconds * 1000


def defaults() -> Harness:
    return Harness(settings_from(CFG))


def ticks(h: Harness, since: int, until: int) -> None:
    for t in range(since, until + 1, TICK):
        h.run([h.tick(t)])


def chains_by_window(h: Harness) -> dict[int, dict[str, float]]:
    """Per window of the root flow f1: the chains counted, by their tags (the latest partial of each window)."""
    out = {}
    for (group, ws), v in h.partials.items():
        counters = Bag.from_dict(v["bag"]).counters
        if group == "chain:f1" and (found := {k: n for k, n in counters.items() if k.startswith("chains|")}):
            out[ws] = found
    return out


def test_the_defaults_are_the_documented_ones():
    assert (CFG.els_window_seconds, CFG.els_lateness_seconds, CFG.els_chain_timeout_seconds) == (60, 300, 3600)


def test_a_helper_whose_root_never_arrives_times_out_and_counts_once_in_the_window_of_its_time_out():
    h = defaults()
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="h1", root="r"), received_ms=T0 + 1),
           h.rec(ev("FLOW_COMPLETE", T0 + 2, ex="h1", root="r", duration=1), received_ms=T0 + 2)])
    ticks(h, T0 + TICK, T0 + TIMEOUT + 2 * W + CFG.els_lateness_seconds * 1000)  # its window closes too
    timed_out = T0 + TIMEOUT  # last news at T0 + 2: due at T0 + 2 + 3600 s, in the window starting T0 + 3600 s
    assert chains_by_window(h) == {timed_out: {"chains|had_failures:false,status:timed_out": 1}}
    assert h.partials[("chain:f1", timed_out)]["final"]
    assert [log["chain"]["status"] for log in h.logs if "chain" in log] == ["timed_out"]


def test_a_normal_chain_still_counts_in_the_window_of_its_end():
    h = defaults()
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r"), received_ms=T0 + 1),
           h.rec(ev("FLOW_START", T0 + 2, ex="h1", root="r", flow="h"), received_ms=T0 + 2),
           h.rec(ev("FLOW_COMPLETE", T0 + 3, ex="h1", root="r", flow="h"), received_ms=T0 + 3),
           h.rec(ev("FLOW_COMPLETE", T0 + W + 4, ex="r", duration=W), received_ms=T0 + W + 4)])
    ticks(h, T0 + TICK, T0 + 8 * W)
    assert chains_by_window(h) == {T0 + W: {"chains|had_failures:false,status:completed": 1}}


def test_a_chain_whose_end_came_after_its_window_closed_counts_in_the_window_of_its_close():
    """The root's end is a late event (its window closed): the chain still closes, by quiet time, and counts in
    the window of its close rather than nowhere."""
    h = defaults()
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r"), received_ms=T0 + 1)])
    ticks(h, T0 + TICK, T0 + 400_000)  # the window at T0 closed at T0 + 360 s
    h.run([h.rec(ev("FLOW_COMPLETE", T0 + 2, ex="r", duration=1), received_ms=T0 + 400_000)])
    ticks(h, T0 + 410_000, T0 + 20 * W)
    closed = T0 + 7 * W  # last news at T0 + 400 s, quiet 30 s: closed at T0 + 430 s
    assert chains_by_window(h) == {closed: {"chains|had_failures:false,status:completed": 1}}
    assert count(h.bag("pipeline", T0 + 6 * W), "pipeline.late_events") == 1


def test_reprocessing_the_tick_that_timed_a_chain_out_counts_it_once():
    """A crash after the chain's record was written, before its window's: the tick comes again and puts the
    chain into the same window, once."""
    h = defaults()
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="h1", root="r"), received_ms=T0 + 1)])
    ticks(h, T0 + W, T0 + TIMEOUT - W)
    closing = h.tick(T0 + TIMEOUT + TICK)
    _out, writes = h.engine.step(0, [closing])
    h.chains.update(writes.chains)  # the chain record made it to the changelog, the windows did not
    h.engine.forget_partition(0)
    h.run([closing])
    h.run([closing])  # and once more, with the window written this time
    ticks(h, T0 + TIMEOUT + 2 * TICK, T0 + TIMEOUT + 8 * W)
    assert chains_by_window(h) == {T0 + TIMEOUT: {"chains|had_failures:false,status:timed_out": 1}}


def test_replay_counts_a_chain_closed_at_the_last_record_of_a_batch_once():
    """In replay the clock advances after an event and again at the end of its batch: a chain closed at the
    batch's last record is not counted a second time by the second advance."""
    h = Harness(settings_from(CFG, replay=True))
    h.run([h.rec(ev("FLOW_START", T0 + 1, ex="r"), received_ms=T0 + 1),
           h.rec(ev("FLOW_COMPLETE", T0 + 2, ex="r", duration=1), received_ms=T0 + 2)])
    h.run([h.rec(ev("FLOW_START", T0 + 45_000, ex="later"), received_ms=T0 + 45_000)])  # closes "r"
    assert chains_by_window(h) == {T0: {"chains|had_failures:false,status:completed": 1}}
