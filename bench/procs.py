"""The bench's child processes: start one with its output in var/, read its memory, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path

import aiohttp

from els.broker import EmbeddedBroker, terminate

ROOT = Path(__file__).resolve().parent.parent


def spawn(cmd: list[str], env: dict, label: str, cwd: Path = ROOT) -> tuple[subprocess.Popen, object]:
    """Start cmd (in the repository root unless told) with env added, its output in var/bench-<label>.log."""
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / f"bench-{label}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=cwd), log


def stop(proc: subprocess.Popen, log=None, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; closes its log."""
    terminate(proc, timeout)
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


async def worker_stats(session: aiohttp.ClientSession, port: int) -> dict:
    """A worker's /els/stats/, or {} while it does not answer yet (starting) or answers something unreadable."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/els/stats/") as r:
            return await r.json()
    except (aiohttp.ClientError, ValueError):
        return {}


async def wait_ready(url: str, proc: subprocess.Popen, label: str, timeout: float = 60) -> None:
    """Until a child HTTP server answers /readyz 200 (ingest: it reaches Kafka); its log is var/bench-<label>.log."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{label} exited; see var/bench-{label}.log")
            try:
                async with s.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{label} never became ready")


def bench_brokers() -> list[str]:
    """BENCH_BROKER: `embedded` (default), `kafka` (Apache Kafka, els/apache_kafka.py) or `both`, one after the
    other in the same run."""
    kind = os.environ.get("BENCH_BROKER", "embedded").strip().lower() or "embedded"
    if kind not in ("embedded", "kafka", "both"):
        raise SystemExit(f"BENCH_BROKER={kind!r}: use embedded, kafka or both")
    return ["embedded", "kafka"] if kind == "both" else [kind]


@contextlib.contextmanager
def bench_broker(label: str, kind: str = "embedded"):
    """(bootstrap, broker pid or None): KAFKA_BOOTSTRAP_SERVERS if set, else a broker of `kind` for the run."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    (ROOT / "var").mkdir(exist_ok=True)
    if bootstrap:
        yield bootstrap, None
        return
    if kind == "kafka":
        from els.apache_kafka import ApacheKafka

        with ApacheKafka(ROOT / "var" / label, heap_mb=1024) as kafka:
            yield kafka.bootstrap, kafka.nodes[0].proc.pid
        return
    broker = EmbeddedBroker(log_path=str(ROOT / "var" / f"{label}.log")).start()
    try:
        yield broker.bootstrap, broker.proc.pid
    finally:
        broker.stop()
