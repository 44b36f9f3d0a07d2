"""The worker process's own tuning, applied by processor/app.py (the module that makes a process a worker)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import os
import threading
import time

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
    count_gc_time()


_gc_time = threading.local()  # per thread: CPU seconds spent in the garbage collector, and when the current began


def _count_gc_time(phase: str, info: dict) -> None:
    now = time.thread_time()
    if phase == "start":
        _gc_time.started = now
    elif (started := getattr(_gc_time, "started", None)) is not None:
        _gc_time.total = getattr(_gc_time, "total", 0.0) + now - started
        _gc_time.started = None


def count_gc_time() -> None:
    """From now on, each thread's time in the garbage collector is counted (cpu_time_outside_gc)."""
    if _count_gc_time not in gc.callbacks:
        gc.callbacks.append(_count_gc_time)


def cpu_time_outside_gc() -> float:
    """This thread's CPU seconds, less those it spent collecting garbage. A collection runs in whichever thread
    allocates when the threshold is reached, and takes 50-100 ms here (GC_THRESHOLDS), whatever allocated the
    objects: a timing of a few hundred milliseconds (the sink's encoding) that caught one would count it as its
    own."""
    return time.thread_time() - getattr(_gc_time, "total", 0.0)


def _libc_function(name: str):
    """A glibc function (malloc_trim, mallopt), or None where the C library has none (musl, macOS)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    return None


_MALLOC_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt")
M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> bool:
    """At most two C heaps (glibc arenas) for the whole process. Faust's consumer runs aiokafka in a thread of its
    own, which parses fetched records in an arena of its own that the main thread frees into, so its free pages
    sit apart from the main heap's; glibc allows 8 per core. Called before Faust starts that thread; an operator's
    MALLOC_ARENA_MAX (glibc's own variable) is left as it is. Measured: peak RSS on the 100k-event backlog
    195 -> 182 MB, throughput within the noise (docs/benchmarks.md). False when nothing was changed."""
    if os.environ.get("MALLOC_ARENA_MAX") or _MALLOPT is None:
        return False
    return _MALLOPT(M_ARENA_MAX, MALLOC_ARENAS) == 1


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system after a flush. A flush frees the transaction's decoded
    records, and a tick's outputs, all at once, interleaved with the records that stay (the tables' bytes), so the
    heap keeps free pages between live ones that glibc returns only when asked. On a 100k-event backlog: peak
    RSS 197 -> 188 MB; a call takes ~1 ms, once per flush (docs/benchmarks.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


LOOP_PROBE_ENV = "ELS_LOOP_PROBE"
LOOP_PROBE_INTERVAL_S = 0.01
LOOP_STALL_MS = 20        # stalls at least this long are kept, with when they ended
LOOP_STALLS_KEPT = 200


class LoopProbe:
    """A loop-lag probe: a task that sleeps LOOP_PROBE_INTERVAL_S and measures how late it wakes up. Anything
    that holds the event loop (rendering a close-out, encoding, a flush's state writes) shows as that lateness.
    Writes into `stats` (the sink's counters, so /els/stats/ shows them as sink_loop_*): `loop_lag_max_ms`, the
    longest since the start, and `loop_stalls`, the latest LOOP_STALLS_KEPT stalls of LOOP_STALL_MS or more as
    [wall-clock ms when it ended, ms], so a bench can take the longest within a time range (the close-out).
    Python's garbage collections stop every thread; those of LOOP_STALL_MS or more are kept the same way in
    `gc_pauses`, [ended, ms, generation, thread], so a stall can be told from a collection."""

    def __init__(self, stats: dict):
        self.stats = stats
        self.task = None
        self._gc_started = 0.0

    def start(self) -> None:
        if self.task is None:
            self.stats["loop_lag_max_ms"] = 0
            self.stats["loop_stalls"] = []
            self.stats["gc_pauses"] = []
            gc.callbacks.append(self._on_gc)
            self.task = asyncio.get_running_loop().create_task(self.run())

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._gc_started) * 1000
        if ms >= LOOP_STALL_MS:
            pauses = self.stats["gc_pauses"]
            pauses.append([int(time.time() * 1000), round(ms, 1), info.get("generation"),
                           threading.current_thread().name])
            del pauses[:-LOOP_STALLS_KEPT]

    async def run(self) -> None:
        stats = self.stats
        while True:
            t = time.perf_counter()
            await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
            lag_ms = (time.perf_counter() - t - LOOP_PROBE_INTERVAL_S) * 1000
            if lag_ms > stats["loop_lag_max_ms"]:
                stats["loop_lag_max_ms"] = round(lag_ms, 1)
            if lag_ms >= LOOP_STALL_MS:
                stalls = stats["loop_stalls"]
                stalls.append([int(time.time() * 1000), round(lag_ms, 1)])
                del stalls[:-LOOP_STALLS_KEPT]


def loop_probe(stats: dict) -> LoopProbe | None:
    """A LoopProbe writing into `stats` when ELS_LOOP_PROBE is set (the bench sets it), else None."""
    return LoopProbe(stats) if os.environ.get(LOOP_PROBE_ENV, "").strip() not in ("", "0") else None
