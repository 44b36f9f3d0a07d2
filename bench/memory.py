"""Memory growth of a long-running worker: state must be bounded by time (windows, lateness, chain timeouts),
not by how many events went through.

One worker with short windows and chain timeouts on is fed live simulated traffic at a steady rate (each event
sent when its timestamp comes). After 1x the workload, and again after 5x in total, the bench waits until the
fake Datadog counts every event (the worker caught up) and then two window+lateness periods (closed chains
expire), and reads the worker's VmRSS and its table sizes (/els/stats/).

Closed windows outlive their lateness by retentions (the engine's closed markers one window, see
processor/engine/settings.py; the sink's merged windows processor/sink/merge.py keep_after_end_ms); while they are longer than this bench the
windows and sink tables, and so RSS, still grow with elapsed time; the figures say so (`*_retention_s`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from bench.freshness import feed_live, live_workload, wait_assigned
from bench.procs import status_kb, stop
from common.topics import ensure_topics
from els.broker import free_port
from els.traffic import Simulator

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 8
SETTINGS = {"ELS_WINDOW_SECONDS": 10, "ELS_LATENESS_SECONDS": 10, "ELS_FLUSH_SECONDS": 2,
            "ELS_CHAIN_QUIET_SECONDS": 2, "ELS_CHAIN_TIMEOUT_SECONDS": 30}
FAILOVER_S = 3 + 6  # ELS_REBALANCE_TIMEOUT_SECONDS + ELS_SESSION_TIMEOUT_SECONDS below


async def _stats(port: int) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/els/stats/") as r:
        return await r.json()


async def memory_bench(bootstrap: str, rate: int = 400, seconds: float = 12.0) -> dict:
    """`rate` events/s for `seconds` (1x), then 4x as long again (5x in total)."""
    from tests.helpers.fakedatadog import FakeDatadog

    settle = SETTINGS["ELS_WINDOW_SECONDS"] + SETTINGS["ELS_LATENESS_SECONDS"]  # one window + lateness period
    topic = f"bench-mem-{uuid.uuid4().hex[:6]}"
    sim = Simulator(seed=13, flows=20, helpers=5, dup_rate=0.05)
    from processor.sink.merge import keep_after_end_ms

    horizon = SETTINGS["ELS_WINDOW_SECONDS"] + SETTINGS["ELS_LATENESS_SECONDS"]
    out: dict = {"rate_events_per_s": rate, **{k.lower(): v for k, v in SETTINGS.items()},
                 "windows_retention_s": horizon + SETTINGS["ELS_WINDOW_SECONDS"],
                 "sink_retention_s": SETTINGS["ELS_WINDOW_SECONDS"] + keep_after_end_ms(
                     SETTINGS["ELS_WINDOW_SECONDS"], SETTINGS["ELS_LATENESS_SECONDS"], FAILOVER_S) // 1000}
    started = time.monotonic()
    async with FakeDatadog(api_key="bench-key") as dd:
        port = free_port()
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": topic,
               "ELS_OUT_TOPIC": topic + "-out", "ELS_DEADLETTER_TOPIC": topic + "-dl", "ELS_APP_ID": topic,
               "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6", "ELS_DATA_DIR": "var/faust-bench", "ELS_LOG_LEVEL": "WARNING",
               "DD_API_KEY": "bench-key", "DD_URL": dd.url, "ELS_WEB_PORT": str(port), "ELS_LOOP_PROBE": "1",
               **{k: str(v) for k, v in SETTINGS.items()}}
        await ensure_topics(bootstrap, [topic, topic + "-out", topic + "-dl"], PARTITIONS)
        log = open(ROOT / "var" / "bench-memory.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "els.cli", "process"], env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            await wait_assigned(proc, port, PARTITIONS)
            await asyncio.sleep(5)
            idle_kb = status_kb(proc.pid, "VmRSS")
            out["rss_idle_mb"] = round(idle_kb / 1024, 1)
            sent = 0
            for label, factor in (("1x", 1), ("5x", 4)):
                events = live_workload(sim, int(rate * seconds * factor), int(time.time() * 1000) + 500,
                                       seconds * factor)
                sent += len(events)
                lag = await feed_live(bootstrap, topic, events)
                want = sum(sim.expected.events.values())
                deadline = time.monotonic() + 120
                while dd.sum("okta.workflows.events") < want:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"worker never counted {want} events (got "
                                           f"{dd.sum('okta.workflows.events')}); see var/bench-memory.log")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(settle)
                stats = await _stats(port)
                out[f"events_sent_{label}"] = sent
                out[f"feed_max_lag_{label}_s"] = round(lag, 2)
                out[f"rss_{label}_mb"] = round(status_kb(proc.pid, "VmRSS") / 1024, 1)
                out[f"elapsed_{label}_s"] = round(time.monotonic() - started)
                for t in ("chains", "windows", "sink"):
                    out[f"table_{t}_{label}"] = stats.get(f"table_{t}")
                # growth over idle per retained entry: flat from 1x to 5x means retention, not a leak
                entries = sum(stats.get(f"table_{t}") or 0 for t in ("chains", "windows", "sink"))
                out[f"rss_growth_per_entry_{label}_kb"] = round(
                    (status_kb(proc.pid, "VmRSS") - idle_kb) / max(entries, 1), 1)
            out["rss_peak_mb"] = round(status_kb(proc.pid, "VmHWM") / 1024, 1)
            out["loop_stall_max_ms"] = (await _stats(port)).get("sink_loop_lag_max_ms")  # ELS_LOOP_PROBE
            out["events_counted_in_datadog"] = dd.sum("okta.workflows.events")
            out["expected_events"] = sum(sim.expected.events.values())
        finally:
            stop(proc, log, 30)
    out["rss_ratio_5x_vs_1x"] = round(out["rss_5x_mb"] / out["rss_1x_mb"], 3)
    out["rss_target_ratio_max"] = 1.15
    return out
