"""Topics are owned: whichever component starts first (`els ingest`, `els process`, `faust -A processor.app worker`)
makes every topic of the pipeline, the processor's changelogs included, with ELS_PARTITIONS; one
that exists with another count stops the component at start with exit 2, naming the topic, what it has, what it
needs and the fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from common.topics import ensure_topics
from els.broker import free_port, wait_for_port
from tests.e2e.test_ingest import TOKEN
from tests.helpers.paths import ARTIFACTS, ROOT
from tests.helpers.workers import Worker

pytestmark = pytest.mark.broker

PARTITIONS = 3  # neither broker's default for a topic it makes itself (the embedded one 4, Apache Kafka 1)
FAUST = str(Path(sys.executable).parent / "faust")


def settings(bootstrap: str) -> dict[str, str]:
    s = uuid.uuid4().hex[:8]
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_PARTITIONS": str(PARTITIONS), "ELS_APP_ID": f"app-{s}",
            "ELS_RAW_TOPIC": f"raw-{s}", "ELS_DEADLETTER_TOPIC": f"dl-{s}", "ELS_OUT_TOPIC": f"out-{s}",
            "ELS_AUTH_TOKENS": TOKEN, "ELS_DATA_DIR": str(ARTIFACTS / "faust-data"),
            "ELS_DRY_RUN_FILE": str(ARTIFACTS / f"dry-run-topics-{s}.ndjson"),
            "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6"}


def pipeline_topics(env: dict[str, str]) -> list[str]:
    app = env["ELS_APP_ID"]
    return [env["ELS_RAW_TOPIC"], env["ELS_DEADLETTER_TOPIC"], env["ELS_OUT_TOPIC"],
            *(f"{app}-{t}-changelog" for t in ("chains", "windows", "sink"))]


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        found = [t for t in topics if t in existing]
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(found)} if found else {}
    finally:
        await admin.close()


async def wait_topics(bootstrap: str, env: dict[str, str], timeout: float = 60) -> dict[str, int]:
    want = pipeline_topics(env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = await partition_counts(bootstrap, want)
        if len(counts) == len(want):
            return counts
        await asyncio.sleep(0.3)
    return await partition_counts(bootstrap, want)


class Ingest:
    """`els ingest` as a child process."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.env = {**os.environ, **env, "ELS_INGEST_PORT": str(self.port), "ELS_INGEST_HOST": "127.0.0.1"}

    def __enter__(self):
        self.log = open(ARTIFACTS / f"ingest-topics-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "els.cli", "ingest"], env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port, 30)
        return self

    def post(self, events: list[dict], timeout: float = 60) -> int:
        """The status of the first answer that is not a 503 (ingest answers 503 until it has connected to Kafka),
        retried as Okta's sender does."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/events", data=orjson.dumps(events),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or time.monotonic() > deadline:
                    return exc.code
            time.sleep(0.5)

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


class FaustWorker(Worker):
    """The docs' other way to run the processor: Faust's own command on processor.app."""

    def start(self) -> FaustWorker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([FAUST, "-A", "processor.app", "worker", "-l", "info", "--web-port",
                                      str(self.web_port)], env=self.env, cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self


def events(chains: int) -> list[dict]:
    from els.traffic import Simulator

    sim = Simulator(seed=7, flows=2, helpers=1, dup_rate=0)
    now = int(time.time() * 1000)
    return sim.workload(chains, now - 60_000, 30_000)


async def processed(worker: Worker, at_least: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.output()[-3000:]
        stats = await asyncio.to_thread(worker.stats)
        if stats.get("ready") and stats.get("records", 0) >= at_least:
            return stats
        await asyncio.sleep(0.5)
    pytest.fail(f"the worker processed {stats.get('records')} of {at_least} records:\n{worker.output()[-3000:]}")


@pytest.mark.parametrize("command", ["els process", "faust worker"])
async def test_a_processor_started_before_ingest_makes_every_topic_and_processes(kafka_bootstrap, command):
    env = settings(kafka_bootstrap)
    worker = (Worker if command == "els process" else FaustWorker)(env, "topics-first").start()
    try:
        counts = await wait_topics(kafka_bootstrap, env)
        assert counts == dict.fromkeys(pipeline_topics(env), PARTITIONS)
        batch = events(5)
        with Ingest(env) as ingest:
            assert ingest.post(batch) == 202
        await processed(worker, len(batch))
        assert "Unrecognized partition" not in worker.output()
    finally:
        worker.stop()


async def test_ingest_started_first_makes_every_topic(kafka_bootstrap):
    env = settings(kafka_bootstrap)
    with Ingest(env):
        counts = await wait_topics(kafka_bootstrap, env)
    assert counts == dict.fromkeys(pipeline_topics(env), PARTITIONS)


@pytest.mark.parametrize("command", [["els", "process"], ["els", "ingest"], ["faust"]])
async def test_a_topic_with_another_partition_count_stops_the_start_with_exit_2(kafka_bootstrap, command):
    env = settings(kafka_bootstrap)
    await ensure_topics(kafka_bootstrap, [env["ELS_OUT_TOPIC"]], PARTITIONS + 1)
    argv = {"els": [sys.executable, "-m", "els.cli", *command[1:]],
            "faust": [FAUST, "-A", "processor.app", "worker", "-l", "info"]}[command[0]]
    run_env = {**os.environ, **env, "ELS_WEB_PORT": str(free_port()), "ELS_INGEST_PORT": str(free_port())}
    proc = await asyncio.to_thread(subprocess.run, argv, env=run_env, cwd=ROOT, capture_output=True, text=True,
                                   timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert (f"topic {env['ELS_OUT_TOPIC']} has {PARTITIONS + 1} partitions; the pipeline needs {PARTITIONS} "
            f"(ELS_PARTITIONS)") in out
    assert "Traceback" not in out and "crash" not in out.lower(), out[-3000:]
    # nothing else was made: with ELS_PARTITIONS set to the existing count instead, every topic would agree
    assert set(await partition_counts(kafka_bootstrap, pipeline_topics(env))) == {env["ELS_OUT_TOPIC"]}
