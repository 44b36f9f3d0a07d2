"""The outbox's record format: what the processor writes to ELS_OUT_TOPIC and the sink reads.

Items are partials (`{"kind": "partial", "p", "group", "ws", "seq", "final", "bag"}`: one processor partition's
full value of one window) and logs (`{"kind": "log", "item"}`). A processor batch packs them into a few records,
`{"kind": "batch", "items": [...]}`, one per outbox partition (split at OUTBOX_RECORD_MAX_BYTES): one record per
item would cost the sink Faust's per-event overhead on each of thousands per tick. An item's outbox partition
depends only on its key (`group|ws` for partials, the chain root for logs), so every processor partition's
partial of one window meets the others in the same sink, which merges them.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

OUTBOX_RECORD_MAX_BYTES = 256 * 1024


def outbox_partition(key: bytes, partitions: int) -> int:
    """The outbox partition of a window (`group|ws`) or a chain's logs: stable across processes and partitions,
    so every processor partition's partial of one window meets the others in the same sink."""
    return zlib.crc32(key) % partitions


def outbox_records(outputs: list, partitions: int) -> list[tuple[int, bytes]]:
    """A batch's partials and logs packed into few outbox records: `{"kind": "batch", "items": [...]}` per
    outbox partition, at most OUTBOX_RECORD_MAX_BYTES each. One record per window and log would cost the sink
    Faust's per-event overhead on every one of them (thousands per tick)."""
    by_q: dict[int, list[bytes]] = defaultdict(list)
    for out in outputs:
        for key, item in out.encoded():
            by_q[outbox_partition(key, partitions)].append(item)
    records = []
    for q, items in sorted(by_q.items()):
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and size + len(item) > OUTBOX_RECORD_MAX_BYTES:
                records.append((q, _batch(chunk)))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        if chunk:
            records.append((q, _batch(chunk)))
    return records


def _batch(items: list[bytes]) -> bytes:
    """Already-serialised items as one packed outbox value."""
    return b'{"kind":"batch","items":[' + b",".join(items) + b"]}"


def unpacked(records: list[dict]):
    """Outbox values, with the processor's packed batches (`{"kind": "batch", "items": [...]}`) opened."""
    for v in records:
        if v.get("kind") == "batch":
            yield from v["items"]
        else:
            yield v
