"""Shared fixtures: a real Kafka-protocol broker, unique topics per test, and Kafka read-back helpers.

The broker is chosen once per test session: KAFKA_BOOTSTRAP_SERVERS if set (with the KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_* and KAFKA_SSL_* settings of the environment, which the Kafka helpers and workers use too);
Apache Kafka itself (els/apache_kafka.py: fetched with Maven, run with Java) when ELS_TEST_BROKER=kafka, as
`make test-kafka` sets it; a testcontainers Kafka when a Docker engine answers; otherwise the embedded Tansu
broker. No test mocks Kafka.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from els.apache_kafka import ApacheKafka
from els.broker import EmbeddedBroker
from tests.helpers.paths import ARTIFACTS


def _docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def broker_kind() -> str:
    """Which broker the session's tests run on: ELS_TEST_BROKER, `embedded` (default) or `kafka`."""
    kind = os.environ.get("ELS_TEST_BROKER", "embedded").strip().lower() or "embedded"
    if kind not in ("embedded", "kafka"):
        raise pytest.UsageError(f"ELS_TEST_BROKER={kind!r}: use embedded (Tansu) or kafka (Apache Kafka)")
    return kind


def on_apache_kafka() -> bool:
    return broker_kind() == "kafka"


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """host:port of a real broker for this test session."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() != "PLAINTEXT":
        pytest.fail("KAFKA_SECURITY_PROTOCOL is set: give the secured broker in KAFKA_BOOTSTRAP_SERVERS too "
                    "(the session's own broker is plaintext)")
    if on_apache_kafka():
        ARTIFACTS.mkdir(exist_ok=True)
        with ApacheKafka(ARTIFACTS / f"apache-kafka-{uuid.uuid4().hex[:6]}") as kafka:
            yield kafka.bootstrap
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


def pytest_collection_modifyitems(config, items):
    """With ELS_TEST_BROKER=kafka (`make test-kafka`) the session runs what depends on the broker: every test on
    the session's broker (the kafka_bootstrap fixture) and those that start Apache Kafka clusters of their own
    (marker apache_kafka), except those whose faults are all on Datadog's side (marker datadog_side: the broker
    only carries records there, and they are the longest tests); the rest ran in `make test` already. Without it,
    the apache_kafka tests are skipped."""
    if on_apache_kafka():
        chosen = [i for i in items if ("kafka_bootstrap" in getattr(i, "fixturenames", ())
                                       or "apache_kafka" in i.keywords) and "datadog_side" not in i.keywords]
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen
        return
    skip = pytest.mark.skip(reason="starts Apache Kafka: runs with ELS_TEST_BROKER=kafka (make test-kafka)")
    for item in items:
        if "apache_kafka" in item.keywords:
            item.add_marker(skip)
