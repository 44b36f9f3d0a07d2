"""The typed ELS event: every quirk of what Okta sends, normalised once, on the hot path.

Numbers and booleans may arrive as strings ("1827", "false", "TRUE"), optional fields as missing, null or "",
folder_name as a list or a string, event types in spellings Okta never published. Unknown types and fields are
kept (raw); anything that cannot be an event raises InvalidEvent with a sentence saying why.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

import orjson

CANONICAL_TYPES = ("FLOW_START", "FLOW_COMPLETE", "FLOW_FAIL", "FLOW_CANCEL", "FLOW_THROTTLE", "FLOW_PAUSE",
                   "FLOW_RATE_LIMIT")
ALIASES = {
    "FLOW_STARTED": "FLOW_START",
    "FLOW_COMPLETED": "FLOW_COMPLETE",
    "FLOW_FAILED": "FLOW_FAIL", "FLOW_FAILURE": "FLOW_FAIL",
    "FLOW_CANCELED": "FLOW_CANCEL", "FLOW_CANCELLED": "FLOW_CANCEL",
    "FLOW_THROTTLED": "FLOW_THROTTLE",
    "FLOW_PAUSED": "FLOW_PAUSE",
    "FLOW_RATE_LIMITED": "FLOW_RATE_LIMIT", "FLOW_RATELIMITED": "FLOW_RATE_LIMIT", "FLOW_RATELIMIT": "FLOW_RATE_LIMIT",
}
OUTCOMES = {"FLOW_COMPLETE": "completed", "FLOW_FAIL": "failed", "FLOW_CANCEL": "canceled"}
MAX_FIELD_CHARS = 1000
MIN_TS_MS = 946_684_800_000     # 2000-01-01
MAX_TS_MS = 4_102_444_800_000   # 2100-01-01
TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f"}


class InvalidEvent(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def canonical_event_type(s: str) -> str:
    t = s.strip().upper()
    return ALIASES.get(t, t)


def _str(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        return v[:MAX_FIELD_CHARS] if v else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return None


def _float(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) and v >= 0 else None


def _int(v) -> int | None:
    f = _float(v)
    return int(f) if f is not None else None


def _bool(v) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        return True if s in TRUE else False if s in FALSE else None
    if isinstance(v, int | float):
        return bool(v)
    return None


def parse_timestamp(v) -> int | None:
    """ms since epoch from ISO 8601 (Z or offset, with or without fraction) or epoch seconds/ms; None if absent."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise InvalidEvent("timestamp is a boolean")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise InvalidEvent("timestamp is not finite")
        ms = int(v * 1000) if v < 1e11 else int(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            if "T" in s or "-" in s[1:]:
                d = datetime.fromisoformat(s)
                if d.tzinfo is None:
                    d = d.replace(tzinfo=UTC)  # Okta sends UTC
                ms = int(d.timestamp() * 1000)
            else:
                n = float(s)
                ms = int(n * 1000) if n < 1e11 else int(n)
        except (ValueError, OverflowError):
            raise InvalidEvent(f"timestamp is not ISO 8601: {s[:60]!r}") from None
    else:
        raise InvalidEvent(f"timestamp has type {type(v).__name__}")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("timestamp out of range")
    return ms


class FlowEvent:
    __slots__ = ("event_type", "execution_id", "root_execution_id", "is_root", "parent_execution_id",
                 "timestamp_ms", "idempotency_key", "flow_id", "flow_name", "parent_flow_id", "parent_flow_name",
                 "root_flow_id", "root_flow_name", "org_id", "org_name", "org_hostname", "duration_ms",
                 "step_count", "pause_duration_ms", "error_type", "error_code", "error_message", "fatal",
                 "throttled", "throttling_type", "throttling_level", "hostname", "status_code", "outcome", "raw")

    def __repr__(self) -> str:
        return f"FlowEvent({self.event_type} {self.execution_id} flow={self.flow_id} ts={self.timestamp_ms})"


def parse_event(value: bytes | str | dict, received_ms: int | None = None) -> FlowEvent:
    if isinstance(value, dict):
        raw = value
        raw_bytes = None
    else:
        raw_bytes = value.encode() if isinstance(value, str) else value
        try:
            raw = orjson.loads(raw_bytes)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"a JSON {type(raw).__name__} is not an event object")
    g = raw.get
    et = g("event_type")
    if not isinstance(et, str) or not et.strip():
        raise InvalidEvent("event_type must be a non-empty string")
    ex = g("execution_id")
    if not isinstance(ex, str) or not ex.strip():
        raise InvalidEvent("execution_id must be a non-empty string")
    e = FlowEvent()
    e.raw = raw
    e.event_type = canonical_event_type(et)[:MAX_FIELD_CHARS]
    e.execution_id = ex.strip()[:MAX_FIELD_CHARS]
    ts = parse_timestamp(g("timestamp"))
    if ts is None:
        if received_ms is None:
            raise InvalidEvent("timestamp is missing and no receive time is known")
        ts = received_ms
    e.timestamp_ms = ts
    root = _str(g("root_execution_id"))
    e.is_root = root is None or root == e.execution_id
    e.root_execution_id = e.execution_id if root is None else root
    e.parent_execution_id = _str(g("parent_execution_id"))
    ik = _str(g("idempotency_key"))
    if ik is None:
        data = raw_bytes if raw_bytes is not None else orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        ik = hashlib.blake2b(data, digest_size=16).hexdigest()
    e.idempotency_key = ik
    e.flow_id = _str(g("flow_id"))
    e.flow_name = _str(g("flow_name"))
    e.parent_flow_id = _str(g("parent_flow_id"))
    e.parent_flow_name = _str(g("parent_flow_name"))
    if e.is_root:
        e.root_flow_id = e.flow_id
        e.root_flow_name = e.flow_name
    else:
        e.root_flow_id = _str(g("root_flow_id"))
        e.root_flow_name = _str(g("root_flow_name"))
    e.org_id = _str(g("org_id"))
    e.org_name = _str(g("org_name"))
    e.org_hostname = _str(g("org_hostname"))
    e.duration_ms = _float(g("duration"))
    e.step_count = _int(g("step_count"))
    e.pause_duration_ms = _float(g("pause_duration"))
    e.error_type = _str(g("error_type"))
    e.error_code = _str(g("error_code"))
    e.error_message = _str(g("error_message"))
    e.fatal = _bool(g("fatal"))
    e.throttled = _bool(g("throttled"))
    e.throttling_type = _str(g("throttling_type"))
    e.throttling_level = _str(g("throttling_level"))
    e.hostname = _str(g("hostname"))
    sc = g("status_code")
    e.status_code = str(int(sc)) if isinstance(sc, int | float) and not isinstance(sc, bool) and math.isfinite(sc) \
        else _str(sc)
    e.outcome = OUTCOMES.get(e.event_type)
    return e
