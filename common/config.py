"""Every setting of the pipeline, in one table.

The same table feeds the environment parsing, the `els <cmd> --help` options and the README's settings
reference, so a setting cannot exist in one place and be missing in another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.kafka import KafkaSecurity


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    kind: type = str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka broker list (host:port,...)."),
    Setting("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
            "How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
    Setting("KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    Setting("KAFKA_SASL_USERNAME", None, "SASL user name (with SASL_PLAINTEXT or SASL_SSL)."),
    Setting("KAFKA_SASL_PASSWORD", None, "SASL password (never logged).", secret=True),
    Setting("KAFKA_SSL_CA_FILE", None, "PEM CA bundle that signs the brokers' certificates; default: the system's."),
    Setting("KAFKA_SSL_CERT_FILE", None, "PEM client certificate, for mutual TLS (with KAFKA_SSL_KEY_FILE)."),
    Setting("KAFKA_SSL_KEY_FILE", None, "PEM key of KAFKA_SSL_CERT_FILE, unencrypted (may be the same file)."),
    Setting("ELS_RAW_TOPIC", "els-raw", "Topic ingest writes raw events to."),
    Setting("ELS_DEADLETTER_TOPIC", "els-deadletter", "Topic for whatever could not be used, with the reason."),
    Setting("ELS_OUT_TOPIC", "els-out", "The processor's outbox to the Datadog sink."),
    Setting("ELS_PARTITIONS", "8", "Partitions of the topics the pipeline creates.", int),
    Setting("ELS_REPLICATION_FACTOR", "1", "Replicas of every topic the pipeline creates (its own and Faust's "
            "changelogs): 3 on a production cluster (most managed Kafka services require it); 1 for a single "
            "broker.", int),
    Setting("ELS_INGEST_HOST", "0.0.0.0", "Ingest listen address."),
    Setting("ELS_INGEST_PORT", "8080", "Ingest listen port.", int),
    Setting("ELS_AUTH_TOKENS", None, "Comma-separated accepted secrets (several, for rotation).", secret=True),
    Setting("ELS_AUTH_DISABLED", "0", "1 to run ingest without authentication (development only).", bool),
    Setting("ELS_AUTH_HEADER", "Authorization", "Header carrying the secret, as 'Bearer <secret>' or bare."),
    Setting("ELS_MAX_BODY_BYTES", "1048576", "Largest accepted body, on the wire and decompressed (413 above).", int),
    Setting("ELS_ACK_TIMEOUT_SECONDS", "5", "How long ingest waits for Kafka's acknowledgement before 503.", float),
    Setting("ELS_TLS_CERT_FILE", None, "PEM certificate chain (server certificate first): with ELS_TLS_KEY_FILE, "
            "ingest serves HTTPS (TLS 1.2+) on ELS_INGEST_PORT; re-read on SIGHUP."),
    Setting("ELS_TLS_KEY_FILE", None, "PEM private key of ELS_TLS_CERT_FILE (unencrypted); re-read on SIGHUP."),
    Setting("ELS_INGEST_UVLOOP", "1", "1: ingest runs on uvloop's event loop (faster); 0: on asyncio's.", bool),
    Setting("ELS_WINDOW_SECONDS", "60", "Tumbling window size, event time.", int),
    Setting("ELS_FLUSH_SECONDS", "10", "How often open windows are (re)emitted.", float),
    Setting("ELS_LATENESS_SECONDS", "300", "How late an event may arrive and still count in its window.", int),
    Setting("ELS_CHAIN_QUIET_SECONDS", "30", "After its root ended, a chain closes after this long without news.", int),
    Setting("ELS_CHAIN_TIMEOUT_SECONDS", "3600", "A chain with no news for this long is closed as timed_out.", int),
    Setting("ELS_APP_ID", "els-processor",
            "Faust app id: the processor's consumer group and the prefix of its changelog topics."),
    Setting("ELS_WEB_PORT", "6066", "Faust web server port (tables, stats, status page).", int),
    Setting("ELS_MONTHLY_STEP_LIMIT", None, "The org's monthly Workflows step allowance.", int),
    Setting("ELS_MONTHLY_EVENT_LIMIT", None,
            "The org's monthly allowance of streamed execution events (ELS), from its agreement with Okta.", int),
    Setting("ELS_METRIC_PREFIX", "okta.workflows", "Prefix of every metric."),
    Setting("ELS_LOGS", "failures,chains", "Logs sent to Datadog: any of failures, chains, events; or none."),
    Setting("ELS_REBALANCE_TIMEOUT_SECONDS", "30",
            "Consumer-group rebalance timeout; 3 is right for the embedded broker (it holds joins this long).", float),
    Setting("ELS_SESSION_TIMEOUT_SECONDS", "60",
            "Consumer-group session timeout: how long a worker that died without leaving holds its partitions.",
            float),
    Setting("ELS_DATA_DIR", "var/faust", "Faust's data directory (the worker's local files)."),
    Setting("ELS_KAFKA_CACHE", None, "Where `els kafka` keeps Apache Kafka's jars, fetched once with Maven; "
            "default ~/.cache/els-kafka."),
    Setting("ELS_LOG_LEVEL", "INFO", "Log level of the pipeline's own logs."),
    Setting("DD_API_KEY", None, "Datadog API key; without it the sink runs dry.", secret=True),
    Setting("DD_APP_KEY", None, "Datadog application key: only `els datadog install` needs it (the dashboard and "
            "monitor APIs refuse an API key alone).", secret=True),
    Setting("DD_SITE", "datadoghq.com", "Datadog site."),
    Setting("DD_URL", None, "One base URL that replaces every Datadog intake host (proxies, tests)."),
    Setting("DD_TAGS", None, "Global tags added to every metric and log (env:prod,team:iam)."),
    Setting("DD_SERVICE", "okta-workflows", "Service of emitted logs and tags."),
    Setting("DD_ENV", None, "Env of emitted logs and tags."),
    Setting("ELS_DRY_RUN_FILE", "var/datadog-dry-run.ndjson", "Where the dry-run sink writes what it would send."),
)

BY_ENV = {s.env: s for s in SETTINGS}


def _convert(setting: Setting, raw: str | None) -> Any:
    if raw is None or raw == "":
        raw = setting.default
    if raw is None:
        return None
    if setting.kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return setting.kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{setting.env}={'***' if setting.secret else raw!r} is not a valid {setting.kind.__name__}") from exc


class ConfigError(ValueError):
    """A setting that cannot be used; the message never contains a secret."""


@dataclass(frozen=True)
class Config:
    """The settings as typed values; attribute names are the env names lower-cased."""

    kafka_bootstrap_servers: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str | None
    kafka_sasl_password: str | None
    kafka_ssl_ca_file: str | None
    kafka_ssl_cert_file: str | None
    kafka_ssl_key_file: str | None
    els_raw_topic: str
    els_deadletter_topic: str
    els_out_topic: str
    els_partitions: int
    els_replication_factor: int
    els_ingest_host: str
    els_ingest_port: int
    els_auth_tokens: str | None
    els_auth_disabled: bool
    els_auth_header: str
    els_max_body_bytes: int
    els_ack_timeout_seconds: float
    els_tls_cert_file: str | None
    els_tls_key_file: str | None
    els_ingest_uvloop: bool
    els_window_seconds: int
    els_flush_seconds: float
    els_lateness_seconds: int
    els_chain_quiet_seconds: int
    els_chain_timeout_seconds: int
    els_app_id: str
    els_web_port: int
    els_monthly_step_limit: int | None
    els_monthly_event_limit: int | None
    els_metric_prefix: str
    els_logs: str
    els_rebalance_timeout_seconds: float
    els_session_timeout_seconds: float
    els_data_dir: str
    els_kafka_cache: str | None
    els_log_level: str
    dd_api_key: str | None
    dd_app_key: str | None
    dd_site: str
    dd_url: str | None
    dd_tags: str | None
    dd_service: str
    dd_env: str | None
    els_dry_run_file: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ
        values = {s.env.lower(): _convert(s, env.get(s.env)) for s in SETTINGS}
        values.update(overrides)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.els_partitions < 1:
            raise ConfigError("ELS_PARTITIONS must be at least 1")
        if self.els_replication_factor < 1:
            raise ConfigError("ELS_REPLICATION_FACTOR must be at least 1")
        if self.els_window_seconds < 1:
            raise ConfigError("ELS_WINDOW_SECONDS must be at least 1")
        if self.els_flush_seconds <= 0:
            raise ConfigError("ELS_FLUSH_SECONDS must be positive")
        self.kafka_security.check()
        unknown = set(self.logs_enabled) - {"failures", "chains", "events"}
        if unknown:
            raise ConfigError(f"ELS_LOGS has unknown kinds {sorted(unknown)}; use failures, chains, events or none")

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The Kafka security settings as one object (common.kafka.KafkaSecurity) that every client uses."""
        from common.kafka import KafkaSecurity

        return KafkaSecurity.from_config(self)

    @property
    def auth_tokens(self) -> list[str]:
        return [t.strip() for t in (self.els_auth_tokens or "").split(",") if t.strip()]

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def redacted(self) -> dict[str, Any]:
        """The settings for ingest's start-up debug line, secrets shown only as set/unset."""
        out = {}
        for setting in SETTINGS:
            value = getattr(self, setting.env.lower())
            out[setting.env] = ("<set>" if value else "<unset>") if setting.secret else value
        return out

    @property
    def logs_enabled(self) -> frozenset[str]:
        items = {s.strip().lower() for s in self.els_logs.split(",") if s.strip()}
        return frozenset() if items <= {"none"} else frozenset(items - {"none"})
