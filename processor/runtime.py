"""The worker process's own tuning, applied by processor/app.py (the module that makes a process a worker)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system after a flush. A flush frees the transaction's decoded
    records, and a tick's outputs, all at once, interleaved with the records that stay (the tables' bytes), so the
    heap keeps free pages between live ones that glibc returns only when asked. On a 100k-event backlog: peak
    RSS 197 -> 188 MB; a call takes ~1 ms, once per flush (docs/benchmarks.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
