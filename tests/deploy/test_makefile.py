"""The Makefile's choice of Python when PYTHON is not given: the newest python3.x on PATH that actually runs
(pyenv puts shims of unselected versions on PATH that fail), else python3, else a clear message. Each case runs
make with a PATH holding only the interpreters the case names (this test's own Python under those names).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
SHOW = 'show: ; @echo "PYTHON=[$(PYTHON)]"'
BROKEN_SHIM = "#!/bin/sh\necho \"pyenv: command not found\" >&2\nexit 127\n"

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _bin(tmp_path: Path, working: list[str], broken: list[str]) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in working:
        (directory / name).symlink_to(sys.executable)
    for name in broken:
        (directory / name).write_text(BROKEN_SHIM)
        (directory / name).chmod(0o755)
    return directory


def _make(tmp_path: Path, directory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = str(directory)
    return subprocess.run([MAKE, "--no-print-directory", "-C", str(ROOT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def _chosen(tmp_path: Path, working: list[str], broken: list[str] = ()) -> str:
    proc = _make(tmp_path, _bin(tmp_path, working, list(broken)), "--eval", SHOW, "show")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(("working", "broken", "chosen"), [
    (["python3.11", "python3.12", "python3.13", "python3"], [], "python3.13"),
    (["python3.11", "python3.12"], ["python3.13"], "python3.12"),
    (["python3.11", "python3"], ["python3.13", "python3.12"], "python3.11"),
    (["python3"], ["python3.13", "python3.12"], "python3"),
    ([], ["python3.13", "python3.12", "python3.11", "python3"], ""),
])
def test_newest_runnable_python_is_chosen(tmp_path, working, broken, chosen):
    assert _chosen(tmp_path, working, broken) == f"PYTHON=[{chosen}]"


def test_no_python_says_so_before_doing_anything(tmp_path):
    venv = tmp_path / "venv"
    proc = _make(tmp_path, _bin(tmp_path, [], ["python3.12"]), "install", f"VENV={venv}")
    assert proc.returncode != 0
    assert "no supported Python found" in proc.stdout + proc.stderr
    assert "make PYTHON=" in proc.stdout + proc.stderr
    assert not venv.exists()


def test_a_given_python_that_does_not_run_is_refused(tmp_path):
    venv = tmp_path / "venv"
    proc = _make(tmp_path, _bin(tmp_path, [], ["python3.12"]), "install", f"VENV={venv}", "PYTHON=python3.12")
    assert proc.returncode != 0
    assert "PYTHON=python3.12 does not run" in proc.stdout + proc.stderr
    assert not venv.exists()
