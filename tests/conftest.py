"""Shared fixtures: a real Kafka-protocol broker, unique topics per test, and Kafka read-back helpers.

The broker is chosen once per test session: KAFKA_BOOTSTRAP_SERVERS if set; a testcontainers Kafka when a
Docker engine answers; otherwise the embedded Tansu broker. No test mocks Kafka.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from els.broker import EmbeddedBroker

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "els-samples"
if not SAMPLES.exists():  # CI clones the repo with shared/ beside it; keep a fallback for other layouts
    SAMPLES = Path(os.environ.get("ELS_SAMPLES_DIR", "/work/shared/els-samples"))


def _docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """host:port of a real broker for this test session."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    ARTIFACTS.mkdir(exist_ok=True)
    with EmbeddedBroker(log_path=str(ARTIFACTS / "embedded-broker.log")) as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_names():
    """Unique topic names for one test, so tests sharing the broker never see each other's records."""
    suffix = uuid.uuid4().hex[:8]
    return {"ELS_RAW_TOPIC": f"raw-{suffix}", "ELS_DEADLETTER_TOPIC": f"dl-{suffix}", "ELS_OUT_TOPIC": f"out-{suffix}"}


async def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 10.0,
                     partitions: int | None = None) -> list:
    """Every record of a topic (from the beginning), waiting until `expect` records arrived or timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        if partitions is None:
            parts = None
            for _ in range(50):
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            partitions = len(parts or [0])
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
            if expect is not None and len(out) >= expect:
                break
            if expect is None:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
        return out
    finally:
        await consumer.stop()
