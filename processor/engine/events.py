"""One raw event through the engine: parse, dedup against its chain, correlate, aggregate, log.

Hot path. What an event changes: its chain (unless it is a duplicate or a replay of an applied record), its
flow's window and, for ended executions with steps, its org's month; plus the pipeline counters of the window
of its arrival. A window past its lateness by the partition's clock takes nothing: the event is counted in
pipeline.late_events instead. An event stamped more than FUTURE_TOLERANCE_MS ahead of its receive time changes
nothing (no chain, no window, no clock): it is counted in pipeline.future_events and dead-lettered.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from processor.core import chains
from processor.core.chains import Verdict
from processor.core.contributions import add_event, add_org_usage
from processor.core.log_items import event_log, failure_log
from processor.core.model import FlowEvent, InvalidEvent, parse_event
from processor.core.tags import counter_key
from processor.core.windows import month_start, window_start
from processor.engine import watch
from processor.engine.outputs import log_item
from processor.engine.records import Record, received_ms
from processor.engine.step import Step
from processor.state.keys import flow_group, org_group

log = logging.getLogger("els.processor")

# Datadog drops metric points more than 10 minutes in the future (processor/sink/delivery.py): an event stamped
# further ahead of its receive time has a wrong clock, and in replay it would move the partition's clock (event
# time) past every open window, closing them early and making every later event late.
FUTURE_TOLERANCE_MS = 600_000


def apply_event(step: Step, rec: Record) -> None:
    s, txn, off = step.s, step.txn, rec.offset
    clock = txn.clock
    received = received_ms(rec)
    try:
        ev = parse_event(rec.value, received)
    except InvalidEvent as exc:
        deadletter(step, rec, exc.reason, received, Reason.INVALID_EVENT)
        return
    if _from_the_future(step, rec, ev, received):
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
    watch.on_event(step, arrival_ws, received, ev.org_name)
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
    elif org := ev.org_name:  # every event counts against the org's ELS event allowance, ended ones' steps too
        step.add(org_group(org), month_start(ev.timestamp_ms), off, add_org_usage, ev)
    if ev.event_type == "FLOW_FAIL" and "failures" in s.logs:
        step.out.add_log(*log_item(ev.root_execution_id, failure_log(ev, chains.path_to(ch, ev.execution_id))))
    elif "events" in s.logs:
        step.out.add_log(*log_item(ev.root_execution_id, event_log(ev)))


class Reason(StrEnum):
    """Why the processor dead-lettered a record (the `reason` tag of pipeline.deadletters, stage:processor)."""

    INVALID_EVENT = "invalid_event"
    FUTURE_TIMESTAMP = "future_timestamp"
    INVALID_REPORT = "invalid_report"  # an ingest report (engine/reports.py) that cannot be read


def deadletter(step: Step, rec: Record, why: str, received: int, reason: Reason) -> int:
    """The record to the dead-letter topic, counted in pipeline.deadletters{stage:processor,reason} in the
    clock's window (returned)."""
    step.out.deadletters.append((rec.value, why, received))
    ws = window_start(step.txn.clock.now or received, step.s.window_ms)
    step.count(counter_key("pipeline.deadletters", (("stage", "processor"), ("reason", reason.value))), ws,
               rec.offset)
    return ws


def _from_the_future(step: Step, rec: Record, ev: FlowEvent, received: int) -> bool:
    """True (counted, dead-lettered, logged) when the event is stamped more than FUTURE_TOLERANCE_MS ahead of its
    receive time: ingest's `received_at`, else the Kafka record's timestamp (records.received_ms). Both are in
    the record, so a replay or a restart judges the event as when it arrived; the wall clock (or a tick) would
    judge an old topic by today. A record with neither (timestamp -1, pre-0.10 Kafka) is not judged."""
    ahead = ev.timestamp_ms - received if received and received > 0 else 0
    if ahead <= FUTURE_TOLERANCE_MS:
        return False
    reason = (f"future_timestamp: event time {ahead / 1000:g} s ahead of its receive time (more than "
              f"{FUTURE_TOLERANCE_MS // 1000} s)")
    step.count("pipeline.future_events", deadletter(step, rec, reason, received, Reason.FUTURE_TIMESTAMP),
               rec.offset)
    log.info("future event dead-lettered and counted in pipeline.future_events: flow %s (%s), execution %s, event "
             "time %s ms, %s ms ahead of its receive time %s ms", ev.flow_id, ev.flow_name, ev.execution_id,
             ev.timestamp_ms, ahead, received,
             extra={"flow_id": ev.flow_id, "execution_id": ev.execution_id, "timestamp_ms": ev.timestamp_ms,
                    "received_ms": received})
    return True
