"""One raw partition's state changes between two flushes: decoded records, read-your-writes over the stores.

The pattern of quix-streams' PartitionTransactionCache: the engine reads chains and windows through the
transaction, which decodes each record once and keeps it (and what was deleted) until the flush, so a record
touched by many events or batches is decoded once and written once. The stores (Faust tables' local data, or
plain dicts) are not changed here: the caller persists what `writes()` returns, chains and windows first and
the clock last (see processor/state/changelog.py and docs/design.md, "Exactness").

Exactness: a window record lists the raw offset ranges whose effects it holds. `add` skips an offset the
stored record already holds (re-processing after a crash), and `writes()` adds this transaction's offsets to
every window it writes: the window holds the effects of all of them (those that touched it were applied).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from processor.core.chains import Chain
from processor.state import keys
from processor.state.index import PartitionIndex, WindowMeta
from processor.state.ranges import OffsetRanges
from processor.state.records import Clock, WindowRecord, decode_chain, encode_chain


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """When a transaction is written: at a tick (the live cadence, ELS_FLUSH_SECONDS), or when it grew or aged
    past these bounds (a backlog has no ticks; the bounds cap memory and the work a crash would redo)."""

    max_records: int = 10_000
    max_cached: int = 4_000
    max_age_s: float = 10.0
    at_tick: bool = True


@dataclass(slots=True)
class Writes:
    """A flush: chain and window records (None: delete), then the clock, which must be written last."""

    partition: int
    chains: dict[str, bytes | None]
    windows: dict[str, bytes | None]
    clock_key: str
    clock: bytes

    def apply_to(self, chains: MutableMapping[str, bytes], windows: MutableMapping[str, bytes]) -> None:
        """Write into plain stores (replay, tests, benches), the clock last as the worker writes it."""
        apply_writes(chains, self.chains)
        apply_writes(windows, self.windows)
        windows[self.clock_key] = self.clock


def apply_writes(store: MutableMapping, writes: dict) -> None:
    """Apply state writes to a table's store: a value is written, None deletes the key."""
    for key, value in writes.items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


class PartitionTransaction:
    """The open state of one partition; see the module docstring.

    Records are cached decoded while in use; changed ones are encoded ("spilled") into the pending writes when
    too many are decoded at once (a tick closing thousands of chains), and decoded again from there if read.
    Chains spill at any time; windows only between batches, when this transaction's offsets, which a spilled
    window record lists, are complete."""

    MAX_DECODED_CHAINS = 1_000
    MAX_DECODED_WINDOWS = 1_000

    def __init__(self, partition: int, chains: MutableMapping[str, bytes], windows: MutableMapping[str, bytes],
                 index: PartitionIndex):
        self.partition = partition
        self.index = index
        self._chain_store = chains
        self._window_store = windows
        self.clock = Clock.from_bytes(windows.get(keys.clock_key(partition)))
        self.committed_off = self.clock.off  # everything up to it is in the stores (the clock is written last)
        self.applied = OffsetRanges()        # raw offsets processed in this transaction
        self._chains: dict[str, Chain] = {}               # decoded
        self._windows: dict[str, WindowRecord] = {}
        self._changed_chains: set[str] = set()            # decoded and changed since decoded
        self._changed_windows: set[str] = set()
        self._chain_writes: dict[str, bytes | None] = {}  # encoded pending writes (None: delete)
        self._window_writes: dict[str, bytes | None] = {}
        self.records = 0
        self.ticked = False
        self.opened_at = time.monotonic()

    # -- chains ------------------------------------------------------------------------------------------------
    def chain(self, root: str) -> Chain:
        """The chain (decoded once while in use), a new one if none is stored."""
        ch = self._chains.get(root)
        if ch is not None:
            return ch
        if len(self._chains) >= self.MAX_DECODED_CHAINS:
            self._spill_chains()
        data = self._chain_writes[root] if root in self._chain_writes else self._chain_store.get(root)
        ch = self._chains[root] = decode_chain(root, data) if data is not None else Chain(root, self.partition)
        return ch

    def held_chain(self, root: str) -> tuple[bool, Chain | None]:
        """(True, the chain, or None when deleted) if this transaction holds it, decoded or spilled; (False, None)
        otherwise. Nothing is cached: this serves the chain view, not the engine."""
        ch = self._chains.get(root)
        if ch is not None:
            return True, ch
        if root in self._chain_writes:
            data = self._chain_writes[root]
            return True, None if data is None else decode_chain(root, data)
        return False, None

    def chain_changed(self, ch: Chain) -> None:
        self._changed_chains.add(ch.root)
        self.index.chain_changed(ch)

    def delete_chain(self, root: str) -> None:
        self._chains.pop(root, None)
        self._changed_chains.discard(root)
        self._chain_writes[root] = None
        self.index.chain_deleted(root)

    def _spill_chains(self) -> None:
        for root in self._changed_chains:
            self._chain_writes[root] = encode_chain(self._chains[root])
        self._changed_chains.clear()
        self._chains.clear()

    # -- windows -----------------------------------------------------------------------------------------------
    def window(self, key: str, wkey: keys.WindowKey) -> WindowRecord:
        """The window record (decoded once while in use), a new one if none is stored."""
        rec = self._windows.get(key)
        if rec is not None:
            return rec
        data = self._window_writes[key] if key in self._window_writes else self._window_store.get(key)
        if data is not None:
            rec = WindowRecord.from_bytes(data)
        else:
            rec = WindowRecord()
            if key not in self.index.windows:
                self.index.windows[key] = WindowMeta(wkey, False, False, None)
        self._windows[key] = rec
        return rec

    def add(self, key: str, wkey: keys.WindowKey, off: int, fn: Callable[..., None], arg) -> bool:
        """Apply fn(bag, arg) to a window unless it already holds offset `off`; False if the window is closed."""
        rec = self.window(key, wkey)
        if rec.applied.holds(off):
            return True  # applied before a crash: already there
        if rec.closed:
            return False
        fn(rec.bag, arg)
        rec.bag_changed()
        if not rec.dirty:
            rec.dirty = True
            self.window_changed(key)
        else:
            self._changed_windows.add(key)
        return True

    def window_changed(self, key: str) -> None:
        """Record that the cached window changed (flags or bag): it is written at the flush."""
        self._changed_windows.add(key)
        rec = self._windows[key]
        meta = self.index.windows.get(key)
        if meta is not None:
            meta.closed, meta.dirty, meta.closed_off = rec.closed, rec.dirty, rec.closed_off

    def delete_window(self, key: str) -> None:
        self._windows.pop(key, None)
        self._changed_windows.discard(key)
        self._window_writes[key] = None
        self.index.windows.pop(key, None)

    def batch_done(self, offsets: list[int]) -> None:
        """A batch was processed: its offsets are this transaction's; spill windows if too many are decoded."""
        self.applied.add_offsets(offsets)
        self.records += len(offsets)
        if len(self._windows) >= self.MAX_DECODED_WINDOWS:
            self._spill_windows()

    def _spill_windows(self) -> None:
        for key in self._changed_windows:
            rec = self._windows[key]
            rec.applied.update(self.applied)  # holds the effects of every offset of this transaction so far
            self._window_writes[key] = rec.to_bytes()
        self._changed_windows.clear()
        self._windows.clear()

    # -- the flush ---------------------------------------------------------------------------------------------
    def cached(self) -> int:
        return len(self._chains) + len(self._windows) + len(self._chain_writes) + len(self._window_writes)

    def due(self, policy: FlushPolicy, now: float) -> bool:
        return ((policy.at_tick and self.ticked) or self.records >= policy.max_records
                or self.cached() >= policy.max_cached or now - self.opened_at >= policy.max_age_s)

    def writes(self) -> Writes:
        """Everything this transaction changed, encoded; the transaction is finished after this."""
        self._spill_chains()
        self._spill_windows()
        return Writes(self.partition, self._chain_writes, self._window_writes, keys.clock_key(self.partition),
                      self.clock.to_bytes())
