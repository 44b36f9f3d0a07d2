"""`python -m bench --only ingest`: what authentication, parsing and the Kafka acknowledgement cost per request.

Single-event ELS POSTs (Okta's shape: one JSON event per request, Authorization header, a unique execution_id
and idempotency_key each) against the real `els ingest` process on the embedded broker, and against a bare
aiohttp handler that answers 202 without work (`bench/bare.py`), on the same machine in the same run:
1. maximum requests/s of each, with Debian's wrk (1 thread, few connections: the machine has 2 cores, shared
   by wrk, the server and the broker; the CPU each one used is reported to show what limits the figure);
2. p50/p99 latency at half of ingest's maximum, with an open-loop constant-rate client (Debian's wrk has no
   `-R`): requests are scheduled at fixed times and latency counts from the scheduled time, so a stalled
   server cannot hide its queue. The same client drives the bare handler at the same rate first, which shows
   the client reaches its target and what latency it adds on its own.
Every figure is checked against the answers (no non-2xx) and against Kafka (every 202 is in the raw topic).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.procs import spawn, stop
from els.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(os.environ.get("ELS_SAMPLES_DIR", ROOT.parent / "shared" / "els-samples")) / "doc-parent-flow-start.json"
if not SAMPLE.exists():
    SAMPLE = Path("/work/shared/els-samples/doc-parent-flow-start.json")
WRK = os.environ.get("WRK", "/usr/bin/wrk")
SECRET = "bench-" + uuid.uuid4().hex
PARTITIONS = 8
CONNECTIONS = 64       # Okta delivers in parallel; below ~32 ingest waits on Kafka round trips, not on CPU
FEW_CONNECTIONS = 16   # one run with few connections shows that latency-bound regime
ROUNDS = 3
WARMUP_S = 2
MAX_RATE_S = 4
CONSTANT_RATE_S = 10


def _template() -> str:
    """The sample event with @ID@ where the per-request ids go (the Lua script and our client fill it in)."""
    ev = json.loads(SAMPLE.read_text())
    ev["execution_id"] = "@ID@"
    ev["idempotency_key"] = "ik-@ID@"
    return json.dumps(ev)


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds a process used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_ready(url: str, proc: subprocess.Popen, label: str, timeout: float = 60) -> None:
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


def _wrk(url: str, template: Path, seconds: int, connections: int, pids: dict[str, int]) -> dict:
    """One wrk run at maximum rate: requests/s, errors, and the CPU share of wrk and of each pid."""
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(ROOT / "bench" / "ingest.lua"),
           url + "/v1/events", "--", str(template), SECRET]
    before = {k: _cpu_s(p) for k, p in pids.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    total = int(re.search(r"(\d+) requests in", out.stdout).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    errors = re.search(r"Socket errors: (.*)", out.stdout)
    used = {k: _cpu_s(p) - before[k] for k, p in pids.items()}
    cpu = {f"{k}_cpu_pct": round(100 * s / wall) for k, s in used.items()}
    cpu.update({f"{k}_cpu_us_per_request": round(1e6 * s / total, 1) for k, s in used.items() if total})
    cpu["wrk_cpu_pct"] = round(100 * (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / wall)
    return {"rps": rps, "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else "", **cpu}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the constant-rate client: callbacks only, no task or future
    per request, so the client costs little CPU on a machine it shares with the server and the broker."""

    def __init__(self, client: _ConstantRate):
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.due = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes, due: float) -> None:
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        m = re.search(rb"\ncontent-length:\s*(\d+)", head)
        size = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buf) < size:
            return
        status = int(head[9:12])
        del self.buf[:size]
        self.client.answered(self, status, self.due)

    def connection_lost(self, exc) -> None:
        self.client.lost(self)


class _ConstantRate:
    """Open loop: request i is due at start + i/rate whatever the server does; latency counts from when it
    was due (no coordinated omission: a request waiting for a free connection waits on the clock)."""

    def __init__(self, port: int, template: str, tag: str, connections: int = 64):
        self.port, self.template, self.tag, self.connections = port, template, tag, connections
        self.idle: list[_Connection] = []
        self.queue: deque[float] = deque()
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.loop = asyncio.get_running_loop()
        self.n = 0
        self.head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {SECRET}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ")

    def _request(self) -> bytes:
        self.n += 1
        body = self.template.replace("@ID@", f"{self.tag}-{self.n}").encode()
        return f"{self.head}{len(body)}\r\n\r\n".encode() + body

    def dispatch(self, due: float) -> None:
        if self.idle:
            self.idle.pop().send(self._request(), due)
        else:
            self.queue.append(due)

    def answered(self, conn: _Connection, status: int, due: float) -> None:
        self.statuses[status] += 1
        self.latencies.append(self.loop.time() - due)
        if self.queue:
            conn.send(self._request(), self.queue.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self.statuses["connection_lost"] += 1
        if conn in self.idle:
            self.idle.remove(conn)

    async def run(self, rate: float, seconds: float) -> dict:
        conns = []
        for _ in range(self.connections):
            _t, c = await self.loop.create_connection(lambda: _Connection(self), "127.0.0.1", self.port)
            conns.append(c)
        self.idle = list(conns)
        n = int(rate * seconds)
        start = self.loop.time() + 0.05
        i = late = 0
        while i < n:
            now = self.loop.time()
            while i < n and start + i / rate <= now:
                late += now - (start + i / rate) > 0.005
                self.dispatch(start + i / rate)
                i += 1
            await asyncio.sleep(max(0.0, start + i / rate - self.loop.time()))
        sent_in = self.loop.time() - start
        deadline = self.loop.time() + 60
        while len(self.latencies) < n and self.loop.time() < deadline and self.statuses["connection_lost"] == 0:
            await asyncio.sleep(0.01)
        answered_in = self.loop.time() - start
        for c in conns:
            c.transport.close()
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else -1.0

        return {"target_rps": round(rate), "sent_rps": round(n / sent_in), "answered_rps": round(len(lat) / answered_in),
                "ticks_late_over_5ms": late, "statuses": dict(self.statuses),
                "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


async def _raw_records(bootstrap: str, topic: str) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await c.end_offsets(tps)).values())
    finally:
        await c.stop()


async def ingest_bench(bootstrap: str, broker_pid: int | None = None) -> dict:
    if not Path(WRK).exists():
        raise RuntimeError(f"{WRK} not found: install Debian's wrk (apt-get install wrk)")
    (ROOT / "var").mkdir(exist_ok=True)
    template = _template()
    tmpl_file = Path(tempfile.mkstemp(prefix="bench-ingest-", suffix=".json")[1])
    tmpl_file.write_text(template)
    topic = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    ingest_port, bare_port = free_port(), free_port()
    ingest, ingest_log = spawn([sys.executable, "-m", "els.cli", "ingest"], {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_AUTH_TOKENS": SECRET, "ELS_INGEST_HOST": "127.0.0.1",
        "ELS_INGEST_PORT": str(ingest_port), "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": topic,
        "ELS_DEADLETTER_TOPIC": topic + "-dl"}, "ingest")
    bare, bare_log = spawn([sys.executable, "-m", "bench.bare", str(bare_port)], {}, "bare")
    servers = {"bare": (f"http://127.0.0.1:{bare_port}", bare), "ingest": (f"http://127.0.0.1:{ingest_port}", ingest)}
    runs: dict[str, list[dict]] = {"bare": [], "ingest": [], "bare_few": [], "ingest_few": []}
    try:
        for label, (url, proc) in servers.items():
            await _wait_ready(url, proc, label)
        pids = {"broker": broker_pid} if broker_pid else {}
        warmups = {label: _wrk(url, tmpl_file, WARMUP_S, CONNECTIONS, {"server": proc.pid, **pids})
                   for label, (url, proc) in servers.items()}  # its 202s are in the raw topic too
        # Alternate short runs: the machine is shared, so each ratio compares runs seconds apart.
        for _ in range(ROUNDS):
            for label, (url, proc) in servers.items():
                runs[label].append(_wrk(url, tmpl_file, MAX_RATE_S, CONNECTIONS, {"server": proc.pid, **pids}))
        for label, (url, proc) in servers.items():
            runs[label + "_few"].append(_wrk(url, tmpl_file, MAX_RATE_S, FEW_CONNECTIONS,
                                             {"server": proc.pid, **pids}))
        for label, rs in runs.items():
            for r in rs:
                print(f"wrk {label}: {r}", file=sys.stderr)
        ratios = [i["rps"] / b["rps"] for i, b in zip(runs["ingest"], runs["bare"], strict=True)]
        ingest_rps = statistics.median(r["rps"] for r in runs["ingest"])
        rate = ingest_rps / 2
        const_bare = await _ConstantRate(bare_port, template, "cb").run(rate, CONSTANT_RATE_S)
        print(f"constant rate bare: {const_bare}", file=sys.stderr)
        const_ingest = await _ConstantRate(ingest_port, template, "ci").run(rate, CONSTANT_RATE_S)
        print(f"constant rate ingest: {const_ingest}", file=sys.stderr)
        in_kafka = await _raw_records(bootstrap, topic)
    finally:
        stop(ingest, ingest_log)
        stop(bare, bare_log)
        tmpl_file.unlink(missing_ok=True)
    wrk_ingest = [warmups["ingest"], *runs["ingest"], *runs["ingest_few"]]
    accepted = sum(r["requests"] - r["non_2xx"] for r in wrk_ingest) + const_ingest["statuses"].get(202, 0)
    non_2xx = sum(r["non_2xx"] for r in wrk_ingest) + sum(v for k, v in const_ingest["statuses"].items() if k != 202)
    if in_kafka < accepted:
        print(f"WARNING: {accepted} requests answered 202 but the raw topic holds {in_kafka} records",
              file=sys.stderr)

    def cpu(label: str) -> dict:
        return {k: round(statistics.mean(r[k] for r in runs[label])) for k in runs[label][0] if k.endswith("_cpu_pct")}

    return {
        "ingest_rps": round(ingest_rps),
        "ingest_bare_rps": round(statistics.median(r["rps"] for r in runs["bare"])),
        "ingest_ratio_vs_bare": round(statistics.median(ratios), 3),
        "ingest_ratios_per_round": [round(r, 3) for r in ratios],
        "ingest_connections": CONNECTIONS,
        "ingest_cpu_pct": cpu("ingest"), "ingest_bare_cpu_pct": cpu("bare"),
        "ingest_few_connections": FEW_CONNECTIONS,
        "ingest_few_rps": round(runs["ingest_few"][0]["rps"]), "ingest_few_bare_rps": round(runs["bare_few"][0]["rps"]),
        "ingest_half_rate_rps": round(rate),
        "ingest_half_rate_answered_rps": const_ingest["answered_rps"],
        "ingest_p50_ms": const_ingest["p50_ms"], "ingest_p99_ms": const_ingest["p99_ms"],
        "ingest_max_ms": const_ingest["max_ms"],
        "ingest_client_vs_bare_answered_rps": const_bare["answered_rps"],
        "ingest_client_vs_bare_p50_ms": const_bare["p50_ms"], "ingest_client_vs_bare_p99_ms": const_bare["p99_ms"],
        "ingest_client_late_ticks": const_ingest["ticks_late_over_5ms"] + const_bare["ticks_late_over_5ms"],
        "ingest_non_2xx": non_2xx, "ingest_202_answers": accepted, "ingest_raw_records": in_kafka,
    }
