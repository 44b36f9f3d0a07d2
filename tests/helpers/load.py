"""Load for fault tests: a feeder that posts like Okta's webhook sender, and waits on workers and values."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.e2e.test_datadog_e2e import M, mismatches
from tests.e2e.test_ingest import Ingest
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.workers import Worker, story


class Feeder:
    """Posts the workload in slices, retrying 503s as a webhook sender does; keeps what was answered 202."""

    def __init__(self, ing: Ingest, events: list[dict], per_request: int = 20, pause: float = 0.1):
        self.ing, self.events, self.per_request, self.pause = ing, events, per_request, pause
        self.accepted: list[dict] = []
        self.resent = 0  # events posted again after a 503 (a 503 may come after Kafka did write them)

    async def run(self) -> None:
        for i in range(0, len(self.events), self.per_request):
            batch = self.events[i:i + self.per_request]
            for _attempt in range(120):
                status, answer, _ = await self.ing.post(orjson.dumps(batch))
                if status == 202:
                    assert answer["rejected"] == 0, answer
                    self.accepted.extend(batch)
                    break
                assert status == 503, (status, answer)
                self.resent += len(batch)
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("ingest answered 503 for a minute")
            await asyncio.sleep(self.pause)



async def delivering(dd: FakeDatadog, worker: Worker, timeout: float = 90) -> None:
    """Until the worker (its topics made) has delivered to Datadog: the faults hit a running pipeline."""
    deadline = time.monotonic() + timeout
    while dd.request_count("/api/v2/series") == 0:
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()[-3000:]
        await asyncio.sleep(0.5)


async def ready(workers: list[Worker], timeout: float = 120) -> None:
    """Until every worker's /els/stats/ says ready."""
    deadline = time.monotonic() + timeout
    while not all([(await asyncio.to_thread(w.stats)).get("ready") for w in workers]):
        for w in workers:
            assert w.proc.poll() is None, "worker died:\n" + w.output()[-3000:]
        assert time.monotonic() < deadline, "a worker never became ready"
        await asyncio.sleep(0.5)


async def exact_allowing_resends(dd: FakeDatadog, sim, feeder: Feeder, workers: list[Worker]) -> None:
    """Every value exact; pipeline.duplicates may exceed the workload's own by what 503 retries re-wrote."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for w in workers:
            assert w.proc.poll() is None, "worker died:\n" + w.output()[-4000:]
        wrong = [m for m in mismatches(dd, sim) if not m.startswith("duplicates")]
        dups = dd.sum(M + "pipeline.duplicates")
        if not wrong and sim.expected.duplicates <= dups <= sim.expected.duplicates + feeder.resent:
            return
        await asyncio.sleep(0.5)
    pytest.fail("Datadog values never matched:\n" + "\n".join(mismatches(dd, sim)[:20]) + "\n" +
                story(workers[0].env["ELS_RAW_TOPIC"]))


async def roll(workers: list[Worker], env: dict, name: str) -> None:
    """A Kubernetes rollout: each worker SIGTERMed and started again in turn, the next once every one is ready."""
    for i in range(len(workers)):
        await ready(workers)
        await asyncio.to_thread(workers[i].stop)
        workers[i] = Worker(env, f"{name}-w{i + 1}-again").start()
    await ready(workers)
