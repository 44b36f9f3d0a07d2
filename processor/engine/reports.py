"""Ingest's window reports (ingest/report.py) through the engine: its outcomes into the pipeline window the
report is for, as counters like the processor's own.

A report is counted once per id: the id is marked in the window it lands in, and a report sent again (Kafka did
not acknowledge the first) finds the mark. A report for a window already past its lateness lands in the window
of its arrival instead: late, never lost.
"""

from __future__ import annotations

import orjson

from processor.core.bag import Bag
from processor.core.tags import counter_key
from processor.core.windows import window_start
from processor.engine.records import TICK_HEADER, Record, received_ms
from processor.engine.step import Step
from processor.state.keys import PIPELINE

REPORT_KIND = b"ingest-report"
REQUESTS = "pipeline.ingest.requests"
EVENTS = "pipeline.ingest.events"
DEADLETTERS = "pipeline.deadletters"
TLS_DAYS_LEFT = "pipeline.ingest.tls_days_left"


def is_report(rec: Record) -> bool:
    return rec.headers.get(TICK_HEADER) == REPORT_KIND


def _add(bag: Bag, report: dict) -> None:
    mark = counter_key("_report", (("id", report["report"]),))
    if mark in bag.counters:
        return
    bag.count(mark)
    for outcome, n in report.get("requests", {}).items():
        bag.count(REQUESTS, n, outcome=outcome)
    for outcome, n in report.get("events", {}).items():
        bag.count(EVENTS, n, outcome=outcome)
    for reason, n in report.get("deadletters", {}).items():
        bag.count(DEADLETTERS, n, stage="ingest", reason=reason)
    days = report.get("tls_days_left")
    if isinstance(days, int | float):  # per ingest host: the monitor alerts on the soonest
        host = str(report["report"]).split(":", 1)[0] or "unknown"
        bag.at_least(counter_key(TLS_DAYS_LEFT, (("host", host),)), float(days))


def apply_report(step: Step, rec: Record) -> bool:
    """Count an ingest report; False when it is unreadable (the caller dead-letters it)."""
    try:
        report = orjson.loads(rec.value)
        str(report["report"])
        ws = window_start(int(report["ws"]), step.s.window_ms)
    except (ValueError, KeyError, TypeError):
        return False
    s, now = step.s, step.txn.clock.now
    if now and ws + s.window_ms + s.lateness_ms <= now:
        ws = window_start(max(now, received_ms(rec)), s.window_ms)
    step.add(PIPELINE, ws, rec.offset, _add, report)
    return True
