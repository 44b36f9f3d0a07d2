"""Datadog delivery rules, pure: request limits, the retry decision table, what Datadog would drop. Requests are
filled to these limits by processor/sink/encode.py.

Kept apart from the I/O (processor/sink/client.py) so every rule is unit-tested without a server.
Limits are Datadog's documented ones: metrics v2 `POST /api/v2/series` takes at most 500 KB compressed and
5 MB uncompressed per request; logs `POST /api/v2/logs` at most 1,000 entries and 5 MB uncompressed per request
(Datadog itself truncates a single log over 1 MB). Datadog drops metric points older than 1 hour or more than
10 minutes in the future, and logs older than 18 hours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

SERIES_MAX_COMPRESSED = 500 * 1000
SERIES_MAX_UNCOMPRESSED = 5 * 1000 * 1000
LOGS_MAX_ENTRIES = 1000
LOGS_MAX_UNCOMPRESSED = 5 * 1000 * 1000
METRIC_MAX_AGE_S = 3600
METRIC_MAX_FUTURE_S = 600
LOG_MAX_AGE_S = 18 * 3600

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
AUTH_RETRY_S = 60.0


class Action(StrEnum):
    """What the sink does with one request after Datadog's answer."""

    DONE = "done"              # 2xx: taken
    RETRY = "retry"            # no answer, 408, 429, 5xx: the same request again after delay_s
    SPLIT = "split"            # 400/413 on several items: halve it, until the refused item stands alone
    DEADLETTER = "deadletter"  # refused for good: the items go to the dead-letter topic
    AUTH = "auth"              # 401/403: the key is refused; retried slowly, loudly


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter."""
    r = rng or random
    return r.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(attempt, 16))))


def decide(status: int | None, headers: dict[str, str] | None, attempt: int, batch_size: int) -> Decision:
    """What to do with a Datadog answer (None: connection error or timeout)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if status is not None and 200 <= status < 300:
        return Decision(Action.DONE)
    if status == 429:
        reset = headers.get("x-ratelimit-reset")
        try:
            wait = float(reset) if reset is not None else backoff(attempt)
        except ValueError:
            wait = backoff(attempt)
        return Decision(Action.RETRY, min(max(wait, 0.0), BACKOFF_CAP_S * 5))
    if status is None or status == 408 or status >= 500:
        return Decision(Action.RETRY, backoff(attempt))
    if status in (400, 413):  # too large, or one bad item: halve until the refused item stands alone
        return Decision(Action.SPLIT) if batch_size > 1 else Decision(Action.DEADLETTER)
    if status in (401, 403):
        return Decision(Action.AUTH, AUTH_RETRY_S)
    return Decision(Action.DEADLETTER)  # any other 4xx: this content will never be accepted


def metric_point_droppable(ts_s: int, now_s: float, historical: bool = False) -> str | None:
    """Why Datadog would drop a point with this timestamp (None: it keeps it)."""
    if ts_s > now_s + METRIC_MAX_FUTURE_S:
        return "more than 10 minutes in the future"
    if not historical and ts_s < now_s - METRIC_MAX_AGE_S:
        return "older than 1 hour (enable Historical Metrics Ingestion and replay with --historical)"
    return None


def log_droppable(ts_ms: int | None, now_s: float) -> str | None:
    if ts_ms is not None and ts_ms / 1000 < now_s - LOG_MAX_AGE_S:
        return "log older than 18 hours"
    return None
