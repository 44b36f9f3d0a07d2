"""`els up` and `make up`, run as a user runs them.

Without a Docker engine: the embedded broker, ingest and processor start; the banner names the status page and
says "ready" only after the worker is (Faust's "Worker ready", /els/stats/ `ready`); nothing on a normal start is
logged as an ERROR; the printed URL and secret accept an ELS sample (202), the compose health checks pass
against them, and SIGINT or SIGTERM stops every process it started; the secret generated on the first run is
reused on the next. With an engine: `docker compose up --build` gets the secret through its environment, and the
settings for Okta are printed once the stack answers ready (a stand-in `docker` records the call and answers for
the stack; no engine is needed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from common.config import SETTINGS
from els.broker import free_port
from tests.helpers.paths import ARTIFACTS, ROOT, SAMPLES
from tests.helpers.procs import descendants, error_lines, kill_all, still_running

SAMPLE = SAMPLES / "doc-parent-flow-start.json"
pytestmark = pytest.mark.slow


FAKE_DOCKER = """#!{python}
# A `docker` client: `info` succeeds only with an engine; `compose ... up` records its arguments and secret, then
# stands in for the stack: ingest's /readyz answers 200, the worker's /els/stats/ says ready from the 3rd poll on.
import http.server, json, os, sys, threading
ENGINE, RECORD = {engine}, {record!r}
args = sys.argv[1:]
if args[:1] == ["info"]:
    sys.exit(0 if ENGINE else 1)
if args[:2] == ["compose", "version"]:
    sys.exit(0)
with open(RECORD, "w") as f:
    f.write(" ".join(args) + "\\n" + os.environ.get("ELS_AUTH_TOKENS", "") + "\\n")
polls = []

class Stack(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = self.path == "/readyz" or len(polls) >= 2
        if self.path == "/els/stats/":
            polls.append(ready)
            with open(RECORD, "a") as f:
                f.write(f"stats ready={{ready}}\\n")
        body = json.dumps({{"ready": ready}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

for var in ("ELS_INGEST_PORT", "ELS_WEB_PORT"):
    if os.environ.get(var):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ[var])), Stack)
        threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait(120)  # until `els up` forwards SIGTERM
"""


def _fake_docker(bindir: Path, engine: bool, record: Path | None = None) -> None:
    """A `docker` client (see FAKE_DOCKER): no engine is needed to test the Docker path."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable, engine=engine, record=str(record or os.devnull)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env["PATH"] = f"{tmp / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class Up:
    """One `els up` in the foreground, its output collected by a thread (and copied to test-artifacts)."""

    started: list[Up] = []  # killed, with everything below them, after each test (see _no_leftovers)

    def __init__(self, cwd: Path, env: dict[str, str], log: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "els.cli", "up"], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        Up.started.append(self)
        self._log = log.open("w")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._log.write(line)
            self._log.flush()

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            assert self.proc.poll() is None, "els up exited early:\n" + "".join(self.lines[-60:])
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n" + "".join(self.lines[-60:]))

    def stop(self, signum: int, timeout: float = 120) -> int:
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:  # leave nothing behind for the next test, then fail
                kill_all(descendants(self.proc.pid))
                self.proc.kill()
        self._reader.join(10)
        self._log.close()
        return code

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A test that failed before stopping its `els up` leaves nothing running for the next one."""
    yield
    while Up.started:
        proc = Up.started.pop().proc
        if proc.poll() is None:
            kill_all(descendants(proc.pid))
            proc.kill()
            proc.wait()


def _post(url: str, body: bytes, secret: str, timeout: float = 90) -> tuple[int, dict]:
    """POST like Okta does; 503 (Kafka not acknowledging yet) is retried like Okta retries."""
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                return exc.code, {}
        time.sleep(1)



def _line_of(lines: list[str], pattern: str) -> int:
    """Index of the first line matching `pattern`."""
    return next(i for i, line in enumerate(list(lines)) if re.search(pattern, line))


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _health_checks() -> dict[str, list[str]]:
    """The compose file's health-check commands of ingest and processor, run here with this Python."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    out = {}
    for name in ("ingest", "processor"):
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        out[name] = [sys.executable, *test[2:]]
    return out


def test_els_up_without_docker_runs_everything_and_stops_cleanly(tmp_path):
    _fake_docker(tmp_path / "bin", engine=False)  # a docker client without an engine counts as no Docker
    ports = {"ELS_INGEST_PORT": str(free_port()), "ELS_WEB_PORT": str(free_port())}
    env = _env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", **ports)
    work = tmp_path / "work"
    work.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)

    up = Up(work, env, ARTIFACTS / "els-up-1.log")
    url = up.wait_for(r"URL:\s+(http://\S+/v1/events)").group(1)
    secret = up.wait_for(r"Header value: Bearer (\S+)").group(1)
    assert f"http://127.0.0.1:{ports['ELS_INGEST_PORT']}/v1/events" == url
    assert "Header name:  Authorization" in up.text
    assert "DRY RUN" in up.text and "DD_API_KEY is not set" in up.text
    assert (work / "var" / "ingest-secret").read_text().strip() == secret
    assert stat.S_IMODE((work / "var" / "ingest-secret").stat().st_mode) == 0o600
    # the status page, and "ready" only once the worker is: after Faust's own "Worker ready", with /els/stats/ agreeing
    assert f"Status page:  http://127.0.0.1:{ports['ELS_WEB_PORT']}/els/status/" in up.text
    banner = _line_of(up.lines, r"els up \(embedded broker\): ready\.")
    assert _line_of(up.lines, r"Worker ready") < banner, up.text
    assert _get_json(f"http://127.0.0.1:{ports['ELS_WEB_PORT']}/els/stats/")["ready"] is True
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['ELS_WEB_PORT']}/els/status/", timeout=10) as page:
        assert page.status == 200 and b"<html" in page.read().lower()

    children = descendants(up.proc.pid)
    commands = [cmd for _, cmd in children.values()]
    assert any("tansu" in c and "broker" in c for c in commands), commands
    assert any("els.cli ingest" in c for c in commands) and any("els.cli process" in c for c in commands)
    process_pid = next(pid for pid, (_, c) in children.items() if "els.cli process" in c)
    assert b"ELS_REBALANCE_TIMEOUT_SECONDS=3\0" in Path(f"/proc/{process_pid}/environ").read_bytes()

    body = SAMPLE.read_bytes()
    assert _post(url, body, secret) == (202, {"accepted": 1, "rejected": 0})
    assert _post(url, body, "not-the-secret")[0] == 401
    checks = _health_checks()
    check_env = {**os.environ, **ports}
    for name, cmd in checks.items():
        assert subprocess.run(cmd, env=check_env, capture_output=True, timeout=30).returncode == 0, name

    # a quiet start: no ERROR line; the embedded broker's refusal of the idempotent producer is one warning from
    # each producer (ingest's and the worker's)
    started = up.text
    assert error_lines(started) == []
    assert started.count("broker refuses the idempotent producer") == 2, started
    assert "Kafka producer started (idempotent=False)" in started

    code = up.stop(signal.SIGINT)
    assert code in (0, 130), up.text[-3000:]
    assert "stopping ingest, processor and broker" in up.text
    assert still_running(children) == []
    for name, cmd in checks.items():  # the health checks can fail: nothing answers any more
        assert subprocess.run(cmd, env=check_env, capture_output=True, timeout=30).returncode != 0, name

    # Second run, same directory: the same secret (what was pasted into Okta stays valid); SIGTERM stops it too.
    up = Up(work, env, ARTIFACTS / "els-up-2.log")
    assert up.wait_for(r"Header value: Bearer (\S+)").group(1) == secret
    children = descendants(up.proc.pid)
    assert len(children) >= 3
    assert up.stop(signal.SIGTERM) == 0, up.text[-3000:]
    assert still_running(children) == []


def _docker_up(tmp_path: Path, name: str, **extra: str) -> tuple[Up, Path, dict[str, str]]:
    record = tmp_path / "docker-call.txt"
    _fake_docker(tmp_path / "bin", engine=True, record=record)
    ports = {"ELS_INGEST_PORT": str(free_port()), "ELS_WEB_PORT": str(free_port())}
    ARTIFACTS.mkdir(exist_ok=True)
    return Up(tmp_path, _env(tmp_path, **ports, **extra), ARTIFACTS / name), record, ports


def test_els_up_with_docker_runs_compose_with_the_secret_and_announces_once_ready(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "ingest-secret").write_text("kept-secret\n")
    up, record, ports = _docker_up(tmp_path, "els-up-docker.log")
    assert up.wait_for(r"Header value: Bearer (\S+)").group(1) == "kept-secret"
    calls = record.read_text().splitlines()
    assert calls[0] == f"compose -f {ROOT / 'docker-compose.yml'} up --build"
    assert calls[1] == "kept-secret"
    # "ready" only after the worker said so: the two polls answered "not ready" did not announce anything
    assert calls[2:4] == ["stats ready=False", "stats ready=False"] and "stats ready=True" in calls
    assert re.search(r"els up \(docker\): ready\.", up.text)
    assert f"Status page:  http://127.0.0.1:{ports['ELS_WEB_PORT']}/els/status/" in up.text
    assert up.stop(signal.SIGTERM) == 0, up.text


def test_els_up_with_docker_passes_a_configured_secret_and_does_not_print_it(tmp_path):
    up, record, _ = _docker_up(tmp_path, "els-up-docker-configured.log", ELS_AUTH_TOKENS="mine-1,mine-2")
    up.wait_for(r"Header value: ")
    assert up.stop(signal.SIGTERM) == 0, up.text
    assert record.read_text().splitlines()[1] == "mine-1,mine-2"
    assert "mine-1" not in up.text
    assert not (tmp_path / "var" / "ingest-secret").exists()


def test_make_up_runs_els_up(tmp_path):
    """`make up` hands over to `els up` (which chooses Docker or the embedded stack); no virtualenv is built."""
    _fake_docker(tmp_path / "bin", engine=False)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    called = tmp_path / "els-args.txt"
    els = venv / "bin" / "els"
    els.write_text(f'#!/bin/sh\nprintf "%s" "$*" > "{called}"\n')
    els.chmod(0o755)
    (venv / "bin" / "python").symlink_to(sys.executable)
    stamp = venv / ".installed"
    stamp.touch()
    os.utime(stamp, (time.time() + 3600, time.time() + 3600))  # newer than pyproject.toml: nothing to install
    proc = subprocess.run(["make", "-C", str(ROOT), "up", f"VENV={venv}"], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert called.read_text() == "up"


def test_els_up_refuses_a_taken_port_before_starting_anything(tmp_path):
    _fake_docker(tmp_path / "bin", engine=False)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker_port = free_port()
        env = _env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}", ELS_INGEST_PORT=str(port),
                   ELS_WEB_PORT=str(free_port()))
        proc = subprocess.run([sys.executable, "-m", "els.cli", "up"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 2
    assert f"port {port} for ingest is already in use" in proc.stderr and "ELS_INGEST_PORT" in proc.stderr
    assert not (tmp_path / "var" / "broker.log").exists()  # nothing was started


def test_els_up_serves_https_when_given_a_certificate(tmp_path):
    """ELS_TLS_CERT_FILE/KEY_FILE: ingest serves HTTPS, `els up` sees it ready and prints the https URL."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "chain.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    _fake_docker(tmp_path / "bin", engine=False)
    port = free_port()
    env = _env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", ELS_INGEST_PORT=str(port),
               ELS_WEB_PORT=str(free_port()), ELS_TLS_CERT_FILE=str(tmp_path / "chain.pem"),
               ELS_TLS_KEY_FILE=str(tmp_path / "key.pem"), ELS_AUTH_TOKENS="tls-secret")
    work = tmp_path / "work"
    work.mkdir()
    up = Up(work, env, ARTIFACTS / "els-up-https.log")
    url = up.wait_for(r"URL:\s+(\S+/v1/events)").group(1)
    assert url == f"https://127.0.0.1:{port}/v1/events"
    assert up.wait_for(r"certificate \S+chain.pem: expires in (\d+) days\)").group(1).isdigit()
    up.wait_for(r"els up \(embedded broker\): ready\.")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    req = urllib.request.Request(url, data=SAMPLE.read_bytes(), method="POST",
                                 headers={"Authorization": "Bearer tls-secret", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:
        assert resp.status == 202
    assert up.stop(signal.SIGINT) == 0
