"""common.kafka: the Kafka security settings, and exactly what reaches aiokafka and Faust for each protocol and
mechanism.

The embedded broker's SASL does not work in this build (`tansu user create` fails, clients get a broken final
SCRAM message), so SASL is covered here: the arguments of the real aiokafka clients, those made by the pipeline
and those Faust makes from its credentials, without connecting. TLS is also covered for real, through stunnel,
in tests/e2e/test_kafka_tls.py.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from common import logs
from common.config import Config, ConfigError
from common.kafka import KafkaSecurity, SaslMechanism, SecurityProtocol, client_kwargs, faust_client_kwargs

PASSWORD = "pw-0f-the-kafka-user"
MECHANISMS = [m.value for m in SaslMechanism]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA file, and a client certificate with its key, in PEM files."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    client = ca.issue_cert("client.example")
    client.cert_chain_pems[0].write_to_path(str(d / "client.crt"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    return {"ca": str(d / "ca.pem"), "cert": str(d / "client.crt"), "key": str(d / "client.key"), "dir": d,
            "ca_obj": ca}


def security(protocol: str, mechanism: str = "PLAIN", **extra) -> KafkaSecurity:
    env = {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism, **extra}
    if protocol.upper().startswith("SASL"):
        env.update(KAFKA_SASL_USERNAME="svc-els", KAFKA_SASL_PASSWORD=PASSWORD)
    return KafkaSecurity.from_env(env)


def client_settings(client) -> dict:
    """What an aiokafka client object holds, whichever client it is."""
    c = getattr(client, "client", None) or getattr(client, "_client", None)
    return {"security_protocol": c._security_protocol, "sasl_mechanism": c._sasl_mechanism,
            "sasl_plain_username": c._sasl_plain_username, "sasl_plain_password": c._sasl_plain_password,
            "ssl_context": c._ssl_context}


# -- what aiokafka gets --------------------------------------------------------------------------------------
def test_plaintext_is_the_default_and_adds_nothing_else():
    s = KafkaSecurity.from_env({})
    assert s.protocol is SecurityProtocol.PLAINTEXT
    assert s.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert s.faust_credentials() is None
    assert Config.from_env({}).kafka_security == s


def test_ssl_verifies_the_broker_with_the_given_ca_and_presents_the_client_certificate(pki):
    s = security("SSL", KAFKA_SSL_CA_FILE=pki["ca"], KAFKA_SSL_CERT_FILE=pki["cert"], KAFKA_SSL_KEY_FILE=pki["key"])
    kwargs = s.client_kwargs()
    assert set(kwargs) == {"security_protocol", "ssl_context"} and kwargs["security_protocol"] == "SSL"
    ctx = kwargs["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [c["subject"] for c in _ca_certs(pki["ca"])]
    assert kwargs is not s.client_kwargs() and s.client_kwargs()["ssl_context"] is ctx  # one context per process


def _ca_certs(path: str) -> list[dict]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(path)
    return ctx.get_ca_certs()


def test_ssl_without_a_ca_file_uses_the_systems_cas():
    ctx = security("SSL").client_kwargs()["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats() == ssl.create_default_context().cert_store_stats()


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_sasl_arguments_reach_every_aiokafka_client(protocol, mechanism, pki):
    extra = {"KAFKA_SSL_CA_FILE": pki["ca"]} if protocol == "SASL_SSL" else {}
    s = security(protocol, mechanism, **extra)
    want = {"security_protocol": protocol, "sasl_mechanism": mechanism, "sasl_plain_username": "svc-els",
            "sasl_plain_password": PASSWORD, "ssl_context": s.ssl_context}
    assert (s.ssl_context is not None) == (protocol == "SASL_SSL")
    assert s.client_kwargs() == want
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **s.client_kwargs())
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **s.client_kwargs())
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1", **s.client_kwargs())
    try:
        for client in (producer, consumer, admin):
            assert client_settings(client) == want
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


# -- what Faust gets, and what Faust hands to aiokafka -------------------------------------------------------
@pytest.mark.parametrize("protocol,mechanism", [("SSL", "PLAIN")] + [
    (p, m) for p in ("SASL_PLAINTEXT", "SASL_SSL") for m in MECHANISMS])
def test_faust_credentials_become_the_same_aiokafka_arguments(protocol, mechanism, pki):
    s = security(protocol, mechanism, **({"KAFKA_SSL_CA_FILE": pki["ca"]} if "SSL" in protocol else {}))
    creds = s.faust_credentials()
    if protocol == "SSL":
        assert isinstance(creds, faust.SSLCredentials) and creds.context is s.ssl_context
    else:
        assert isinstance(creds, faust.SASLCredentials)
        assert (creds.username, creds.password, creds.mechanism.value) == ("svc-els", PASSWORD, mechanism)
        assert creds.protocol.value == protocol and creds.ssl_context is s.ssl_context
        assert PASSWORD not in repr(creds)
    assert credentials_to_aiokafka_auth(creds) == s.client_kwargs()


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_the_processors_faust_app_makes_its_clients_with_these_settings(mechanism, pki, tmp_path):
    """The real aiokafka producer and consumer Faust builds for the worker (not started), and the
    end-offset probe's arguments (faust_client_kwargs), for SCRAM over TLS and the rest."""
    from processor.worker import create_app

    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SASL_USERNAME": "svc-els",
           "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SSL_CA_FILE": pki["ca"], "ELS_DATA_DIR": str(tmp_path)}
    cfg = Config.from_env(env)
    app = create_app(cfg)
    want = {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism, "sasl_plain_username": "svc-els",
            "sasl_plain_password": PASSWORD}
    producer = app.producer._new_producer()
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        for client in (producer, consumer):
            got = client_settings(client)
            assert {k: got[k] for k in want} == want
            assert got["ssl_context"].get_ca_certs() == _ca_certs(pki["ca"])
        assert {k: faust_client_kwargs(app)[k] for k in want} == want
    finally:
        await producer.stop()
        await consumer.stop()


def test_tools_given_only_a_bootstrap_address_read_the_environment(monkeypatch, pki):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "ssl")
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", pki["ca"])
    assert client_kwargs()["security_protocol"] == "SSL"
    explicit = KafkaSecurity.from_env({})
    assert client_kwargs(explicit) == {"security_protocol": "PLAINTEXT"}


def test_values_are_case_insensitive():
    s = security("sasl_plaintext", "scram-sha-512")
    assert (s.protocol, s.mechanism) == (SecurityProtocol.SASL_PLAINTEXT, SaslMechanism.SCRAM_SHA_512)


# -- refusals: a clear error at start ------------------------------------------------------------------------
@pytest.mark.parametrize("env,words", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, ["KAFKA_SECURITY_PROTOCOL='TLS'", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"]),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, ["KAFKA_SASL_MECHANISM='GSSAPI'", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, ["SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": PASSWORD}, ["needs KAFKA_SASL_USERNAME"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, ["KAFKA_SASL_PASSWORD"]),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD}, ["PLAINTEXT does not use SASL"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_USERNAME": "u"}, ["SSL does not use SASL", "SASL_SSL"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{cert}"}, ["go together", "KAFKA_SSL_KEY_FILE"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_FILE": "{key}"}, ["go together", "KAFKA_SSL_CERT_FILE"]),
    ({"KAFKA_SSL_CA_FILE": "{ca}"}, ["KAFKA_SSL_CA_FILE set", "PLAINTEXT does not use TLS"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": PASSWORD,
      "KAFKA_SSL_CERT_FILE": "{cert}", "KAFKA_SSL_KEY_FILE": "{key}"}, ["SASL_PLAINTEXT does not use TLS"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{dir}/missing.pem"},
     ["KAFKA_SSL_CA_FILE=", "missing.pem", "not a readable file"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{key}"}, ["KAFKA_SSL_CA_FILE=", "no usable PEM CA"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{cert}", "KAFKA_SSL_KEY_FILE": "{other_key}"},
     ["KAFKA_SSL_CERT_FILE=", "KAFKA_SSL_KEY_FILE=", "matching unencrypted key"]),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "{cert}", "KAFKA_SSL_KEY_FILE": "{encrypted_key}"},
     ["matching unencrypted key"]),
], ids=lambda v: "-" if isinstance(v, list) else "/".join(f"{k[6:]}" for k in v))
def test_settings_that_cannot_work_are_refused_naming_the_setting(env, words, pki):
    files = _files(pki)
    env = {k: v.format(**files) for k, v in env.items()}
    with pytest.raises(ConfigError) as err:
        Config.from_env(env)
    for w in words:
        assert w in str(err.value)
    assert PASSWORD not in str(err.value)


def _files(pki) -> dict[str, str]:
    d = pki["dir"]
    if not (d / "other.key").exists():
        trustme.CA().issue_cert("other").private_key_pem.write_to_path(str(d / "other.key"))
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(pki["ca_obj"].issue_cert("enc").private_key_pem.bytes(), None)
        (d / "encrypted.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase")))
    return {"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"], "dir": str(d),
            "other_key": str(d / "other.key"), "encrypted_key": str(d / "encrypted.key")}


def test_cert_and_key_in_one_file_is_accepted(pki):
    both = pki["dir"] / "both.pem"
    both.write_text(Path(pki["cert"]).read_text() + Path(pki["key"]).read_text())
    s = security("SSL", KAFKA_SSL_CERT_FILE=str(both), KAFKA_SSL_KEY_FILE=str(both))
    assert s.ssl_context is not None


# -- the password is a secret --------------------------------------------------------------------------------
def test_the_password_is_masked_in_logs_and_never_shown(caplog):
    s = security("SASL_SSL", "SCRAM-SHA-256")
    assert PASSWORD not in repr(s) and PASSWORD not in s.describe() and "svc-els" in s.describe()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "connect failed: %s", (s.client_kwargs(),), None)
    line = logs.JsonFormatter().format(record)
    assert PASSWORD not in line and "***" in line


def test_help_shows_that_the_password_is_set_not_its_value(monkeypatch, capsys):
    from els.cli import build_parser

    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    for cmd in ("ingest", "process", "replay", "up"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert "--kafka-sasl-password" in out and "--kafka-ssl-ca-file" in out and "--kafka-security-protocol" in out
        assert "(set)" in out and PASSWORD not in out


@pytest.mark.parametrize("cmd", ["ingest", "process", "replay"])
def test_each_command_refuses_bad_settings_with_exit_2(cmd, monkeypatch, capsys):
    from common.kafka import SECURITY_SETTINGS
    from els.cli import main

    for name in SECURITY_SETTINGS:
        monkeypatch.setenv(name, "")  # main() writes the options into the environment: restored after the test
    extra = ["--since", "1h"] if cmd == "replay" else []
    assert main([cmd, "--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-password", PASSWORD, *extra]) == 2
    err = capsys.readouterr().err
    assert f"els {cmd}: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME" in err and PASSWORD not in err


async def test_aiokafkas_debug_dump_of_a_plain_authentication_is_masked_whatever_formats_it():
    """aiokafka logs every request at DEBUG, the SASL PLAIN one with the password in it; the Faust worker formats
    records itself, so the mask sits on aiokafka's logger, before any handler."""
    import asyncio
    import io

    from aiokafka.conn import SaslPlainAuthenticator
    from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

    password = "pässwörd-of-svc"
    KafkaSecurity.from_values("SASL_SSL", "PLAIN", "svc-els", password)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))  # not the pipeline's formatter
    logger = logging.getLogger("aiokafka.conn")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        auth = SaslPlainAuthenticator(loop=asyncio.get_running_loop(), sasl_plain_password=password,
                                      sasl_plain_username="svc-els")
        payload, _ = await auth.step(None)
        logger.debug("Request to %s:%d %d: %s", "kafka-1", 9093, 2, SaslAuthenticateRequest_v1(payload))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    out = stream.getvalue()
    assert "SaslAuthenticateRequest_v1" in out and "svc-els" in out and "***" in out
    assert password not in out and repr(password.encode())[2:-1] not in out


def test_els_up_does_not_start_the_plaintext_embedded_broker_for_secured_settings(capsys, pki):
    from els.broker import free_port
    from els.up import run_embedded

    cfg = Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "KAFKA_SECURITY_PROTOCOL": "SSL",
                           "KAFKA_SSL_CA_FILE": pki["ca"]})
    assert run_embedded(cfg, {}, None, True) == 2
    assert "embedded broker speaks only PLAINTEXT, not KAFKA_SECURITY_PROTOCOL=SSL" in capsys.readouterr().err
