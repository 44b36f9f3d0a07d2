"""One raw event through the engine: parse, dedup against its chain, correlate, aggregate, log.

Hot path. What an event changes: its chain (unless it is a duplicate or a replay of an applied record), its
flow's window and, for ended executions with steps, its org's month; plus the pipeline counters of the window
of its arrival. A window past its lateness by the partition's clock takes nothing: the event is counted in
pipeline.late_events instead.
"""

from __future__ import annotations

import logging

from processor.core import chains
from processor.core.chains import Verdict
from processor.core.contributions import add_event, add_org_steps
from processor.core.log_items import event_log, failure_log
from processor.core.model import InvalidEvent, parse_event
from processor.core.windows import month_start, window_start
from processor.engine.outputs import log_item
from processor.engine.records import Record, received_ms
from processor.engine.step import Step
from processor.state.keys import flow_group, org_group

log = logging.getLogger("els.processor")


def apply_event(step: Step, rec: Record) -> None:
    s, txn, off = step.s, step.txn, rec.offset
    clock = txn.clock
    received = received_ms(rec)
    try:
        ev = parse_event(rec.value, received)
    except InvalidEvent as exc:
        step.out.deadletters.append((rec.value, exc.reason, received))
        step.count("pipeline.deadletters", window_start(clock.now or received, s.window_ms), off)
        return
    if s.replay and ev.timestamp_ms > clock.now:
        clock.now = ev.timestamp_ms
    news_ms = clock.now if s.replay else max(clock.now, received)
    ch = txn.chain(ev.root_execution_id)
    verdict = chains.apply(ch, ev, off, news_ms)
    arrival_ws = window_start(news_ms, s.window_ms)
    if verdict is Verdict.DUPLICATE:
        step.count("pipeline.duplicates", arrival_ws, off)
        return
    if verdict is not Verdict.REPLAYED:
        txn.chain_changed(ch)
    step.count("pipeline.events_in", arrival_ws, off)
    ws = window_start(ev.timestamp_ms, s.window_ms)
    if clock.now and ws + s.window_ms + s.lateness_ms <= clock.now:
        landed = False
    else:
        landed = step.add(flow_group(ev.flow_id), ws, off, add_event, ev)
    if not landed:
        step.count("pipeline.late_events", arrival_ws, off)
        # the context in the message too: the worker's logs are formatted by Faust, which drops `extra`
        log.info("late event counted in pipeline.late_events, not in its window: flow %s (%s), execution %s, "
                 "event time %s ms, window %s ms, clock %s ms", ev.flow_id, ev.flow_name, ev.execution_id,
                 ev.timestamp_ms, ws, clock.now,
                 extra={"flow_id": ev.flow_id, "flow_name": ev.flow_name, "execution_id": ev.execution_id,
                        "timestamp_ms": ev.timestamp_ms, "window_start_ms": ws, "clock_ms": clock.now})
    elif ev.outcome and ev.step_count and (org := ev.org_name):
        step.add(org_group(org), month_start(ev.timestamp_ms), off, add_org_steps, ev)
    if ev.event_type == "FLOW_FAIL" and "failures" in s.logs:
        step.out.add_log(*log_item(ev.root_execution_id, failure_log(ev, chains.path_to(ch, ev.execution_id))))
    elif "events" in s.logs:
        step.out.add_log(*log_item(ev.root_execution_id, event_log(ev)))
