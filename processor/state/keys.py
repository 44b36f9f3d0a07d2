"""Every key the processor writes, built and parsed here only.

- Groups: one bag per group and window. `flow:<flow_id>` (per-flow metrics), `chain:<root_flow_id>` (chain
  metrics), `org:<org_name>` (steps per org and calendar month), `pipeline` (the pipeline's own counters).
- Window records (windows table): `<partition>|<group>|<window start ms>`; the partition comes first, so one
  partition's records are found by prefix and a group may contain any character (`|` included).
- Clock records (windows table): `<partition>|clock`: the partition's stream clock and position.
- Chain records (chains table): the chain's root execution id, as ingest keys the raw record.
- Outbox items: `<group>|<window start ms>` for a window (so every partition's partial of it meets in one sink
  partition), the chain root for logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class GroupKind(StrEnum):
    FLOW = "flow"
    CHAIN = "chain"
    ORG = "org"
    PIPELINE = "pipeline"


PIPELINE = GroupKind.PIPELINE.value
UNKNOWN = "unknown"


@lru_cache(maxsize=65536)
def flow_group(flow_id: str | None) -> str:
    return f"flow:{flow_id or UNKNOWN}"


@lru_cache(maxsize=65536)
def chain_group(root_flow_id: str | None) -> str:
    return f"chain:{root_flow_id or UNKNOWN}"


@lru_cache(maxsize=16384)
def org_group(org_name: str) -> str:
    return f"org:{org_name}"


def group_kind(group: str) -> GroupKind:
    return GroupKind(group.partition(":")[0]) if group != PIPELINE else GroupKind.PIPELINE


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One partition's record of one group's window."""

    partition: int
    group: str
    start: int  # window start, ms since the epoch (the month's start for org groups)

    def __str__(self) -> str:
        return window_key(self.partition, self.group, self.start)

    @property
    def kind(self) -> GroupKind:
        return group_kind(self.group)


@dataclass(frozen=True, slots=True)
class ClockKey:
    """A partition's clock record: its stream time and the last raw offset applied."""

    partition: int

    def __str__(self) -> str:
        return clock_key(self.partition)


_CLOCK = "clock"


def window_key(partition: int, group: str, start: int) -> str:
    return f"{partition}|{group}|{start}"


def clock_key(partition: int) -> str:
    return f"{partition}|{_CLOCK}"


def parse(key: str) -> WindowKey | ClockKey:
    """A windows-table key back to what it names; ValueError for anything else."""
    head, _, rest = key.partition("|")
    if not head.isdigit() or not rest:
        raise ValueError(f"not a windows-table key: {key!r}")
    if rest == _CLOCK:
        return ClockKey(int(head))
    group, _, start = rest.rpartition("|")
    if not group or not start.lstrip("-").isdigit():
        raise ValueError(f"not a windows-table key: {key!r}")
    return WindowKey(int(head), group, int(start))


def partition_of(key: str) -> int | None:
    """The partition a windows-table key belongs to (None: not such a key)."""
    head = key.partition("|")[0]
    return int(head) if head.isdigit() else None


def is_clock(key: str) -> bool:
    return key.endswith("|" + _CLOCK) and key.partition("|")[2] == _CLOCK


def outbox_key(group: str, start: int) -> bytes:
    """The outbox key of a window: the same for every partition's partial of it."""
    return f"{group}|{start}".encode()
