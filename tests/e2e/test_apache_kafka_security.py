"""Kafka security on Apache Kafka itself (els/apache_kafka.py): SASL/SCRAM-SHA-512 over SASL_SSL with a user made
by Kafka's own kafka-configs, mutual TLS on a listener that requires client certificates, and the idempotent
producer, which Apache Kafka grants (the embedded broker refuses it).

- The whole pipeline, exact at the fake Datadog: `els ingest` writes over SASL_SSL, the `els process` worker
  reads and writes over mutual TLS, on one broker offering both listeners.
- A wrong SCRAM password, and a missing client certificate, stop the commands at start (exit 2) naming the
  settings; the password appears in no output.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from common.config import Config
from common.kafka import KafkaSecurity
from els.apache_kafka import ApacheKafka, BrokerTls
from ingest.app import WRITER
from tests.e2e.test_datadog_e2e import PARTITIONS, env_for, post_all, wait_exact, workload
from tests.e2e.test_ingest import TOKEN, Ingest
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.kafka import events_only, read_topic
from tests.helpers.paths import ARTIFACTS, ROOT
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.apache_kafka, pytest.mark.slow]

USER, PASSWORD = "svc-els", "scram-pw-never-in-a-log"


def _pkcs8_key_and_chain(cert: trustme.LeafCert) -> bytes:
    """Kafka's PEM keystore wants the key as PKCS#8 ("BEGIN PRIVATE KEY"); trustme writes it the OpenSSL way."""
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return pkcs8 + b"".join(b.bytes() for b in cert.cert_chain_pems)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One Apache Kafka node with SASL_SSL (SCRAM-SHA-512, user USER) and SSL requiring client certificates;
    yields (kafka, settings of a SASL_SSL client, settings of a mutual-TLS client)."""
    d = tmp_path_factory.mktemp("secured")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    (d / "broker.pem").write_bytes(_pkcs8_key_and_chain(server_ca.issue_cert("127.0.0.1", "localhost")))
    server_ca.cert_pem.write_to_path(str(d / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(d / "client-ca.pem"))
    client = client_ca.issue_cert("els-client")
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    with ApacheKafka(ARTIFACTS / f"apache-kafka-secured-{os.getpid()}",
                     tls=BrokerTls(d / "broker.pem", d / "client-ca.pem")) as kafka:
        kafka.add_scram_user(USER, PASSWORD)
        sasl = {"KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_ssl_bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": USER,
                "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SSL_CA_FILE": str(d / "ca.pem")}
        mtls = {"KAFKA_BOOTSTRAP_SERVERS": kafka.ssl_bootstrap, "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_FILE": str(d / "ca.pem"), "KAFKA_SSL_CERT_FILE": str(d / "client.pem"),
                "KAFKA_SSL_KEY_FILE": str(d / "client.pem")}
        yield kafka, sasl, mtls


def run_els(cmd: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ELS_", "DD_"))}
    full = {**clean, "ELS_AUTH_TOKENS": TOKEN, "ELS_DATA_DIR": str(ARTIFACTS / "faust-secured"),
            "ELS_DRY_RUN_FILE": str(ARTIFACTS / "secured-dry-run.ndjson"), **env}
    return subprocess.run([sys.executable, "-m", "els.cli", cmd], env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


async def test_pipeline_exact_with_ingest_on_sasl_scram_and_the_worker_on_mutual_tls(secured, topic_names):
    kafka, sasl, mtls = secured
    sim, events = workload(seed=41, chains=150)
    async with FakeDatadog() as dd:
        worker = Worker({**env_for(mtls["KAFKA_BOOTSTRAP_SERVERS"], topic_names, dd), **mtls}, "mtls").start()
        try:
            cfg = Config.from_env({**sasl, **topic_names, "ELS_AUTH_TOKENS": TOKEN,
                                   "ELS_PARTITIONS": str(PARTITIONS), "ELS_ACK_TIMEOUT_SECONDS": "10"})
            async with Ingest(cfg) as ing:
                await post_all(ing, events)
                assert ing.server.app[WRITER].idempotent, "ingest's producer is not idempotent on Apache Kafka"
            await wait_exact(dd, sim, 180, [worker])
            raw = await read_topic(sasl["KAFKA_BOOTSTRAP_SERVERS"], topic_names["ELS_RAW_TOPIC"],
                                   expect=len(events), timeout=30, security=KafkaSecurity.from_env(sasl))
            assert len(events_only(raw)) == len(events)
            out = worker.output()
            assert "Kafka producer started (idempotent=True)" in out, "the worker's producer is not idempotent on Apache Kafka"
            assert PASSWORD not in out
        finally:
            worker.stop()


@pytest.mark.parametrize("cmd", ["ingest", "process"])
def test_a_wrong_scram_password_stops_the_command_naming_the_credentials(secured, cmd):
    _, sasl, _ = secured
    proc = run_els(cmd, {**sasl, "KAFKA_SASL_PASSWORD": "not-" + PASSWORD})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD refused" in proc.stderr
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stdout + proc.stderr


def test_mutual_tls_without_a_client_certificate_stops_the_worker_naming_the_settings(secured):
    _, _, mtls = secured
    env = {k: v for k, v in mtls.items() if k not in ("KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE")}
    proc = run_els("process", env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE" in proc.stderr and "Traceback" not in proc.stderr
