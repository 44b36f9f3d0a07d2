"""Shared fixtures: a real Kafka-protocol broker, unique topics per test, and Kafka read-back helpers.

The broker is chosen once per test session: KAFKA_BOOTSTRAP_SERVERS if set (with the KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_* and KAFKA_SSL_* settings of the environment, which the Kafka helpers and workers use too); a
testcontainers Kafka when a Docker engine answers; otherwise the embedded Tansu broker. No test mocks Kafka.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from els.broker import EmbeddedBroker
from tests.helpers.paths import ARTIFACTS


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
    if os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() != "PLAINTEXT":
        pytest.fail("KAFKA_SECURITY_PROTOCOL is set: give the secured broker in KAFKA_BOOTSTRAP_SERVERS too "
                    "(the session's own broker is plaintext)")
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
