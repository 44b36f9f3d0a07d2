"""The processor end to end: a real broker, real `els process` workers, a generated workload with known totals.

The outbox is read like the sink reads it (latest partial per group, window and partition, merged), and the
totals must equal what the generator computed independently: duplicates excluded, nothing lost, nothing
counted twice, also after a SIGKILL mid-stream and with two workers sharing the partitions.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from common.topics import ensure_topics
from els.traffic import Simulator, produce_events
from processor.core.tags import tag_value
from processor.sink.render import render_series
from tests.helpers.workers import OutboxReader, Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PARTITIONS = 4


@pytest.fixture(autouse=True)
async def topics_made(kafka_bootstrap, topic_names):
    """The topics exist with PARTITIONS before the test writes or reads them, as ingest makes them in production.
    (Apache Kafka would otherwise auto-create them with one partition at the first write or read.)"""
    await ensure_topics(kafka_bootstrap, list(topic_names.values()), PARTITIONS)


def worker_env(bootstrap: str, topics: dict) -> dict:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS), "ELS_WINDOW_SECONDS": "10",
            "ELS_FLUSH_SECONDS": "1", "ELS_LATENESS_SECONDS": "3600", "ELS_CHAIN_QUIET_SECONDS": "1",
            "ELS_REBALANCE_TIMEOUT_SECONDS": "3",
            "ELS_SESSION_TIMEOUT_SECONDS": "6", "ELS_DATA_DIR": "test-artifacts/faust-data", "ELS_LOGS": "failures,chains",
            "ELS_APP_ID": "els-" + topics["ELS_RAW_TOPIC"], "DD_API_KEY": "",
            "ELS_DRY_RUN_FILE": f"test-artifacts/dry-run-{topics['ELS_RAW_TOPIC']}.ndjson", **topics}


def counters(bag, metric: str) -> dict[str, float]:
    """{tag string: value} of one metric's counters in a bag."""
    out = {}
    for key, value in bag.counters.items():
        name, _, tags = key.partition("|")
        if name == metric:
            out[tags] = out.get(tags, 0) + value
    return out


def mismatches(reader: OutboxReader, sim: Simulator) -> list[str]:
    """Every difference between the outbox's totals and the generator's, as readable lines (empty: equal)."""
    exp = sim.expected
    totals = reader.totals()
    problems = []
    for flow_id in exp.flow_names:
        bag = totals.get(f"flow:{flow_id}")
        if bag is None:
            problems.append(f"flow {flow_id}: no partial at all")
            continue
        got = {tags.split(":", 1)[1]: n for tags, n in counters(bag, "events").items()}
        want = {t: n for (f, t), n in exp.events.items() if f == flow_id}
        if got != want:
            problems.append(f"flow {flow_id} events {got} != {want}")
        got_f = {}
        for tags, n in counters(bag, "failures").items():
            et = dict(t.split(":", 1) for t in tags.split(","))["error_type"]
            got_f[et] = got_f.get(et, 0) + n
        want_f = {tag_value(t): n for (f, t), n in exp.failures.items() if f == flow_id}
        if got_f != want_f:
            problems.append(f"flow {flow_id} failures {got_f} != {want_f}")
        series = {s["metric"]: s for s in render_series(f"flow:{flow_id}", 0, 10, bag)}
        rate = exp.error_rate(flow_id)
        got_rate = series.get("okta.workflows.error_rate", {}).get("points", [{}])[0].get("value")
        if rate is not None and (got_rate is None or abs(got_rate - rate) > 1e-9):
            problems.append(f"flow {flow_id} error_rate {got_rate} != {rate}")
        steps = series.get("okta.workflows.steps", {}).get("points", [{}])[0].get("value")
        if steps != exp.steps[flow_id]:
            problems.append(f"flow {flow_id} steps {steps} != {exp.steps[flow_id]}")
    got_chains = {}
    for group, bag in totals.items():
        if group.startswith("chain:"):
            for tags, n in counters(bag, "chains").items():
                t = dict(x.split(":", 1) for x in tags.split(","))
                k = (group.split(":", 1)[1], t["status"], t["had_failures"] == "true")
                got_chains[k] = got_chains.get(k, 0) + n
    if got_chains != dict(exp.chains):
        problems.append(f"chains {sorted(got_chains.items())} != {sorted(exp.chains.items())}")
    pipeline = totals.get("pipeline")
    dups = sum(counters(pipeline, "pipeline.duplicates").values()) if pipeline else 0
    if dups != exp.duplicates:
        problems.append(f"duplicates {dups} != {exp.duplicates}")
    return problems


async def wait_exact(reader: OutboxReader, sim: Simulator, timeout: float, workers: list[Worker]) -> None:
    def done(r):
        dead = [w for w in workers if w.proc.poll() is not None and not getattr(w, "expected_dead", False)]
        if dead:
            pytest.fail("a worker died:\n" + dead[0].output()[-4000:])
        return not mismatches(r, sim)

    ok = await reader.wait_for(done, timeout)
    if not ok:
        tail = "\n".join(w.output()[-3000:] for w in workers)
        pytest.fail("outbox totals never matched:\n" + "\n".join(mismatches(reader, sim)[:20]) + "\n" +
                    await unclosed_chains(reader, sim, workers) + "\n" + tail)


async def unclosed_chains(reader: OutboxReader, sim: Simulator, workers: list[Worker]) -> str:
    """For a failure message: the generated chains with no chain log, as the live workers hold them."""
    import aiohttp

    closed = {item.get("trace_id") for item in reader.logs if "event_type" not in item}
    missing = [r for r in getattr(sim, "chain_roots", []) if r not in closed][:10]
    lines = [f"{len(missing)} chains without a chain log"]
    async with aiohttp.ClientSession() as s:
        for root in missing:
            for w in workers:
                if w.proc.poll() is not None:
                    continue
                try:
                    async with s.get(f"http://127.0.0.1:{w.web_port}/els/chains/{root}/") as r:
                        lines.append(f"{root}: {r.status} {(await r.text())[:600]}")
                except aiohttp.ClientError as exc:
                    lines.append(f"{root}: {exc!r}")
    return "\n".join(lines)


def workload(seed: int, chains: int) -> tuple[Simulator, list[dict]]:
    sim = Simulator(seed=seed, flows=8, helpers=3, dup_rate=0.05)
    now = int(time.time() * 1000)
    events = sim.workload(chains, now - 60_000, 50_000)
    sim.chain_roots = list(dict.fromkeys(e.get("root_execution_id") or e["execution_id"] for e in events))
    return sim, events


async def test_one_worker_exact_totals(kafka_bootstrap, topic_names):
    sim, events = workload(seed=11, chains=300)
    worker = Worker(worker_env(kafka_bootstrap, topic_names)).start()
    try:
        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
        async with OutboxReader(kafka_bootstrap, topic_names["ELS_OUT_TOPIC"], PARTITIONS) as reader:
            await wait_exact(reader, sim, 120, [worker])
            failure_logs = [item for item in reader.logs if item.get("event_type") == "FLOW_FAIL"]
            assert failure_logs and all(item["status"] == "error" and item["error"]["kind"] and
                                        item["chain"]["path"] for item in failure_logs)
            assert any(item.get("chain", {}).get("status") for item in reader.logs if "event_type" not in item)
        # without DD_API_KEY the sink runs dry: the requests it would send are in the dry-run file
        dry = Path(worker.env["ELS_DRY_RUN_FILE"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (dry.exists() and b"/api/v2/series" in dry.read_bytes()
                                                   and b"/api/v2/logs" in dry.read_bytes()):
            await asyncio.sleep(0.5)
        lines = [orjson.loads(line) for line in dry.read_bytes().splitlines()]
        assert {line["path"] for line in lines} == {"/api/v2/series", "/api/v2/logs"}
        assert "DD_API_KEY is not set" in worker.output()
    finally:
        worker.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset per partition of a topic, as the broker holds them (asked as a consumer of
    the group that does not join it, as Faust does: the embedded broker refuses the admin client's request)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


async def test_the_worker_commits_the_raw_records_it_applied(kafka_bootstrap, topic_names):
    """The processor's agent takes the raw topic's records from its own inbox, not from a Faust stream, and acks
    them itself: Faust's commits must still follow, or every restart would read the topic from its beginning."""
    env = worker_env(kafka_bootstrap, topic_names)
    sim, events = workload(seed=14, chains=100)
    worker = Worker(env, "commits").start()
    try:
        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
        async with OutboxReader(kafka_bootstrap, topic_names["ELS_OUT_TOPIC"], PARTITIONS) as reader:
            await wait_exact(reader, sim, 120, [worker])
        stats = worker.stats()
        assert stats["inbox_held"] < 2000 and stats["inbox_dropped"] >= 0, stats  # caught up: no batch waits
        # the raw topic holds the events and the ticks: once every event is committed, the offsets add up to more
        deadline, committed = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            committed = await committed_offsets(kafka_bootstrap, env["ELS_APP_ID"], topic_names["ELS_RAW_TOPIC"])
            if None not in committed.values() and sum(committed.values()) >= len(events):
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"committed offsets {committed} do not cover the {len(events)} events")
    finally:
        worker.stop()


async def test_a_backlog_read_longer_than_fausts_stream_timeout_logs_no_livelock_error(kafka_bootstrap, topic_names):
    """Faust's consumer logs "Stream has not started processing" (a long ERROR) for a partition whose records wait
    while nothing takes them for STREAM_PROCESSING_TIMEOUT. The raw topic has no Faust stream and the worker no
    Faust Monitor, so the worker tells Faust itself when it takes records (processor/health.py, Inbound); else a
    backlog read for longer than the timeout (300 s by default, 1 s here) logged the error although records flowed."""
    _sim, events = workload(seed=15, chains=12000)  # ~47,000 events: read in a few seconds
    await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
    env = {**worker_env(kafka_bootstrap, topic_names), "STREAM_PROCESSING_TIMEOUT": "1",
           "BROKER_COMMIT_INTERVAL": "0.4"}  # Faust checks every 2.5 commit intervals
    worker = Worker(env, "backlog").start()
    try:
        deadline = time.monotonic() + 120
        while worker.stats().get("records", 0) < len(events):
            assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()[-3000:]
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a check or two once caught up
    finally:
        worker.stop()
    # the raw topic's partitions only, and "not started" only: at a 1 s timeout, the sink's stream may well wait
    # on its flush that long, and on a loaded machine a batch may take that long too ("Stream stopped processing,
    # or is slow"): without Inbound, Faust never hears of a batch at all
    raw = f"Stream has not started processing TP(topic='{topic_names['ELS_RAW_TOPIC']}'"
    assert [line for line in worker.output().splitlines() if raw in line] == []


async def test_a_graceful_stop_delivers_what_the_sink_holds_and_exits(kafka_bootstrap, topic_names):
    """SIGTERM while the sink holds records it has not flushed (logs wait up to ELS_FLUSH_SECONDS for the next
    partials): Faust leaves only once they are acked, so the sink must deliver them then, not wait forever."""
    env = {**worker_env(kafka_bootstrap, topic_names), "ELS_FLUSH_SECONDS": "120"}  # no tick, no partial yet
    _sim, events = workload(seed=13, chains=40)
    worker = Worker(env, "graceful").start()
    try:
        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
        deadline = time.monotonic() + 90
        while worker.stats().get("sink_held", 0) == 0:
            assert time.monotonic() < deadline, worker.output()[-3000:]
            await asyncio.sleep(0.5)
        dry = Path(env["ELS_DRY_RUN_FILE"])
        assert not (dry.exists() and b"/api/v2/logs" in dry.read_bytes())  # held: no partial settled them yet
        os.killpg(worker.proc.pid, signal.SIGTERM)
        assert worker.proc.wait(60) == 0, worker.output()[-3000:]  # by itself, not after wait_empty's endless wait
        assert b"/api/v2/logs" in dry.read_bytes()
    finally:
        worker.stop()


async def test_sigkill_mid_stream_and_redelivery_keep_totals_exact(kafka_bootstrap, topic_names):
    sim, events = workload(seed=12, chains=400)
    half = len(events) // 2
    env = worker_env(kafka_bootstrap, topic_names)
    worker = Worker(env, "killed").start()
    async with OutboxReader(kafka_bootstrap, topic_names["ELS_OUT_TOPIC"], PARTITIONS) as reader:
        try:
            await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events[:half])
            assert await reader.wait_for(lambda r: r.records > 0, 90), worker.output()[-3000:]
            await asyncio.sleep(random.uniform(0.0, 1.5))
            worker.kill()
            # re-deliver some already-sent events (Okta retries), then the rest of the workload
            redelivered = random.Random(5).sample(events[:half], 40)
            sim.expected.duplicates += len(redelivered)
            await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], redelivered + events[half:])
            worker = Worker(env, "restarted").start()
            await wait_exact(reader, sim, 150, [worker])
        finally:
            worker.stop()


async def test_two_workers_give_the_same_totals_as_one(kafka_bootstrap, topic_names):
    sim, events = workload(seed=13, chains=300)
    env = worker_env(kafka_bootstrap, topic_names)
    workers = [Worker(env, "w1").start(), Worker(env, "w2").start()]
    try:
        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
        async with OutboxReader(kafka_bootstrap, topic_names["ELS_OUT_TOPIC"], PARTITIONS) as reader:
            await wait_exact(reader, sim, 150, workers)
            contributing = {p for (_g, _ws, p) in reader.partials}
            assert contributing == set(range(PARTITIONS))
    finally:
        for w in workers:
            w.stop()


async def test_chains_open_at_a_sigkill_close_after_the_restart(kafka_bootstrap, topic_names):
    """Chains whose events all arrived before a SIGKILL, and that were still open then, close after the restart
    without any new event for them (the restarted worker must know them from the restored state)."""
    sim, events = workload(seed=21, chains=60)
    env = {**worker_env(kafka_bootstrap, topic_names), "ELS_CHAIN_QUIET_SECONDS": "25"}
    worker = Worker(env, "killed").start()
    async with OutboxReader(kafka_bootstrap, topic_names["ELS_OUT_TOPIC"], PARTITIONS) as reader:
        try:
            await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)

            def all_events_in(r):
                pipeline = r.totals().get("pipeline")
                return pipeline is not None and sum(counters(pipeline, "pipeline.events_in").values()) >= \
                    sim.expected.sent - sim.expected.duplicates

            assert await reader.wait_for(all_events_in, 90), worker.output()[-3000:]
            assert not any(item.get("chain", {}).get("status") for item in reader.logs
                           if "event_type" not in item), "chains closed before the kill: raise the quiet period"
            worker.kill()
            worker = Worker(env, "restarted").start()
            await wait_exact(reader, sim, 120, [worker])
        finally:
            worker.stop()
