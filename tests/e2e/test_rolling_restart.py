"""Workers restarted as operators restart them, on the session's broker (the embedded one in `make test`, Apache
Kafka in `make test-kafka`), while events flow: each of two workers SIGTERMed and started again in turn, the
next once the new one is ready (a Kubernetes rollout), then one SIGKILLed and started again; and the same rollout
while Datadog is down. Both workers are running at the end, and Datadog's values (the fake intake) equal a single
uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.conftest import on_apache_kafka
from tests.e2e.test_datadog_e2e import PARTITIONS, env_for, wait_exact, workload
from tests.e2e.test_ingest import Ingest, make_config
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.load import Feeder, delivering, ready, roll
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_workers_restarted_in_turn_then_one_killed_keep_running_and_exact(kafka_bootstrap, topic_names):
    sim, events = workload(seed=61, chains=300)
    async with FakeDatadog() as dd:
        env = env_for(kafka_bootstrap, topic_names, dd)
        workers = [Worker(env, "roll-w1").start(), Worker(env, "roll-w2").start()]
        try:
            async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
                feeder = Feeder(ing, events, pause=0.25)
                feed = asyncio.create_task(feeder.run())
                await delivering(dd, workers[0])
                await roll(workers, env, "roll")
                workers[0].kill()
                workers[0] = Worker(env, "roll-w1-after-kill").start()
                await ready(workers)
                await feed
            assert feeder.resent == 0, "ingest answered 503 with the broker up"
            await wait_exact(dd, sim, 240, workers)
            assert all(w.proc.poll() is None for w in workers), "a worker exited"
        finally:
            for w in workers:
                w.stop()


@pytest.mark.datadog_side  # the broker only carries the rebalance: once, on the embedded broker
async def test_a_rolling_restart_while_datadog_is_down_stops_each_worker_by_itself_and_stays_exact(
        kafka_bootstrap, topic_names):
    """Each worker's sink is retrying Datadog when it gets SIGTERM: the stop abandons the flush (its records are
    read again by the next owner) instead of waiting for Datadog, so the worker exits by itself (0), not killed
    at the end of its grace period; once Datadog is back every value is exact."""
    sim, events = workload(seed=63, chains=200)
    async with FakeDatadog() as dd:
        env = env_for(kafka_bootstrap, topic_names, dd)
        workers = [Worker(env, "dd-down-roll-w1").start(), Worker(env, "dd-down-roll-w2").start()]
        stopped = list(workers)
        try:
            async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
                await delivering(dd, workers[0])
                dd.fail(503)  # down until healed below
                await Feeder(ing, events, pause=0.05).run()
                refused = dd.request_count(ok_only=False) - dd.request_count()
                deadline = time.monotonic() + 60
                while dd.request_count(ok_only=False) - dd.request_count() < refused + 2:  # the sinks are retrying
                    assert time.monotonic() < deadline, "the sinks never met the outage"
                    await asyncio.sleep(0.5)
                await roll(workers, env, "dd-down-roll")
            assert [w.proc.returncode for w in stopped] == [0, 0], "a worker was killed at the end of its grace"
            dd.heal()
            await wait_exact(dd, sim, 240, workers)
        finally:
            for w in workers:
                w.stop()


@pytest.mark.skipif(not on_apache_kafka(), reason="the embedded broker ignores max.message.bytes: runs in make "
                                                   "test-kafka")
async def test_an_agent_that_keeps_failing_makes_the_worker_unready_and_the_page_red(kafka_bootstrap, topic_names):
    """The outbox made by someone else with a tiny max.message.bytes: every batch's outbox write is refused, Faust
    restarts the agent each time. The worker must not look healthy."""
    from common.topics import ensure_topics
    from tests.e2e.test_processor_e2e import worker_env

    await ensure_topics(kafka_bootstrap, [topic_names["ELS_OUT_TOPIC"]], PARTITIONS,
                        configs={topic_names["ELS_OUT_TOPIC"]: {"max.message.bytes": "200"}})
    sim, events = workload(seed=62, chains=20)
    worker = Worker(worker_env(kafka_bootstrap, topic_names), "failing-agent").start()
    try:
        async with Ingest(make_config(kafka_bootstrap, topic_names, els_partitions=PARTITIONS)) as ing:
            status, _, _ = await ing.post(orjson.dumps(events))
            assert status == 202
        deadline = time.monotonic() + 120
        stats: dict = {}
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.output()[-3000:]
            stats = await asyncio.to_thread(worker.stats)
            if stats.get("problems"):
                break
            await asyncio.sleep(0.5)
        assert stats.get("problems"), f"never reported: {stats}\n{worker.output()[-3000:]}"
        assert stats["ready"] is False
        assert "the agent failed" in stats["problems"][0] and "MessageSizeTooLarge" in stats["problems"][0]
        page = await asyncio.to_thread(worker.get, "/els/status.json")
        assert page["problems"] and "the agent failed" in page["problems"][0]
    finally:
        worker.stop()
