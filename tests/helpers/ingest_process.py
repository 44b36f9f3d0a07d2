"""`els ingest` as operators run it, over HTTP or HTTPS, its output in a file so a full pipe can never stall it."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid

from els.broker import free_port
from tests.helpers.paths import ARTIFACTS, ROOT


class IngestProcess:
    def __init__(self, env: dict[str, str], client: ssl.SSLContext | None = None, name: str = "ingest"):
        """Start it and wait until /readyz answers 200; `client`: talk HTTPS with this context."""
        self.port = free_port()
        self.client = client
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{uuid.uuid4().hex[:8]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        # ingest makes the processor's changelogs too, named after ELS_APP_ID: one per raw topic, as the tests'
        # workers have, so tests sharing the broker with other partition counts never meet each other's
        app_id = {"ELS_APP_ID": "els-" + env["ELS_RAW_TOPIC"]} if "ELS_RAW_TOPIC" in env else {}
        self.proc = subprocess.Popen([sys.executable, "-m", "els.cli", "ingest"], cwd=ROOT,
                                     env={**os.environ, "ELS_INGEST_HOST": "127.0.0.1",
                                          "ELS_INGEST_PORT": str(self.port), **app_id, **env},
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.request("GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"ingest never became ready:\n{self.output()}")

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.client is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.client)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> tuple[int, bytes]:
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post(self, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
        """One POST on its own connection (a refused request may close it); headers may repeat."""
        conn = self.connection(timeout=120)
        try:
            conn.putrequest("POST", "/v1/events", skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
