"""Kafka security: the settings become one `KafkaSecurity`, and every Kafka client the pipeline makes gets its
connection arguments from it.

aiokafka clients (ingest's producer, topic administration, replay, the end-offset probe, simulate, benches,
tests) take `**security.client_kwargs()`; the Faust app takes `broker_credentials=security.faust_credentials()`,
which Faust turns into the same aiokafka arguments (faust/transport/drivers/aiokafka.py,
`credentials_to_aiokafka_auth`). So one table of settings decides how every connection is made, and a wrong
combination is refused at start with the setting's name instead of surfacing as a connection that never works.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from common import logs
from common.config import BY_ENV, ConfigError, _convert

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from common.config import Config


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


# The settings this module reads, in the order `els <cmd> --help` shows them.
SECURITY_SETTINGS = ["KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                     "KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE"]


def _enum(kind: type[StrEnum], setting: str, raw: str) -> Any:
    try:
        return kind(raw.strip().upper())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"{setting}={raw!r} is not one of {allowed}") from None


def _no_passphrase() -> bytes:
    """OpenSSL asks on the terminal for an encrypted key's passphrase (a hang in a service); answer nothing."""
    return b""


@dataclass(frozen=True)
class KafkaSecurity:
    """How to connect to Kafka; build it with `from_config` or `from_env` (they check it)."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    mechanism: SaslMechanism = SaslMechanism.PLAIN
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_values(cls, protocol: str, mechanism: str, username: str | None = None, password: str | None = None,
                    ca_file: str | None = None, cert_file: str | None = None,
                    key_file: str | None = None) -> KafkaSecurity:
        """From the settings' raw strings; the password becomes a masked secret of the logs at once, also in
        aiokafka's DEBUG dump of requests (a SASL PLAIN request carries it, as bytes: hence its repr too)."""
        if password:
            logs.register_secrets([password, repr(password.encode())[2:-1]])
            logs.mask_logger("aiokafka.conn")
        return cls(_enum(SecurityProtocol, "KAFKA_SECURITY_PROTOCOL", protocol),
                   _enum(SaslMechanism, "KAFKA_SASL_MECHANISM", mechanism),
                   username or None, password or None, ca_file or None, cert_file or None, key_file or None)

    @classmethod
    def from_config(cls, cfg: Config) -> KafkaSecurity:
        return cls.from_values(cfg.kafka_security_protocol, cfg.kafka_sasl_mechanism, cfg.kafka_sasl_username,
                               cfg.kafka_sasl_password, cfg.kafka_ssl_ca_file, cfg.kafka_ssl_cert_file,
                               cfg.kafka_ssl_key_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings from the environment alone: for tools that take a bootstrap address, not a Config."""
        env = os.environ if environ is None else environ
        values = [_convert(BY_ENV[name], env.get(name)) for name in SECURITY_SETTINGS]
        security = cls.from_values(*values)
        security.check()
        return security

    # -- checks ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse combinations that cannot work, naming the settings; build the TLS context to test the files."""
        p = self.protocol
        if p.sasl and not (self.username and self.password):
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={p} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if not p.sasl and (self.username or self.password):
            raise ConfigError(f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL={p} "
                              "does not use SASL: set it to SASL_SSL or SASL_PLAINTEXT")
        files = {"KAFKA_SSL_CA_FILE": self.ca_file, "KAFKA_SSL_CERT_FILE": self.cert_file,
                 "KAFKA_SSL_KEY_FILE": self.key_file}
        given = [name for name, path in files.items() if path]
        if given and not p.tls:
            raise ConfigError(f"{'/'.join(given)} set but KAFKA_SECURITY_PROTOCOL={p} does not use TLS: "
                              "set it to SSL or SASL_SSL")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (mutual TLS): set both, "
                              "or neither (they may name the same file when it holds both)")
        for name in given:
            if not os.path.isfile(files[name]) or not os.access(files[name], os.R_OK):
                raise ConfigError(f"{name}={files[name]!r} is not a readable file")
        if p.tls:
            self.ssl_context  # noqa: B018 - built now, so a bad file is a start-up error

    # -- what the clients get --------------------------------------------------------------------------------
    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every connection (None without TLS): verifies the broker's certificate and name."""
        if not self.protocol.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"KAFKA_SSL_CA_FILE={self.ca_file!r} holds no usable PEM CA certificate ({exc})") from None
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"KAFKA_SSL_CERT_FILE={self.cert_file!r} / KAFKA_SSL_KEY_FILE={self.key_file!r}: not a PEM "
                    f"certificate with its matching unencrypted key ({exc})") from None
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient: the same as Faust
        derives from faust_credentials(), key for key."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol.value}
        if self.protocol is not SecurityProtocol.PLAINTEXT:
            kwargs["ssl_context"] = self.ssl_context  # None with SASL_PLAINTEXT
        if self.protocol.sasl:
            kwargs.update(sasl_mechanism=self.mechanism.value, sasl_plain_username=self.username,
                          sasl_plain_password=self.password)
        return kwargs

    def faust_credentials(self) -> CredentialsT | None:
        """faust.App(broker_credentials=...): SSL -> SSLCredentials; SASL_* -> SASLCredentials, whose
        ssl_context makes it SASL_SSL. Faust passes the mechanism (SCRAM included) through to aiokafka."""
        import faust

        if self.protocol is SecurityProtocol.PLAINTEXT:
            return None
        if self.protocol is SecurityProtocol.SSL:
            return faust.SSLCredentials(self.ssl_context)
        return faust.SASLCredentials(username=self.username, password=self.password, ssl_context=self.ssl_context,
                                     mechanism=self.mechanism.value)

    def describe(self) -> str:
        """For logs and messages: the protocol, and the mechanism and user with SASL; never the password."""
        if self.protocol.sasl:
            return f"{self.protocol} ({self.mechanism}, user {self.username})"
        return str(self.protocol)


def client_kwargs(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """`security`'s client arguments, or the environment's when None (tools given only a bootstrap address)."""
    return (security or KafkaSecurity.from_env()).client_kwargs()


def faust_client_kwargs(app) -> dict[str, Any]:
    """The aiokafka arguments Faust itself derives from `app`'s broker_credentials, for clients made beside
    Faust's own in a worker (the end-offset probe), so they connect exactly like Faust does."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
