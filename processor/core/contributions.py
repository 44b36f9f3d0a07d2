"""What one event, or one closed chain, adds to its window's bag (hot path: cached keys, no string building)."""

from __future__ import annotations

from functools import lru_cache

from processor.core.bag import ENDED, STEPS_N, Bag
from processor.core.tags import counter_key
from processor.core.windows import DAY_MS


def _flag(v) -> str:
    return "unknown" if v is None else ("true" if v else "false")


@lru_cache(maxsize=4096)
def _event_key(event_type: str) -> str:
    return counter_key("events", (("event_type", event_type.lower()),))


@lru_cache(maxsize=64)
def _ended_key(outcome: str) -> str:
    return counter_key(ENDED, (("outcome", outcome),))


def add_event(bag: Bag, ev) -> None:
    """One event's contribution to its flow's `flow:<flow_id>` bag (labels flow_id, flow_name)."""
    ts = ev.timestamp_ms
    bag.label("flow_id", ev.flow_id or "unknown", ts)
    if ev.flow_name:
        bag.label("flow_name", ev.flow_name, ts)
    c = bag.counters
    et = ev.event_type
    k = _event_key(et)
    c[k] = c.get(k, 0) + 1
    outcome = ev.outcome
    if outcome:
        k = _ended_key(outcome)
        c[k] = c.get(k, 0) + 1
        duration = ev.duration_ms
        if duration is not None:
            bag.sample("duration", duration)
        steps = ev.step_count
        if steps is not None:
            c["steps"] = c.get("steps", 0) + steps
            c[STEPS_N] = c.get(STEPS_N, 0) + 1
    if et == "FLOW_FAIL":
        k = counter_key("failures", (("error_type", ev.error_type or "unknown"), ("fatal", _flag(ev.fatal))))
        c[k] = c.get(k, 0) + 1
    elif et == "FLOW_RATE_LIMIT":
        k = counter_key("rate_limited", (("hostname", ev.hostname or "unknown"),
                                         ("status_code", ev.status_code or "unknown")))
        c[k] = c.get(k, 0) + 1
    elif et == "FLOW_THROTTLE":
        k = counter_key("throttled", (("throttling_type", ev.throttling_type or "unknown"),
                                      ("throttling_level", ev.throttling_level or "unknown")))
        c[k] = c.get(k, 0) + 1


def add_chain(bag: Bag, summary: dict) -> None:
    """A closed chain's contribution to its root flow's `chain:<root_flow_id>` bag, in the window that
    processor/engine/clock.py picks (of its end, or of its close)."""
    at = summary.get("end_ms") or summary.get("start_ms") or 0
    bag.label("root_flow_id", summary.get("root_flow_id") or "unknown", at)
    if summary.get("root_flow_name"):
        bag.label("root_flow_name", summary["root_flow_name"], at)
    bag.count("chains", status=summary.get("status") or "unknown",
              had_failures=_flag(bool(summary.get("had_failures"))))
    if summary.get("duration_ms") is not None:
        bag.sample("chain.duration", summary["duration_ms"])


def add_org_usage(bag: Bag, ev) -> None:
    """An ELS event into its `org:<org_name>` bag of the UTC calendar month (month_start): one event, and an
    ended execution's steps, each also per UTC day (the allowances' trailing rate: processor/sink/allowances.py)."""
    day = str(ev.timestamp_ms // DAY_MS)
    org = ev.org_name
    if org:
        bag.label("org", org, ev.timestamp_ms)
    bag.count("events")
    bag.count("events.day", day=day)
    steps = ev.step_count
    if ev.outcome and steps is not None:
        bag.count("steps", steps)
        bag.count("steps.day", steps, day=day)
