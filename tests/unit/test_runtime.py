"""The worker process's own tuning (processor/runtime.py)."""

from __future__ import annotations

import gc
import time

from processor import runtime


def test_free_memory_is_released_where_the_c_library_can_and_never_fails_elsewhere(monkeypatch):
    runtime.release_free_memory()  # glibc here: malloc_trim
    monkeypatch.setattr(runtime, "_MALLOC_TRIM", None)
    runtime.release_free_memory()  # musl, macOS: nothing to do


def test_malloc_arenas_are_limited_unless_the_operator_chose_or_the_c_library_cannot(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert runtime.limit_malloc_arenas()  # glibc here: mallopt(M_ARENA_MAX, 2) succeeds
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not runtime.limit_malloc_arenas()  # glibc read the operator's own setting at start
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setattr(runtime, "_MALLOPT", None)
    assert not runtime.limit_malloc_arenas()  # musl, macOS: nothing to do


def test_time_in_the_garbage_collector_is_left_out_of_a_threads_cpu_time():
    runtime.count_gc_time()
    runtime.count_gc_time()  # twice: counted once
    assert gc.callbacks.count(runtime._count_gc_time) == 1
    garbage = [[i] for i in range(300_000)]  # a collection that walks them takes tens of milliseconds
    cpu, outside = time.thread_time(), runtime.cpu_time_outside_gc()
    for _ in range(3):
        gc.collect()
    spent, outside_gc = time.thread_time() - cpu, runtime.cpu_time_outside_gc() - outside
    del garbage
    assert spent > 0.01 and outside_gc < spent / 2
