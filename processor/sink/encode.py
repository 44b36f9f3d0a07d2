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
from collections.abc import Iterable, Iterator

from processor.jsonbytes import dumps
from processor.runtime import cpu_time_outside_gc
from processor.sink.delivery import (
    LOGS_MAX_ENTRIES,
    LOGS_MAX_UNCOMPRESSED,
    SERIES_MAX_COMPRESSED,
    SERIES_MAX_UNCOMPRESSED,
)

GZIP_LEVEL = 6            # what datadog-api-client's rest.py uses (zlib's default)
THREAD_FROM_BYTES = 64 * 1024  # smaller bodies compress in well under a millisecond: not worth a thread hop
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
    """Each item's JSON at its exact size (processor/jsonbytes.py): a request's worth of items waits while it
    fills, and orjson's own bytes would each hold a 4 KiB buffer (~60 MB for one series request)."""
    return [dumps(item) for item in items]


def encode_timed(items: list[dict], timing: dict, key: str) -> list[bytes]:
    """Each item's JSON; adds the microseconds spent (CPU time of this thread, outside the garbage collector: the
    consumer thread taking the GIL meanwhile is not counted, nor a collection that happened to run here) and the
    items to timing[f"t_encode_{key}_us"] / timing[f"encoded_{key}"]."""
    t = cpu_time_outside_gc()
    out = encode_now(items)
    timing[f"t_encode_{key}_us"] += int((cpu_time_outside_gc() - t) * 1e6)
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


class Batcher:
    """Items and their JSON gathered into request-sized batches as they come, so a close-out's requests go out
    while the rest is still being rendered: a batch is full at max_entries items, or when the next item would
    take its body (overhead, the items, a comma between two) over max_bytes; an item alone over max_bytes is a
    batch of its own."""

    def __init__(self, max_entries: int, max_bytes: int, overhead: int):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.overhead = overhead
        self._items: list[dict] = []
        self._encoded: list[bytes] = []
        self._size = overhead

    def add(self, items: list[dict], encoded: list[bytes]) -> list[Batch]:
        """Take items (with their JSON); return the batches they filled."""
        full = []
        for item, data in zip(items, encoded, strict=True):
            add = len(data) + (1 if self._items else 0)
            if self._items and (len(self._items) >= self.max_entries or self._size + add > self.max_bytes):
                full.append(self._take())
                add = len(data)
            self._items.append(item)
            self._encoded.append(data)
            self._size += add
        return full

    def rest(self) -> list[Batch]:
        """The batch still open, if any."""
        return [self._take()] if self._items else []

    def _take(self) -> Batch:
        batch = Batch(self._items, self._encoded)
        self._items, self._encoded, self._size = [], [], self.overhead
        return batch


def series_batcher() -> Batcher:
    """Series requests: no count limit, 5 MB of JSON (less a margin); the compressed limit is checked once the
    body is gzipped (over_compressed_limit)."""
    return Batcher(10**9, SERIES_MAX_UNCOMPRESSED - 1024, SERIES_OVERHEAD)


def logs_batcher() -> Batcher:
    """Log requests: 1,000 items and 5 MB of JSON (less a margin)."""
    return Batcher(LOGS_MAX_ENTRIES, LOGS_MAX_UNCOMPRESSED - 1024, LOGS_OVERHEAD)


def over_compressed_limit(batch: list[dict], gz: bytes) -> bool:
    """A series request over 500 KB of gzip is halved until it fits (an item alone is sent as it is)."""
    return len(batch) > 1 and len(gz) > SERIES_MAX_COMPRESSED


def series_bodies(series: list[dict]) -> Iterator[bytes]:
    """The POST /api/v2/series bodies the sender would send for these series, each within Datadog's limits: for
    what is written to a file instead of sent (`els replay`'s points over an hour old)."""
    batcher = series_batcher()
    pending = batcher.add(series, encode_now(series)) + batcher.rest()
    pending.reverse()
    while pending:
        batch = pending.pop()
        body = series_json(batch.encoded)
        if over_compressed_limit(batch, gzip_now(body)):
            first, second = batch.halves()
            pending += [second, first]
            continue
        yield body
