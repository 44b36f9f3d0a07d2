"""What each table holds and how its keys look, for Faust's /table/ pages and /els/keys/.

Faust shows a table's `help` at /table/ and /table/<name>/; these texts give every key format with a real
example (the shipped sample examples/els-samples/doc-parent-flow-start.json: flow 632567 "PDV Log Streaming",
root execution 326b7317-..., org logstream-01, 18:30:38 UTC on 2024-04-04, default settings: 8 partitions,
60 s windows), so a key can be read without the source. processor/worker.py passes them as `help=`.

Which partition a key belongs to is written in the key or in its value (the tables are written to the changelog
partition of the raw or outbox partition they belong to, not to the partition of the key's hash), so listing
keys by owner (/els/keys/) reads it from there.
"""

from __future__ import annotations

from enum import Enum

TABLE_HELP: dict[str, str] = {
    "chains": (
        "Open chains and recently closed chain markers. Key: the chain's root execution id, e.g. "
        "'326b7317-6ea5-4d6a-a9f5-0ee8675c0428' (the root's execution_id; a helper flow's events carry it as "
        "root_execution_id). Value: {'root', 'p' (raw partition), 'x' (executions seen), 'closed' (the summary "
        "once closed, else null), ...}. Read one with /els/chains/<root>/ or /els/table/chains/<root>/."),
    "windows": (
        "Window aggregates per raw partition. Key: '<partition>|<group>|<window start ms>', groups "
        "'flow:<flow_id>' e.g. '1|flow:632567|1712255400000', 'chain:<root_flow_id>' e.g. "
        "'1|chain:632567|1712255400000', 'org:<org_name>' (window start = the month's first day) e.g. "
        "'1|org:logstream-01|1711929600000', 'pipeline' e.g. '1|pipeline|1712255400000'; plus "
        "'<partition>|clock' e.g. '1|clock' (the partition's stream clock and last applied offset). "
        "List keys with /els/keys/windows/?prefix=1|flow:632567| (or ?contains=|flow:632567| for every partition), "
        "read one with /els/table/windows/<key>/."),
    "sink": (
        "The Datadog sink's merge: the latest partial of every raw partition per group and window. Key: "
        "'<group>|<window start ms>' e.g. 'flow:632567|1712255400000' (groups as in the windows table); plus "
        "'retries|<outbox partition>|<window start ms>' e.g. 'retries|3|1712255400000' (the sink's retry "
        "counts) and 'position|<outbox partition>' e.g. 'position|3' (the offset after the outbox records "
        "delivered: {'group': 'position', 'op', 'next'}). A window's value: {'group', 'ws', 'op' (outbox partition), 'parts': {raw partition: {'seq', 'bag'}}}."),
}


class Owner(Enum):
    """The topic whose partitions a table's keys follow: its owner there holds them (actively)."""

    RAW = "raw"
    OUT = "out"


TABLE_OWNER: dict[str, Owner] = {"chains": Owner.RAW, "windows": Owner.RAW, "sink": Owner.OUT}


def table_help(name: str, fallback: str = "") -> str:
    """The help text of a table (worker.py: `help=table_help(name, help_)`)."""
    return TABLE_HELP.get(name, fallback)


def partition_of(table: str, key: str, value) -> int | None:
    """The raw (chains, windows) or outbox (sink) partition a key belongs to; None when it does not say."""
    if table == "windows":
        head = key.split("|", 1)[0]
        return int(head) if head.isdigit() else None
    field = {"chains": "p", "sink": "op"}.get(table)
    p = value.get(field) if field and isinstance(value, dict) else None
    return p if isinstance(p, int) else None
