"""`els up`: broker + ingest + processor as one foreground process group, for a machine without Docker.

It starts the embedded broker unless one already answers at KAFKA_BOOTSTRAP_SERVERS, generates an ingest
secret into var/ingest-secret on first run when none is configured, prints what to paste into Okta, and on
Ctrl-C (or SIGTERM) stops every child, processor first, broker last.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from els.broker import EmbeddedBroker, port_is_free, split_host_port, wait_for_port
from els.config import Config

SECRET_FILE = Path("var/ingest-secret")


def _secret() -> str:
    if SECRET_FILE.exists():
        return SECRET_FILE.read_text().strip()
    SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    SECRET_FILE.write_text(value + "\n")
    SECRET_FILE.chmod(0o600)
    return value


def run(cfg: Config) -> int:
    env = dict(os.environ)
    env.setdefault("ELS_REBALANCE_TIMEOUT_SECONDS", "3")
    secret = None
    if not cfg.auth_tokens and not cfg.els_auth_disabled:
        secret = _secret()
        env["ELS_AUTH_TOKENS"] = secret
    host, port = split_host_port(cfg.kafka_bootstrap_servers)
    broker = None
    children: list[tuple[str, subprocess.Popen]] = []
    Path("var").mkdir(exist_ok=True)
    try:
        if port_is_free(host, port):
            broker = EmbeddedBroker(host, port, log_path="var/broker.log").start()
            print(f"els up: embedded broker on {broker.bootstrap} (memory storage: data is lost on exit)", flush=True)
        else:
            print(f"els up: using the broker already listening on {host}:{port}", flush=True)
        for name in ("ingest", "process"):
            children.append((name, subprocess.Popen([sys.executable, "-m", "els.cli", name], env=env)))
        ingest_host = "127.0.0.1" if cfg.els_ingest_host in ("0.0.0.0", "::") else cfg.els_ingest_host
        wait_for_port(ingest_host, cfg.els_ingest_port, 30)
        url = f"http://{ingest_host}:{cfg.els_ingest_port}/v1/events"
        print("\n".join([
            "",
            "Okta Workflows -> Settings -> Execution log streaming:",
            f"  URL:                    {url}  (behind your HTTPS endpoint)",
            f"  Authorization header:   {cfg.els_auth_header}: Bearer {secret or '<one of ELS_AUTH_TOKENS>'}",
            f"  Status page / tables:   http://127.0.0.1:{cfg.els_web_port}/els/flows/",
            "  Datadog:                " + ("API key set" if cfg.dd_api_key else
                                           f"dry run, requests written to {cfg.els_dry_run_file}"),
            "Ctrl-C stops everything.",
            "",
        ]), flush=True)
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"els up: {name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    return proc.returncode or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(children):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker:
            broker.stop()
