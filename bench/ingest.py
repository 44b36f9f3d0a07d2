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
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from els.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(os.environ.get("ELS_SAMPLES_DIR", ROOT.parent / "shared" / "els-samples")) / "doc-parent-flow-start.json"
if not SAMPLE.exists():
    SAMPLE = Path("/work/shared/els-samples/doc-parent-flow-start.json")
WRK = os.environ.get("WRK", "/usr/bin/wrk")
SECRET = "bench-" + uuid.uuid4().hex
PARTITIONS = 8
CONNECTIONS = 16
WARMUP_S = 2
MAX_RATE_S = 10
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


def _wrk(url: str, template: Path, seconds: int, pids: dict[str, int]) -> dict:
    """One wrk run at maximum rate: requests/s, errors, and the CPU share of wrk and of each pid."""
    cmd = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(ROOT / "bench" / "ingest.lua"),
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
    cpu = {f"{k}_cpu_pct": round(100 * (_cpu_s(p) - before[k]) / wall) for k, p in pids.items()}
    cpu["wrk_cpu_pct"] = round(100 * (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / wall)
    return {"rps": rps, "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else "", **cpu}


async def _constant_rate(url: str, template: str, rate: float, seconds: float, tag: str) -> dict:
    """Open loop: request i is due at start + i/rate; latency counts from when it was due (no coordinated
    omission). Reports the rate at which requests were actually sent and answered, and latency percentiles."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter = Counter()
    n = int(rate * seconds)
    pending: set[asyncio.Task] = set()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:

        async def one(i: int, due: float) -> None:
            body = template.replace("@ID@", f"{tag}-{i}").encode()
            try:
                async with s.post(url + "/v1/events", data=body, headers=headers) as r:
                    await r.read()
                    statuses[r.status] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
                return
            latencies.append(loop.time() - due)

        start = loop.time() + 0.1
        late_sends = 0
        i = 0
        while i < n:
            now = loop.time()
            while i < n and start + i / rate <= now:
                due = start + i / rate
                late_sends += now - due > 0.005
                t = loop.create_task(one(i, due))
                pending.add(t)
                t.add_done_callback(pending.discard)
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        sent_in = loop.time() - start
        while pending:
            await asyncio.gather(*list(pending))
        answered_in = loop.time() - start
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else -1

    return {"target_rps": round(rate), "sent_rps": round(n / sent_in), "answered_rps": round(len(latencies) / answered_in),
            "sends_late_over_5ms": late_sends, "statuses": dict(statuses),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


async def _raw_records(bootstrap: str, topic: str) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await c.end_offsets(tps)).values())
    finally:
        await c.stop()


def _spawn(cmd: list[str], env: dict, label: str) -> tuple[subprocess.Popen, object]:
    log = open(ROOT / "var" / f"bench-{label}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log


def _stop(proc: subprocess.Popen, log) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


async def ingest_bench(bootstrap: str, broker_pid: int | None = None) -> dict:
    if not Path(WRK).exists():
        raise RuntimeError(f"{WRK} not found: install Debian's wrk (apt-get install wrk)")
    (ROOT / "var").mkdir(exist_ok=True)
    template = _template()
    tmpl_file = Path(tempfile.mkstemp(prefix="bench-ingest-", suffix=".json")[1])
    tmpl_file.write_text(template)
    topic = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    ingest_port, bare_port = free_port(), free_port()
    ingest, ingest_log = _spawn([sys.executable, "-m", "els.cli", "ingest"], {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_AUTH_TOKENS": SECRET, "ELS_INGEST_HOST": "127.0.0.1",
        "ELS_INGEST_PORT": str(ingest_port), "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": topic,
        "ELS_DEADLETTER_TOPIC": topic + "-dl"}, "ingest")
    bare, bare_log = _spawn([sys.executable, "-m", "bench.bare", str(bare_port)], {}, "bare")
    ingest_url, bare_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{bare_port}"
    try:
        await _wait_ready(ingest_url, ingest, "ingest")
        await _wait_ready(bare_url, bare, "bare")
        pids = {"server": 0}
        if broker_pid:
            pids["broker"] = broker_pid
        results, warmups = {}, {}
        for label, url, proc in (("bare", bare_url, bare), ("ingest", ingest_url, ingest)):
            pids["server"] = proc.pid
            warmups[label] = _wrk(url, tmpl_file, WARMUP_S, pids)
            results[label] = _wrk(url, tmpl_file, MAX_RATE_S, pids)
            print(f"wrk max rate {label}: {results[label]}", file=sys.stderr)
        rate = results["ingest"]["rps"] / 2
        const_bare = await _constant_rate(bare_url, template, rate, CONSTANT_RATE_S, "cb")
        print(f"constant rate bare: {const_bare}", file=sys.stderr)
        const_ingest = await _constant_rate(ingest_url, template, rate, CONSTANT_RATE_S, "ci")
        print(f"constant rate ingest: {const_ingest}", file=sys.stderr)
        accepted = sum(r["requests"] - r["non_2xx"] for r in (warmups["ingest"], results["ingest"])) \
            + const_ingest["statuses"].get(202, 0)
        in_kafka = await _raw_records(bootstrap, topic)
    finally:
        _stop(ingest, ingest_log)
        _stop(bare, bare_log)
        tmpl_file.unlink(missing_ok=True)
    i, b = results["ingest"], results["bare"]
    out = {
        "ingest_rps": round(i["rps"]), "ingest_bare_rps": round(b["rps"]),
        "ingest_ratio_vs_bare": round(i["rps"] / b["rps"], 3),
        "ingest_non_2xx": i["non_2xx"] + sum(v for k, v in const_ingest["statuses"].items() if k != 202),
        "ingest_202_answers": accepted, "ingest_raw_records": in_kafka,
        "ingest_half_rate_rps": round(rate),
        "ingest_half_rate_answered_rps": const_ingest["answered_rps"],
        "ingest_p50_ms": const_ingest["p50_ms"], "ingest_p99_ms": const_ingest["p99_ms"],
        "ingest_max_ms": const_ingest["max_ms"],
        "ingest_client_vs_bare_answered_rps": const_bare["answered_rps"],
        "ingest_client_vs_bare_p50_ms": const_bare["p50_ms"], "ingest_client_vs_bare_p99_ms": const_bare["p99_ms"],
        "ingest_client_late_sends": const_ingest["sends_late_over_5ms"] + const_bare["sends_late_over_5ms"],
        "ingest_wrk_connections": CONNECTIONS,
        "ingest_cpu_pct_at_max": {k: v for k, v in i.items() if k.endswith("_cpu_pct")},
        "ingest_bare_cpu_pct_at_max": {k: v for k, v in b.items() if k.endswith("_cpu_pct")},
    }
    if in_kafka < accepted:
        print(f"WARNING: {accepted} requests answered 202 but the raw topic holds {in_kafka} records",
              file=sys.stderr)
    return out
