"""`els`: one command for every part of the pipeline.

Every option also reads its environment variable (the option wins), and every subcommand's `--help` lists the
settings it uses with their defaults, from the single table in `els.config`.
"""

from __future__ import annotations

import argparse
import os
import sys

from els import logs
from els.config import BY_ENV, Config, ConfigError

KAFKA = ["KAFKA_BOOTSTRAP_SERVERS", "ELS_PARTITIONS"]
TOPICS = ["ELS_RAW_TOPIC", "ELS_DEADLETTER_TOPIC", "ELS_OUT_TOPIC"]
INGEST = ["ELS_INGEST_HOST", "ELS_INGEST_PORT", "ELS_AUTH_TOKENS", "ELS_AUTH_DISABLED", "ELS_AUTH_HEADER",
          "ELS_MAX_BODY_BYTES", "ELS_ACK_TIMEOUT_SECONDS"]
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
    logs.register_secrets([*cfg.auth_tokens, cfg.dd_api_key or ""])
    return cfg


def cmd_broker(args, names) -> int:
    from els.broker import run_foreground

    cfg = _apply(args, names)
    return run_foreground(cfg.kafka_bootstrap_servers)


def cmd_ingest(args, names) -> int:
    from ingest.app import run

    cfg = _apply(args, names)
    if not cfg.auth_tokens and not cfg.els_auth_disabled:
        print("els ingest: no secret configured. Set ELS_AUTH_TOKENS (comma-separated, several for rotation), "
              "or ELS_AUTH_DISABLED=1 for development only.", file=sys.stderr)
        return 2
    run(cfg)
    return 0


PROCESS = ["ELS_APP_ID", "ELS_WINDOW_SECONDS", "ELS_FLUSH_SECONDS", "ELS_LATENESS_SECONDS", "ELS_CHAIN_QUIET_SECONDS",
           "ELS_CHAIN_TIMEOUT_SECONDS", "ELS_WEB_PORT", "ELS_REBALANCE_TIMEOUT_SECONDS", "ELS_SESSION_TIMEOUT_SECONDS",
           "ELS_DATA_DIR", "ELS_LOGS",
           "ELS_METRIC_PREFIX", "ELS_MONTHLY_STEP_LIMIT"]


def cmd_process(args, names) -> int:
    """Create the topics with ELS_PARTITIONS, then hand over to Faust's own worker command."""
    import asyncio

    from els.topics import ensure_topics

    cfg = _apply(args, names)
    asyncio.run(ensure_topics(cfg.kafka_bootstrap_servers,
                              [cfg.els_raw_topic, cfg.els_deadletter_topic, cfg.els_out_topic], cfg.els_partitions))
    from faust.cli.faust import cli

    level = {"warning": "warn", "critical": "crit"}.get(cfg.els_log_level.lower(), cfg.els_log_level.lower())
    sys.argv = ["faust", "-A", "processor.app", "worker", "-l", level,
                "--web-port", str(cfg.els_web_port)]
    return cli()


def cmd_up(args, names) -> int:
    from els.up import run

    return run(_apply(args, names))


COMMANDS = {
    "broker": (cmd_broker, "the embedded Kafka-compatible broker (Tansu, memory storage) for development",
               ["KAFKA_BOOTSTRAP_SERVERS"] + COMMON),
    "ingest": (cmd_ingest, "the ELS webhook endpoint (POST /v1/events)", KAFKA + TOPICS[:2] + INGEST + COMMON),
    "process": (cmd_process, "the Faust worker: dedup, correlate, aggregate, emit to the outbox",
                KAFKA + TOPICS + PROCESS + COMMON),
    "up": (cmd_up, "broker + ingest + processor in one foreground process group (no Docker needed)",
           KAFKA + TOPICS + INGEST + PROCESS + COMMON),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="els", description="Okta Workflows execution logs -> Kafka -> Datadog.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_, settings) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _add_settings(p, settings)
        p.set_defaults(func=func, settings=settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, args.settings) or 0
    except ConfigError as exc:
        print(f"els {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
