"""What a step emits: outbox partials and logs, and dead letters.

The caller must get them acknowledged by Kafka before it writes the state that says they were made. Items are
the outbox's wire form (processor/outbox.py), encoded when made: a tick may close tens of thousands of chains at
once (the first tick after a backlog), and their logs wait as compact bytes, not as dicts. A partial is one
partition's full value of one window, sent again whenever it changed; `seq` (the raw offset of the tick that
emitted it) lets the sink keep the latest.
"""

from __future__ import annotations

import orjson

from processor.jsonbytes import dumps
from processor.state.keys import WindowKey, outbox_key
from processor.state.records import WindowRecord


class Outputs:
    """A step's outbox items (encoded, in emission order per kind) and dead letters."""

    __slots__ = ("_partials", "_logs", "deadletters")

    def __init__(self):
        self._partials: list[tuple[bytes, bytes]] = []  # (outbox key, encoded item)
        self._logs: list[tuple[bytes, bytes]] = []
        self.deadletters: list[tuple[bytes, str, int]] = []  # (original bytes, reason, received ms)

    def add_partial(self, key: bytes, item: dict) -> None:
        self._partials.append((key, dumps(item)))

    def add_log(self, key: bytes, item: dict) -> None:
        self._logs.append((key, dumps(item)))

    def encoded(self) -> list[tuple[bytes, bytes]]:
        """(outbox key, encoded item): the partials, then the logs."""
        return self._partials + self._logs

    @property
    def partials(self) -> list[tuple[bytes, dict]]:
        """The partials decoded (replay and tests read them)."""
        return [(k, orjson.loads(v)) for k, v in self._partials]

    @property
    def logs(self) -> list[tuple[bytes, dict]]:
        return [(k, orjson.loads(v)) for k, v in self._logs]

    def counts(self) -> tuple[int, int]:
        return len(self._partials), len(self._logs)


def partial_item(key: WindowKey, rec: WindowRecord, seq: int, final: bool) -> tuple[bytes, dict]:
    return (outbox_key(key.group, key.start),
            {"kind": "partial", "p": key.partition, "group": key.group, "ws": key.start, "seq": seq,
             "final": final, "bag": rec.bag_dict()})


def log_item(trace_id: str, item: dict) -> tuple[bytes, dict]:
    return trace_id.encode(), {"kind": "log", "item": item}
