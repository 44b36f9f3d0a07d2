"""Every command the README and docs/ show works as written, on a fresh clone.

The commands are read from the pages themselves (their ```sh blocks, by page and section heading:
tests/unit/docs_pages.py), so this test follows the documentation: a command added there is run here, and a
section that cannot be run here (Docker, Kubernetes, a managed Kafka, HTTPS on a public name) is listed in
docs_pages.NOT_RUN with the reason (tests/unit/test_docs_links.py keeps every ```sh block accounted for). They run
in a clean copy of the repository (tracked and new files, no var/, no test-artifacts/), with the copy as working
directory and on PYTHONPATH, so the copy's code is what runs; the copy's .venv is this test's virtualenv
(installing again is slow), and `make install` must find it up to date.

Only ports are adapted, so tests never collide: KAFKA_BOOTSTRAP_SERVERS, ELS_INGEST_PORT, ELS_WEB_PORT and
ELS_SIMULATE_URL point at free ports, and the pages' literal :8080 and :6066 become those ports. A `docker`
without an engine is first on PATH, so `make up` takes the embedded broker whatever the machine has.

1. docs/running.md "Run it by hand": `make install`, then each `# terminal N` command in the background (the next
   one starts once it is ready: the broker listens, ingest's /readyz answers, the worker's /els/stats/ says
   ready), then the rest in order. A `# -> ...` line under a command is its expected output. The posted sample
   must reach `/els/stats/` `records`, and the worker must hold its chain.
2. `make up` (the README's quick start, again with no var/), and against it the sections of
   docs_pages.AGAINST_MAKE_UP in order (simulated traffic, the web routes and tables, the troubleshooting
   commands, replay, `els datadog install --dry-run`).
A line with a placeholder (`<...>`, `...`, `[--option]`, `$VARIABLE`, example.com) is a template, not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from common.config import SETTINGS
from els.broker import free_port
from tests.helpers.paths import ARTIFACTS, ROOT, SAMPLES
from tests.helpers.procs import descendants, error_lines, kill_all, still_running
from tests.unit import docs_pages
from tests.unit.docs_pages import Command

pytestmark = pytest.mark.slow


# -- a fresh clone ---------------------------------------------------------------------------------------------
def fresh_clone(dest: Path) -> Path:
    """The working tree's tracked and new (not ignored) files, with their times; .venv is this test's."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    assert sys.prefix != sys.base_prefix, "run the tests from the virtualenv (`make test`)"
    (dest / ".venv").symlink_to(sys.prefix)
    assert not (dest / "var").exists()
    return dest


class Stack:
    """The commands' shared environment (ports adapted), and the terminals that are running."""

    def __init__(self, clone: Path, tmp: Path):
        self.clone, self.logs = clone, ARTIFACTS / "readme"
        self.logs.mkdir(parents=True, exist_ok=True)
        bindir = tmp / "bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "docker").write_text("#!/bin/sh\nexit 1\n")  # a client without an engine
        (bindir / "docker").chmod(0o755)
        names = {s.env for s in SETTINGS} | {"ELS_SIMULATE_URL", "ELS_SIMULATE_TOKEN", "PYTHONPATH"}
        self.base_env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("DD_")}
        self.base_env["PATH"] = f"{bindir}{os.pathsep}{self.base_env['PATH']}"
        self.base_env["PYTHONPATH"] = str(clone)
        self.terminals: list[tuple[str, subprocess.Popen, Path]] = []
        self.new_ports()

    def new_ports(self) -> None:
        self.broker, self.ingest, self.web = free_port(), free_port(), free_port()
        self.env = {**self.base_env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.broker}",
                    "ELS_INGEST_PORT": str(self.ingest), "ELS_WEB_PORT": str(self.web),
                    "ELS_SIMULATE_URL": f"http://127.0.0.1:{self.ingest}/v1/events"}

    def adapt(self, text: str) -> str:
        return re.sub(r":6066\b", f":{self.web}", re.sub(r":8080\b", f":{self.ingest}", text))

    def run(self, cmd: Command, timeout: float = 120) -> subprocess.CompletedProcess:
        text = self.adapt(cmd.text)
        proc = subprocess.run(["bash", "-c", text], cwd=self.clone, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        with (self.logs / "commands.log").open("a") as log:
            log.write(f"$ {text}\n[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}\n")
        assert proc.returncode == 0, f"{cmd.text}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        if cmd.expect is not None:
            assert json.loads(proc.stdout) == json.loads(cmd.expect), (cmd.text, proc.stdout)
        return proc

    def start(self, cmd: Command, name: str) -> Path:
        log = self.logs / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(["bash", "-c", self.adapt(cmd.text)], cwd=self.clone, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.terminals.append((cmd.text, proc, log))
        return log

    def stop_all(self) -> None:
        """Ctrl-C in every terminal, newest first (as a user would close them); nothing may be left running."""
        for text, proc, _log in reversed(self.terminals):
            procs = descendants(proc.pid)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            finally:
                left = still_running(procs)
                kill_all(procs)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            assert left == [], f"{text}: left running after Ctrl-C: {left}"
        self.terminals = []

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for _t, _p, log in self.terminals)


# -- waiting for a terminal to be ready --------------------------------------------------------------------------
def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_for(check, what: str, stack: Stack, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [(t, p.returncode) for t, p, _ in stack.terminals if p.poll() is not None]
        assert not dead, f"exited while waiting for {what}: {dead}\n{stack.output()[-4000:]}"
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{stack.output()[-4000:]}")


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def worker_ready(stack: Stack) -> bool:
    status, body = get(f"http://127.0.0.1:{stack.web}/els/stats/")
    return status == 200 and json.loads(body).get("ready") is True


def ready_check(cmd: Command, stack: Stack):
    """When what a terminal runs is ready: what its user waits for before typing the next command."""
    if "els broker" in cmd.text:
        return lambda: _listens(stack.broker)
    if "els ingest" in cmd.text:
        return lambda: get(f"http://127.0.0.1:{stack.ingest}/readyz")[0] == 200
    if "els process" in cmd.text:
        return lambda: worker_ready(stack)
    raise AssertionError(f"this test does not know when `{cmd.text}` is ready: teach ready_check")


def stats_records(stack: Stack, cmd: Command) -> int:
    """The README's /els/stats/ command, run as written until the worker has read something."""
    deadline = time.monotonic() + 60
    while True:
        records = json.loads(stack.run(cmd).stdout).get("records", 0)  # absent before the first batch
        if records >= 1 or time.monotonic() > deadline:
            return records
        time.sleep(1)


# -- the test ----------------------------------------------------------------------------------------------------
def by_hand(stack: Stack) -> None:
    cmds = docs_pages.runnable(*docs_pages.BY_HAND[0])
    # never reinstall into the shared virtualenv from a temporary copy
    assert subprocess.run(["make", "-q", "install"], cwd=stack.clone, env=stack.env).returncode == 0, \
        "the virtualenv is not up to date: run `make install` first"
    for i, cmd in enumerate(cmds):
        if cmd.terminal:
            stack.start(cmd, f"terminal-{i}")
            wait_for(ready_check(cmd, stack), cmd.text, stack)
        elif "/els/stats/" in cmd.text:
            assert stats_records(stack, cmd) >= 1, "the posted sample did not reach /els/stats/ records"
        else:
            stack.run(cmd)
    # the worker holds the posted event's chain (its execution id is the chain's root)
    root = json.loads((SAMPLES / "doc-parent-flow-start.json").read_text())["execution_id"]
    status, body = get(f"http://127.0.0.1:{stack.web}/els/chains/{root}/")
    assert status == 200, body
    assert (stack.clone / "var" / "faust").is_dir()
    started = stack.output()
    assert error_lines(started) == []


def against_make_up(stack: Stack) -> None:
    make_up = [c for c in docs_pages.section_commands(*docs_pages.QUICK_START) if c.text.startswith("make up")]
    assert len(make_up) == 1, "README's quick start no longer shows `make up`"
    stack.start(Command(make_up[0].text, terminal=True), "make-up")
    wait_for(lambda: re.search(r"els up \(embedded broker\): ready\.", stack.output()), "make up: ready", stack,
             timeout=150)
    assert f"Status page:  http://127.0.0.1:{stack.web}/els/status/" in stack.output()
    assert worker_ready(stack)
    for page, heading in docs_pages.AGAINST_MAKE_UP:
        for cmd in docs_pages.runnable(page, heading):
            if cmd.text.split()[0] in OPTIONAL_TOOLS and not shutil.which(cmd.text.split()[0]):
                continue  # a diagnostic tool this machine lacks (not a reason to fail the pipeline's commands)
            stack.run(cmd)
    assert (stack.clone / "var" / "expected.json").exists()  # simulate's --expected-json, var/ created for it
    assert error_lines(stack.output()) == []


OPTIONAL_TOOLS = {"ss"}


def test_readme_commands_work_on_a_fresh_clone(tmp_path):
    for tool in ("curl", "jq"):  # the documentation's examples use them
        if not shutil.which(tool):
            assert os.environ.get("CI") != "true", f"{tool} is missing"
            pytest.skip(f"the documentation's examples use {tool}")
    stack = Stack(fresh_clone(tmp_path / "clone"), tmp_path)
    (stack.logs / "commands.log").unlink(missing_ok=True)
    try:
        by_hand(stack)
        stack.stop_all()
        shutil.rmtree(stack.clone / "var")  # `make up` on a fresh clone too
        stack.new_ports()
        against_make_up(stack)
    finally:
        stack.stop_all()
