"""`python -m bench --only ingest`: what the front door costs per request, and how much of it is ingest's own.

Single-event ELS POSTs (Okta's shape: one JSON event per request, Authorization header, a unique execution_id
and idempotency_key each) against six servers on the embedded broker, same machine, same run (bench/ab.py
starts them):
- `bare`: an aiohttp handler that reads the body and answers 202 (bench/bare.py): aiohttp's own cost;
- `aiokafka`: an aiohttp handler that produces the body with aiokafka and awaits the ack: plus aiokafka's cost;
- `ingest`: the real `els ingest` process;
each on asyncio's event loop and on uvloop's (`_uv`; ingest's default). Measured:
1. maximum requests/s of each with Debian's wrk (1 thread, 32 connections; ROUNDS alternating 4 s rounds, the
   order reversed every round; every ratio is the median of per-round ratios, because the machine is shared),
   the server's CPU per request, and one round at 64 connections;
2. p50/p99 latency at half of ingest's maximum, with an open-loop constant-rate client (Debian's wrk has no
   `-R`): requests are scheduled at fixed times and latency counts from the scheduled time, so a stalled
   server cannot hide its queue. The same client drives bare_uv at the same rate first, which shows the
   client reaches its target and what latency it adds on its own.
Every 2xx answer of a server that writes to Kafka is checked against its raw topic.
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
import time
import uuid
from collections import Counter, deque
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from common.kafka import client_kwargs

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(os.environ.get("ELS_SAMPLES_DIR", ROOT / "examples" / "els-samples")) / "doc-parent-flow-start.json"
WRK = os.environ.get("WRK", "/usr/bin/wrk")
SECRET = "bench-" + uuid.uuid4().hex
PARTITIONS = 8
CONNECTIONS = 32       # Okta delivers in parallel; the target is set at 32 connections
MANY_CONNECTIONS = 64  # one more round: with more connections in flight, produce requests carry more records
ROUNDS = 5
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
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs())
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await c.end_offsets(tps)).values())
    finally:
        await c.stop()


# The servers of one run: the two baselines and ingest, on asyncio's loop and on uvloop's (ingest's default).
VARIANTS = ("bare=bare", "bare_uv=bare+uvloop", "aiokafka=aiokafka", "aiokafka_uv=aiokafka+uvloop",
            "ingest_asyncio=ingest+ELS_INGEST_UVLOOP=0", "ingest=ingest+ELS_INGEST_UVLOOP=1")
# What each ratio separates (numerator, denominator), each a median of per-round ratios.
PAIRS = {"ingest_vs_bare_same_loop": ("ingest", "bare_uv"), "ingest_vs_bare_asyncio": ("ingest", "bare"),
         "aiokafka_vs_bare": ("aiokafka_uv", "bare_uv"), "ingest_vs_aiokafka": ("ingest", "aiokafka_uv"),
         "asyncio_ingest_vs_bare": ("ingest_asyncio", "bare"), "asyncio_aiokafka_vs_bare": ("aiokafka", "bare"),
         "asyncio_ingest_vs_aiokafka": ("ingest_asyncio", "aiokafka"), "uvloop_ingest": ("ingest", "ingest_asyncio"),
         "uvloop_bare": ("bare_uv", "bare"), "uvloop_aiokafka": ("aiokafka_uv", "aiokafka")}


async def ingest_bench(bootstrap: str, broker_pid: int | None = None) -> dict:
    from bench.ab import Servers, figures, pair, parse

    if not Path(WRK).exists():
        raise RuntimeError(f"{WRK} not found: install Debian's wrk (apt-get install wrk)")
    variants = [parse(v) for v in VARIANTS]
    by = {v.label: v for v in variants}
    async with Servers(variants, bootstrap, broker_pid) as servers:
        for v in variants:  # warm-up (in the topic check, not in the figures)
            v.runs.append(servers.wrk(v, WARMUP_S, CONNECTIONS))
        runs = servers.rounds(ROUNDS, MAX_RATE_S, CONNECTIONS)
        many = servers.rounds(1, MAX_RATE_S, MANY_CONNECTIONS, [by["bare_uv"], by["aiokafka_uv"], by["ingest"]])
        rate = statistics.median(r["rps"] for r in runs["ingest"]) / 2
        template = _template()
        const_bare = await _ConstantRate(by["bare_uv"].port, template, "cb").run(rate, CONSTANT_RATE_S)
        print(f"constant rate bare_uv: {const_bare}", file=sys.stderr)
        const = await _ConstantRate(by["ingest"].port, template, "ci").run(rate, CONSTANT_RATE_S)
        print(f"constant rate ingest: {const}", file=sys.stderr)
        checks = {v.label: await servers.topic_check(v, const["statuses"].get(202, 0) if v.label == "ingest" else 0)
                  for v in variants if v.kind != "bare"}
    for label, (answered, in_topic) in checks.items():
        if in_topic < answered:
            print(f"WARNING: {label}: {answered} requests answered 2xx but its raw topic holds {in_topic} records",
                  file=sys.stderr)
    return {
        "connections": CONNECTIONS, "rounds": ROUNDS,
        **{f"{label}_{k}": v for label in by for k, v in figures(runs[label]).items() if k != "non_2xx"},
        **{name: pair(runs, a, b) for name, (a, b) in PAIRS.items()},
        f"at_{MANY_CONNECTIONS}_connections_rps": {label: round(r[0]["rps"]) for label, r in many.items()},
        "half_rate_rps": round(rate), "half_rate_answered_rps": const["answered_rps"],
        "p50_ms": const["p50_ms"], "p90_ms": const["p90_ms"], "p99_ms": const["p99_ms"], "max_ms": const["max_ms"],
        "client_vs_bare_uv_p50_ms": const_bare["p50_ms"], "client_vs_bare_uv_p99_ms": const_bare["p99_ms"],
        "client_late_ticks": const["ticks_late_over_5ms"] + const_bare["ticks_late_over_5ms"],
        "non_2xx": sum(x["non_2xx"] for v in variants for x in v.runs)
        + sum(n for k, n in const["statuses"].items() if k != 202),
        "answered_2xx_vs_in_topic": {label: list(c) for label, c in checks.items()},
    }
