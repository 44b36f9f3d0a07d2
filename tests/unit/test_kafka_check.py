"""common.kafka_check: what a failed Kafka connection means, naming the setting to fix.

Here for the causes no test broker can produce (the embedded broker's SASL is broken: a refused password or
a SCRAM exchange gone wrong); the causes stunnel can produce (an untrusted certificate, a name mismatch, a
required client certificate, plaintext against TLS) are tested for real in tests/e2e/test_kafka_tls.py.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import trustme
from aiokafka import errors

import common.kafka_check
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
    (ConnectionRefusedError(111, "Connection refused"), "SSL", "(connection refused): is the broker up"),
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


class TlsServer:
    """A TLS listener on a thread, answering no request; `require_client_cert`: mutual TLS. A blocking socket,
    so OpenSSL writes its alert itself as a broker's TLS terminator does (asyncio's server drops it)."""

    def __init__(self, tmp_path, require_client_cert: bool):
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        if require_client_cert:
            trustme.CA().configure_trust(self.context)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stopping = False

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    async def __aenter__(self) -> str:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    async def __aexit__(self, *exc):
        self.stopping = True
        self.thread.join()
        self.listener.close()


def lose_the_alert(monkeypatch):
    """What a loaded machine does at times (9 probes in 150 under load): the request the client sends after
    its handshake crosses the server's close, the reset discards the server's alert, and aiokafka only sees a
    closed connection."""

    async def closed(*args, **kwargs):
        raise errors.KafkaConnectionError("Connection at 127.0.0.1 closed")

    monkeypatch.setattr(common.kafka_check, "create_conn", closed)


async def test_a_required_client_certificate_is_named_even_when_the_alert_was_lost(tmp_path, monkeypatch):
    lose_the_alert(monkeypatch)
    async with TlsServer(tmp_path, require_client_cert=True) as where:
        f = await probe(where, KafkaSecurity.from_values("SSL", "PLAIN", ca_file=str(tmp_path / "ca.pem")), 5)
    assert f is not None and f.refused, f
    assert "no client certificate" in f.message and "KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE" in f.message


async def test_a_tls_server_that_closes_without_an_alert_stays_retryable(tmp_path, monkeypatch):
    lose_the_alert(monkeypatch)
    async with TlsServer(tmp_path, require_client_cert=False) as where:
        f = await probe(where, KafkaSecurity.from_values("SSL", "PLAIN", ca_file=str(tmp_path / "ca.pem")), 1)
    assert f is not None and not f.refused and "closed the connection without answering" in f.message
