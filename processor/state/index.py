"""In-memory indexes of what each raw partition holds in the state tables, so a tick touches only what is due.

Rebuilt from the stores after every assignment change (and after a failed batch), kept current by the
transaction as the engine changes records. A tick then decodes only the chains whose due time passed and the
windows that must emit or be deleted, instead of every record of the partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processor.core import chains as chainlib
from processor.state import keys
from processor.state.records import decode_chain, window_flags


@dataclass(slots=True)
class WindowMeta:
    key: keys.WindowKey
    closed: bool
    dirty: bool
    closed_off: int | None


class PartitionIndex:
    """One partition's open chains (with the clock time each may close at), closed chain markers, windows."""

    __slots__ = ("quiet_ms", "timeout_ms", "open_chains", "closed_chains", "windows")

    def __init__(self, quiet_ms: int, timeout_ms: int):
        self.quiet_ms = quiet_ms
        self.timeout_ms = timeout_ms
        self.open_chains: dict[str, int] = {}                        # root -> due ms (chains.due_ms)
        self.closed_chains: dict[str, tuple[int, int | None]] = {}   # root -> (closed_ms, closed_off)
        self.windows: dict[str, WindowMeta] = {}                     # window key -> meta

    def chain_changed(self, ch: chainlib.Chain) -> None:
        if ch.closed is None:
            self.open_chains[ch.root] = chainlib.due_ms(ch, self.quiet_ms, self.timeout_ms)
            self.closed_chains.pop(ch.root, None)
        else:
            self.open_chains.pop(ch.root, None)
            self.closed_chains[ch.root] = (ch.closed_ms, ch.closed_off)

    def chain_deleted(self, root: str) -> None:
        self.open_chains.pop(root, None)
        self.closed_chains.pop(root, None)


def build(chains: Mapping[str, bytes], windows: Mapping[str, bytes], quiet_ms: int,
          timeout_ms: int) -> dict[int, PartitionIndex]:
    """The indexes of every partition found, from one scan of each store."""
    out: dict[int, PartitionIndex] = {}

    def index_of(p: int) -> PartitionIndex:
        idx = out.get(p)
        if idx is None:
            idx = out[p] = PartitionIndex(quiet_ms, timeout_ms)
        return idx

    for root, data in list(chains.items()):
        ch = decode_chain(root, data)
        index_of(ch.partition).chain_changed(ch)
    for key, data in list(windows.items()):
        p = keys.partition_of(key)
        if p is None or keys.is_clock(key):
            continue
        flags = window_flags(data)
        index_of(p).windows[key] = WindowMeta(keys.parse(key), flags.closed, flags.dirty, flags.closed_off)
    return out
