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
from collections.abc import Callable, Iterable, Iterator

import orjson

from processor.jsonbytes import dumps
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
    """One request's items (a list, as every caller and test sees it), with each item's JSON or the whole body's
    (a log request written at once: LogBatcher) and, once compressed, the gzip body that is sent (kept for
    retries)."""

    __slots__ = ("encoded", "body", "gz")

    def __init__(self, items: Iterable[dict], encoded: list[bytes] | None, body: bytes | None = None):
        super().__init__(items)
        self.encoded = encoded
        self.body = body
        self.gz: bytes | None = None

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self) // 2
        encoded = self.encoded if self.encoded is not None else encode_now(self)
        return Batch(self[:mid], encoded[:mid]), Batch(self[mid:], encoded[mid:])

    def json_body(self, join: Callable[[list[bytes]], bytes]) -> bytes:
        """The request body: written at once, or joined from the items' JSON (written again if it went)."""
        if self.body is not None:
            return self.body
        return join(self.encoded if self.encoded is not None else encode_now(self))

    def compressed(self, gz: bytes) -> None:
        """Keep the body sent; the JSON goes (a split, rare, encodes the items again), so a close-out's batches
        do not hold their JSON twice while they wait for their turn."""
        self.gz, self.encoded, self.body = gz, None, None


def halves(chunk: list[dict]) -> tuple[list[dict], list[dict]]:
    if isinstance(chunk, Batch):
        return chunk.halves()
    mid = len(chunk) // 2
    return chunk[:mid], chunk[mid:]


def encode_now(items: list[dict]) -> list[bytes]:
    """Each item's JSON at its exact size (processor/jsonbytes.py): a request's worth of items waits while it
    fills, and orjson's own bytes would each hold a 4 KiB buffer (~60 MB for one series request)."""
    return [dumps(item) for item in items]


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

    def fill(self, items: list[dict]) -> list[Batch]:
        """Take items, writing each one's JSON; return the batches they filled."""
        return self.add(items, encode_now(items))

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


def logs_batcher() -> LogBatcher:
    """Log requests: 1,000 items and 5 MB of JSON (less a margin)."""
    return LogBatcher(Batcher(LOGS_MAX_ENTRIES, LOGS_MAX_UNCOMPRESSED - 1024, LOGS_OVERHEAD))


class LogBatcher:
    """Log requests, each body written by one orjson call over its items: a request's 1,000 logs (~600 B each)
    are far below its 5 MB, so the count fills it and the body can be written at once, without a bytes object per
    item nor a join (~1.5 µs a log less, bench.encode). A body over the size limit (logs of 5 KB and more) is
    filled item by item instead, by the Batcher given, whose limits these are."""

    def __init__(self, by_item: Batcher):
        self.by_item = by_item
        self._pending: list[dict] = []

    def fill(self, items: list[dict]) -> list[Batch]:
        self._pending += items
        full = []
        n = self.by_item.max_entries
        while len(self._pending) >= n:
            full += self._written(self._pending[:n])
            del self._pending[:n]
        return full

    def rest(self) -> list[Batch]:
        items, self._pending = self._pending, []
        return (self._written(items) if items else []) + self.by_item.rest()

    def _written(self, items: list[dict]) -> list[Batch]:
        body = orjson.dumps(items)
        if len(body) > self.by_item.max_bytes:
            return self.by_item.fill(items)
        return self.by_item.rest() + [Batch(items, None, body)]  # an open item-by-item batch goes first: order


def over_compressed_limit(batch: list[dict], gz: bytes) -> bool:
    """A series request over 500 KB of gzip is halved until it fits (an item alone is sent as it is)."""
    return len(batch) > 1 and len(gz) > SERIES_MAX_COMPRESSED


def series_bodies(series: list[dict]) -> Iterator[bytes]:
    """The POST /api/v2/series bodies the sender would send for these series, each within Datadog's limits: for
    what is written to a file instead of sent (`els replay`'s points over an hour old)."""
    batcher = series_batcher()
    pending = batcher.fill(series) + batcher.rest()
    pending.reverse()
    while pending:
        batch = pending.pop()
        body = series_json(batch.encoded)
        if over_compressed_limit(batch, gzip_now(body)):
            first, second = batch.halves()
            pending += [second, first]
            continue
        yield body
