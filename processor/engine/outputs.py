"""What a step emits: outbox partials and logs, and dead letters.

The caller must get them acknowledged by Kafka before it writes the state that says they were made. Items are
the outbox's wire form (processor/outbox.py): a partial is one partition's full value of one window, sent again
whenever it changed; `seq` (the raw offset of the tick that emitted it) lets the sink keep the latest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.state.keys import WindowKey, outbox_key
from processor.state.records import WindowRecord


@dataclass(slots=True)
class Outputs:
    partials: list[tuple[bytes, dict]] = field(default_factory=list)  # (outbox key, value)
    logs: list[tuple[bytes, dict]] = field(default_factory=list)
    deadletters: list[tuple[bytes, str, int]] = field(default_factory=list)  # (original bytes, reason, received ms)


def partial_item(key: WindowKey, rec: WindowRecord, seq: int, final: bool) -> tuple[bytes, dict]:
    return (outbox_key(key.group, key.start),
            {"kind": "partial", "p": key.partition, "group": key.group, "ws": key.start, "seq": seq,
             "final": final, "bag": rec.bag.to_dict()})


def log_item(trace_id: str, item: dict) -> tuple[bytes, dict]:
    return trace_id.encode(), {"kind": "log", "item": item}
