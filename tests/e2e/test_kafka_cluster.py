"""Cluster faults on a three-node Apache Kafka (els/apache_kafka.py), every topic with replication factor 3 and
min.insync.replicas=2, values exact at the fake Datadog:

- the node leading the most raw partitions SIGKILLed under load: every event ingest answered 2xx for is in Kafka,
  and nothing is counted twice (HTTP retries of a 503 may write an event again; the processor counts it once);
- a rolling restart of the three nodes (SIGTERM, start, wait until every replica is back in sync) under load;
- a rolling restart of two workers under load, as a Kubernetes rollout does it: each SIGTERMed and started again
  in turn, the next once the new one is ready.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from common.config import Config
from els.apache_kafka import ApacheKafka
from tests.e2e.test_datadog_e2e import PARTITIONS, env_for, wait_exact, workload
from tests.e2e.test_ingest import Ingest, make_config
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.kafka import read_topic
from tests.helpers.load import Feeder, delivering, exact_allowing_resends, roll
from tests.helpers.paths import ARTIFACTS
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.apache_kafka, pytest.mark.slow]

REPLICAS = 3


@pytest.fixture(scope="module")
def cluster():
    with ApacheKafka(ARTIFACTS / f"apache-kafka-cluster-{os.getpid()}", brokers=3) as kafka:
        yield kafka


async def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> node id of its leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [desc] = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in desc["partitions"]}
    finally:
        await admin.close()


async def wait_in_sync(bootstrap: str, timeout: float = 120) -> None:
    """Until every partition of every topic has all its replicas in sync again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            topics = await admin.list_topics()
            lagging = [(d["topic"], p["partition"]) for d in await admin.describe_topics(list(topics))
                       for p in d["partitions"] if len(p["isr"]) < len(p["replicas"])]
            if not lagging:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"replicas still out of sync after {timeout}s: {lagging[:10]}")
    finally:
        await admin.close()


def cluster_env(kafka: ApacheKafka, topics: dict, dd: FakeDatadog) -> dict:
    """A worker's settings: every topic it makes with REPLICAS replicas."""
    return {**env_for(kafka.bootstrap, topics, dd), "ELS_REPLICATION_FACTOR": str(REPLICAS)}


def ingest_config(kafka: ApacheKafka, topics: dict) -> Config:
    """Ingest's: REPLICAS replicas, and 5 s for Kafka's acknowledgement (a leader election takes seconds)."""
    return make_config(kafka.bootstrap, topics, els_partitions=PARTITIONS, els_replication_factor=REPLICAS,
                       els_ack_timeout_seconds=5.0)


async def test_a_broker_killed_under_load_loses_no_acknowledged_event(cluster, topic_names):
    sim, events = workload(seed=51, chains=240)
    raw, victim = topic_names["ELS_RAW_TOPIC"], None
    async with FakeDatadog() as dd:
        worker = Worker(cluster_env(cluster, topic_names, dd), "cluster-kill").start()
        try:
            async with Ingest(ingest_config(cluster, topic_names)) as ing:
                feeder = Feeder(ing, events)
                feed = asyncio.create_task(feeder.run())
                await delivering(dd, worker)
                while len(feeder.accepted) < len(events) // 3:
                    await asyncio.sleep(0.1)
                counts: dict[int, int] = {}
                for leader in (await leaders(cluster.bootstrap, raw)).values():
                    counts[leader] = counts.get(leader, 0) + 1
                victim = next(n for n in cluster.nodes if n.node_id == max(counts, key=counts.get))
                await asyncio.to_thread(cluster.stop_node, victim, True)
                await feed
            assert len(feeder.accepted) == len(events)
            survivors = ",".join(f"{cluster.host}:{n.port}" for n in cluster.nodes if n.running)
            records = await read_topic(survivors, raw, partitions=PARTITIONS, timeout=30)
            in_kafka = {dict(r.headers)["idempotency_key"].decode() for r in records
                        if "idempotency_key" in dict(r.headers)}
            missing = [e["idempotency_key"] for e in feeder.accepted if e["idempotency_key"] not in in_kafka]
            assert not missing, f"{len(missing)} acknowledged events are not in Kafka"
            await exact_allowing_resends(dd, sim, feeder, [worker])
        finally:
            worker.stop()
            if victim is not None:  # the next test starts with all three nodes in sync
                await asyncio.to_thread(cluster.start_node, victim)
                await wait_in_sync(cluster.bootstrap)


async def test_a_rolling_restart_of_the_brokers_keeps_values_exact(cluster, topic_names):
    sim, events = workload(seed=52, chains=240)
    async with FakeDatadog() as dd:
        worker = Worker(cluster_env(cluster, topic_names, dd), "cluster-roll").start()
        try:
            async with Ingest(ingest_config(cluster, topic_names)) as ing:
                feeder = Feeder(ing, events, pause=0.3)
                feed = asyncio.create_task(feeder.run())
                await delivering(dd, worker)
                for node in cluster.nodes:
                    await asyncio.to_thread(cluster.stop_node, node)
                    await asyncio.to_thread(cluster.start_node, node)
                    await wait_in_sync(cluster.bootstrap)
                await feed
            await exact_allowing_resends(dd, sim, feeder, [worker])
        finally:
            worker.stop()


async def test_a_rolling_restart_of_two_workers_keeps_values_exact(cluster, topic_names):
    sim, events = workload(seed=53, chains=240)
    async with FakeDatadog() as dd:
        env = cluster_env(cluster, topic_names, dd)
        workers = [Worker(env, "cluster-w1").start(), Worker(env, "cluster-w2").start()]
        try:
            async with Ingest(ingest_config(cluster, topic_names)) as ing:
                feeder = Feeder(ing, events, pause=0.3)
                feed = asyncio.create_task(feeder.run())
                await roll(workers, env, "cluster")
                await feed
            await wait_exact(dd, sim, 240, workers)
            assert all(w.proc.poll() is None for w in workers)
        finally:
            for w in workers:
                w.stop()
