"""The engine: batches of one raw partition's records -> outputs, and the state changes to write.

Independent of Faust, so the live worker (Faust tables' local data as the stores), the replay command (plain
dicts) and the unit tests run the very same logic. The stores map keys to encoded records
(processor/state/records.py); the engine reads them through one open transaction per partition
(processor/state/transaction.py) and never writes them: the caller persists what `flush` returns, chain and
window records first, the partition's clock (its position) last, and only after the outputs of the records it
covers were acknowledged (see docs/design.md, "Exactness").

    out = engine.process(p, records)   # records in offset order (the worker's Positions see to it)
    ... send out, await the acks ...
    if engine.flush_due(p): persist(engine.flush(p))
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping

from processor.core.chains import Chain
from processor.engine import watch
from processor.engine.clock import advance
from processor.engine.events import Reason, apply_event, deadletter
from processor.engine.outputs import Outputs
from processor.engine.records import Record, is_tick, received_ms, tick_time
from processor.engine.reports import apply_report, is_report
from processor.engine.settings import Settings
from processor.engine.step import Step
from processor.engine.watch import Live
from processor.state import index as state_index
from processor.state import keys
from processor.state.records import Clock, decode_chain
from processor.state.transaction import FlushPolicy, PartitionTransaction, Writes


class Engine:
    """Applies batches of one partition's records through its open transaction and says what to emit."""

    def __init__(self, settings: Settings, chains: MutableMapping[str, bytes], windows: MutableMapping[str, bytes],
                 policy: FlushPolicy | None = None):
        self.s = settings
        self.chains = chains
        self.windows = windows
        self.policy = policy or FlushPolicy()
        self._indexes: dict[int, state_index.PartitionIndex] = {}
        self._txns: dict[int, PartitionTransaction] = {}
        self._keys: dict[int, dict] = {}
        self._last_advance: dict[int, tuple[int, int]] = {}  # replay: partition -> (clock, offset) last advanced at
        self._scanned = False  # the stores were scanned since the last forget: partitions not found are empty

    # -- what the engine holds in memory --------------------------------------------------------------------
    def forget_partition(self, p: int) -> None:
        """Drop a partition's open transaction and indexes (revoked, failed, or restored anew): what was not
        flushed is processed again from the committed position, and the indexes are rebuilt from the stores."""
        self._indexes.pop(p, None)
        self._txns.pop(p, None)
        self._keys.pop(p, None)
        self._last_advance.pop(p, None)
        self._scanned = False

    def forget_all(self) -> None:
        for p in {*self._indexes, *self._txns, *self._keys}:
            self.forget_partition(p)

    def open_chains_of(self, p: int) -> set[str] | None:
        """The open chains a partition's ticks consider for closing (None: not indexed since the last assignment)."""
        idx = self._indexes.get(p)
        return None if idx is None else set(idx.open_chains)

    def chain_as_processed(self, root: str) -> Chain | None:
        """A chain as processed so far: an open transaction's (not yet flushed), else the stored one."""
        for txn in list(self._txns.values()):
            held, ch = txn.held_chain(root)
            if held:
                return ch
        data = self.chains.get(root)
        return None if data is None else decode_chain(root, data)

    def clock(self, p: int) -> Clock:
        """The partition's clock as processed so far (the open transaction's, else the stored one)."""
        txn = self._txns.get(p)
        return txn.clock if txn is not None else Clock.from_bytes(self.windows.get(keys.clock_key(p)))

    def _index(self, p: int) -> state_index.PartitionIndex:
        idx = self._indexes.get(p)
        if idx is None:
            if not self._scanned:
                # one scan of the stores indexes every partition found, not only p (assignments bring several)
                built = state_index.build(self.chains, self.windows, self.s.quiet_ms, self.s.timeout_ms)
                for q, found in built.items():
                    self._indexes.setdefault(q, found)
                self._scanned = True
            idx = self._indexes.setdefault(p, state_index.PartitionIndex(self.s.quiet_ms, self.s.timeout_ms))
        return idx

    def _txn(self, p: int) -> PartitionTransaction:
        txn = self._txns.get(p)
        if txn is None:
            txn = self._txns[p] = PartitionTransaction(p, self.chains, self.windows, self._index(p))
        return txn

    # -- the step -------------------------------------------------------------------------------------------
    def prepare(self, p: int) -> None:
        """Open the partition's transaction now, indexing the stores if needed: the worker does this on the event
        loop's thread, the only one that writes the stores (standby recovery), and runs `process` in a thread."""
        self._txn(p)

    def process(self, p: int, records: list[Record], live: Live | None = None) -> Outputs:
        """Apply one partition's records (in offset order); returns what to emit. The state stays in the open
        transaction until `flush`. `live`: the batch is processed as it arrives (engine/watch.py)."""
        out = Outputs()
        txn = self._txn(p)
        fresh = [r for r in records if not txn.applied.holds(r.offset)]  # twice in one transaction: once
        if not fresh:
            return out
        replay = self.s.replay
        step = Step(self.s, txn, out, self._keys.setdefault(p, {}), None if replay else live)
        for rec in fresh:
            if is_tick(rec):
                txn.ticked = True
                t = None if replay else tick_time(rec)
                if t is not None:
                    txn.clock.now = max(txn.clock.now, t)
                    if step.live is not None:  # before advance: the tick emits what it carried
                        if step.delays:
                            watch.add_delays(step, rec.offset)
                        watch.on_tick(step, rec.offset, txn.clock.now, step.live)
                    advance(step, rec.offset, txn.clock.now)
                continue
            if is_report(rec):
                if not apply_report(step, rec):
                    deadletter(step, rec, "an ingest report that cannot be read", received_ms(rec),
                               Reason.INVALID_REPORT)
            else:
                apply_event(step, rec)
            if replay:
                self._advance_in_replay(step, rec.offset, only_if_due=True)
        last = max(r.offset for r in fresh)
        if step.delays:
            watch.add_delays(step, last)
        txn.clock.off = max(txn.clock.off, last)
        if replay:
            self._advance_in_replay(step, last)
        txn.batch_done([r.offset for r in fresh])
        return out

    def _advance_in_replay(self, step: Step, off: int, only_if_due: bool = False) -> None:
        """In replay the clock is event time: windows close as it passes them (at most every quarter window
        while a batch runs, and at its end). Never twice at one record: the second would take the chains closed
        at it for a re-processing after a crash, and count them again."""
        now = step.txn.clock.now
        last_now, last_off = self._last_advance.get(step.p, (0, -1))
        if off == last_off or (only_if_due and now - last_now < self.s.window_ms // 4):
            return
        self._last_advance[step.p] = (now, off)
        advance(step, off, now)

    def flush_due(self, p: int, now: float | None = None) -> bool:
        txn = self._txns.get(p)
        return txn is not None and txn.due(self.policy, time.monotonic() if now is None else now)

    def flush(self, p: int) -> Writes | None:
        """Close the partition's transaction: the records to write (chains and windows, then the clock)."""
        txn = self._txns.pop(p, None)
        return None if txn is None else txn.writes()

    def step(self, p: int, records: list[Record], live: Live | None = None) -> tuple[Outputs, Writes | None]:
        """process + flush at once (replay, tests): the outputs and what to write (None: nothing processed)."""
        return self.process(p, records, live), self.flush(p)
