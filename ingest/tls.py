"""HTTPS at ingest: the TLS context built from ELS_TLS_CERT_FILE / ELS_TLS_KEY_FILE, and its reload on SIGHUP.

The listening socket keeps one SSLContext for its whole life, so a renewed certificate cannot simply replace
it. Instead every handshake passes through that context's SNI callback (OpenSSL calls it for every ClientHello,
with or without a server name), which moves the connection to the newest good context. A reload builds a
complete new context first and swaps it in only when it loaded, so a half-written renewal (new certificate,
old key) leaves the previous certificate serving instead of a broken one; connections already open keep theirs.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

log = logging.getLogger("els.ingest.tls")

CERT_SETTING = "ELS_TLS_CERT_FILE"
KEY_SETTING = "ELS_TLS_KEY_FILE"


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the setting and the file, never key material."""


def _read(setting: str, path: str, marker: bytes, what: str) -> None:
    """Fail clearly when the file is missing, unreadable or holds no PEM block of the expected kind."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{setting}={path}: no such file") from None
    except IsADirectoryError:
        raise TlsError(f"{setting}={path}: is a directory, not a PEM file") from None
    except PermissionError:
        raise TlsError(f"{setting}={path}: not readable by this user (permission denied)") from None
    except OSError as exc:
        raise TlsError(f"{setting}={path}: cannot be read ({exc.strerror})") from None
    if marker not in data:
        raise TlsError(f"{setting}={path}: no PEM {what} in it (expected a '-----BEGIN ...{marker.decode()}' block)")


def _no_passphrase() -> bytes:
    raise TlsError(f"{KEY_SETTING} is encrypted with a passphrase; give ingest an unencrypted key "
                   "(readable only by its user)")


def build_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """A server context with TLS 1.2 or later and the certificate chain and key; raises TlsError."""
    if not cert_file and not key_file:
        raise TlsError(f"HTTPS needs {CERT_SETTING} and {KEY_SETTING}")
    if not key_file:
        raise TlsError(f"{CERT_SETTING} is set but {KEY_SETTING} is not: HTTPS needs both (PEM files)")
    if not cert_file:
        raise TlsError(f"{KEY_SETTING} is set but {CERT_SETTING} is not: HTTPS needs both (PEM files)")
    _read(CERT_SETTING, cert_file, b"CERTIFICATE-----", "certificate")
    _read(KEY_SETTING, key_file, b"PRIVATE KEY-----", "private key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(f"{KEY_SETTING}={key_file} is not the private key of the certificate in "
                           f"{CERT_SETTING}={cert_file}") from None
        raise TlsError(f"{CERT_SETTING}={cert_file} / {KEY_SETTING}={key_file} cannot be loaded: "
                       f"{exc.reason or exc}") from None
    return ctx


class ReloadableTls:
    """The listening context, whose handshakes always use the newest certificate that loaded."""

    def __init__(self, cert_file: str, key_file: str):
        self.cert_file = cert_file
        self.key_file = key_file
        self.listening = build_context(cert_file, key_file)
        self.current = self.listening
        self.listening.sni_callback = self._pick

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.current
        if current is not ctx:
            sslobj.context = current

    def days_left(self, now: float | None = None) -> float | None:
        """Days until the certificate served now expires (pipeline.ingest.tls_days_left); None if unreadable."""
        return certificate_days_left(self.cert_file, now)

    def reload(self) -> bool:
        """Re-read both files (SIGHUP); keep serving the previous certificate when they do not load."""
        try:
            self.current = build_context(self.cert_file, self.key_file)
        except TlsError as exc:
            log.error("TLS certificate not reloaded; still serving the previous one", extra={"error": str(exc)})
            return False
        log.info("TLS certificate reloaded", extra={"cert_file": self.cert_file})
        return True


def certificate_days_left(cert_file: str, now: float | None = None) -> float | None:
    """Days until the first certificate in `cert_file` expires (negative: expired); None when unreadable."""
    from cryptography import x509

    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    now = time.time() if now is None else now
    return (cert.not_valid_after_utc.timestamp() - now) / 86_400
