"""Ingest -> broker -> processor -> sink -> fake Datadog, with a generated workload and known answers.

The fake keeps what Datadog keeps (the last value per series and timestamp); its per-flow counts, error rates,
p95 and chain counts must equal the generator's, also through a Datadog outage (503s, then 429s with
X-RateLimit-Reset) during which the worker is SIGKILLed and restarted.
"""

from __future__ import annotations

import asyncio
import math
import time

import orjson
import pytest

from els.traffic import Simulator
from processor.core.tags import tag_value
from processor.core.windows import window_start
from tests.conftest import on_apache_kafka
from tests.e2e.test_ingest import Ingest, make_config
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.workers import Worker, story

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PARTITIONS = 4
WINDOW_S = 600
M = "okta.workflows."
OUTAGE_AFTER_FIRST_REFUSAL_S = 15  # Datadog stays down this long after the second half of the events was posted


def env_for(bootstrap: str, topics: dict, dd: FakeDatadog) -> dict:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS),
            "ELS_WINDOW_SECONDS": str(WINDOW_S), "ELS_FLUSH_SECONDS": "1", "ELS_LATENESS_SECONDS": "3600",
            "ELS_CHAIN_QUIET_SECONDS": "1", "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6",
            "ELS_DATA_DIR": "test-artifacts/faust-data", "ELS_APP_ID": "els-" + topics["ELS_RAW_TOPIC"],
            "DD_API_KEY": dd.api_key, "DD_URL": dd.url, "DD_TAGS": "env:test", **topics}


def workload(seed: int, chains: int) -> tuple[Simulator, list[dict]]:
    """Everything inside the current window, so each flow has one point per metric to compare."""
    sim = Simulator(seed=seed, flows=6, helpers=3, dup_rate=0.05)
    now = int(time.time() * 1000)
    ws = window_start(now, WINDOW_S * 1000)
    if now - ws > (WINDOW_S - 30) * 1000:  # too close to the next window: start in it instead
        time.sleep((ws + WINDOW_S * 1000 - now) / 1000 + 1)
        now = int(time.time() * 1000)
        ws = window_start(now, WINDOW_S * 1000)
    start = max(ws + 100, now - 120_000)
    return sim, sim.workload(chains, start, max(now - start - 20_000, 1000))


def exact_quantile(values: list[float], q: float) -> float:
    """The order statistic DDSketch estimates: the value of rank floor(q * (n - 1))."""
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


def mismatches(dd: FakeDatadog, sim: Simulator) -> list[str]:
    exp = sim.expected
    out = []
    for fid in exp.flow_names:
        for (f, t), n in exp.events.items():
            if f == fid and dd.sum(M + "events", flow_id=fid, event_type=t) != n:
                out.append(f"{fid} events {t}: {dd.sum(M + 'events', flow_id=fid, event_type=t)} != {n}")
        for (f, et), n in exp.failures.items():
            if f == fid and dd.sum(M + "failures", flow_id=fid, error_type=tag_value(et)) != n:
                out.append(f"{fid} failures {et}")
        rate = exp.error_rate(fid)
        got = dd.last(M + "error_rate", flow_id=fid)
        if rate is not None and (got is None or abs(got - rate) > 1e-9):
            out.append(f"{fid} error_rate {got} != {rate}")
        if dd.sum(M + "steps", flow_id=fid) != exp.steps[fid]:
            out.append(f"{fid} steps {dd.sum(M + 'steps', flow_id=fid)} != {exp.steps[fid]}")
        durations = exp.durations[fid]
        p95 = dd.last(M + "duration.p95", flow_id=fid)
        want = exact_quantile(durations, 0.95) if durations else None
        if durations and (p95 is None or abs(p95 - want) > 0.01 * want + 0.5):
            out.append(f"{fid} p95 {p95} vs exact {want}")
    for (root, status, had), n in exp.chains.items():
        got = dd.sum(M + "chains", root_flow_id=root, status=status, had_failures="true" if had else "false")
        if got != n:
            out.append(f"chains {root} {status} {had}: {got} != {n}")
    if dd.sum(M + "pipeline.duplicates") != exp.duplicates:
        out.append(f"duplicates {dd.sum(M + 'pipeline.duplicates')} != {exp.duplicates}")
    return out


async def wait_exact(dd: FakeDatadog, sim: Simulator, timeout: float, workers: list[Worker]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                pytest.fail("worker died:\n" + w.output()[-4000:])
        if not mismatches(dd, sim):
            return
        await asyncio.sleep(0.5)
    statuses = sorted({(r[0], r[1]) for r in dd.requests})
    pytest.fail(f"Datadog values never matched (requests: {statuses}):\n" + "\n".join(mismatches(dd, sim)[:20]) +
                "\n" +
                story(workers[0].env["ELS_RAW_TOPIC"]))


async def post_all(ing: Ingest, events: list[dict], per_request: int = 50) -> None:
    for i in range(0, len(events), per_request):
        status, answer, _ = await ing.post(orjson.dumps(events[i:i + per_request]))
        assert status == 202 and answer["rejected"] == 0


async def test_end_to_end_values_in_datadog_are_exact(kafka_bootstrap, topic_names):
    sim, events = workload(seed=21, chains=300)
    async with FakeDatadog() as dd:
        worker = Worker(env_for(kafka_bootstrap, topic_names, dd), "dd").start()
        try:
            async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
                await post_all(ing, events)
                # what the pipeline tells about itself: a refused delivery, a body ingest cannot use, and an
                # event only the processor finds unusable
                assert (await ing.post(b"[]", auth=False))[0] == 401
                assert (await ing.post(b"{not json"))[0] == 400
                bad_time = {"event_type": "FLOW_START", "execution_id": "bad-time", "timestamp": "yesterday"}
                assert (await ing.post(orjson.dumps(bad_time)))[0] == 202
            # ingest's last window report is written as it stops (ingest/report.py)
            await wait_exact(dd, sim, 120, [worker])
            accepted = -(-len(events) // 50) + 1
            want = {("pipeline.ingest.requests", "outcome:accepted"): accepted,
                    ("pipeline.ingest.requests", "outcome:unauthorized"): 1,
                    ("pipeline.ingest.requests", "outcome:bad_body"): 1,
                    ("pipeline.ingest.events", "outcome:accepted"): len(events) + 1,
                    ("pipeline.deadletters", "stage:ingest,reason:bad_body"): 1,
                    ("pipeline.deadletters", "stage:processor,reason:invalid_event"): 1}

            def got(metric: str, tags: str) -> float:
                return dd.sum(M + metric, dict(t.split(":") for t in tags.split(",")))

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(got(*k) != n for k, n in want.items()):
                await asyncio.sleep(0.5)
            assert {k: got(*k) for k in want} == want
            assert dd.last(M + "pipeline.silence_seconds", org=tag_value(events[0]["org_name"])) is not None
            assert dd.last(M + "pipeline.delay_seconds.max") is not None
            assert dd.points(M + "pipeline.backlog_records")
            # one flush sends the series request, then the logs request: the logs may be a moment behind
            want_failures = sum(exp_n for (_f, _t), exp_n in sim.expected.failures.items())
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    len([i for i in dd.logs if i.get("event_type") == "FLOW_FAIL"]) < want_failures:
                await asyncio.sleep(0.5)
            failures = [item for item in dd.logs if item.get("event_type") == "FLOW_FAIL"]
            assert len(failures) >= want_failures > 0
            for item in failures:
                assert item["status"] == "error" and item["error"]["kind"] and item["error"]["message"]
                assert item["trace_id"] and item["chain"]["path"] and item["ddsource"] == "okta-workflows"
                assert item["service"] == "okta-workflows" and "env:test" in item["ddtags"]
            chains = [item for item in dd.logs if "event_type" not in item]
            assert chains and {c["chain"]["status"] for c in chains} <= {"completed", "failed", "canceled"}
            requests = dd.request_count("/api/v2/series")
            assert requests < len(events) / 10, f"{requests} series requests for {len(events)} events"
            # Apache Kafka grants the idempotent producer; the embedded broker refuses it and the worker goes on
            assert f"Kafka producer started (idempotent={on_apache_kafka()})" in worker.output()
        finally:
            worker.stop()


@pytest.mark.parametrize("sigkill", [pytest.param(False, marks=pytest.mark.datadog_side), True],
                         ids=["outage", "outage-and-sigkill"])
async def test_datadog_outage_loses_nothing(kafka_bootstrap, topic_names, sigkill):
    sim, events = workload(seed=22, chains=300)
    async with FakeDatadog() as dd:
        env = env_for(kafka_bootstrap, topic_names, dd)
        dd.fail(503)  # down until healed below, some seconds after the sink first met the outage
        worker = Worker(env, "dd-outage").start()
        try:
            async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
                started = time.monotonic()
                await post_all(ing, events[: len(events) // 2])
                # ingest is unaffected by Datadog being down
                assert time.monotonic() - started < 30
                deadline = time.monotonic() + 40
                while dd.request_count(ok_only=False) == 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                assert dd.request_count() == 0 and dd.request_count(ok_only=False) > 0
                if sigkill:
                    worker.kill()
                await post_all(ing, events[len(events) // 2:])
                if sigkill:
                    worker = Worker(env, "dd-outage-restarted").start()
                await asyncio.sleep(OUTAGE_AFTER_FIRST_REFUSAL_S)  # the sink keeps retrying meanwhile
                dd.heal()
                dd.fail(429, seconds=10, headers={"X-RateLimit-Reset": "2"})
            await wait_exact(dd, sim, 150, [worker])
            refused = [r for r in dd.requests if r[1] in (429, 503)]
            assert refused, "the outage was never seen by the sink"
            # every refused request was a retry, and pipeline.sink_retries says how many (it travels through
            # the outbox and is delivered by a later flush)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                refused = [r for r in dd.requests if r[1] in (429, 503)]
                if dd.sum(M + "pipeline.sink_retries") == len(refused) or (
                        sigkill and dd.sum(M + "pipeline.sink_retries") > 0 and time.monotonic() > deadline - 30):
                    break
                await asyncio.sleep(1)
            if sigkill:  # retries of the killed worker not yet recorded when it died are not counted
                assert 1 <= dd.sum(M + "pipeline.sink_retries") <= len(refused)
            else:
                assert dd.sum(M + "pipeline.sink_retries") == len(refused)
        finally:
            worker.stop()
