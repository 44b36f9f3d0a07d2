"""What the pipeline says about itself while it runs, kept in the pipeline group's windows like its counters
(rendered by processor/sink/render.py):

- silence: the partition's clock remembers when ingest last received an event of each org; every live tick
  carries that into the pipeline window of its time as a maximum (merged over partitions: the latest event
  anywhere), rendered as pipeline.silence_seconds, the seconds from it to the window's end. The tick touches the
  window, so the figure is sent at every flush, traffic or not;
- delay: each event applied live adds the seconds from ingest's acknowledgement to its processing to the
  pipeline.delay_seconds sketch of its arrival window (rendered as .max and .p95);
- backlog: each live tick records how many raw records of its partition were not yet read, a maximum per
  partition and window (pipeline.backlog_records, tag partition).

A replay adds none of them: they describe the stream as it happens, not the log read again.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.core.bag import Bag
from processor.core.tags import counter_key
from processor.core.windows import window_start
from processor.engine.step import Step
from processor.state.keys import PIPELINE

SEEN = "seen"  # maxima key prefix: when ingest last received an event of an org (ms)
DELAY = "pipeline.delay_seconds"
BACKLOG = "pipeline.backlog_records"
NO_ORG = "unknown"


@dataclass(frozen=True, slots=True)
class Live:
    """The wall clock a live batch is processed at, and where its partition's log ends (None: not known)."""

    now_ms: int
    end_offset: int | None = None


def seen_key(org: str) -> str:
    return counter_key(SEEN, (("org", org or NO_ORG),))


def backlog_key(p: int) -> str:
    return counter_key(BACKLOG, (("partition", str(p)),))


def _carry(bag: Bag, arg: tuple[dict[str, int], str | None, int]) -> None:
    seen, backlog, behind = arg
    for org, ms in seen.items():
        bag.at_least(seen_key(org), ms)
    if backlog is not None:
        bag.at_least(backlog, behind)


def on_tick(step: Step, off: int, now_ms: int, live: Live) -> None:
    """At a live tick: the orgs' last events and the partition's backlog into the pipeline window of now."""
    behind = None if live.end_offset is None else max(0, live.end_offset - off - 1)
    arg = (step.txn.clock.seen, None if behind is None else backlog_key(step.p), behind or 0)
    step.add(PIPELINE, window_start(now_ms, step.s.window_ms), off, _carry, arg)


def _delays(bag: Bag, seconds: list[float]) -> None:
    for s in seconds:
        bag.sample(DELAY, s)


def on_event(step: Step, arrival_ws: int, received_ms: int, org: str | None) -> None:
    """A new event: its org's last receive time, and (live) its delay, held until the next tick or the batch's
    end (`add_delays`)."""
    seen = step.txn.clock.seen
    key = org or ""
    if received_ms > seen.get(key, 0):
        seen[key] = received_ms
    live = step.live
    if live is not None and received_ms > 0:
        step.delays.setdefault(arrival_ws, []).append(max(0.0, (live.now_ms - received_ms) / 1000))


def add_delays(step: Step, off: int) -> None:
    """The delays held into their arrival windows, one update per window, at record `off` (a tick, or the
    batch's last record): one update per event cost the engine about 8 % more per event."""
    for ws, seconds in step.delays.items():
        step.add(PIPELINE, ws, off, _delays, seconds)
    step.delays.clear()
