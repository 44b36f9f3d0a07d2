"""The processes a command left behind, read from /proc: so a test can prove everything stopped, and clean up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path


def _proc_stat(pid: int) -> tuple[int, str, str] | None:
    """(ppid, state, start time) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every process below `root`: pid -> (start time, command line)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _proc_stat(int(entry.name))):
            parents.setdefault(st[0], []).append(int(entry.name))
    out, todo = {}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            st = _proc_stat(child)
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if st:
                out[child] = (st[2], cmd)
                todo.append(child)
    return out


def still_running(procs: dict[int, tuple[str, str]]) -> list[str]:
    """Those of `procs` still alive (the same process: its start time matches), as "pid command"."""
    alive = []
    for pid, (start, cmd) in procs.items():
        st = _proc_stat(pid)
        if st and st[2] == start and st[1] != "Z":
            alive.append(f"{pid} {cmd}")
    return alive


def kill_all(procs: dict[int, tuple[str, str]]) -> None:
    """SIGKILL those of `procs` still alive: leave nothing behind for the next test."""
    for entry in still_running(procs):
        with contextlib.suppress(OSError):
            os.kill(int(entry.split()[0]), signal.SIGKILL)


# An ERROR (or worse) in what a command printed: the pipeline's JSON logs, Faust's and aiokafka's text logs,
# Tansu's (Rust tracing: "<time> ERROR <target>: ..."), or a traceback. Colours are removed first.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR = re.compile(r'"level":\s*"(error|critical)"|\[(ERROR|CRITICAL)\]|^(\S+\s+)?(ERROR|CRITICAL)[: ]|^Traceback',
                    re.MULTILINE)


def error_lines(output: str) -> list[str]:
    """The lines of `output` that report an error."""
    return [line for line in _ANSI.sub("", output).splitlines() if _ERROR.search(line)]
