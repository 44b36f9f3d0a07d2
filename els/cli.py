"""`els`: one command for every part of the pipeline.

Every option also reads its environment variable (the option wins), and every subcommand's `--help` lists the
settings it uses with their defaults, from the single table in `common.config`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import logs
from common.config import BY_ENV, Config, ConfigError
from common.kafka import SECURITY_SETTINGS

KAFKA = ["KAFKA_BOOTSTRAP_SERVERS", "ELS_PARTITIONS", "ELS_REPLICATION_FACTOR", *SECURITY_SETTINGS]
TOPICS = ["ELS_RAW_TOPIC", "ELS_DEADLETTER_TOPIC", "ELS_OUT_TOPIC"]
INGEST = ["ELS_INGEST_HOST", "ELS_INGEST_PORT", "ELS_AUTH_TOKENS", "ELS_AUTH_DISABLED", "ELS_AUTH_HEADER",
          "ELS_MAX_BODY_BYTES", "ELS_ACK_TIMEOUT_SECONDS", "ELS_TLS_CERT_FILE", "ELS_TLS_KEY_FILE",
          "ELS_INGEST_UVLOOP"]
COMMON = ["ELS_LOG_LEVEL"]


def _add_settings(parser: argparse.ArgumentParser, names: list[str]) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for name in names:
        s = BY_ENV[name]
        current = os.environ.get(name)
        shown = "(set)" if s.secret and current else (current or s.default or "unset")
        group.add_argument("--" + name.lower().replace("_", "-"), dest=name, metavar=s.kind.__name__.upper(),
                           help=f"{s.help} [env {name}; now: {shown}]")


def _apply(args: argparse.Namespace, names: list[str]) -> Config:
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            os.environ[name] = str(value)
    cfg = Config.from_env()
    logs.setup(cfg.els_log_level)
    logs.register_secrets([*cfg.auth_tokens, cfg.dd_api_key or "", cfg.dd_app_key or ""])
    return cfg


def cmd_broker(args, names) -> int:
    from els.broker import run_foreground

    cfg = _apply(args, names)
    return run_foreground(cfg.kafka_bootstrap_servers, args.advertised_address)


def _broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--advertised-address", metavar="HOST:PORT",
                   default=os.environ.get("ELS_BROKER_ADVERTISED_ADDRESS"),
                   help="the address the broker tells clients to connect to, when it differs from where it listens "
                        "(e.g. a TLS terminator such as stunnel in front of it) [env ELS_BROKER_ADVERTISED_ADDRESS; "
                        "default: the listening address]")


def _port_free(command: str, host: str, port: int, setting: str) -> bool:
    """A port another program listens on is one clear line naming the setting, before anything says it listens
    (and instead of the server's traceback when it binds)."""
    from els.broker import port_is_free

    if port_is_free(host, port):
        return True
    print(f"els {command}: {host}:{port} is already in use (another program listens there): stop it, or set "
          f"{setting} (--{setting.lower().replace('_', '-')}) to a free port.", file=sys.stderr)
    return False


def cmd_kafka(args, names) -> int:
    from els.apache_kafka import run_foreground

    _apply(args, names)
    if args.brokers < 1:
        raise ConfigError("--brokers must be at least 1")
    return run_foreground(args.brokers, args.data_dir)


def _kafka_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brokers", type=int, default=1,
                   help="nodes in the cluster, each a combined KRaft controller and broker (default %(default)s; "
                        "3 for replication factor 3 with min.insync.replicas=2)")
    p.add_argument("--data-dir", default=None,
                   help="where the nodes' data and logs go, kept after it stops (each start formats a new cluster; "
                        "default: a temporary folder, deleted at exit)")


def cmd_ingest(args, names) -> int:
    import asyncio

    from common.kafka_check import KafkaUnreachable, check
    from common.topics import TopicMismatch, ensure_pipeline_topics
    from ingest.app import run

    cfg = _apply(args, names)
    if not cfg.auth_tokens and not cfg.els_auth_disabled:
        print("els ingest: no secret configured. Set ELS_AUTH_TOKENS (comma-separated, several for rotation), "
              "or ELS_AUTH_DISABLED=1 for development only.", file=sys.stderr)
        return 2
    if not _port_free("ingest", cfg.els_ingest_host, cfg.els_ingest_port, "ELS_INGEST_PORT"):
        return 2
    # refused settings: exit 2; a broker down is fine: ingest connects, and makes the topics, when it comes up
    # (answering 503 until then)
    unreachable = asyncio.run(check(cfg.bootstrap_list, cfg.kafka_security))
    try:
        if unreachable is None:
            asyncio.run(ensure_pipeline_topics(cfg))
    except TopicMismatch as exc:
        print(f"els ingest: {exc}", file=sys.stderr)
        return 2
    except KafkaUnreachable:
        pass
    run(cfg)
    return 0


PROCESS = ["ELS_APP_ID", "ELS_WINDOW_SECONDS", "ELS_FLUSH_SECONDS", "ELS_LATENESS_SECONDS", "ELS_CHAIN_QUIET_SECONDS",
           "ELS_CHAIN_TIMEOUT_SECONDS", "ELS_WEB_PORT", "ELS_REBALANCE_TIMEOUT_SECONDS", "ELS_SESSION_TIMEOUT_SECONDS",
           "ELS_DATA_DIR", "ELS_LOGS",
           "ELS_METRIC_PREFIX", "ELS_MONTHLY_STEP_LIMIT", "ELS_MONTHLY_EVENT_LIMIT",
           # the Datadog sink runs in the worker
           "DD_API_KEY", "DD_SITE", "DD_URL", "DD_TAGS", "DD_SERVICE", "DD_ENV", "ELS_DRY_RUN_FILE"]


REPLAY = ["ELS_APP_ID", "ELS_WINDOW_SECONDS", "ELS_LATENESS_SECONDS", "ELS_CHAIN_QUIET_SECONDS",
          "ELS_CHAIN_TIMEOUT_SECONDS", "ELS_LOGS", "ELS_METRIC_PREFIX", "DD_API_KEY", "DD_SITE", "DD_URL", "DD_TAGS",
          "DD_SERVICE", "DD_ENV", "ELS_DRY_RUN_FILE"]


def cmd_process(args, names) -> int:
    """Faust's own worker command, on processor.app (which makes the topics first: processor/app.py)."""
    cfg = _apply(args, names)
    if not _port_free("process", "0.0.0.0", cfg.els_web_port, "ELS_WEB_PORT"):
        return 2
    from faust.cli.faust import cli

    level = {"warning": "warn", "critical": "crit"}.get(cfg.els_log_level.lower(), cfg.els_log_level.lower())
    sys.argv = ["faust", "-A", "processor.app", "worker", "-l", level,
                "--web-port", str(cfg.els_web_port)]
    return cli()


def cmd_up(args, names) -> int:
    from els.up import run

    return run(_apply(args, names))


def _simulate_options(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--url", default=env("ELS_SIMULATE_URL", "http://127.0.0.1:8080/v1/events"),
                   help="ingest URL to POST to [env ELS_SIMULATE_URL; default %(default)s]")
    p.add_argument("--token", default=None,
                   help="secret to send [env ELS_SIMULATE_TOKEN, else the first of ELS_AUTH_TOKENS, else the "
                        "file var/ingest-secret that `els up` writes]")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    p.add_argument("--count", type=int, default=None,
                   help="stop after the chain that reaches N events (default 1000 unless --duration)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=None,
                   help="same seed, same chains and expected totals (default: a fresh one, printed in the summary)")
    p.add_argument("--flows", type=int, default=20, help="number of root flows (default %(default)s)")
    p.add_argument("--helpers", type=int, default=5, help="number of helper flows (default %(default)s)")
    p.add_argument("--duplicates", type=float, default=0.05,
                   help="fraction of events delivered twice (default %(default)s)")
    p.add_argument("--late", type=float, default=0.05,
                   help="fraction of events delivered after the next chain (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at most (default %(default)s)")
    p.add_argument("--retries", type=int, default=8,
                   help="retries of a 503/429/5xx/unanswered request, honouring Retry-After (default %(default)s)")
    p.add_argument("--progress", action="store_true", help="progress line on stderr (default: when it is a TTY)")
    p.add_argument("--expected-json", metavar="PATH", help="write the expected per-flow totals here")
    p.add_argument("--json", action="store_true", help="print the expected per-flow totals on stdout "
                   "(the summary then goes to stderr)")


def _simulate_token(args, cfg: Config) -> str | None:
    if args.token:
        return args.token
    if os.environ.get("ELS_SIMULATE_TOKEN"):
        return os.environ["ELS_SIMULATE_TOKEN"]
    if cfg.auth_tokens:
        return cfg.auth_tokens[0]
    secret = Path("var/ingest-secret")
    return secret.read_text().strip() or None if secret.exists() else None


def cmd_simulate(args, names) -> int:
    """Post simulated ELS traffic; exit 1 if any event was finally refused."""
    import asyncio
    import json

    from els.simulate import SimulateOptions, nothing_listens, seed_for_run, simulate

    cfg = _apply(args, names)
    for name, value, low in (("--rate", args.rate, 0), ("--duration", args.duration, 0)):
        if value is not None and value <= low:
            raise ConfigError(f"{name} must be positive")
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    if not 0 <= args.duplicates < 1 or not 0 <= args.late < 1:
        raise ConfigError("--duplicates and --late are fractions in [0, 1)")
    if args.flows < 1 or args.helpers < 1 or args.concurrency < 1 or args.retries < 0:
        raise ConfigError("--flows, --helpers and --concurrency must be at least 1, --retries at least 0")
    seed = seed_for_run(args.seed)
    unreachable = nothing_listens(args.url)
    if unreachable:
        print(f"els simulate: {unreachable}", file=sys.stderr)
        return 1
    token = _simulate_token(args, cfg)
    if token:
        logs.register_secrets([token])
    else:
        print("els simulate: no secret (--token, ELS_SIMULATE_TOKEN, ELS_AUTH_TOKENS or var/ingest-secret); "
              "posting without one", file=sys.stderr)
    opts = SimulateOptions(url=args.url, token=token, header=cfg.els_auth_header, rate=args.rate,
                           count=args.count if args.count or args.duration else 1000, duration=args.duration,
                           seed=seed, flows=args.flows, helpers=args.helpers, duplicates=args.duplicates,
                           late=args.late, concurrency=args.concurrency, retries=args.retries,
                           progress=args.progress or sys.stderr.isatty())
    sim, result, elapsed = asyncio.run(simulate(opts))
    expected = sim.expected.as_json()
    print(f"els simulate: seed {seed} (--seed {seed} repeats this run); {result.summary(elapsed)}",
          file=sys.stderr if args.json else sys.stdout)
    if args.expected_json:
        Path(args.expected_json).parent.mkdir(parents=True, exist_ok=True)  # var/ may not exist yet
        with open(args.expected_json, "w") as f:
            json.dump(expected, f, indent=2, sort_keys=True)
    if args.json:
        print(json.dumps(expected, indent=2, sort_keys=True))
    return 1 if result.refused or result.rejected else 0


DATADOG = ["DD_API_KEY", "DD_APP_KEY", "DD_SITE", "DD_URL", "ELS_METRIC_PREFIX"]


def cmd_datadog(args, names) -> int:
    from els.datadog_install import run

    cfg = _apply(args, names)
    if args.silence_minutes < 1:
        print("els datadog install: --silence-minutes must be at least 1", file=sys.stderr)
        return 2
    return run(cfg, dry_run=args.dry_run, directory=args.dir, silence_minutes=args.silence_minutes)


def _datadog_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["install"], help="install: the files of --dir, idempotently (dashboards "
                   "found by title, monitors by their els-managed:<file stem> tag)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be created or updated, change nothing (without keys: validate only)")
    p.add_argument("--dir", default=None,
                   help="where dashboard*.json and monitors/*.json are [default: the repository's datadog/]")
    p.add_argument("--silence-minutes", type=int, default=60,
                   help="the pipeline-silence monitor alerts when no ELS event arrived for this long "
                        "(default %(default)s)")


def _replay_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", required=True,
                   help="start of the range: ISO 8601 (2024-05-01T12:00:00Z; UTC without an offset) or a duration "
                        "ago (30m, 2h, 7d); aligned down to a window boundary")
    p.add_argument("--until", default=None,
                   help="end of the range (exclusive), same forms; default: the replay's start time; aligned up to "
                        "a window boundary")
    p.add_argument("--historical", action="store_true",
                   help="also send metric points older than 1 hour (needs Datadog's Historical Metrics Ingestion)")
    p.add_argument("--held-file", default=None,
                   help="where points older than 1 hour go without --historical, one series request per line "
                        "(default var/replay-<since>-held.ndjson)")
    p.add_argument("--progress", action="store_true", help="progress line on stderr (default: when it is a TTY)")


def cmd_replay(args, names) -> int:
    """Backfill a time range from the raw topic; the live pipeline is untouched."""
    from processor.replay.backfill import ReplayError, replay_config, run_replay

    cfg = replay_config(_apply(args, names))
    if cfg.dd_api_key is None:
        print(f"els replay: DD_API_KEY is not set: nothing goes to Datadog; the requests are written to "
              f"{cfg.els_dry_run_file}", file=sys.stderr)
    try:
        replay, stats = run_replay(cfg, args.since, args.until, historical=args.historical,
                                   held_file=args.held_file, progress=args.progress or sys.stderr.isatty())
    except ReplayError as exc:
        print(f"els replay: {exc}", file=sys.stderr)
        return 2
    print(f"els replay: {stats.summary(replay.held_file, args.historical, replay.dry_run_file)}")
    return 0


OPTIONS = {"broker": _broker_options, "kafka": _kafka_options, "simulate": _simulate_options, "datadog": _datadog_options,
           "replay": _replay_options}


COMMANDS = {
    "broker": (cmd_broker, "the embedded Kafka-compatible broker (Tansu, memory storage) for development",
               ["KAFKA_BOOTSTRAP_SERVERS"] + COMMON),
    "kafka": (cmd_kafka, "Apache Kafka itself (fetched with Maven, run with Java, KRaft) on free local ports, "
                         "for tests and benchmarks", ["ELS_KAFKA_CACHE"] + COMMON),
    "ingest": (cmd_ingest, "the ELS webhook endpoint (POST /v1/events)",
               KAFKA + TOPICS + ["ELS_APP_ID"] + INGEST + COMMON),
    "process": (cmd_process, "the Faust worker: dedup, correlate, aggregate, emit to the outbox",
                KAFKA + TOPICS + PROCESS + COMMON),
    "up": (cmd_up, "the whole stack: docker compose up when a Docker engine answers, else the embedded broker, "
                   "ingest and processor in one foreground process group",
           KAFKA + TOPICS + INGEST + PROCESS + COMMON),
    "replay": (cmd_replay, "backfill: re-process a time range of the raw topic and send it with its own times",
               KAFKA[:1] + SECURITY_SETTINGS + TOPICS[:2] + REPLAY + COMMON),
    "simulate": (cmd_simulate, "realistic ELS traffic against an ingest URL, with the totals it must produce",
                 ["ELS_AUTH_TOKENS", "ELS_AUTH_HEADER"] + COMMON),
    "datadog": (cmd_datadog, "install: create or update the Okta Workflows dashboard and monitors in Datadog",
                DATADOG + COMMON),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="els", description="Okta Workflows execution logs -> Kafka -> Datadog.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_, settings) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _add_settings(p, settings)
        p.set_defaults(func=func, settings=settings)
        if name in OPTIONS:
            OPTIONS[name](p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, args.settings) or 0
    except ConfigError as exc:
        print(f"els {args.command}: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:  # Kafka unreachable at start (common.kafka_check says why): retryable, exit 1
        print(f"els {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
