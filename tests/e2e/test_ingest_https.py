"""HTTPS at ingest: certificates made in the test (trustme: a root CA, an intermediate, a leaf, so the served
chain must be complete), a real `els ingest` process, TLS 1.2 or later, a certificate rotated on SIGHUP, and a
clear exit 2 for files that cannot be used."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import trustme

from els.broker import free_port
from ingest.tls import ReloadableTls, TlsError, build_context
from tests.helpers.ingest_process import IngestProcess
from tests.helpers.kafka import read_topic
from tests.helpers.paths import ROOT, SAMPLES

TOKEN = "tls-" + "y" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _write_chain(ca: trustme.CA, directory: Path, name: str = "ingest") -> tuple[Path, Path, int]:
    """A leaf for 127.0.0.1 signed by an intermediate of `ca`: (full-chain PEM, key PEM, leaf serial)."""
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
    return cert, key, serial


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def chain(ca, tmp_path):
    return _write_chain(ca, tmp_path)


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _peer(port: int, ctx: ssl.SSLContext) -> tuple[int, str]:
    """(serial of the certificate the server presents on a new connection, negotiated TLS version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return int(tls.getpeercert()["serialNumber"], 16), tls.version()


# -- the context, without a server -------------------------------------------------------------------------------
def test_context_is_tls12_or_later_and_loads_a_full_chain(chain):
    cert, key, _ = chain
    ctx = build_context(str(cert), str(key))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert cert.read_bytes().count(b"BEGIN CERTIFICATE") == 2  # leaf and intermediate


@pytest.mark.parametrize("case,setting,words", [
    ("cert-without-key", "ELS_TLS_KEY_FILE", "is not"),
    ("key-without-cert", "ELS_TLS_CERT_FILE", "is not"),
    ("missing-cert", "ELS_TLS_CERT_FILE", "no such file"),
    ("missing-key", "ELS_TLS_KEY_FILE", "no such file"),
    ("other-key", "ELS_TLS_KEY_FILE", "is not the private key"),
    ("key-as-cert", "ELS_TLS_CERT_FILE", "no PEM certificate"),
    ("cert-as-key", "ELS_TLS_KEY_FILE", "no PEM private key"),
    ("directory", "ELS_TLS_CERT_FILE", "is a directory"),
    ("garbage-pem", "ELS_TLS_CERT_FILE", "cannot be loaded"),
    ("encrypted-key", "ELS_TLS_KEY_FILE", "passphrase"),
])
def test_unusable_files_are_refused_naming_the_setting(ca, chain, tmp_path, case, setting, words):
    cert, key, _ = chain
    cert_arg, key_arg = _bad_files(ca, tmp_path, cert, key, case)
    with pytest.raises(TlsError) as err:
        build_context(cert_arg, key_arg)
    assert setting in str(err.value) and words in str(err.value)
    assert key.read_text().splitlines()[1][:16] not in str(err.value)  # never key material


def _bad_files(ca: trustme.CA, tmp_path: Path, cert: Path, key: Path, case: str) -> tuple[str | None, str | None]:
    other_cert, other_key, _ = _write_chain(ca, tmp_path, "other")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    encrypted = tmp_path / "encrypted.key"
    from cryptography.hazmat.primitives import serialization

    pkey = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"passphrase")))
    return {
        "cert-without-key": (str(cert), None), "key-without-cert": (None, str(key)),
        "missing-cert": (str(tmp_path / "nope.crt"), str(key)), "missing-key": (str(cert), str(tmp_path / "nope.key")),
        "other-key": (str(cert), str(other_key)), "key-as-cert": (str(key), str(key)),
        "cert-as-key": (str(cert), str(other_cert)), "directory": (str(tmp_path), str(key)),
        "garbage-pem": (str(garbage), str(key)), "encrypted-key": (str(cert), str(encrypted)),
    }[case]


def test_a_reload_that_fails_keeps_the_previous_certificate(ca, chain, tmp_path):
    cert, key, _ = chain
    tls = ReloadableTls(str(cert), str(key))
    before = tls.current
    _, other_key, _ = _write_chain(ca, tmp_path, "other")
    key.write_bytes(other_key.read_bytes())  # a half-done renewal: the key no longer matches
    assert tls.reload() is False and tls.current is before
    _write_chain(ca, tmp_path)  # both files renewed
    assert tls.reload() is True and tls.current is not before


# -- `els ingest` refuses to start on unusable files --------------------------------------------------------------
@pytest.mark.parametrize("case,setting", [("cert-without-key", "ELS_TLS_KEY_FILE"),
                                          ("missing-key", "ELS_TLS_KEY_FILE"),
                                          ("other-key", "ELS_TLS_KEY_FILE"),
                                          ("garbage-pem", "ELS_TLS_CERT_FILE")])
def test_cli_exits_2_with_a_message_naming_the_setting_and_no_traceback(ca, chain, tmp_path, case, setting):
    cert, key, _ = chain
    cert_arg, key_arg = _bad_files(ca, tmp_path, cert, key, case)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELS_TLS_")}
    env.update({"ELS_AUTH_TOKENS": TOKEN, "ELS_INGEST_PORT": str(free_port()), "ELS_INGEST_HOST": "127.0.0.1",
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    env.update({k: v for k, v in (("ELS_TLS_CERT_FILE", cert_arg), ("ELS_TLS_KEY_FILE", key_arg)) if v})
    proc = subprocess.run([sys.executable, "-m", "els.cli", "ingest"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert setting in proc.stderr and "cannot serve HTTPS" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# -- a real `els ingest` over HTTPS ------------------------------------------------------------------------------
def HttpsIngest(env: dict[str, str], client: ssl.SSLContext) -> IngestProcess:
    """`els ingest` with ELS_TLS_CERT_FILE / ELS_TLS_KEY_FILE, its output in a file."""
    return IngestProcess({"ELS_AUTH_TOKENS": TOKEN, **env}, client, name="ingest-tls")


def _serves(port: int, ctx: ssl.SSLContext, serial: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _peer(port, ctx)[0] == serial:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.broker
@pytest.mark.parametrize("uvloop", ["0", "1"], ids=["asyncio", "uvloop"])
async def test_https_post_of_a_sample_is_202_and_in_kafka_and_sighup_rotates_the_certificate(
        kafka_bootstrap, topic_names, ca, chain, tmp_path, uvloop):
    cert, key, serial = chain
    client = _client_context(ca)
    ing = HttpsIngest({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELS_PARTITIONS": "4", **topic_names,
                       "ELS_TLS_CERT_FILE": str(cert), "ELS_TLS_KEY_FILE": str(key),
                       "ELS_INGEST_UVLOOP": uvloop}, client)
    try:
        served, version = _peer(ing.port, client)
        assert served == serial and version in ("TLSv1.2", "TLSv1.3")
        sample = SAMPLES / "doc-parent-flow-start.json"
        status, body = ing.request("POST", "/v1/events", sample.read_bytes(), AUTH)
        assert (status, json.loads(body)) == (202, {"accepted": 1, "rejected": 0})
        records = await read_topic(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], expect=1)
        assert [json.loads(r.value) for r in records] == [json.loads(sample.read_text())]

        # TLS 1.1 is refused (the client allows it, even at the lowest security level)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(old)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 / 1.1 are what is being refused
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _peer(ing.port, old)
        # plain HTTP on the HTTPS port gets no answer
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain = http.client.HTTPConnection("127.0.0.1", ing.port, timeout=10)
            plain.request("GET", "/healthz")
            plain.getresponse().read()

        # renewal: new files in place, SIGHUP; a new connection gets the new certificate, no restart
        _, _, renewed = _write_chain(ca, tmp_path)
        assert renewed != serial
        ing.proc.send_signal(signal.SIGHUP)
        assert _serves(ing.port, client, renewed), ing.output()
        assert ing.request("POST", "/v1/events", sample.read_bytes(), AUTH)[0] == 202

        # a broken renewal (key of another certificate): logged, and the last good certificate keeps serving
        _, other_key, _ = _write_chain(ca, tmp_path, "other")
        key.write_bytes(other_key.read_bytes())
        ing.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "TLS certificate not reloaded" not in ing.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "TLS certificate not reloaded" in ing.output()
        assert _peer(ing.port, client)[0] == renewed
        assert ing.proc.poll() is None
    finally:
        assert ing.stop() == 0, ing.output()
    assert "Traceback" not in ing.output()
    assert TOKEN not in ing.output()
    assert f'"event_loop":"{"uvloop" if uvloop == "1" else "asyncio"}"' in ing.output()
