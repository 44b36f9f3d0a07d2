"""processor.core.chains: closing rules, dedup by offset, paths through unseen parents, order independence."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.chains import GAP, Chain, Verdict, apply, close, close_due, due_ms, path_to
from processor.core.model import FlowEvent, parse_event
from processor.state.records import decode_chain, encode_chain

T0 = 1_712_255_438_000
QUIET = 30_000
TIMEOUT = 3_600_000
ROOT = "root-ex"
_keys = itertools.count()


def ev(kind: str, ex: str, t: int, *, parent: str | None = None, parent_name: str | None = None,
       flow: str | None = None, root: str = ROOT, key: str | None = None, **extra) -> FlowEvent:
    """One event of the chain `root`; the flow is named after the execution unless `flow` says otherwise."""
    raw = {"event_type": kind, "execution_id": ex, "timestamp": T0 + t,
           "idempotency_key": key or f"k{next(_keys)}", "flow_name": flow or f"F:{ex}", "flow_id": f"id:{ex}"}
    if ex != root:
        raw |= {"root_execution_id": root, "root_flow_id": f"id:{root}"}
    if parent:
        raw |= {"parent_execution_id": parent, "parent_flow_name": parent_name}
    return parse_event(orjson.dumps({k: v for k, v in (raw | extra).items() if v is not None}))


def run(events: list[FlowEvent], root: str = ROOT, now: int = T0) -> Chain:
    """Apply events at offsets 0.. with the clock at `now` (then +1 ms per event)."""
    ch = Chain(root, 3)
    for off, e in enumerate(events):
        assert apply(ch, e, off, now + off) is Verdict.NEW
    return ch


def due(ch: Chain, after_ms: int) -> str | None:
    return close_due(ch, ch.last_news_ms + after_ms, QUIET, TIMEOUT)


def simple_chain() -> list[FlowEvent]:
    """root calls helper A (which calls B) and ends after them; all completed."""
    return [
        ev("FLOW_START", ROOT, 0),
        ev("FLOW_START", "a", 10, parent=ROOT, parent_name="F:root-ex"),
        ev("FLOW_START", "b", 20, parent="a", parent_name="F:a"),
        ev("FLOW_COMPLETE", "b", 30, parent="a", parent_name="F:a", duration=10, step_count=2),
        ev("FLOW_COMPLETE", "a", 40, parent=ROOT, parent_name="F:root-ex", duration=30),
        ev("FLOW_COMPLETE", ROOT, 50, duration=50, step_count=7),
    ]


# -- the basic lifecycle ------------------------------------------------------------------------------------------
def test_in_order_chain_closes_completed_after_quiet():
    ch = run(simple_chain())
    assert due(ch, 0) is None
    assert due(ch, QUIET - 1) is None
    assert due(ch, QUIET) == "completed"
    s = close(ch, "completed", ch.last_news_ms + QUIET)
    assert s == {
        "root_execution_id": ROOT, "root_flow_id": "id:root-ex", "root_flow_name": "F:root-ex",
        "status": "completed", "had_failures": False, "duration_ms": 50, "start_ms": T0, "end_ms": T0 + 50,
        "executions": 3, "helper_flows": ["F:a", "F:b"], "failing_flow": None, "error": None, "path": None,
    }
    assert ch.closed == s and ch.closed_ms == ch.last_news_ms + QUIET
    assert close_due(ch, ch.last_news_ms + TIMEOUT * 2, QUIET, TIMEOUT) is None  # closed stays closed


@pytest.mark.parametrize("seed", range(20))
def test_out_of_order_gives_the_same_summary(seed):
    events = simple_chain()
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    a, b = run(events), run(shuffled)
    assert a.execs == b.execs and a.root_flow == b.root_flow and a.first_ms == b.first_ms
    assert due(a, QUIET) == due(b, QUIET) == "completed"
    assert close(a, "completed", 1) == close(b, "completed", 1)


def test_end_before_start():
    ch = run([ev("FLOW_COMPLETE", ROOT, 100), ev("FLOW_START", ROOT, 0)])
    assert due(ch, QUIET) == "completed"
    assert close(ch, "completed", 0)["duration_ms"] == 100


def test_end_without_start_counts_as_ended_and_duration_from_earliest_event():
    ch = run([ev("FLOW_PAUSE", ROOT, 5), ev("FLOW_COMPLETE", ROOT, 100)])
    assert due(ch, QUIET) == "completed"
    s = close(ch, "completed", 0)
    assert (s["start_ms"], s["end_ms"], s["duration_ms"], s["executions"]) == (T0 + 5, T0 + 100, 95, 1)


def test_nothing_ended_gives_no_duration():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_START", "a", 3, parent=ROOT)])
    assert due(ch, QUIET) is None
    assert due(ch, TIMEOUT) == "timed_out"
    s = close(ch, "timed_out", 0)
    assert s["duration_ms"] is None and s["end_ms"] is None and s["start_ms"] == T0 and s["status"] == "timed_out"


@pytest.mark.parametrize("kind", ["FLOW_THROTTLE", "FLOW_PAUSE", "FLOW_RATE_LIMIT", "FLOW_SOMETHING_NEW"])
def test_other_types_are_news_but_end_nothing(kind):
    ch = run([ev("FLOW_START", ROOT, 0)])
    news = ch.last_news_ms
    assert apply(ch, ev(kind, ROOT, 5), 1, news + 10_000) is Verdict.NEW
    assert ch.last_news_ms == news + 10_000
    assert due(ch, QUIET) is None and due(ch, TIMEOUT) == "timed_out"


# -- duplicates -----------------------------------------------------------------------------------------------
def test_duplicate_and_replayed():
    ch = Chain(ROOT, 0)
    e = ev("FLOW_START", ROOT, 0, key="same")
    assert apply(ch, e, 5, T0) is Verdict.NEW
    before = ch.to_dict()
    assert apply(ch, e, 5, T0 + 999) is Verdict.REPLAYED  # re-processing offset 5 after a crash: nothing changes
    assert ch.to_dict() == before
    assert apply(ch, ev("FLOW_START", ROOT, 0, key="same"), 9, T0 + 999) is Verdict.DUPLICATE
    assert ch.to_dict() == before  # a duplicate is no news either
    assert ch.seen == {"same": 5}


def test_duplicate_with_different_content_is_ignored():
    ch = run([ev("FLOW_COMPLETE", ROOT, 10, key="k")])
    assert apply(ch, ev("FLOW_FAIL", ROOT, 20, key="k"), 7, T0) is Verdict.DUPLICATE
    assert close(ch, due(ch, QUIET), 0)["status"] == "completed"


# -- closing rules --------------------------------------------------------------------------------------------
def test_async_helper_ending_after_root_keeps_chain_open():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_START", "async", 5, parent=ROOT),
              ev("FLOW_COMPLETE", ROOT, 10)])
    assert due(ch, QUIET) is None  # the root ended, the helper still runs
    assert due(ch, QUIET * 10) is None
    t = ch.last_news_ms + 20_000
    assert apply(ch, ev("FLOW_COMPLETE", "async", 25_000, parent=ROOT), 3, t) is Verdict.NEW
    assert ch.last_news_ms == t
    assert close_due(ch, t + QUIET - 1, QUIET, TIMEOUT) is None  # quiet not yet elapsed
    assert close_due(ch, t + QUIET, QUIET, TIMEOUT) == "completed"
    s = close(ch, "completed", t + QUIET)
    assert s["end_ms"] == T0 + 25_000 and s["duration_ms"] == 25_000  # the last end, not the root's


def test_news_restarts_the_quiet_period():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_COMPLETE", ROOT, 10)])
    t = ch.last_news_ms + QUIET - 1
    apply(ch, ev("FLOW_THROTTLE", ROOT, 11), 2, t)
    assert close_due(ch, t + QUIET - 1, QUIET, TIMEOUT) is None
    assert close_due(ch, t + QUIET, QUIET, TIMEOUT) == "completed"


def test_news_clock_never_goes_back():
    ch = run([ev("FLOW_START", ROOT, 0)], now=T0 + 1000)
    apply(ch, ev("FLOW_COMPLETE", ROOT, 5), 1, T0)
    assert ch.last_news_ms == T0 + 1000


def test_timeout_with_root_never_ended():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_START", "a", 1, parent=ROOT), ev("FLOW_COMPLETE", "a", 2)])
    assert due(ch, TIMEOUT - 1) is None
    assert due(ch, TIMEOUT) == "timed_out"


def test_timeout_with_root_never_seen():
    ch = run([ev("FLOW_START", "a", 1, parent=ROOT), ev("FLOW_COMPLETE", "a", 2, parent=ROOT)])
    assert due(ch, QUIET) is None
    assert due(ch, TIMEOUT) == "timed_out"
    s = close(ch, "timed_out", 0)
    assert s["root_flow_id"] == f"id:{ROOT}"  # from the helper's root_flow_id
    assert s["root_flow_name"] is None and s["helper_flows"] == ["F:a"] and s["executions"] == 1


def test_timeout_with_helper_never_ended_after_root_ended():
    ch = run([ev("FLOW_COMPLETE", ROOT, 10), ev("FLOW_START", "a", 1, parent=ROOT)])
    assert due(ch, TIMEOUT - 1) is None
    assert due(ch, TIMEOUT) == "timed_out"


def test_ended_chain_is_not_timed_out_when_the_clock_jumps():
    ch = run(simple_chain())
    assert due(ch, TIMEOUT * 5) == "completed"


def test_failure_in_helper_handled_by_completed_root():
    events = [
        ev("FLOW_START", ROOT, 0, flow="Root"),
        ev("FLOW_START", "h", 10, parent=ROOT, parent_name="Root", flow="Helper"),
        ev("FLOW_FAIL", "h", 20, parent=ROOT, parent_name="Root", flow="Helper", error_type="Timeout",
           error_code="E1", error_message="took too long", fatal="TRUE"),
        ev("FLOW_COMPLETE", ROOT, 30, flow="Root"),
    ]
    ch = run(events)
    assert due(ch, QUIET) == "completed"
    s = close(ch, "completed", 0)
    assert s["status"] == "completed" and s["had_failures"] is True
    assert s["failing_flow"] == {"flow_name": "Helper", "flow_id": "id:h", "execution_id": "h"}
    assert s["error"] == {"type": "Timeout", "code": "E1", "message": "took too long"}
    assert s["path"] == ["Root", "Helper"]


def test_failed_root():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_FAIL", ROOT, 9, error_message="bad")])
    assert due(ch, QUIET) == "failed"
    s = close(ch, "failed", 0)
    assert s["had_failures"] and s["path"] == ["F:root-ex"] and s["error"]["message"] == "bad"


def test_canceled_root():
    ch = run([ev("FLOW_START", ROOT, 0), ev("FLOW_START", "a", 1, parent=ROOT),
              ev("FLOW_CANCEL", "a", 2, parent=ROOT), ev("FLOW_CANCELLED", ROOT, 3)])
    assert due(ch, QUIET) == "canceled"
    s = close(ch, "canceled", 0)
    assert s["had_failures"] is False and s["failing_flow"] is None and s["duration_ms"] == 3


def test_first_failure_by_time_is_the_failing_flow():
    ch = run([ev("FLOW_FAIL", "late", 50, parent=ROOT, error_message="second"),
              ev("FLOW_FAIL", "early", 20, parent=ROOT, error_message="first"),
              ev("FLOW_FAIL", ROOT, 60)])
    s = close(ch, due(ch, QUIET), 0)
    assert s["failing_flow"]["execution_id"] == "early" and s["error"]["message"] == "first"
    assert s["status"] == "failed"


def test_two_ends_of_one_execution_latest_wins_in_any_order():
    fail = ev("FLOW_FAIL", ROOT, 10, error_message="x")
    done = ev("FLOW_COMPLETE", ROOT, 20)
    for order in ([fail, done], [done, fail]):
        ch = run(order)
        assert due(ch, QUIET) == "completed"
        s = close(ch, "completed", 0)
        assert s["had_failures"] is False and s["error"] is None
    same_t = [ev("FLOW_COMPLETE", ROOT, 10), ev("FLOW_FAIL", ROOT, 10)]
    assert due(run(same_t), QUIET) == due(run(same_t[::-1]), QUIET) == "failed"


# -- paths -----------------------------------------------------------------------------------------------------
def test_path_through_seen_parents():
    ch = run(simple_chain())
    assert path_to(ch, "b") == ["F:root-ex", "F:a", "F:b"]
    assert path_to(ch, ROOT) == ["F:root-ex"]


def test_orphan_helper_whose_parent_was_never_seen():
    # the documentation's helper example: its parent and its root appear nowhere
    ch = run([ev("FLOW_START", "h", 0, parent="p", parent_name="Flow 1: API Invoke Flow", flow="Helper"),
              ev("FLOW_FAIL", "h", 5, parent="p", parent_name="Flow 1: API Invoke Flow", flow="Helper")])
    # the root is known only by the helper's root_flow_id
    assert path_to(ch, "h") == [f"id:{ROOT}", GAP, "Flow 1: API Invoke Flow", "Helper"]
    apply(ch, ev("FLOW_START", ROOT, -5, flow="Root"), 9, T0)
    assert path_to(ch, "h") == ["Root", GAP, "Flow 1: API Invoke Flow", "Helper"]
    s = close(ch, "timed_out", 0)
    assert s["path"] == ["Root", GAP, "Flow 1: API Invoke Flow", "Helper"] and s["had_failures"]


def test_path_root_known_by_helpers_root_flow_name():
    ch = run([ev("FLOW_FAIL", "h", 5, parent="p", parent_name="Parent", root_flow_name="The Root")])
    assert path_to(ch, "h") == ["The Root", GAP, "Parent", "F:h"]


def test_path_unseen_parent_that_is_the_root():
    ch = run([ev("FLOW_FAIL", "h", 5, parent=ROOT, parent_name="Root by child")])
    assert path_to(ch, "h") == ["Root by child", "F:h"]


def test_path_unknown_names_become_ids():
    raw = {"event_type": "FLOW_FAIL", "execution_id": "h", "root_execution_id": ROOT, "parent_execution_id": "p",
           "timestamp": T0, "idempotency_key": "x"}
    ch = run([parse_event(raw)])
    assert path_to(ch, "h") == [ROOT, GAP, "p", "h"]


def test_path_helper_without_parent_link():
    ch = run([ev("FLOW_START", ROOT, 0, flow="Root"), ev("FLOW_FAIL", "h", 5)])
    assert path_to(ch, "h") == ["Root", GAP, "F:h"]


def test_path_of_unknown_execution():
    ch = run([ev("FLOW_START", ROOT, 0, flow="Root")])
    assert path_to(ch, "nope") == ["Root", GAP, "nope"]


def test_path_guards_against_cycles():
    ch = run([ev("FLOW_START", "a", 0, parent="b"), ev("FLOW_START", "b", 1, parent="a"),
              ev("FLOW_START", "c", 2, parent="c"), ev("FLOW_START", ROOT, 0, flow="Root")])
    assert path_to(ch, "a") == ["Root", GAP, "F:b", "F:a"]
    assert path_to(ch, "c") == ["Root", GAP, "F:c"]  # self-parent links are ignored


# -- after the close -----------------------------------------------------------------------------------------
def test_late_event_after_close_then_its_duplicate():
    ch = run(simple_chain())
    s = dict(close(ch, "completed", T0 + 100_000))
    late = ev("FLOW_FAIL", "z", 500, parent="a", parent_name="F:a", error_message="late")
    assert apply(ch, late, 40, T0 + 200_000) is Verdict.LATE
    assert ch.closed == s  # the summary is final
    assert ch.last_news_ms < T0 + 200_000  # and the chain was not reopened
    assert close_due(ch, T0 + 10 * TIMEOUT, QUIET, TIMEOUT) is None
    assert path_to(ch, "z") == ["F:root-ex", "F:a", "F:z"]  # the late failure's log still gets its path
    assert apply(ch, late, 41, T0 + 200_001) is Verdict.DUPLICATE
    assert apply(ch, late, 40, T0 + 200_001) is Verdict.REPLAYED


def test_due_time_is_when_close_due_may_first_close():
    ch = run(simple_chain())
    due = due_ms(ch, QUIET, TIMEOUT)
    assert close_due(ch, due - 1, QUIET, TIMEOUT) is None and close_due(ch, due, QUIET, TIMEOUT) is not None
    close(ch, "completed", T0 + 1000)
    assert due_ms(ch, QUIET, TIMEOUT) is None  # closed: never due again


# -- serialisation ----------------------------------------------------------------------------------------------
def round_trip(ch: Chain) -> Chain:
    """Through the stored form (processor/state/records.py), as a restart reads it back."""
    return decode_chain(ch.root, encode_chain(ch))


def test_round_trip_open_and_closed():
    ch = run(simple_chain())
    assert round_trip(ch) == ch and round_trip(ch).to_dict() == ch.to_dict()
    close(ch, "completed", T0)
    ch.closed_off = 18
    back = round_trip(ch)
    assert back == ch and back.closed == ch.closed and back.closed_off == 18 and back.partition == 3
    assert back != run(simple_chain())


def test_serialised_size_is_small():
    ch = run(simple_chain())
    size = len(encode_chain(ch))
    assert size < 1000, size


def test_the_earlier_stored_form_is_still_read():
    ch = run(simple_chain())
    close(ch, "completed", T0)
    assert decode_chain(ch.root, orjson.dumps(ch.to_dict())) == ch


# -- properties over random chains --------------------------------------------------------------------------
@st.composite
def chain_events(draw):
    """A random chain: a tree of executions with random outcomes, some events missing, some duplicated."""
    n = draw(st.integers(0, 5))
    ids = [ROOT] + [f"x{i}" for i in range(n)]
    parents = {ids[i]: draw(st.sampled_from(ids[:i] + ["ghost"])) for i in range(1, len(ids))}
    root_unseen = n > 0 and draw(st.booleans())
    events = []
    for ex in ids:
        if ex == ROOT and root_unseen:
            continue
        start = draw(st.integers(0, 1000))
        kinds = draw(st.lists(st.sampled_from(["FLOW_START", "FLOW_COMPLETE", "FLOW_FAIL", "FLOW_CANCEL",
                                               "FLOW_THROTTLE", "FLOW_PAUSE", "FLOW_RATE_LIMIT"]),
                              max_size=3, unique=True))
        for k in kinds:
            t = start if k == "FLOW_START" else start + draw(st.integers(0, 5000))
            p = parents.get(ex)
            events.append(ev(k, ex, t, parent=p, parent_name=f"F:{p}" if p else None,
                             error_message="e" if k == "FLOW_FAIL" else None))
    dups = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    perm = draw(st.permutations(events + dups))
    return events + dups, perm


def feed(events: list[FlowEvent]) -> tuple[Chain, list[str]]:
    ch = Chain(ROOT, 1)
    verdicts = [apply(ch, e, off, T0) for off, e in enumerate(events)]
    return ch, verdicts


def expected_had_failures(events: list[FlowEvent]) -> bool:
    """An oracle: an execution failed when its latest end (the worse outcome on a tie) is a failure."""
    rank = {"completed": 0, "canceled": 1, "failed": 2}
    final: dict[str, tuple[int, int, str]] = {}
    for e in events:
        if e.outcome:
            final[e.execution_id] = max(final.get(e.execution_id, (-1, -1, "")),
                                        (e.timestamp_ms, rank[e.outcome], e.outcome))
    return any(outcome == "failed" for _, _, outcome in final.values())


@settings(max_examples=250, deadline=None)
@given(chain_events())
def test_order_never_matters(pair):
    events, perm = pair
    a, va = feed(events)
    b, vb = feed(perm)
    assert va.count(Verdict.NEW) == vb.count(Verdict.NEW) == len({e.idempotency_key for e in events})
    assert va.count(Verdict.DUPLICATE) == vb.count(Verdict.DUPLICATE) == len(events) - va.count(Verdict.NEW)
    assert a.execs == b.execs and a.root_flow == b.root_flow and a.first_ms == b.first_ms
    for after in (0, QUIET, TIMEOUT):
        assert close_due(a, T0 + after, QUIET, TIMEOUT) == close_due(b, T0 + after, QUIET, TIMEOUT)
    status = close_due(a, T0 + TIMEOUT, QUIET, TIMEOUT)
    assert status in ("completed", "failed", "canceled", "timed_out")
    sa, sb = close(a, status, 0), close(b, status, 0)
    assert sa == sb
    assert sa["had_failures"] == expected_had_failures(events)
    if sa["path"] is not None:
        assert sa["path"][-1] == sa["failing_flow"]["flow_name"]
    assert orjson.loads(orjson.dumps(sa)) == sa


@settings(max_examples=150, deadline=None)
@given(chain_events(), st.integers(0, 30))
def test_round_trip_at_any_point(pair, cut):
    events, _ = pair
    ch = Chain(ROOT, 2)
    for off, e in enumerate(events):
        if off == cut:
            ch = round_trip(ch)
        apply(ch, e, off, T0 + off)
    reference, _ = feed(events)
    assert round_trip(ch) == ch
    assert ch.execs == reference.execs
    # a restored chain still recognises what it has applied
    for off, e in enumerate(events):
        assert apply(round_trip(ch), e, off, T0) in (Verdict.REPLAYED, Verdict.DUPLICATE)
    if events:
        status = close_due(ch, T0 + TIMEOUT * 2, QUIET, TIMEOUT)
        close(ch, status, T0)
        assert round_trip(ch) == ch
