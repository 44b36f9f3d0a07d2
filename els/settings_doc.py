"""docs/configuration.md, generated from the settings table (common.config.SETTINGS) and the commands that read
each setting (els.cli.COMMANDS): the same sources as `els <cmd> --help`, so the page cannot drift from them.

    .venv/bin/python -m els.settings_doc > docs/configuration.md

tests/unit/test_configuration_doc.py fails when the page differs from what this prints.
"""

from __future__ import annotations

import sys

from common.config import SETTINGS, Setting
from els.cli import COMMANDS

COMMAND = "python -m els.settings_doc > docs/configuration.md"

HEADER = f"""\
# Configuration

This page lists every setting of the pipeline, its default, and which `els` commands read it: look here when
you configure ingest, the processor, replay or the Datadog install.

<!-- Generated from common/config.py (SETTINGS) and els/cli.py (COMMANDS): do not edit by hand.
     After changing a setting, run `.venv/bin/{COMMAND}`. -->

Every setting is an environment variable and, for the commands in its "used by" column, an option of the same
name (`--kafka-bootstrap-servers` for KAFKA_BOOTSTRAP_SERVERS); the option wins. `els <command> --help` prints the
same text with the value in effect. An empty variable counts as unset. Secrets are shown by `--help` only as
`(set)` and never appear in a log line. Settings are read at start: restart a component after changing one.
A value that cannot be used (a number that is not one, an unknown ELS_LOGS kind, ELS_PARTITIONS below 1, a
wrong Kafka security combination) stops the command at start with exit status 2 and the setting's name.

| variable | default | type | used by | meaning |
|---|---|---|---|---|
"""

NOTES = """
## Notes on some settings

- **ELS_AUTH_TOKENS**: to rotate the secret, add the new one (comma-separated), update Okta, then remove the
  old one. `els up` generates one into `var/ingest-secret` (mode 600) on its first run and reuses it.
- **ELS_PARTITIONS** bounds how many processor workers do work, and must match the partition count of topics
  that already exist (see [Scaling out](running.md#scaling-out)). Choose it before the topics are first made.
- **ELS_REPLICATION_FACTOR**: 3 on a production cluster, 1 for a single broker.
- **ELS_REBALANCE_TIMEOUT_SECONDS / ELS_SESSION_TIMEOUT_SECONDS**: keep the defaults (30, 60) on a real Kafka.
  The embedded broker holds a group's first join for a time that grows with both (measured: 3/60 gives about
  30 s before the worker is ready, 3/6 about 4-7 s), so `els up` sets 3 and 6 for it; do the same when you run
  the embedded broker by hand.
- **ELS_APP_ID**: one per pipeline sharing a Kafka cluster. Ingest needs the same ELS_APP_ID and ELS_OUT_TOPIC
  as the processor, because whichever component starts first creates every topic, changelogs included.
- **ELS_INGEST_UVLOOP**: where uvloop is not installed (Windows), ingest says so and uses asyncio's loop.
- **ELS_MONTHLY_STEP_LIMIT / ELS_MONTHLY_EVENT_LIMIT** enable the `*.limit`, `*.limit_utilization` and
  `*.days_until_limit` allowance metrics and the two projection monitors ([Datadog](datadog.md#the-orgs-allowances)).
- **DD_API_KEY** unset or empty: the sink runs dry and writes each request it would send as one JSON line to
  ELS_DRY_RUN_FILE. A dry `els replay` writes to `var/datadog-dry-run-replay.ndjson` unless ELS_DRY_RUN_FILE
  is set.
- **ELS_DATA_DIR** is created with its parents.

Read from the environment but not in the table above:

| variable | what it does |
|---|---|
| NODE_CANONICAL_URL | Faust's own: the URL other workers use to reach this worker's web server (cluster status page, `/els/keys/`, `/els/table/`, `/els/chains/`); default `http://<hostname>:ELS_WEB_PORT`. Set it where hostnames do not resolve between workers, e.g. `http://$(POD_IP):6066`; Faust's `WEB_HOST` works too |
| ELS_SIMULATE_URL, ELS_SIMULATE_TOKEN | defaults of `els simulate --url` and `--token` |
| ELS_BROKER_ADVERTISED_ADDRESS | default of `els broker --advertised-address` |
| FAUST_LOOP | the worker's event loop (default uvloop, as `faust --loop`) |
| CONSUMER_MAX_FETCH_SIZE | Faust's own: bytes fetched per partition per request; the worker's default is 2 MiB (Faust's 1 MiB). More is slightly faster on a backlog and costs memory |
| MALLOC_ARENA_MAX | glibc's; the worker limits itself to two arenas unless this is set |
| ELS_TEST_BROKER, BENCH_BROKER, BENCH_REPEAT, BENCH_PROCESSORS | the tests' and benchmarks' broker and rounds ([Testing](testing.md), [Benchmarks](benchmarks.md)) |
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _default(s: Setting) -> str:
    if s.default is None:
        return "(none)"
    return f"`{s.default}`"


def _used_by(env: str) -> str:
    return ", ".join(name for name, (_f, _h, names) in COMMANDS.items() if env in names) or "(the worker)"


def render() -> str:
    rows = []
    for s in SETTINGS:
        meaning = _cell(s.help) + (" Secret." if s.secret else "")
        rows.append(f"| {s.env} | {_default(s)} | {s.kind.__name__} | {_used_by(s.env)} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n" + NOTES


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
