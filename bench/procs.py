"""The bench's child processes: start one with its output in var/, read its memory, stop it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spawn(cmd: list[str], env: dict, label: str) -> tuple[subprocess.Popen, object]:
    """Start cmd in the repository root with env added, its output in var/bench-<label>.log."""
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / f"bench-{label}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log


def stop(proc: subprocess.Popen, log=None, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; closes its log."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        log.close()


def status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in kB (VmRSS: resident now, VmHWM: peak); 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
