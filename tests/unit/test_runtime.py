"""The worker process's own tuning (processor/runtime.py)."""

from __future__ import annotations

from processor import runtime


def test_free_memory_is_released_where_the_c_library_can_and_never_fails_elsewhere(monkeypatch):
    runtime.release_free_memory()  # glibc here: malloc_trim
    monkeypatch.setattr(runtime, "_MALLOC_TRIM", None)
    runtime.release_free_memory()  # musl, macOS: nothing to do
