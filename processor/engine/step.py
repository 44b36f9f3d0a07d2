"""One batch of one partition over its open transaction: what the event path and the clock share."""

from __future__ import annotations

from collections.abc import Callable

from processor.core.bag import Bag
from processor.engine.outputs import Outputs
from processor.engine.settings import Settings
from processor.state.keys import PIPELINE, WindowKey
from processor.state.transaction import PartitionTransaction

# A partition's window keys, kept while its windows are in use. The windows an event stream touches at once are a
# few hundred (its groups times the windows it is in, lateness included); 100,000 per partition, at ~350 bytes a
# key, could hold ~35 MB per partition in a worker running for days, for keys no event asks for again.
KEY_CACHE_MAX = 4_096


class Step:
    """Settings, transaction and outputs of a batch, and the partition's window keys (built once each)."""

    __slots__ = ("s", "p", "txn", "out", "_keys", "live", "delays")

    def __init__(self, s: Settings, txn: PartitionTransaction, out: Outputs, key_cache: dict, live=None):
        self.s = s
        self.live = live  # engine/watch.py Live: the batch is processed live (None: a replay or a test)
        self.delays: dict[int, list[float]] = {}  # arrival window -> delays (s) of the batch's events (live)
        self.p = txn.partition
        self.txn = txn
        self.out = out
        self._keys = key_cache

    def key(self, group: str, ws: int) -> tuple[str, WindowKey]:
        k = self._keys.get((group, ws))
        if k is None:
            if len(self._keys) >= KEY_CACHE_MAX:
                self._keys.clear()
            wk = WindowKey(self.p, group, ws)
            k = self._keys[(group, ws)] = (str(wk), wk)
        return k

    def add(self, group: str, ws: int, off: int, fn: Callable[[Bag, object], None], arg) -> bool:
        """fn(bag, arg) into the group's window at ws, unless it holds `off` already; False if it is closed."""
        key, wk = self.key(group, ws)
        return self.txn.add(key, wk, off, fn, arg)

    def count(self, metric: str, ws: int, off: int) -> None:
        """One more of a pipeline counter, in the pipeline window at ws."""
        key, wk = self.key(PIPELINE, ws)
        self.txn.add(key, wk, off, Bag.count, metric)
