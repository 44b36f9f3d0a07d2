"""The worker process's own tuning, applied by processor/app.py (the module that makes a process a worker)."""

from __future__ import annotations

import contextlib
import gc
import os

GC_THRESHOLDS = (50_000, 20, 100)


def use_uvloop() -> None:
    """uvloop under Faust's streams: ~5-10% more events/s on the preloaded-topic bench (docs/benchmarks.md).
    Only where no loop was chosen (`faust --loop` sets FAUST_LOOP) and uvloop is installed."""
    if os.environ.get("FAUST_LOOP") or os.environ.get("F_LOOP"):
        return
    with contextlib.suppress(ImportError):
        import mode.loop

        mode.loop.use("uvloop")


def tune_gc() -> None:
    """A batch allocates tens of thousands of short-lived objects, so the default thresholds (a collection every
    700 allocations) ran the collector ~2,000 times on a 100k-event backlog, and its full collections, which walk
    everything Faust and the state keep, cost ~1.5 s of ~20 s. Objects alive at start are frozen out of the
    collections; these thresholds collect ~50 times instead (what the worker makes is freed by reference counts,
    cycles are few). Measured: GC time 1.66 -> 0.2 s on that backlog, peak RSS unchanged."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
