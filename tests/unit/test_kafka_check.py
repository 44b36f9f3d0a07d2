"""common.kafka_check: what a failed Kafka connection means, naming the setting to fix.

Here for the causes no test broker can produce (the embedded broker's SASL is broken: a refused password or
a SCRAM exchange gone wrong); the causes stunnel can produce (an untrusted certificate, a name mismatch, a
required client certificate, plaintext against TLS) are tested for real in tests/e2e/test_kafka_tls.py.
"""

from __future__ import annotations

import ssl

import pytest
from aiokafka import errors

from common.kafka import KafkaSecurity
from common.kafka_check import KafkaRefused, KafkaUnreachable, explain, failure, probe

SERVER = "kafka-1.example:9093"
PASSWORD = "pw-that-must-not-show"


def sasl(mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
    return KafkaSecurity.from_values("SASL_SSL", mechanism, "svc-els", PASSWORD)


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_code, exc.verify_message, exc.reason = code, message, "CERTIFICATE_VERIFY_FAILED"
    return exc


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_refused_password_names_both_settings(mechanism):
    exc = errors.SaslAuthenticationFailed("Authentication failed: Invalid username or password")
    f = explain(exc, SERVER, sasl(mechanism))
    assert f.refused
    assert f.message.startswith(f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD refused by {SERVER}")
    assert f"KAFKA_SASL_MECHANISM={mechanism}" in f.message and "svc-els" in f.message
    assert PASSWORD not in f.message


def test_a_mechanism_the_broker_does_not_offer():
    exc = errors.UnsupportedSaslMechanismError(
        "Kafka broker does not support SCRAM-SHA-512 sasl mechanism. Enabled mechanisms are: ['PLAIN']")
    f = explain(exc, SERVER, sasl())
    assert f.refused and "KAFKA_SASL_MECHANISM=SCRAM-SHA-512 is not offered" in f.message and "['PLAIN']" in f.message


def test_sasl_against_a_listener_without_sasl():
    f = explain(errors.IllegalSaslStateError(), SERVER, sasl())
    assert f.refused and "not SASL_SSL/SASL_PLAINTEXT" in f.message and "KAFKA_SECURITY_PROTOCOL" in f.message


def test_a_scram_exchange_that_does_not_verify():
    f = explain(ValueError("Server sent wrong signature!"), SERVER, sasl())
    assert f.refused and "KAFKA_SASL_MECHANISM=SCRAM-SHA-512" in f.message and "KAFKA_SASL_PASSWORD" in f.message


def test_an_untrusted_certificate_names_the_ca_setting():
    f = explain(verify_error(20, "unable to get local issuer certificate"), SERVER,
                KafkaSecurity.from_values("SSL", "PLAIN"))
    assert f.refused and f.message.startswith("the broker's certificate is not trusted")
    assert "set KAFKA_SSL_CA_FILE" in f.message and "system's CAs" in f.message


def test_a_certificate_for_another_name():
    f = explain(verify_error(62, "Hostname mismatch, certificate is not valid for 'kafka-1.example'."), SERVER,
                KafkaSecurity.from_values("SSL", "PLAIN"))
    assert f.refused and "does not name that host" in f.message and "KAFKA_BOOTSTRAP_SERVERS" in f.message


def test_a_tls_alert_refusing_the_client_certificate_seen_on_the_first_read():
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    closed = errors.KafkaConnectionError(f"Connection at {SERVER} closed")
    closed.__cause__ = alert
    f = explain(closed, SERVER, KafkaSecurity.from_values("SSL", "PLAIN"))
    assert f.refused and "KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE" in f.message and "no client certificate" in f.message


@pytest.mark.parametrize("exc,protocol,hint", [
    (ConnectionRefusedError(111, "Connection refused"), "SSL", "Connection refused"),
    (TimeoutError(), "SSL", "a TLS client facing a plaintext listener"),
    (errors.KafkaConnectionError("closed"), "PLAINTEXT", "set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"),
])
def test_what_a_retry_may_cure_is_not_a_refusal_but_comes_with_a_hint(exc, protocol, hint):
    f = explain(exc, SERVER, KafkaSecurity.from_values(protocol, "PLAIN"))
    assert not f.refused and hint in f.message


async def test_nothing_listening_is_unreachable_not_refused():
    from els.broker import free_port

    where = f"127.0.0.1:{free_port()}"
    security = KafkaSecurity.from_values("PLAINTEXT", "PLAIN")
    f = await probe(where, security, timeout=2)
    assert f is not None and not f.refused
    err = await failure([where], security, errors.KafkaConnectionError("Unable to bootstrap"))
    assert isinstance(err, KafkaUnreachable) and not isinstance(err, KafkaRefused)
    assert str(err).startswith(f"cannot reach Kafka at {where}")
