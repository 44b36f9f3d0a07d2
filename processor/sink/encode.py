"""Datadog request bodies, built without an object per item: each rendered item (a plain dict, already in the
shape datadog-api-client's MetricSeries / HTTPLogItem serialise to) is dumped once with orjson, and a request's
body is those bytes joined, so its exact size is known before it is sent and a split re-joins instead of
re-serialising. gzip runs in a worker thread (zlib releases the GIL) when the body is large, so a close-out's
compression does not hold the event loop.

tests/unit/sink/test_encode.py pins these bodies to the client's own models (MetricPayload, HTTPLog) and to
Datadog's limits.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Iterable

import orjson

GZIP_LEVEL = 6            # what datadog-api-client's rest.py uses (zlib's default)
THREAD_FROM_BYTES = 64 * 1024  # smaller bodies compress in well under a millisecond: not worth a thread hop
YIELD_EVERY = 2000        # items encoded between two yields to the event loop
SERIES_OPEN, SERIES_CLOSE = b'{"series":[', b"]}"
SERIES_OVERHEAD = len(SERIES_OPEN) + len(SERIES_CLOSE)
LOGS_OVERHEAD = 2


class Batch(list):
    """One request's items (a list, as every caller and test sees it), with each item's JSON and, once
    compressed, the gzip body that is sent (kept for retries)."""

    __slots__ = ("encoded", "gz")

    def __init__(self, items: Iterable[dict], encoded: list[bytes] | None):
        super().__init__(items)
        self.encoded = encoded
        self.gz: bytes | None = None

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self) // 2
        encoded = self.encoded if self.encoded is not None else encode_now(self)
        return Batch(self[:mid], encoded[:mid]), Batch(self[mid:], encoded[mid:])

    def compressed(self, gz: bytes) -> None:
        """Keep the body sent; the items' JSON goes (a split, rare, encodes them again), so a close-out's batches
        do not hold their JSON twice while they wait for their turn."""
        self.gz, self.encoded = gz, None


def halves(chunk: list[dict]) -> tuple[list[dict], list[dict]]:
    if isinstance(chunk, Batch):
        return chunk.halves()
    mid = len(chunk) // 2
    return chunk[:mid], chunk[mid:]


def encode_now(items: list[dict]) -> list[bytes]:
    dumps = orjson.dumps
    return [dumps(item) for item in items]


async def encode(items: list[dict], timing: dict | None = None, key: str = "") -> list[bytes]:
    """Each item's JSON, yielding to the event loop every YIELD_EVERY items; adds the microseconds spent (CPU
    time of this thread: the consumer thread taking the GIL meanwhile is not counted) and the items to
    timing[f"t_encode_{key}_us"] / timing[f"encoded_{key}"] when given."""
    out: list[bytes] = []
    spent = 0.0
    for i in range(0, len(items), YIELD_EVERY):
        t = time.thread_time()
        out += encode_now(items[i:i + YIELD_EVERY])
        spent += time.thread_time() - t
        if i + YIELD_EVERY < len(items):
            await asyncio.sleep(0)
    if timing is not None:
        timing[f"t_encode_{key}_us"] += int(spent * 1e6)
        timing[f"encoded_{key}"] += len(items)
    return out


def series_json(encoded: list[bytes]) -> bytes:
    """The body of POST /api/v2/series (MetricPayload) from its series' JSON."""
    return SERIES_OPEN + b",".join(encoded) + SERIES_CLOSE


def logs_json(encoded: list[bytes]) -> bytes:
    """The body of POST /api/v2/logs (HTTPLog, an array of HTTPLogItem) from its items' JSON."""
    return b"[" + b",".join(encoded) + b"]"


def gzip_now(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=GZIP_LEVEL)


async def compress(body: bytes) -> bytes:
    if len(body) < THREAD_FROM_BYTES:
        return gzip_now(body)
    return await asyncio.to_thread(gzip_now, body)


def sized_ranges(sizes: list[int], max_entries: int, max_bytes: int, overhead: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of items whose body (overhead, the items' sizes, a comma between two) is at most
    max_bytes and which hold at most max_entries items; an item alone over max_bytes gets a range of its own."""
    out: list[tuple[int, int]] = []
    lo, size = 0, overhead
    for i, n in enumerate(sizes):
        add = n + (1 if i > lo else 0)
        if i > lo and (i - lo >= max_entries or size + add > max_bytes):
            out.append((lo, i))
            lo, size, add = i, overhead, n
        size += add
    if lo < len(sizes):
        out.append((lo, len(sizes)))
    return out
