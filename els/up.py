"""`els up`: the whole pipeline in one foreground command, and what to paste into Okta.

With a Docker engine (`docker info` succeeds) it runs `docker compose up --build` on the repository's
docker-compose.yml (real Kafka). Without one (a docker client alone does not count) it runs the embedded broker,
`els ingest` and `els process` itself. Either way the ingest secret comes from ELS_AUTH_TOKENS, or is generated
once into var/ingest-secret and reused, so the value pasted into Okta stays valid across restarts. What to set in
Okta, and the status page, are printed once ingest's /readyz answers and the worker's /els/stats/ says `ready`
(its partitions assigned and recovered): "ready" is then true, not seconds early.

In the embedded mode the children run in their own process group, so a Ctrl-C reaches only `els up`, which
stops them in order (ingest, so nothing more is accepted; processor; broker) and waits for each; SIGTERM and SIGHUP do the same, and a
second Ctrl-C kills what is left. The children also get SIGTERM from the kernel if `els up` itself dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from common.config import Config
from els.broker import BrokerError, EmbeddedBroker, port_is_free, split_host_port
from ingest.tls import certificate_days_left

SECRET_FILE = Path("var/ingest-secret")
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
# the embedded broker holds a group's first join for a time that grows with both timeouts (measured: session
# 60 s -> ~30 s, session 6 s -> ~4 s, with a 3 s rebalance timeout)
EMBEDDED_REBALANCE_TIMEOUT = "3"
EMBEDDED_SESSION_TIMEOUT = "6"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """A stop signal arrived: shut down in order."""


def load_or_create_secret(path: Path = SECRET_FILE) -> str:
    """The secret kept in `path`, created (mode 600) on first use; an empty file counts as none."""
    with contextlib.suppress(FileNotFoundError):
        value = path.read_text().strip()
        if value:
            return value
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _compose_command() -> list[str] | None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=15).returncode == 0:
            return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


def _local_host(cfg: Config) -> str:
    return "127.0.0.1" if cfg.els_ingest_host in ("0.0.0.0", "::", "") else cfg.els_ingest_host


def status_url(cfg: Config) -> str:
    """The status page every worker serves (published on 127.0.0.1 by docker compose too)."""
    return f"http://127.0.0.1:{cfg.els_web_port}/els/status/"


def _banner(cfg: Config, secret: str | None, configured: bool, engine: str, processor_ready: bool = True) -> str:
    if cfg.els_auth_disabled and not cfg.auth_tokens:
        value = "(none: ELS_AUTH_DISABLED=1, development only)"
    elif configured:
        value = "Bearer <one of your ELS_AUTH_TOKENS>"
    else:
        value = f"Bearer {secret}"
    datadog = ("sending to Datadog (" + cfg.dd_site + ")" if cfg.dd_api_key else
               f"DRY RUN: DD_API_KEY is not set, so nothing is sent; the requests go to {cfg.els_dry_run_file}"
               + (" inside the processor container" if engine == "docker" else ""))
    state = "ready" if processor_ready else \
        "ingest is ready, the processor is still starting (events wait in Kafka meanwhile)"
    if cfg.els_tls_cert_file:
        days = certificate_days_left(cfg.els_tls_cert_file)
        https = [f"                (certificate {cfg.els_tls_cert_file}: "
                 + ("unreadable" if days is None else f"expires in {days:.0f} days"
                    + (": renew it soon, Okta stops delivering when it expires" if days < 14 else "")) + ")"]
    else:
        https = ["                (Okta's cloud needs https://<this host's public name>/v1/events: set "
                 "ELS_TLS_CERT_FILE", "                 and ELS_TLS_KEY_FILE, or put it behind your HTTPS reverse "
                 "proxy or load balancer)"]
    lines = [
        "",
        f"els up ({engine}): {state}. In Okta Workflows, set up Execution Log Streaming with:",
        f"  URL:          {ingest_url(cfg)}/v1/events",
        *https,
        f"  Header name:  {cfg.els_auth_header}",
        f"  Header value: {value}",
    ]
    if not configured and secret:
        lines.append(f"  (the secret is kept in {SECRET_FILE} and reused; set ELS_AUTH_TOKENS to choose your own)")
    lines += [
        "  Event types:  all flow execution events",
        f"  Datadog:      {datadog}",
        f"  Status page:  {status_url(cfg)}",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def ingest_url(cfg: Config) -> str:
    """Where ingest answers on this machine: https once it has a certificate (ELS_TLS_CERT_FILE)."""
    scheme = "https" if cfg.els_tls_cert_file else "http"
    return f"{scheme}://{_local_host(cfg)}:{cfg.els_ingest_port}"


def ingest_ready(cfg: Config) -> bool:
    """Ingest's /readyz: 200 once its producer reaches the broker. Over HTTPS the certificate is not checked:
    it names the public host, and this asks 127.0.0.1 only whether the process is up."""
    context = None
    if cfg.els_tls_cert_file:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError), \
            urllib.request.urlopen(f"{ingest_url(cfg)}/readyz", timeout=2, context=context) as r:
        return r.status == 200
    return False


def worker_ready(cfg: Config) -> bool:
    """The worker's /els/stats/ says `ready`: its partitions are assigned and their state recovered. Its web
    server answers seconds earlier, while Faust still waits for the group to form."""
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError), \
            urllib.request.urlopen(f"http://127.0.0.1:{cfg.els_web_port}/els/stats/", timeout=2) as r:
        return json.loads(r.read()).get("ready") is True
    return False


def run(cfg: Config) -> int:
    configured = bool(cfg.auth_tokens)
    secret = None
    env = dict(os.environ)
    if not configured and not cfg.els_auth_disabled:
        secret = load_or_create_secret()
        env["ELS_AUTH_TOKENS"] = secret
    if docker_engine_answers():
        return run_docker(cfg, env, secret, configured)
    return run_embedded(cfg, env, secret, configured)


def run_docker(cfg: Config, env: dict[str, str], secret: str | None, configured: bool) -> int:
    """`docker compose up --build` in the foreground, the secret passed through the environment."""
    compose = _compose_command()
    if compose is None:
        print("els up: a Docker engine answers but neither `docker compose` nor `docker-compose` is installed.",
              file=sys.stderr)
        return 2
    if not COMPOSE_FILE.exists():
        print(f"els up: {COMPOSE_FILE} not found: run `els up` from a checkout of the repository.", file=sys.stderr)
        return 2
    if cfg.els_auth_disabled and not cfg.auth_tokens:
        env["ELS_AUTH_TOKENS"] = "unused-auth-disabled"  # compose requires a value; ingest ignores it
    print("els up (docker): docker compose up --build; what to set in Okta follows once ingest and the processor "
          "are ready", flush=True)
    proc = subprocess.Popen([*compose, "-f", str(COMPOSE_FILE), "up", "--build"], env=env)

    def forward(signum, frame):
        # Ctrl-C already reached compose (same foreground group): it stops the containers itself.
        if signum != signal.SIGINT and proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        announced = False
        while proc.poll() is None:
            if not announced and ingest_ready(cfg) and worker_ready(cfg):
                print(_banner(cfg, secret, configured, "docker"), flush=True)
                announced = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)
        code = proc.returncode
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if code in (0, 130, -signal.SIGINT, -signal.SIGTERM) else code


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `els up` dies (Linux), and a process group of its own."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_until(check, timeout: float, children: list[tuple[str, subprocess.Popen]]) -> bool:
    """Poll `check` until it holds; False after `timeout` or as soon as a child exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for _, p in children):
            return False
        if check():
            return True
        time.sleep(0.3)
    return False


def run_embedded(cfg: Config, env: dict[str, str], secret: str | None, configured: bool) -> int:
    """Embedded broker + ingest + processor as children of this process, until a signal or a child's exit."""
    env.setdefault("ELS_REBALANCE_TIMEOUT_SECONDS", EMBEDDED_REBALANCE_TIMEOUT)
    env.setdefault("ELS_SESSION_TIMEOUT_SECONDS", EMBEDDED_SESSION_TIMEOUT)
    host, port = split_host_port(cfg.kafka_bootstrap_servers)
    if cfg.kafka_security.protocol != "PLAINTEXT" and port_is_free(host, port):
        print(f"els up: nothing listens on {host}:{port} and the embedded broker speaks only PLAINTEXT, not "
              f"KAFKA_SECURITY_PROTOCOL={cfg.kafka_security.protocol}: start your broker first, or unset the Kafka "
              "security settings", file=sys.stderr)
        return 2
    ingest_bind = "0.0.0.0" if cfg.els_ingest_host in ("", "::") else cfg.els_ingest_host
    for what, bind, p, var in (("ingest", ingest_bind, cfg.els_ingest_port, "ELS_INGEST_PORT"),
                               ("the processor's web server", "0.0.0.0", cfg.els_web_port, "ELS_WEB_PORT")):
        if not port_is_free(bind, p):
            print(f"els up: port {p} for {what} is already in use (another `els up`?). Stop that program or set "
                  f"{var} to a free port.", file=sys.stderr)
            return 2
    broker: EmbeddedBroker | None = None
    children: list[tuple[str, subprocess.Popen]] = []
    stopping = {"force": False}

    def on_signal(signum, frame):
        if stopping.get("started"):
            stopping["force"] = signum == signal.SIGINT or stopping["force"]
            return
        stopping["started"] = True
        raise _Stop(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    Path("var").mkdir(exist_ok=True)
    try:
        if port_is_free(host, port):
            try:
                broker = EmbeddedBroker(host, port, log_path="var/broker.log").start()
            except BrokerError as exc:
                print(f"els up: {exc}", file=sys.stderr)
                return 2
            print(f"els up: embedded broker on {broker.bootstrap} (memory storage: its data is lost on exit; "
                  "log in var/broker.log)", flush=True)
        else:
            print(f"els up: using the broker already listening on {host}:{port}", flush=True)
        for name in ("ingest", "process"):
            children.append((name, subprocess.Popen([sys.executable, "-m", "els.cli", name], env=env,
                                                    stdin=subprocess.DEVNULL, process_group=0,
                                                    preexec_fn=_die_with_parent)))
        return _announce_and_watch(cfg, secret, configured, children)
    except _Stop as stop:
        print(f"els up: {signal.Signals(stop.args[0]).name}: stopping ingest, processor and broker", flush=True)
        return 0
    finally:
        stopping["started"] = True
        _stop_children(children, stopping)
        if broker:
            broker.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _announce_and_watch(cfg: Config, secret: str | None, configured: bool,
                        children: list[tuple[str, subprocess.Popen]]) -> int:
    """Print the Okta settings once ingest and the worker are ready (the banner then follows Faust's start-up
    output and stays in view), then watch the children until one exits."""
    if not _wait_until(lambda: ingest_ready(cfg), 90, children):
        if any(p.poll() is not None for _, p in children):
            return _child_died(children)
        print("els up: ingest did not become ready within 90 s (see its log above); stopping", file=sys.stderr)
        return 1
    ready = _wait_until(lambda: worker_ready(cfg), 120, children)
    if not ready and any(p.poll() is not None for _, p in children):
        return _child_died(children)
    print(_banner(cfg, secret, configured, "embedded broker", processor_ready=ready), flush=True)
    while all(p.poll() is None for _, p in children):
        if not ready and (ready := worker_ready(cfg)):
            print(f"els up: the processor is ready too; status page: {status_url(cfg)}", flush=True)
        time.sleep(0.5)
    return _child_died(children)


def _child_died(children: list[tuple[str, subprocess.Popen]]) -> int:
    dead = [(n, p.returncode) for n, p in children if p.poll() is not None]
    print("els up: " + "; ".join(f"{n} exited with {rc}" for n, rc in dead) + "; stopping the rest", file=sys.stderr)
    return next((rc for _, rc in dead if rc), 1)


def _stop_children(children: list[tuple[str, subprocess.Popen]], stopping: dict) -> None:
    """SIGTERM each child in order and wait for it (30 s, or until a second Ctrl-C), then SIGKILL."""
    for _name, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline and not stopping["force"]:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
