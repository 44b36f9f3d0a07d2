"""`make bench`: the processor's throughput against two baselines on the same preloaded topic, and on a topic
written by a running `els ingest`; Datadog requests/bytes against one request per event. Ratios, not absolute
times: the machine is shared.

    python -m bench [--events N] [--ingest-events N]
                    [--only processor|processor_ingest|delivery|ingest|memory]
    BENCH_BROKER=embedded|kafka|both: on the embedded broker (default), on Apache Kafka, or on each in turn
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from bench.procs import bench_broker, bench_brokers, spawn, status_kb, stop, worker_stats
from bench.variants import repeats, variants
from common.kafka import client_kwargs
from common.topics import ensure_topics
from els.broker import free_port
from els.traffic import Simulator, produce_events

PARTITIONS = 8
# processor_ingest follows the worker this long after its last record: the ticks that close the backlog's chains
# (ELS_FLUSH_SECONDS apart, chains quiet for ELS_CHAIN_QUIET_SECONDS) are done within ~25 s (bench/timeline.py)
CLOSEOUT_SECONDS = 30.0
# with a local intake (bench/intake.py), the close-out ends at the last request Datadog took: one this long without
# any (more than a flush interval, ELS_FLUSH_SECONDS=10) ends the wait, at most CLOSEOUT_MAX_SECONDS after the last
# record
CLOSEOUT_QUIET_SECONDS = 12.0
CLOSEOUT_MAX_SECONDS = 90.0
ROOT = Path(__file__).resolve().parent.parent


def make_events(n: int, seed: int = 7, minutes: int = 45, ago: int = 50) -> tuple[Simulator, list[dict]]:
    """n simulated events, chains starting over `minutes` from `ago` minutes back: a backlog a worker meets."""
    sim = Simulator(seed=seed, flows=20, helpers=5, dup_rate=0.05)
    now = int(time.time() * 1000)
    events: list[dict] = []
    while len(events) < n:
        events += sim.workload(500, now - ago * 60_000, minutes * 60_000)
    # Okta sends events as they happen: in time order (the simulator emits chain by chain). Within a
    # chain, equal timestamps keep their generated order (sort is stable).
    events = sorted(events[:n], key=lambda e: e["timestamp"])
    return sim, events


async def preload(bootstrap: str, topic: str, events: list[dict]) -> None:
    await ensure_topics(bootstrap, [topic], PARTITIONS)
    await produce_events(bootstrap, topic, events, linger_ms=20, max_batch_size=1 << 20)


async def run_worker(cmd: list[str], env: dict, n: int, label: str, port: int | None = None,
                     cwd: Path = ROOT, closeout_s: float = 0, intake=None) -> dict:
    """Start a worker, wait until its /els/stats/ says it processed n records; rate from the first record, its
    peak RSS (VmHWM) and its last /els/stats/. With closeout_s, also its peak RSS that much later
    (`rss_closeout_mb`): the ticks after a backlog close its chains, and that burst is part of meeting it.
    With an intake (bench/intake.py, the worker's DD_URL), also the close-out as Datadog sees it (closeout())."""
    port = port or free_port()
    proc, log = spawn(cmd, {**env, "ELS_WEB_PORT": str(port)}, label, cwd)
    first = None
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                if proc.poll() is not None:
                    raise RuntimeError(f"{label} exited; see var/bench-{label}.log")
                stats = await worker_stats(s, port)
                done = stats.get("records", 0)
                if done and first is None:
                    first = (time.monotonic(), done)
                if done >= n:
                    t_n, t_n_wall = time.monotonic(), time.time()
                    elapsed = t_n - first[0]
                    rss = status_kb(proc.pid, "VmHWM")
                    print(label, "stats:", stats, file=sys.stderr)
                    out = {"events_per_s": (done - first[1]) / elapsed if elapsed > 0 else float("inf"),
                           "seconds": elapsed, "rss_mb": rss / 1024, "stats": stats}
                    if intake is not None:
                        out.update(await closeout(s, port, intake, t_n, t_n_wall, stats))
                        (ROOT / "var" / f"bench-{label}-requests.json").write_text(json.dumps(
                            [[round(r.at - t_n, 2), r.path, r.status, r.items, r.sent_bytes]
                             for r in intake.requests]))
                    await asyncio.sleep(max(0.0, closeout_s - (time.monotonic() - t_n)))
                    out["rss_closeout_mb"] = status_kb(proc.pid, "VmHWM") / 1024
                    return out
        raise TimeoutError(label)
    finally:
        stop(proc, log)


STEADY_ITEMS = 20  # once caught up, the worker sends its pipeline gauges (~9 series) once a flush interval


def closeout_end(intake, t_n: float) -> float:
    """When the close-out ended: the last request taken after t_n that is part of it, i.e. not the steady state's
    small periodic one (a request of more than STEADY_ITEMS items, or one less than 2 s after the previous)."""
    end = prev = t_n
    for r in sorted((r for r in intake.requests if r.at >= t_n and 200 <= r.status < 300), key=lambda r: r.at):
        if r.items > STEADY_ITEMS or r.at - prev < 2.0:
            end = r.at
        prev = r.at
    return end


async def closeout(session, port: int, intake, t_n: float, t_n_wall: float, before: dict) -> dict:
    """After the last record (at t_n): wait until the close-out's requests ended CLOSEOUT_QUIET_SECONDS ago
    (closeout_end); the close-out is the time from the last record to the last of them. Also: the requests and bytes
    sent from the worker's start and during the close-out, the sink's microseconds per series and per log
    (build + serialise, no gzip, no HTTP: the worker's sink_t_encode_*_us over sink_encoded_*), and the longest
    event-loop stall during the close-out (the worker's loop probe, ELS_LOOP_PROBE) and the longest garbage
    collection of the run (gc_pause_max_ms: a collection stops every thread, the event loop's too)."""
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        end = closeout_end(intake, t_n)
        if now - end >= CLOSEOUT_QUIET_SECONDS or now - t_n >= CLOSEOUT_MAX_SECONDS:
            break
    stats = await worker_stats(session, port)
    during, total = intake.since(t_n), intake.since(0)
    end = closeout_end(intake, t_n)
    end_wall = t_n_wall + (end - t_n)
    stalls = [ms for at, ms in stats.get("sink_loop_stalls", []) if t_n_wall * 1000 - 500 <= at <= end_wall * 1000 + 500]

    def us(kind: str) -> float | None:
        n = stats.get(f"sink_encoded_{kind}")
        return round(stats.get(f"sink_t_encode_{kind}_us", 0) / n, 2) if n else None

    return {"closeout_s": round(end - t_n, 2), "closeout_requests": during["requests"],
            "closeout_bytes": during["bytes_sent"], "closeout_series": during["series"], "closeout_logs": during["logs"],
            "requests": total["requests"], "bytes_sent": total["bytes_sent"], "json_bytes": total["json_bytes"],
            "series_sent": total["series"], "logs_sent": total["logs"],
            "sink_us_per_series": us("series"), "sink_us_per_log": us("logs"),
            "loop_stall_closeout_ms": max(stalls, default=0.0) if "sink_loop_stalls" in stats else None,
            "loop_stall_max_ms": stats.get("sink_loop_lag_max_ms"),
            "loop_stall_before_closeout_ms": before.get("sink_loop_lag_max_ms"),
            "gc_pause_max_ms": max((p[1] for p in stats.get("sink_gc_pauses", [])), default=None),
            "stats_after": stats}


def engine_us(stats: dict) -> tuple[float | None, str]:
    """The engine's own cost per event from the worker's /els/stats/, and where it came from: its
    `engine_us_per_event` when it reports one, else the step time over the records (`t_step_ms` / `records`:
    the engine step of each batch, its parse included, nothing of Faust, state writes or sends)."""
    if stats.get("engine_us_per_event") is not None:
        return round(float(stats["engine_us_per_event"]), 1), "engine_us_per_event"
    if stats.get("t_step_ms") is not None and stats.get("records"):
        return round(1000 * stats["t_step_ms"] / stats["records"], 1), "t_step_ms/records"
    return None, "absent"


def worker_env(bootstrap: str, topic: str) -> dict:
    """Both workers' settings on a raw topic (the processor's other topics are named after it)."""
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": topic,
            "ELS_OUT_TOPIC": topic + "-out", "ELS_DEADLETTER_TOPIC": topic + "-dl",
            "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6",
            "ELS_DATA_DIR": "var/faust-bench", "ELS_LOG_LEVEL": "WARNING",
            # a 40-45-minute backlog (catching up after an outage): every event still counts in its window
            "ELS_LATENESS_SECONDS": "3600",
            "ELS_DRY_RUN_FILE": f"var/bench-dry-run-{topic}.ndjson", "DD_API_KEY": ""}


async def faust_min_vs_processor(bootstrap: str, topic: str, n: int, suffix: str = "", closeout_s: float = 0) -> dict:
    """The minimal Faust agent, then `els process` (or each BENCH_PROCESSORS variant: bench/variants.py), each
    reading the topic's n records to the end; BENCH_REPEAT rounds, interleaved, and the medians. The sink delivers
    to a local intake (bench/intake.py) answering like Datadog's, unless BENCH_DRY_RUN=1 (or a variant sets
    DD_API_KEY= : the dry run, as an A/B)."""
    from bench.intake import Intake

    async with Intake(api_key="bench-key") as intake:
        return await _faust_min_vs_processor(bootstrap, topic, n, suffix, closeout_s, intake)


async def _faust_min_vs_processor(bootstrap: str, topic: str, n: int, suffix: str, closeout_s: float,
                                  intake) -> dict:
    env = worker_env(bootstrap, topic)
    if os.environ.get("BENCH_DRY_RUN", "") not in ("", "0"):
        intake = None
    else:
        env.update({"DD_API_KEY": "bench-key", "DD_URL": intake.url, "ELS_LOOP_PROBE": "1"})
    mins, runs = [], {v.name: [] for v in variants()}
    for i in range(repeats()):  # interleaved, so drift on a shared machine hits every variant alike
        mins.append(await run_worker([sys.executable, "-m", "faust", "-A", "bench.baseline_faust", "worker", "-l",
                                      "warn"], {**env, "BENCH_APP_ID": f"bench-min-{topic}-{i}"}, n,
                                     "faust-min" + suffix))
        for v in variants():
            port, run = free_port(), f"{v.name}-{i}"  # its own outbox: a sink must not deliver another run's items
            await ensure_topics(bootstrap, [f"{topic}-out-{run}", f"{topic}-dl-{run}"], PARTITIONS)
            venv = {**env, **v.environ(), "ELS_APP_ID": f"bench-{run}-{topic}", "ELS_OUT_TOPIC": f"{topic}-out-{run}",
                    "ELS_DEADLETTER_TOPIC": f"{topic}-dl-{run}"}
            if intake is not None:
                intake.reset()
            delivering = intake if intake is not None and venv.get("DD_API_KEY") else None
            runs[v.name].append(await run_worker(v.command(port), venv, n, v.name + suffix, port,
                                                 Path(v.cwd) if v.cwd else ROOT, closeout_s, delivering))
            if delivering is not None:
                r = runs[v.name][-1]
                print(v.name + suffix, "close-out:", {k: v_ for k, v_ in r.items() if k != "stats_after"
                                                      and k != "stats"}, file=sys.stderr)
    faust_min = _median(mins, "events_per_s")
    proc = _median(next(iter(runs.values())), "events_per_s")
    us, source = engine_us(proc["stats"])
    out = {"processor_events_per_s": round(proc["events_per_s"]),
           "faust_min_events_per_s": round(faust_min["events_per_s"]),
           "ratio_vs_faust_min": round(proc["events_per_s"] / faust_min["events_per_s"], 3),
           "processor_peak_rss_mb": round(proc["rss_mb"], 1),
           "faust_min_peak_rss_mb": round(faust_min["rss_mb"], 1),
           "engine_us_per_event": us, "engine_us_source": source}
    if closeout_s:
        out["processor_peak_rss_closeout_mb"] = round(proc["rss_closeout_mb"], 1)
    out.update({k: proc[k] for k in CLOSEOUT_FIGURES if k in proc})
    if len(runs) > 1 or repeats() > 1:
        out.update(_variant_figures(runs, mins))
        out["ratio_vs_faust_min"] = out[f"{next(iter(runs))}_ratio_vs_faust_min"]
    return out


def _median(runs: list[dict], key: str) -> dict:
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def _variant_figures(runs: dict[str, list[dict]], mins: list[dict]) -> dict:
    """Per variant: the median of its per-round ratios to the minimal agent (and every round's), its rate, RSS."""
    out = {"faust_min_events_per_s_per_round": [round(m["events_per_s"]) for m in mins]}
    for name, rs in runs.items():
        ratios = [round(r["events_per_s"] / fm["events_per_s"], 3) for r, fm in zip(rs, mins, strict=True)]
        out[f"{name}_events_per_s"] = round(_median(rs, "events_per_s")["events_per_s"])
        out[f"{name}_ratio_vs_faust_min"] = sorted(ratios)[len(ratios) // 2]
        out[f"{name}_ratios_per_round"] = ratios
        out[f"{name}_events_per_s_per_round"] = [round(r["events_per_s"]) for r in rs]
        out[f"{name}_peak_rss_mb"] = round(_median(rs, "rss_mb")["rss_mb"], 1)
        out[f"{name}_peak_rss_closeout_mb"] = round(_median(rs, "rss_closeout_mb")["rss_closeout_mb"], 1)
        out[f"{name}_engine_us_per_event"] = engine_us(_median(rs, "events_per_s")["stats"])[0]
        for k in CLOSEOUT_FIGURES:  # each the median over the rounds
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                out[f"{name}_{k}"] = sorted(vals)[len(vals) // 2]
                out[f"{name}_{k}_per_round"] = vals
    return out


# what run_worker reports of the close-out when the sink delivers to the local intake (closeout())
CLOSEOUT_FIGURES = ("closeout_s", "loop_stall_closeout_ms", "loop_stall_max_ms", "gc_pause_max_ms",
                    "sink_us_per_series", "sink_us_per_log", "requests", "bytes_sent", "series_sent", "logs_sent",
                    "closeout_requests", "closeout_bytes")


async def plain_consumer(bootstrap: str, topic: str, n: int) -> dict:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:6]}",
                         auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=1 << 22,
                         **client_kwargs())
    await c.start()
    try:
        count, start = 0, None
        while count < n:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if start is None:
                    start = time.monotonic()
                for r in records:
                    orjson.loads(r.value)
                count += len(records)
        return {"events_per_s": count / (time.monotonic() - start), "seconds": time.monotonic() - start}
    finally:
        await c.stop()


async def processor_bench(bootstrap: str, n: int) -> dict:
    """A topic preloaded in large batches: n events over 45 minutes of event time."""
    sim, events = make_events(n)
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    t = time.monotonic()
    await preload(bootstrap, topic, events)
    print(f"preloaded {n} events in {time.monotonic() - t:.1f}s", file=sys.stderr)
    plain = await plain_consumer(bootstrap, topic, n)
    both = await faust_min_vs_processor(bootstrap, topic, n)
    return {"events": n, **both, "plain_consumer_events_per_s": round(plain["events_per_s"]),
            "ratio_vs_plain_consumer": round(both["processor_events_per_s"] / plain["events_per_s"], 3)}


async def processor_ingest_bench(bootstrap: str, n: int, minutes: int = 40) -> dict:
    """A topic written by a running `els ingest`, one POST per event (bench/via_ingest.py): n events over
    `minutes` of event time, so the processor's peak RSS here is that of a worker meeting such a backlog."""
    from bench.via_ingest import write_through_ingest

    sim, events = make_events(n, seed=11, minutes=minutes, ago=minutes + 1)
    topic = f"bench-via-ingest-{uuid.uuid4().hex[:6]}"
    wrote = await write_through_ingest(bootstrap, topic, events, PARTITIONS)
    print(f"els ingest wrote {wrote['written']} of {n} events in {wrote['seconds']:.1f}s", file=sys.stderr)
    both = await faust_min_vs_processor(bootstrap, topic, wrote["written"], suffix="-via-ingest",
                                        closeout_s=CLOSEOUT_SECONDS)
    return {"events": n, "event_minutes": minutes, "records": wrote["written"],
            "ingest_write_events_per_s": round(wrote["written"] / wrote["seconds"]),
            "ingest_connections": wrote["connections"],
            "ingest_not_accepted": wrote["answered"] - wrote["accepted"], **both,
            "processor_peak_rss_target_mb": 200}


async def delivery_bench(bootstrap: str, n: int, seconds: float = 60.0) -> dict:
    """Datadog requests and bytes for n events fed live over `seconds` (production window and flush settings),
    against a forwarder that sends one request per event; and freshness, acknowledged event -> visible in
    Datadog (bench/freshness.py)."""
    from bench.freshness import Freshness, feed_live, live_workload, wait_assigned
    from tests.helpers.fakedatadog import FakeDatadog

    sim = Simulator(seed=9, flows=20, helpers=5, dup_rate=0.05)
    topic = f"bench-dd-{uuid.uuid4().hex[:6]}"
    window_s, flush_s = 60, 10
    async with FakeDatadog(api_key="bench-key") as dd:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": topic,
               "ELS_OUT_TOPIC": topic + "-out", "ELS_DEADLETTER_TOPIC": topic + "-dl", "ELS_APP_ID": topic,
               "ELS_WINDOW_SECONDS": str(window_s), "ELS_FLUSH_SECONDS": str(flush_s),
               "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6", "ELS_DATA_DIR": "var/faust-bench", "ELS_LOG_LEVEL": "WARNING",
               "DD_API_KEY": "bench-key", "DD_URL": dd.url, "ELS_WEB_PORT": str(free_port())}
        await ensure_topics(bootstrap, [topic, topic + "-out", topic + "-dl"], PARTITIONS)
        log = open(ROOT / "var" / "bench-delivery.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "els.cli", "process"], env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        fresh = Freshness(window_s)
        watch = None
        try:
            await wait_assigned(proc, int(env["ELS_WEB_PORT"]), PARTITIONS)
            # every generated event is sent (the generator's totals are exactly what was sent), each when its
            # timestamp comes, as Okta delivers them
            events = live_workload(sim, n, int(time.time() * 1000) + 1000, seconds)
            watch = asyncio.create_task(fresh.watch(dd))
            lag = await feed_live(bootstrap, topic, events, on_ack=fresh.on_ack)
            want = sum(sim.expected.events.values())  # duplicates excluded (copies are not generated events)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and dd.sum("okta.workflows.events") < want:
                await asyncio.sleep(1)
            await asyncio.sleep(flush_s + 2)  # one more flush
            fresh.observe(dd)
            got = dd.sum("okta.workflows.events")
            ours = {"requests": len(dd.requests), "bytes": sum(r[2] for r in dd.requests)}
        finally:
            if watch is not None:
                watch.cancel()
            proc.terminate()
            proc.wait(30)
            log.close()
        n = len(events)
        dd.reset()
        async with aiohttp.ClientSession() as s:  # the baseline: one uncompressed request per event
            for ev in events:
                async with s.post(dd.url + "/api/v2/logs", data=orjson.dumps(ev),
                                  headers={"DD-API-KEY": "bench-key", "Content-Type": "application/json"}) as r:
                    await r.read()
        base = {"requests": len(dd.requests), "bytes": sum(r[2] for r in dd.requests)}
    per10k = 10_000 / n
    return {"events": n, "events_counted_in_datadog": got, "expected_events": want,
            **fresh.result(), "freshness_target_p95_s": flush_s + 5, "feed_max_lag_s": round(lag, 2),
            "requests_per_10k_events": round(ours["requests"] * per10k, 1),
            "bytes_per_10k_events": round(ours["bytes"] * per10k),
            "baseline_requests_per_10k_events": round(base["requests"] * per10k),
            "baseline_bytes_per_10k_events": round(base["bytes"] * per10k),
            "request_ratio": round(ours["requests"] / base["requests"], 5),
            "byte_ratio": round(ours["bytes"] / base["bytes"], 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", 200_000)))
    ap.add_argument("--ingest-events", type=int, default=int(os.environ.get("BENCH_INGEST_EVENTS", 100_000)),
                    help="events POSTed through els ingest for processor_ingest (a 40-minute backlog)")
    ap.add_argument("--only", choices=["processor", "processor_ingest", "delivery", "ingest", "memory"])
    args = ap.parse_args()
    results = {}
    kinds = bench_brokers()
    for kind in kinds:
        tag = "" if len(kinds) == 1 else f"@{kind}"
        with bench_broker(f"bench-broker-{kind}", kind) as (bootstrap, broker_pid):
            if args.only in (None, "processor"):
                results["processor" + tag] = asyncio.run(processor_bench(bootstrap, args.events))
            if args.only in (None, "processor_ingest"):
                results["processor_ingest" + tag] = asyncio.run(processor_ingest_bench(bootstrap, args.ingest_events))
            if args.only in (None, "delivery"):
                results["delivery" + tag] = asyncio.run(delivery_bench(bootstrap, 10_000))
            if args.only in (None, "memory"):
                from bench.memory import memory_bench

                results["memory" + tag] = asyncio.run(memory_bench(bootstrap))
            if args.only in (None, "ingest"):
                from bench.ingest import ingest_bench

                results["ingest" + tag] = asyncio.run(ingest_bench(bootstrap, broker_pid))
    for name, result in results.items():
        print(f"== {name}")
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
