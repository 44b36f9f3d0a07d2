"""Processor-side reliability: ingest -> broker -> worker -> fake Datadog stays exact when the worker is SIGKILLed
at random points, and when Datadog is slow or rate-limits, while ingest keeps answering fast.

Random kill points come from a seed (new each run, or ELS_TEST_SEED=N to replay one); it is printed, and so shown
by pytest, when a test fails. The short versions run by default; the longer ones under the `soak` marker.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import orjson
import pytest

from tests.e2e.test_datadog_e2e import PARTITIONS, M, env_for, wait_exact, workload
from tests.e2e.test_ingest import Ingest, make_config
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def seed_for_run() -> int:
    seed = int(os.environ.get("ELS_TEST_SEED") or random.randrange(1 << 32))
    print(f"random seed: {seed} (replay with ELS_TEST_SEED={seed})")
    return seed


async def post_timed(ing: Ingest, events: list[dict], per_request: int, latencies: list[float],
                     pause: float = 0.0) -> None:
    """Post in slices, every answer a 202 with nothing rejected; each POST's latency is kept."""
    for i in range(0, len(events), per_request):
        t = time.monotonic()
        status, answer, _ = await ing.post(orjson.dumps(events[i:i + per_request]))
        latencies.append(time.monotonic() - t)
        assert status == 202 and answer["rejected"] == 0, (status, answer)
        if pause:
            await asyncio.sleep(pause)


@pytest.mark.parametrize("kills", [2, pytest.param(5, marks=pytest.mark.soak)], ids=["2-kills", "5-kills"])
async def test_sigkill_at_random_points_keeps_datadog_exact(kafka_bootstrap, topic_names, kills):
    seed = seed_for_run()
    rng = random.Random(seed)
    sim, events = workload(seed=seed % 10_000, chains=120 * kills)
    feed_s = 12.0 * kills  # events arrive over this long; the kills fall anywhere in it or shortly after
    kill_at = sorted(rng.uniform(2.0, feed_s + 8.0) for _ in range(kills))
    async with FakeDatadog() as dd:
        env = env_for(kafka_bootstrap, topic_names, dd)
        workers = [Worker(env, "rel-kill").start()]

        async def killer() -> None:
            t0 = time.monotonic()
            for n, at in enumerate(kill_at, 1):
                await asyncio.sleep(max(at - (time.monotonic() - t0), 0))
                workers[-1].kill()
                await asyncio.sleep(rng.uniform(0.0, 3.0))  # down for a moment, or restarted at once
                workers.append(Worker(env, f"rel-kill-{n}").start())

        try:
            async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
                kill_task = asyncio.create_task(killer())
                per_request = 20
                pause = feed_s / max(len(events) / per_request, 1)
                await post_timed(ing, events, per_request, [], pause)
                await kill_task
            try:
                await wait_exact(dd, sim, 240, [workers[-1]])
            except BaseException:
                print(f"seed {seed}: kills at {[round(a, 1) for a in kill_at]} s after the feed started")
                raise
            assert len(workers) == kills + 1
            # the kills really hit a working pipeline: something reached Datadog before the last one restarted
            assert dd.request_count("/api/v2/series") > 0
        finally:
            for w in workers:
                w.stop()


async def _loses_nothing_while(dd: FakeDatadog, kafka_bootstrap, topic_names, seed: int, slow,
                               then=None) -> list[float]:
    """Feed a workload while `slow(dd)` (called with the worker up) makes Datadog misbehave, check exact values,
    then `await then(dd)` while the worker still runs. Returns every POST's latency."""
    sim, events = workload(seed=seed, chains=300)
    worker = Worker(env_for(kafka_bootstrap, topic_names, dd), "rel-slow").start()
    latencies: list[float] = []
    try:
        async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
            await post_timed(ing, events[:50], 25, latencies)
            deadline = time.monotonic() + 90  # the worker is up and delivering before Datadog turns bad
            while dd.request_count("/api/v2/series") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert dd.request_count("/api/v2/series") > 0, worker.output()[-3000:]
            fault = slow(dd)
            await post_timed(ing, events[50:], 25, latencies, pause=0.2)
            deadline = time.monotonic() + 60  # the sink is held by the fault while ingest goes on
            while fault.hits < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert fault.hits >= 2, "the sink never met the slow or refusing Datadog"
        await wait_exact(dd, sim, 180, [worker])
        if then is not None:
            await then(dd)
    finally:
        worker.stop()
    return latencies


@pytest.mark.datadog_side
async def test_slow_datadog_loses_nothing_and_ingest_stays_fast(kafka_bootstrap, topic_names):
    async with FakeDatadog() as dd:
        latencies = await _loses_nothing_while(
            dd, kafka_bootstrap, topic_names, seed=31, slow=lambda d: d.hang(10, for_seconds=25))
        slow = [r for r in dd.request_details if r.duration_s >= 9]
        assert slow, "no request was held 10 s by the fake"
        # ingest answers from Kafka's acknowledgement, never from Datadog: far below the 10 s Datadog delay
        assert max(latencies) < 5, sorted(latencies)[-5:]


@pytest.mark.datadog_side
async def test_rate_limited_datadog_loses_nothing_and_ingest_stays_fast(kafka_bootstrap, topic_names):
    async def retries_counted(dd: FakeDatadog) -> None:
        """Every 429 was retried, and the sink says how often (through the outbox, by a later flush)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            refused = [r for r in dd.requests if r.status == 429]
            if dd.sum(M + "pipeline.sink_retries") >= len(refused):
                break
            await asyncio.sleep(1)
        retries = [(p.timestamp, p.tags, p.value) for p in dd.stored_points(M + "pipeline.sink_retries")]
        assert dd.sum(M + "pipeline.sink_retries") == len(refused), (
            retries, [(r.path, r.status, round(r.received_at % 1000, 1)) for r in dd.request_details])

    async with FakeDatadog() as dd:
        latencies = await _loses_nothing_while(
            dd, kafka_bootstrap, topic_names, seed=32,
            slow=lambda d: d.fail(429, seconds=25, headers={"X-RateLimit-Reset": "3"}), then=retries_counted)
        assert [r for r in dd.requests if r.status == 429]
        assert max(latencies) < 5, sorted(latencies)[-5:]
