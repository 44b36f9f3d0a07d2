"""The partition's clock moved (a tick, or the event-time watermark in replay): close what is due, emit.

- Chains due by their index time are closed; a closed chain's summary goes into its root flow's window of the
  chain's end (idempotent per offset: the tick's), and maybe a log.
- Re-processing the record that closed a chain puts the summary in again: its window may not have been written
  before a crash (the window's offset ranges make this a no-op when it was).
- Windows past their lateness are closed with a final partial; dirty open windows emit a partial.
- Closed markers are deleted after their retention (processor/engine/settings.py), and only once their close is
  committed (the position written with the clock passed the offset that closed them): re-processing can then
  never reach a record from before the close, which would otherwise re-create the window or the chain.
"""

from __future__ import annotations

import logging

from processor.core import chains
from processor.core.contributions import add_chain
from processor.core.log_items import chain_log
from processor.core.windows import window_end, window_start
from processor.engine.outputs import log_item, partial_item
from processor.engine.step import Step
from processor.state.keys import GroupKind, chain_group

log = logging.getLogger("els.processor")


def advance(step: Step, off: int, now: int) -> None:
    """At clock `now`, processing the record at `off`: close chains and windows, emit what is due."""
    _close_chains(step, off, now)
    _expire_chains(step, now)
    _close_windows(step, off, now)


def _committed(closed_off: int | None, step: Step) -> bool:
    return closed_off is None or closed_off <= step.txn.committed_off


def _close_chains(step: Step, off: int, now: int) -> None:
    txn, s = step.txn, step.s
    idx = txn.index
    for root, (_closed_ms, closed_off) in list(idx.closed_chains.items()):
        if closed_off == off:  # re-processing the record that closed it: its window may lack the chain
            ch = txn.chain(root)
            _emit_chain(step, ch, off, ch.closed_ms)
    for root, due in list(idx.open_chains.items()):
        if due > now:
            continue
        ch = txn.chain(root)
        status = chains.close_due(ch, now, s.quiet_ms, s.timeout_ms)
        if status is None:
            idx.chain_changed(ch)  # not due after all (the index was ahead): refresh its time
            continue
        # closed as of when it became due, not when the clock got there: a replay's clock jumps over quiet
        # stretches, and the chain belongs in the windows that were open then
        at = min(now, chains.due_ms(ch, s.quiet_ms, s.timeout_ms))
        chains.close(ch, status, at)
        ch.closed_off = off
        txn.chain_changed(ch)
        _emit_chain(step, ch, off, at)


def _expire_chains(step: Step, now: int) -> None:
    """Closed chain markers past their retention: later duplicates are too late for their windows anyway."""
    retention = step.s.closed_chain_retention_ms
    for root, (closed_ms, closed_off) in list(step.txn.index.closed_chains.items()):
        if closed_ms + retention <= now and _committed(closed_off, step):
            step.txn.delete_chain(root)


def _emit_chain(step: Step, ch: chains.Chain, off: int, now: int) -> None:
    """A closed chain's summary into its root flow's window of the chain's end and, maybe, a log; `now` is
    when it closed."""
    s = step.s
    summary = ch.closed
    end_ms = summary.get("end_ms") or ch.closed_ms
    ws = window_start(end_ms, s.window_ms)
    if ws + s.window_ms + s.lateness_ms <= now and step.key(chain_group(summary.get("root_flow_id")), ws)[0] \
            not in step.txn.index.windows:
        # its window closed and is gone (a chain timed out long after its last end): like a closed window,
        # it takes nothing, rather than a new record whose partial would replace the window's full value
        log.info("chain closed after its window's lateness; not counted in it: root flow %s (%s), root execution "
                 "%s, window %s ms, clock %s ms", summary.get("root_flow_id"), summary.get("root_flow_name"),
                 ch.root, ws, now,
                 extra={"root_flow_id": summary.get("root_flow_id"), "root_execution_id": ch.root,
                        "window_start_ms": ws, "clock_ms": now})
    else:
        step.add(chain_group(summary.get("root_flow_id")), ws, off, add_chain, summary)
    if "chains" in s.logs:
        step.out.add_log(*log_item(ch.root, chain_log(summary)))


def _close_windows(step: Step, off: int, now: int) -> None:
    s, txn = step.s, step.txn
    retention = s.closed_window_retention_ms
    for key, meta in list(txn.index.windows.items()):
        wk = meta.key
        end = window_end(wk.start, s.window_ms, wk.kind is GroupKind.ORG)
        if meta.closed:
            if end + s.lateness_ms + retention <= now and _committed(meta.closed_off, step):
                txn.delete_window(key)
            continue
        closing = end + s.lateness_ms <= now
        if not (closing or meta.dirty):
            continue
        rec = txn.window(key, wk)
        step.out.add_partial(*partial_item(wk, rec, off, final=closing))
        rec.dirty = False
        if closing:
            rec.closed = True
            rec.closed_off = off
        txn.window_changed(key)
