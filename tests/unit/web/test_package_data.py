"""The status page is a static file: a non-editable install (the Dockerfile's `pip install .`) must ship it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from processor.web.page import PAGE, PAGE_FILE
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow


def test_a_non_editable_install_has_the_status_page(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):  # what the Dockerfile copies before `pip install .`
        shutil.copy(ROOT / name, src / name)
    for pkg in ("common", "els", "ingest", "processor"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = target / "processor" / "web" / PAGE_FILE.name
    assert installed.is_file(), sorted(p.name for p in (target / "processor" / "web").iterdir())
    check = ("import sys; sys.path.insert(0, sys.argv[1]); import processor.web.page as p; "
             "assert p.__file__.startswith(sys.argv[1]), p.__file__; print(len(p.PAGE))")
    out = subprocess.run([sys.executable, "-c", check, str(target)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout) == len(PAGE) > 10_000
