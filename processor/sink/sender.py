"""Getting rendered series and logs into Datadog: its drop rules, request-sized batches, retries, dead letters.

The policy (limits, the retry decision table, what Datadog would drop) is pure, in delivery.py; the I/O is the
client's (client.py). Here they meet: a request is retried until Datadog takes it, split down to the refused item
on 400/413, and what is refused for good or would be dropped goes to the dead-letter topic through the one
dead-letter writer (common/deadletter.py), whose acknowledgements are awaited before `deliver` returns, so the
caller never acks outbox records whose dead letters are not in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice

import orjson

from common.deadletter import DeadLetterWriter
from processor.runtime import cpu_time_outside_gc, loop_probe
from processor.sink.client import Answer, DatadogClient
from processor.sink.delivery import Action, decide, log_droppable, metric_point_droppable
from processor.sink.encode import (
    Batch,
    Batcher,
    LogBatcher,
    compress,
    halves,
    logs_batcher,
    logs_json,
    over_compressed_limit,
    series_batcher,
    series_json,
)

log = logging.getLogger("els.sink")

REPORT_EVERY_S = 60.0  # a refused API key is logged at most this often
MAX_BODY_IN_REASON = 2000


class Kind(StrEnum):
    """What a request carries; also the prefix of its counters in `stats` (series_sent, logs_deadlettered)."""

    SERIES = "series"
    LOGS = "logs"


@dataclass(slots=True)
class Delivered:
    """What one `deliver` call did (the cumulative figures are in Sender.stats)."""

    series_sent: int = 0
    logs_sent: int = 0
    points_dropped: int = 0   # Datadog would drop them (too old, too far ahead)
    logs_dropped: int = 0     # over 18 hours old
    series_refused: int = 0   # Datadog refused them for good: dead-lettered
    logs_refused: int = 0
    retries: int = 0


Post = Callable[[list[dict]], Awaitable[Answer]]
SLICE = 2000  # items rendered and encoded between two turns of the event loop


class Sender:
    """Delivers series and logs; never raises on Datadog's answers (it retries them), only on Kafka's."""

    def __init__(self, client: DatadogClient, deadletters: DeadLetterWriter, *, historical: bool = False,
                 deadletter_drops: bool = True):
        self.client = client
        self.deadletters = deadletters
        self.historical = historical          # points over an hour old are sent (Historical Metrics Ingestion)
        self.deadletter_drops = deadletter_drops  # what Datadog would drop: dead-lettered, or only counted
        self.stats: dict[str, int] = defaultdict(int)
        self._acks: list[asyncio.Future] = []
        self._auth_reported = 0.0
        self.probe = loop_probe(self.stats)  # ELS_LOOP_PROBE: the longest event-loop stalls, in stats (bench)

    async def deliver(self, series: Iterable[dict], logs: Iterable[dict], now_s: float | None = None) -> Delivered:
        """Send every series, then every log. Either may be lazy (the sink renders windows as they are taken):
        they are taken SLICE items at a time, each slice encoded and its full requests sent before the next is
        taken, so a close-out never holds all its series at once nor the event loop for all of them."""
        now_s = time.time() if now_s is None else now_s
        if self.probe is not None:
            self.probe.start()
        done = Delivered()
        self._acks = []  # a failed call's are stale: its items are delivered again
        await self._stream(series, Kind.SERIES, self.client.post_series, now_s, done, series_batcher())
        await self._stream(logs, Kind.LOGS, self.client.post_logs, now_s, done, logs_batcher())
        acks, self._acks = self._acks, []
        if acks:
            await asyncio.gather(*acks)
        self.stats["dropped_points"] += done.points_dropped
        self.stats["dropped_logs"] += done.logs_dropped
        return done

    async def _stream(self, items: Iterable[dict], kind: Kind, post: Post, now_s: float, done: Delivered,
                      batches: Batcher | LogBatcher) -> None:
        """Items a slice at a time: what Datadog would keep is written into `batches`, each full one sent at once;
        the event loop gets a turn between two slices."""
        for chunk in _slices(items):
            sendable = await self._sendable(chunk, now_s, done, kind)
            for batch in self._timed(kind, len(sendable), batches.fill, sendable):
                await self._send(post, batch, kind, done)
            await asyncio.sleep(0)
        for batch in self._timed(kind, 0, batches.rest):
            await self._send(post, batch, kind, done)

    def _timed(self, kind: Kind, items: int, write: Callable, *args):
        """write(*args), its CPU time (outside the garbage collector) and its items added to the sink's
        t_encode_<kind>_us and encoded_<kind>: the figures of µs per series and per log."""
        t = cpu_time_outside_gc()
        out = write(*args)
        self.stats[f"t_encode_{kind}_us"] += int((cpu_time_outside_gc() - t) * 1e6)
        self.stats[f"encoded_{kind}"] += items
        return out

    async def _sendable(self, items: list[dict], now_s: float, done: Delivered, kind: Kind) -> list[dict]:
        """The items Datadog would keep; the others are dead-lettered (or only counted) and counted in `done`."""
        out = []
        for item in items:
            if kind is Kind.SERIES:
                why = metric_point_droppable(item["points"][0]["timestamp"], now_s, self.historical)
                if why:
                    done.points_dropped += 1
                    await self._drop(item, f"not sent to Datadog: point {why}")
                    continue
            else:
                why = log_droppable(item.get("timestamp"), now_s)
                if why:
                    done.logs_dropped += 1
                    await self._drop(item, f"not sent to Datadog: {why}")
                    continue
            out.append(item)
        return out

    async def _compress(self, batch: Batch, kind: Kind) -> None:
        """The batch's body (written at once, or joined from its items' JSON; timed as their writing is), then
        gzipped (a thread)."""
        body = self._timed(kind, 0, batch.json_body, series_json if kind is Kind.SERIES else logs_json)
        self.stats["body_bytes"] += len(body)
        batch.compressed(await compress(body))

    async def _drop(self, item: dict, reason: str) -> None:
        if self.deadletter_drops:
            self._acks.append(await self.deadletters.write(orjson.dumps(item), reason))

    async def _send(self, post: Post, batch: list[dict], kind: Kind, done: Delivered) -> None:
        """One request, retried until Datadog takes it; 413/400 split it down to the item that is refused."""
        pending = [batch]
        while pending:
            chunk = pending.pop()
            if isinstance(chunk, Batch) and chunk.gz is None:
                await self._compress(chunk, kind)
                if kind is Kind.SERIES and over_compressed_limit(chunk, chunk.gz):
                    first, second = chunk.halves()
                    pending += [second, first]
                    continue
            answer, action = await self._until_answered(post, chunk, kind, done)
            if action is Action.DONE:
                self.stats[f"{kind}_sent"] += len(chunk)
                if kind is Kind.SERIES:
                    done.series_sent += len(chunk)
                else:
                    done.logs_sent += len(chunk)
            elif action is Action.SPLIT:
                first, second = halves(chunk)
                pending += [second, first]
            else:
                await self._refused(chunk, kind, answer, done)

    async def _until_answered(self, post: Post, chunk: list[dict], kind: Kind,
                              done: Delivered) -> tuple[Answer, Action]:
        """Post until the answer is final (taken, split, refused); retries wait as the decision table says."""
        attempt = 0
        while True:
            answer = await post(chunk)
            d = decide(answer.status, answer.headers, attempt, len(chunk))
            if d.action in (Action.DONE, Action.SPLIT, Action.DEADLETTER):
                return answer, d.action
            attempt += 1
            done.retries += 1
            self.stats["sink_retries"] += 1
            if d.action is Action.AUTH:
                now = time.monotonic()
                if now - self._auth_reported >= REPORT_EVERY_S:
                    self._auth_reported = now
                    log.error("Datadog refuses the API key (%s): check DD_API_KEY and DD_SITE; retrying "
                              "every %.0fs, nothing is lost meanwhile", answer.status, d.delay_s)
            elif attempt == 1 or attempt % 10 == 0:
                log.warning("Datadog did not take the %s request; retrying", kind,
                            extra={"status": answer.status, "attempt": attempt, "retry_in_s": round(d.delay_s, 2),
                                   "items": len(chunk)})
            await asyncio.sleep(d.delay_s)

    async def _refused(self, chunk: list[dict], kind: Kind, answer: Answer, done: Delivered) -> None:
        self.stats[f"{kind}_deadlettered"] += len(chunk)
        if kind is Kind.SERIES:
            done.series_refused += len(chunk)
        else:
            done.logs_refused += len(chunk)
        reason = f"Datadog refused it: {answer.status} {answer.body[:MAX_BODY_IN_REASON]}"
        for item in chunk:
            self._acks.append(await self.deadletters.write(orjson.dumps(item), reason,
                                                           extra={"status": str(answer.status)}))


def _slices(items: Iterable[dict]) -> Iterator[list[dict]]:
    it = iter(items)
    while chunk := list(islice(it, SLICE)):
        yield chunk
