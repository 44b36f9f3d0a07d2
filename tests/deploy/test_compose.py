"""docker-compose.yml, as Compose itself resolves it (Debian's `docker-compose config`): three services, a KRaft
Kafka, health checks, one image for ingest and processor, and every setting of `common.config` passed through to
the service that reads it, with the contract's default. No Docker engine is needed: `config` only resolves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.config import SETTINGS
from common.kafka import SECURITY_SETTINGS
from els.apache_kafka import KAFKA_VERSION
from els.cli import COMMANDS, INGEST
from tests.helpers.paths import ROOT

# How to reach a secured Kafka outside compose: compose's own broker is plaintext (KAFKA_SECURITY_PROTOCOL fixed).
OUTSIDE_COMPOSE = set(SECURITY_SETTINGS) - {"KAFKA_SECURITY_PROTOCOL"}
ALL = {s.env for s in SETTINGS} - OUTSIDE_COMPOSE
INGEST_VARS = set(COMMANDS["ingest"][2]) - OUTSIDE_COMPOSE
# Read only by one-off commands (`els datadog install`), so no long-running service gets the secret.
ONE_OFF = {"DD_APP_KEY", "ELS_KAFKA_CACHE"}  # ELS_KAFKA_CACHE: `els kafka`, a development tool
# The processor reads every other setting except those only the HTTP endpoint uses (its Config loads them all).
PROCESSOR_VARS = ALL - set(INGEST) - ONE_OFF
FIXED = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",  # the compose network's broker, never the host's
         "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}


def _compose() -> str:
    path = shutil.which("docker-compose") or ("/usr/bin/docker-compose" if os.path.exists("/usr/bin/docker-compose")
                                              else None)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("docker-compose is missing in CI: .ci/run installs Debian's docker-compose package")
    pytest.skip("docker-compose (Debian's v1 tool) is not installed: apt-get install docker-compose")


def _config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`docker-compose config` with only `env` set among the pipeline's settings (the caller's shell and any
    .env file are ignored)."""
    clean = {k: v for k, v in os.environ.items() if k not in ALL and k != "KAFKA_CLUSTER_ID"}
    clean.update(env)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run([_compose(), "--env-file", str(empty), "-f", str(ROOT / "docker-compose.yml"), "config"],
                          cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def _services(tmp_path: Path, **env: str) -> dict:
    proc = _config(tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["services"]


def _env(service: dict) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()}


def _ports(service: dict) -> set[tuple[str, int, int]]:
    """(host ip, published, target) of each mapping, whichever of Compose's two notations it printed."""
    out = set()
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.add((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
        else:
            ip, published, target = (["", *p.split(":")] if p.count(":") == 1 else p.split(":"))
            out.add((ip, int(published), int(target.split("/")[0])))
    return out


def test_three_services_kraft_kafka_and_one_image(tmp_path):
    services = _services(tmp_path, ELS_AUTH_TOKENS="s3cret")
    assert set(services) == {"kafka", "ingest", "processor"}

    kafka = _env(services["kafka"])
    # the Apache Kafka version the tests run on (make test-kafka)
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in kafka["KAFKA_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert not any("ZOOKEEPER" in k for k in kafka), "KRaft: no ZooKeeper"
    assert kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"]), "KRaft cluster ids are base64 UUIDs"
    assert any(v.endswith(":/var/lib/kafka/data:rw") or v.endswith(":/var/lib/kafka/data")
               for v in services["kafka"]["volumes"]), "Kafka's data outlives the container"

    ingest, processor = services["ingest"], services["processor"]
    assert ingest["build"] == processor["build"]
    assert ingest["build"]["context"] == str(ROOT)
    assert ingest["image"] == processor["image"]
    assert ingest["command"] == ["ingest"] and processor["command"] == ["process"]
    for svc in (ingest, processor):
        assert svc["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_every_service_has_a_health_check_that_asks_the_service(tmp_path):
    services = _services(tmp_path, ELS_AUTH_TOKENS="s3cret")
    checks = {name: " ".join(svc["healthcheck"]["test"]) for name, svc in services.items()}
    assert "kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in checks["kafka"]
    assert "/readyz" in checks["ingest"] and "ELS_INGEST_PORT" in checks["ingest"]
    assert "/els/stats/" in checks["processor"] and "ELS_WEB_PORT" in checks["processor"]
    for svc in services.values():
        assert svc["healthcheck"]["retries"] >= 3


def test_settings_have_the_contract_defaults_when_unset(tmp_path):
    services = _services(tmp_path, ELS_AUTH_TOKENS="s3cret")
    for name, wanted in (("ingest", INGEST_VARS), ("processor", PROCESSOR_VARS)):
        env = _env(services[name])
        for var in wanted:
            default = {**BY_DEFAULT, "ELS_AUTH_TOKENS": "s3cret", **FIXED}[var]
            assert env.get(var) == default, f"{name}: {var}={env.get(var)!r}, contract default {default!r}"


def test_every_setting_reaches_the_service_that_reads_it(tmp_path):
    values = {var: f"value-of-{var.lower()}" for var in ALL | OUTSIDE_COMPOSE}
    values.update(ELS_INGEST_PORT="18080", ELS_WEB_PORT="16066")  # used in port mappings: must be numbers
    services = _services(tmp_path, **values)
    assert INGEST_VARS | PROCESSOR_VARS | ONE_OFF == ALL
    for name, wanted in (("ingest", INGEST_VARS), ("processor", PROCESSOR_VARS)):
        env = _env(services[name])
        for var in wanted:
            assert env.get(var) == FIXED.get(var, values[var]), f"{name} does not get {var}"
    # Secrets go only where they are used.
    assert "ELS_AUTH_TOKENS" not in _env(services["processor"])
    assert "DD_API_KEY" not in _env(services["ingest"])
    assert not any(var in _env(svc) for var in ONE_OFF | OUTSIDE_COMPOSE for svc in services.values())
    assert _ports(services["ingest"]) == {("", 18080, 18080)}
    assert _ports(services["processor"]) == {("127.0.0.1", 16066, 16066)}  # status page: this host only


def test_config_fails_clearly_without_a_secret(tmp_path):
    proc = _config(tmp_path)
    assert proc.returncode != 0
    assert "ELS_AUTH_TOKENS" in proc.stderr
    assert "set ELS_AUTH_TOKENS to the secret Okta sends" in proc.stderr
    assert "var/ingest-secret" in proc.stderr  # says where `els up` keeps a generated one


def test_dockerfile_is_small_non_root_and_without_dev_extras():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert users[-1] == "els"
    assert "pip install ." in text and "[dev]" not in text
    assert re.search(r'ENTRYPOINT \["els"\]', text)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".venv", "var", "test-artifacts", ".git"):
        assert name in ignored


BY_DEFAULT = {s.env: s.default or "" for s in SETTINGS}
