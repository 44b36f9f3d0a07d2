"""A worker's memory over time on `processor_ingest`'s backlog: where its peak comes from, not just how high.

    python -m bench.timeline [--events N] [--after S] [--every S] [NAME=VALUE ...]

N events over 40 minutes of event time are POSTed through a running `els ingest` (bench/via_ingest.py), then one
`els process` (with the NAME=VALUE settings added; its sink delivers to the local intake, bench/intake.py, as in
`make bench`; DD_API_KEY= for the dry run) reads them; every 0.5 s (--every) a line gives its RSS and peak (VmHWM)
beside its /els/stats/ counters (records, flushes, logs emitted and delivered, table sizes), until S seconds after
it processed the N-th record: the ticks that follow a backlog close its chains, and that close-out is part of the
peak.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import aiohttp

from bench.__main__ import PARTITIONS, make_events, worker_env
from bench.intake import Intake
from bench.procs import bench_broker, spawn, status_kb, stop, worker_stats
from bench.via_ingest import write_through_ingest
from els.broker import free_port

COUNTERS = ("records", "flushes", "partials", "logs", "sink_flushes", "sink_series_sent", "sink_logs_sent",
            "sink_held", "table_chains", "table_windows", "table_sink", "sink_loop_lag_max_ms", "sink_gc_pauses")


async def timeline(n: int, after_s: float, settings: dict[str, str], every_s: float = 0.5) -> None:
    async with Intake(api_key="bench-key") as intake:
        await _timeline(n, after_s, {"DD_API_KEY": "bench-key", "DD_URL": intake.url, "ELS_LOOP_PROBE": "1",
                                     **settings}, every_s)


async def _timeline(n: int, after_s: float, settings: dict[str, str], every_s: float) -> None:
    with bench_broker("bench-timeline-broker") as (bootstrap, _pid):
        _sim, events = make_events(n, seed=11, minutes=40, ago=41)
        topic = f"bench-timeline-{uuid.uuid4().hex[:6]}"
        wrote = await write_through_ingest(bootstrap, topic, events, PARTITIONS)
        port = free_port()
        env = {**worker_env(bootstrap, topic), **settings, "ELS_APP_ID": f"bench-timeline-{topic}",
               "ELS_WEB_PORT": str(port)}
        proc, log = spawn([sys.executable, "-m", "els.cli", "process"], env, "timeline")
        start, done_at = time.monotonic(), None
        try:
            async with aiohttp.ClientSession() as s:
                while done_at is None or time.monotonic() - done_at < after_s:
                    await asyncio.sleep(every_s)
                    stats = await worker_stats(s, port)
                    rss, hwm = status_kb(proc.pid, "VmRSS") // 1024, status_kb(proc.pid, "VmHWM") // 1024
                    counters = " ".join(f"{k}={stats.get(k)}" for k in COUNTERS)
                    print(f"{time.monotonic() - start:6.1f}s rss={rss}MB peak={hwm}MB {counters}", flush=True)
                    if done_at is None and stats.get("records", 0) >= wrote["written"]:
                        done_at = time.monotonic()
                    if proc.poll() is not None or time.monotonic() - start > 600:
                        raise RuntimeError("the worker exited or never finished; see var/bench-timeline.log")
        finally:
            stop(proc, log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--after", type=float, default=25.0, help="seconds to follow after the last record")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between two lines")
    ap.add_argument("settings", nargs="*", help="NAME=VALUE settings of the worker")
    args = ap.parse_args()
    asyncio.run(timeline(args.events, args.after, dict(s.split("=", 1) for s in args.settings), args.every))


if __name__ == "__main__":
    main()
