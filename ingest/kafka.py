"""Ingest's Kafka side: write accepted events and dead letters, and answer only once Kafka acknowledged.

The producer uses acks=all, and the idempotent producer when the broker supports it (common/producer.py: the
embedded broker does not, and ingest falls back with a warning; the processor removes the duplicates a retried
send can create). The HTTP server starts even while Kafka is unreachable: it answers 503
until a background task has connected and created the topics, so a broker restart never needs an ingest one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from common.producer import start_producer
from common.topics import TopicMismatch, ensure_pipeline_topics

log = logging.getLogger("els.ingest.kafka")


class NotAcknowledged(Exception):
    """Kafka did not acknowledge in time (or refused): the client must retry, nothing may be answered 2xx."""


def _headers(ik: str | None, received_ms: int) -> list[tuple[str, bytes]]:
    headers = [("received_at", str(received_ms).encode())]
    if ik is not None:
        headers.append(("idempotency_key", ik.encode()))
    return headers


class _Deadline:
    """One write's deadline; the sweeper cancels `task` if the write is still running when it passes."""

    __slots__ = ("at", "task", "expired")

    def __init__(self, at: float, task: asyncio.Task):
        self.at = at
        self.task: asyncio.Task | None = task
        self.expired = False


class KafkaWriter:
    # How often the deadline sweeper looks: a 503 comes at most this much later than ELS_ACK_TIMEOUT_SECONDS.
    SWEEP_SECONDS = 0.05

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.security = cfg.kafka_security
        self.deadletters = DeadLetterWriter(cfg.els_deadletter_topic, Stage.INGEST, self._send_deadletter)
        self.producer: AIOKafkaProducer | None = None
        self.idempotent = False
        self._connect_task: asyncio.Task | None = None
        self._sweep_task: asyncio.Task | None = None
        self._ready_cache: tuple[float, bool] = (0.0, False)
        self._recheck_topics = False
        # Writes in start order; they all have the same timeout, so deadlines are in order too.
        self._deadlines: deque[_Deadline] = deque()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._connect_task = loop.create_task(self._connect_forever())
        self._sweep_task = loop.create_task(self._sweep_deadlines())

    async def _sweep_deadlines(self) -> None:
        """Cancel writes past their deadline. One task for all writes instead of asyncio.timeout per write:
        its timer handles cost a heap push and a pop with Python-level comparisons each, ~30% of a write."""
        deadlines = self._deadlines
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            now = loop.time()
            while deadlines and (deadlines[0].task is None or deadlines[0].at <= now):
                d = deadlines.popleft()
                if d.task is not None:
                    d.expired = True
                    d.task.cancel()

    async def _ensure_topics(self) -> None:
        """Every topic of the pipeline, the processor's included: ingest may be the first to start."""
        await ensure_pipeline_topics(self.cfg)

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._ensure_topics()
                self.producer = await self._start_producer()
                log.info("connected to Kafka", extra={"bootstrap": self.cfg.kafka_bootstrap_servers,
                                                      "idempotent": self.idempotent})
                return
            except asyncio.CancelledError:
                raise
            except TopicMismatch as exc:  # an operator's fix is needed; meanwhile requests are answered 503
                log.error("%s", exc, extra={"retry_in_s": 5.0})
                await asyncio.sleep(5.0)
            except Exception as exc:  # any failure to connect is retried: the broker may come up later
                log.warning("Kafka not reachable yet; retrying", extra={"error": repr(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _new_producer(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.cfg.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=0,  # no wait: with one produce request in flight, records queue behind it anyway
            request_timeout_ms=max(int(self.cfg.els_ack_timeout_seconds * 1000), 5000),
            max_request_size=max(self.cfg.els_max_body_bytes * 2, 1 << 20),
            **self.security.client_kwargs(),
        )

    async def _start_producer(self) -> AIOKafkaProducer:
        producer, self.idempotent = await start_producer(self._new_producer, log)
        return producer

    async def stop(self) -> None:
        """Flush everything accepted, then disconnect."""
        for task in (self._connect_task, self._sweep_task):
            if task and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.flush(), 10)
            await self.producer.stop()
            self.producer = None

    async def _send_deadletter(self, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future:
        if self.producer is None:
            raise NotAcknowledged("not connected to Kafka yet")
        return await self.producer.send(topic, value=value, headers=headers)

    # -- writing -----------------------------------------------------------------------------------------
    async def write(self, events, rejects, received_ms: int, extra_headers: dict[str, str] | None = None) -> None:
        """Produce events to the raw topic and rejects to the dead-letter topic; return once all are acked."""
        producer = self.producer
        if producer is None:
            raise NotAcknowledged("not connected to Kafka yet")
        timeout = self.cfg.els_ack_timeout_seconds
        task = asyncio.current_task()
        deadline = _Deadline(asyncio.get_running_loop().time() + timeout, task)
        self._deadlines.append(deadline)
        try:
            if self._recheck_topics:
                # After an outage the broker may be a new one (the embedded broker keeps nothing): recreate
                # the topics with the right partition count before writing, instead of letting it guess.
                await self._ensure_topics()
                self._recheck_topics = False
            if len(events) == 1 and not rejects:  # Okta's usual request: one event, one future, no gather
                ev = events[0]
                await (await producer.send(self.cfg.els_raw_topic, ev.value, ev.key,
                                           headers=_headers(ev.idempotency_key, received_ms)))
            else:
                await self._send_all(producer, events, rejects, received_ms, extra_headers)
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                self._recheck_topics = True
                raise NotAcknowledged(f"Kafka did not acknowledge within {timeout}s") from None
            raise
        except (KafkaError, OSError) as exc:
            self._recheck_topics = True
            raise NotAcknowledged(f"Kafka refused the write: {exc!r}") from None
        finally:
            deadline.task = None

    async def _send_all(self, producer: AIOKafkaProducer, events, rejects, received_ms: int,
                        extra_headers: dict[str, str] | None) -> None:
        futures = []
        for ev in events:
            futures.append(await producer.send(self.cfg.els_raw_topic, ev.value, ev.key,
                                               headers=_headers(ev.idempotency_key, received_ms)))
        for rej in rejects:
            futures.append(await self.deadletters.write(rej.raw, rej.reason, received_ms, extra_headers))
        await asyncio.gather(*futures)

    async def write_record(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """One record of ingest's own (its window report) into the raw topic, acknowledged within the ack
        timeout; raises NotAcknowledged."""
        if self.producer is None:
            raise NotAcknowledged("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self.cfg.els_ack_timeout_seconds):
                await (await self.producer.send(self.cfg.els_raw_topic, value, key, headers=headers))
        except (TimeoutError, KafkaError, OSError) as exc:
            raise NotAcknowledged(f"Kafka did not acknowledge ingest's report: {exc!r}") from None

    async def ready(self) -> bool:
        """True when the producer can reach the broker (cached for a second: probes are cheap but not free)."""
        at, ok = self._ready_cache
        if time.monotonic() - at < 1.0:
            return ok
        ok = False
        if self.producer is not None:
            client = self.producer.client
            try:
                async with asyncio.timeout(2):
                    ok = await client.ready(client.get_random_node())
            except (TimeoutError, KafkaError, OSError):
                ok = False
        self._ready_cache = (time.monotonic(), ok)
        return ok
