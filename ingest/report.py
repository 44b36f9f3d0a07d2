"""Ingest's outcomes as records in the raw topic, one per window and ingest process, so they reach Datadog the
way the processor's own counters do (processor/engine/reports.py): pipeline.ingest.requests and
pipeline.ingest.events by outcome, pipeline.deadletters{stage:ingest} by reason, and
pipeline.ingest.tls_days_left.

Why through Kafka: ingest holds no Datadog key and stays thin; in the raw topic its counts get the processor's
exactness (a record is applied once, at its offset) and the sink's delivery (retries, outages, restarts). Each
process (host, pid, start time) writes its report of a window once the window is over, and a last one when it
stops; a report Kafka did not acknowledge is sent again, under the same id, and the processor counts an id once.
A process killed without stopping loses its current window's report: counts may be short, never doubled.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from enum import StrEnum

import orjson

log = logging.getLogger("els.ingest")

REPORT_KEY = b"__ingest__"
REPORT_KIND = b"ingest-report"
KIND_HEADER = "els-kind"  # as the processor's ticks (processor/engine/records.py)


class Outcome(StrEnum):
    """What ingest answered a request (the `outcome` tag)."""

    ACCEPTED = "accepted"          # 202: its events are in Kafka (unusable items in it were dead-lettered)
    UNAUTHORIZED = "unauthorized"  # 401: missing or wrong secret
    BAD_BODY = "bad_body"          # 400: nothing usable in it (kept as a dead letter)
    TOO_LARGE = "too_large"        # 413: over ELS_MAX_BODY_BYTES (its prefix kept as a dead letter)
    UNAVAILABLE = "unavailable"    # 503: Kafka did not acknowledge in time; Okta sends it again


class DeadLetterReason(StrEnum):
    """Why ingest dead-lettered something (the `reason` tag, stage:ingest)."""

    BAD_BODY = "bad_body"
    TOO_LARGE = "too_large"
    BAD_ITEM = "bad_item"  # an unusable item in an accepted body


def _plain(counts: Counter) -> dict[str, int]:
    return {str(k): n for k, n in counts.items()}


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000)}"


class Reporter:
    """Counts per window, and the reports of the windows that are over (sent by `send_due`)."""

    def __init__(self, window_s: int, instance: str | None = None,
                 tls_days_left: Callable[[], float | None] = lambda: None):
        self.window_ms = window_s * 1000
        self.instance = instance or instance_id()
        self.tls_days_left = tls_days_left
        self._ws: int | None = None
        self._requests: Counter[str] = Counter()
        self._events: Counter[str] = Counter()
        self._deadletters: Counter[str] = Counter()
        self.pending: list[tuple[bytes, str]] = []  # (value, id) not acknowledged yet

    def _window(self, now_ms: int) -> None:
        ws = now_ms - now_ms % self.window_ms
        if self._ws is not None and ws != self._ws:
            self._close()
        self._ws = ws

    def request(self, outcome: Outcome, events: int = 0, now_ms: int | None = None) -> None:
        self._window(int(time.time() * 1000) if now_ms is None else now_ms)
        self._requests[outcome] += 1
        if events:
            self._events[outcome] += events

    def deadlettered(self, reason: DeadLetterReason, n: int = 1) -> None:
        self._deadletters[reason] += n

    def _close(self) -> None:
        """The current window's report into `pending` (a window with no request says nothing but the
        certificate, which is reported every window)."""
        days = self.tls_days_left()
        if self._ws is None or not (self._requests or days is not None):
            return
        rid = f"{self.instance}@{self._ws}"
        value = {"report": rid, "ws": self._ws, "requests": _plain(self._requests), "events": _plain(self._events),
                 "deadletters": _plain(self._deadletters)}
        if days is not None:
            value["tls_days_left"] = round(days, 2)
        self.pending.append((orjson.dumps(value), rid))
        self._requests.clear()
        self._events.clear()
        self._deadletters.clear()

    def roll(self, now_ms: int | None = None, final: bool = False) -> None:
        """Close the window if it is over (or anyway, when stopping); open the current one."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if final:
            self._close()
            self._ws = None
        else:
            if self._ws is None:
                self._ws = now_ms - now_ms % self.window_ms
            self._window(now_ms)

    async def send_due(self, send: Callable[[bytes, bytes, list], Awaitable[None]]) -> None:
        """Write the pending reports (key, value, headers); keep those Kafka did not acknowledge."""
        while self.pending:
            value, rid = self.pending[0]
            headers = [(KIND_HEADER, REPORT_KIND), ("idempotency_key", rid.encode()),
                       ("received_at", str(int(time.time() * 1000)).encode())]
            try:
                await send(REPORT_KEY, value, headers)
            except Exception as exc:  # noqa: BLE001 - kept and sent again with the next report
                log.warning("ingest's report could not be written to Kafka (%s); it is sent again later", exc)
                return
            self.pending.pop(0)
