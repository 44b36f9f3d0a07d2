"""The partition's clock moved (a tick, or the event-time watermark in replay): close what is due, emit.

- Chains due by their index time are closed, before any window: a closed chain's summary goes into its root
  flow's window of its end, or of its close when that one's lateness had passed (a timed-out chain: always of
  its time-out), which is still open (`_chain_window`), idempotent per offset (the tick's); and maybe a log.
- Re-processing the record that closed a chain puts the summary in again: its window may not have been written
  before a crash (the window's offset ranges make this a no-op when it was).
- Windows past their lateness are closed with a final partial; dirty open windows emit a partial.
- Closed markers are deleted after their retention (processor/engine/settings.py), and only once their close is
  committed (the position written with the clock passed the offset that closed them): re-processing can then
  never reach a record from before the close, which would otherwise re-create the window or the chain.
"""

from __future__ import annotations

from processor.core import chains
from processor.core.contributions import add_chain
from processor.core.log_items import chain_log
from processor.core.windows import window_end, window_start
from processor.engine.outputs import log_item, partial_item
from processor.engine.step import Step
from processor.state.keys import GroupKind, chain_group


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
            _emit_chain(step, ch, off)
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
        _emit_chain(step, ch, off)


def _expire_chains(step: Step, now: int) -> None:
    """Closed chain markers past their retention: later duplicates are too late for their windows anyway."""
    retention = step.s.closed_chain_retention_ms
    for root, (closed_ms, closed_off) in list(step.txn.index.closed_chains.items()):
        if closed_ms + retention <= now and _committed(closed_off, step):
            step.txn.delete_chain(root)


def _chain_window(ch: chains.Chain, window_ms: int, lateness_ms: int) -> int:
    """The window a closed chain counts in: that of its last end if its lateness had not passed when the chain
    closed (`closed_ms`), else that of its close; a timed-out chain always in that of its time-out (its last end
    may be an hour old). Chains close before windows at the first clock at or past `closed_ms`, so this window
    is still open: every closed chain counts once, never dropped. From the chain's record alone, so the record
    that closed it, processed again after a crash, picks the same window."""
    end = None if ch.closed["status"] == "timed_out" else ch.closed.get("end_ms")
    if end is not None and window_start(end, window_ms) + window_ms + lateness_ms > ch.closed_ms:
        return window_start(end, window_ms)
    return window_start(ch.closed_ms, window_ms)


def _emit_chain(step: Step, ch: chains.Chain, off: int) -> None:
    """A closed chain's summary into its root flow's window (_chain_window) and, maybe, a log."""
    s = step.s
    ws = _chain_window(ch, s.window_ms, s.lateness_ms)
    step.add(chain_group(ch.closed.get("root_flow_id")), ws, off, add_chain, ch.closed)
    if "chains" in s.logs:
        step.out.add_log(*log_item(ch.root, chain_log(ch.closed)))


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
