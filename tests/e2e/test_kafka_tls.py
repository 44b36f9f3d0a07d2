"""Kafka over TLS for real: the embedded broker behind stunnel (tests/helpers/tlsbroker.py), certificates made by
`trustme` in the test.

- The whole pipeline (ingest -> processor -> sink -> fake Datadog) over mutual TLS, exact at the fake Datadog,
  with every Kafka client on the TLS port only: the broker advertises it, and no process but stunnel holds a
  connection to the broker's own (plaintext) port.
- What the brokers refuse stops `els ingest`, `els process` and `els replay` at start with exit 2 and a message
  naming the setting (an untrusted certificate, a name the certificate does not carry, a required client
  certificate, SASL where the broker offers none); what a retry may cure (plaintext against TLS) says so.
- The SASL password appears in no output, also at DEBUG.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from common.config import Config
from common.kafka import KafkaSecurity
from common.kafka_check import KafkaRefused, KafkaUnreachable, probe
from common.topics import ensure_topics
from els.broker import free_port
from tests.e2e.test_datadog_e2e import PARTITIONS, env_for, post_all, wait_exact, workload
from tests.e2e.test_ingest import TOKEN, Ingest
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.kafka import events_only, read_topic
from tests.helpers.paths import ROOT
from tests.helpers.tlsbroker import TlsBroker
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PASSWORD = "sasl-pw-never-in-a-log"


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory, client_ca):
    """A broker that requires client certificates signed by `client_ca`, and the settings of a client with one."""
    d = tmp_path_factory.mktemp("mtls")
    cert = client_ca.issue_cert("els-client")
    cert.cert_chain_pems[0].write_to_path(str(d / "client.crt"))
    cert.private_key_pem.write_to_path(str(d / "client.key"))
    with TlsBroker(d / "broker", client_ca=client_ca) as broker:
        env = {**broker.env(), "KAFKA_SSL_CERT_FILE": str(d / "client.crt"), "KAFKA_SSL_KEY_FILE": str(d / "client.key")}
        yield broker, env


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A broker with TLS (no client certificates), and a CA file of another CA, which did not sign its certificate."""
    d = tmp_path_factory.mktemp("tls")
    trustme.CA().cert_pem.write_to_path(str(d / "other-ca.pem"))
    with TlsBroker(d / "broker") as broker:
        yield broker, str(d / "other-ca.pem")


def peer_ports(pid: int) -> set[int]:
    """Remote TCP ports of the connections process `pid` holds (from /proc: no tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes and cols[3] == "01":  # ESTABLISHED
                ports.add(int(cols[2].rsplit(":", 1)[1], 16))
    return ports


async def test_the_pipeline_over_mutual_tls_is_exact_and_uses_only_the_tls_port(mtls, topic_names):
    broker, kafka_env = mtls
    security = KafkaSecurity.from_env(kafka_env)
    sim, events = workload(seed=31, chains=120)
    async with FakeDatadog() as dd:
        env = {**env_for(broker.bootstrap, topic_names, dd), **kafka_env}
        worker = Worker(env, "tls").start()
        try:
            cfg = Config.from_env({**kafka_env, **topic_names, "ELS_AUTH_TOKENS": TOKEN,
                                   "ELS_PARTITIONS": str(PARTITIONS), "ELS_ACK_TIMEOUT_SECONDS": "5"})
            async with Ingest(cfg) as ing:
                await post_all(ing, events)
                await wait_exact(dd, sim, 180, [worker])
                raw = await read_topic(broker.bootstrap, topic_names["ELS_RAW_TOPIC"], expect=len(events),
                                       timeout=30, security=security)
                events_in_kafka = events_only(raw)
                assert len(events_in_kafka) == len(events)
                # While ingest and the worker are connected: their Kafka connections all end at the TLS port,
                # and the broker's own port has stunnel for only client.
                for pid in (os.getpid(), worker.proc.pid):
                    ports = peer_ports(pid)
                    assert broker.tls_port in ports and broker.plain_port not in ports, (pid, ports)
                assert broker.plain_port in peer_ports(broker.stunnel.pid)
        finally:
            worker.stop()


async def test_the_broker_advertises_the_tls_port_and_plaintext_there_is_told_what_to_set(mtls):
    broker, kafka_env = mtls
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **KafkaSecurity.from_env(kafka_env).client_kwargs())
    await producer.start()
    try:
        assert {b.port for b in producer.client.cluster.brokers()} == {broker.tls_port}
    finally:
        await producer.stop()
    with pytest.raises(KafkaUnreachable, match="set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"):
        await ensure_topics(broker.bootstrap, ["never"], 1, security=KafkaSecurity.from_env({}))


def run_els(cmd: str, env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """`els <cmd>` with only these settings (plus PATH and the like), as a user would run it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ELS_", "DD_"))}
    full = {**clean, "ELS_AUTH_TOKENS": TOKEN, "ELS_DATA_DIR": str(ROOT / "test-artifacts" / "faust-tls"),
            "ELS_DRY_RUN_FILE": str(ROOT / "test-artifacts" / "tls-dry-run.ndjson"), **env}
    return subprocess.run([sys.executable, "-m", "els.cli", cmd, *args], env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("cmd,args", [("ingest", ()), ("process", ()), ("replay", ("--since", "1h"))])
def test_an_untrusted_certificate_stops_each_command_naming_the_ca_setting(tls, cmd, args):
    broker, other_ca = tls
    started = time.monotonic()
    proc = run_els(cmd, {**broker.env(), "KAFKA_SSL_CA_FILE": other_ca}, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"els {cmd}: the broker's certificate is not trusted" in proc.stderr
    assert "set KAFKA_SSL_CA_FILE" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60


def test_the_systems_cas_do_not_trust_a_private_ca(tls):
    broker, _ = tls
    env = {k: v for k, v in broker.env().items() if k != "KAFKA_SSL_CA_FILE"}
    proc = run_els("process", env)
    assert proc.returncode == 2 and "the system's CAs" in proc.stderr and "KAFKA_SSL_CA_FILE" in proc.stderr


async def test_a_certificate_for_another_name_is_refused(tmp_path):
    with TlsBroker(tmp_path / "broker", names=("kafka.example.test",)) as broker, \
            pytest.raises(KafkaRefused, match="does not name that host"):
        await ensure_topics(broker.bootstrap, ["x"], 1, security=broker.security)


async def test_mutual_tls_without_a_client_certificate_is_refused_naming_the_settings(mtls, tmp_path):
    broker, kafka_env = mtls
    proc = run_els("process", broker.env())
    assert proc.returncode == 2, proc.stderr
    assert "KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE" in proc.stderr and "no client certificate" in proc.stderr
    other = trustme.CA().issue_cert("stranger")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "stranger.pem"))
    stranger = KafkaSecurity.from_env({**broker.env(), "KAFKA_SSL_CERT_FILE": str(tmp_path / "stranger.pem"),
                                       "KAFKA_SSL_KEY_FILE": str(tmp_path / "stranger.pem")})
    finding = await probe(broker.bootstrap, stranger, timeout=5)
    assert finding is not None and "client certificate signed by a CA it trusts" in finding.message


async def test_tls_against_the_plaintext_port_times_out_with_a_hint(tls):
    broker, _ = tls
    finding = await probe(f"127.0.0.1:{broker.plain_port}", broker.security, timeout=2)
    assert finding is not None and not finding.refused and "KAFKA_SECURITY_PROTOCOL" in finding.message


def sasl_env(broker: TlsBroker) -> dict[str, str]:
    return {**broker.env(), "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "svc-els", "KAFKA_SASL_PASSWORD": PASSWORD, "ELS_LOG_LEVEL": "DEBUG"}


@pytest.mark.parametrize("cmd", ["ingest", "process"])
def test_sasl_the_broker_does_not_offer_stops_at_start_and_the_password_is_in_no_output(tls, cmd):
    broker, _ = tls
    proc = run_els(cmd, sasl_env(broker))
    assert proc.returncode == 2, proc.stderr
    assert "KAFKA_SASL_MECHANISM=SCRAM-SHA-512 is not offered" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def test_the_password_is_in_no_log_of_running_processes(tls, tmp_path):
    """Processes that keep running and logging with the password set: ingest retrying an unreachable broker,
    and Faust's own worker (`faust -A processor.app worker -l debug`) facing a broker that refuses SASL."""
    broker, _ = tls
    down = {**sasl_env(broker), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "ELS_INGEST_PORT": str(free_port()), "ELS_INGEST_HOST": "127.0.0.1"}
    outputs = [_run_for(["-m", "els.cli", "ingest"], down, 6, tmp_path / "ingest.log"),
               _run_for(["-m", "faust", "-A", "processor.app", "worker", "-l", "debug", "--web-port",
                         str(free_port())], sasl_env(broker), 12, tmp_path / "faust.log")]
    assert "Kafka not reachable yet" in outputs[0]
    for out in outputs:
        assert out.strip() and PASSWORD not in out


def _run_for(argv: list[str], env: dict[str, str], seconds: float, log: Path) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ELS_", "DD_"))}
    full = {**clean, "ELS_AUTH_TOKENS": TOKEN, "ELS_DATA_DIR": str(log.parent / "faust"),
            "ELS_DRY_RUN_FILE": str(log.parent / "dry.ndjson"), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *argv], env=full, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return log.read_text(errors="replace")


async def test_els_broker_advertises_the_address_given():
    """`els broker --advertised-address`: what a TLS terminator in front of it needs (the clients' metadata names
    the terminator, so every connection goes through it)."""
    from aiokafka import AIOKafkaClient

    from els.broker import wait_for_port

    port, advertised = free_port(), f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "els.cli", "broker", "--kafka-bootstrap-servers",
                             f"127.0.0.1:{port}", "--advertised-address", advertised], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", port, 15)
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}")
        await client.bootstrap()
        try:
            assert {f"{b.host}:{b.port}" for b in client.cluster.brokers()} == {advertised}
        finally:
            await client.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert f"advertised to clients as {advertised}" in err
