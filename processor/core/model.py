"""The typed ELS event: every quirk of what Okta sends, normalised once, on the hot path.

Numbers and booleans may arrive as strings ("1827", "false", "TRUE"), optional fields as missing, null or "",
folder_name as a list or a string, event types in spellings Okta never published. Unknown types and fields are
kept (`raw` holds the object exactly as received); anything that cannot be an event raises InvalidEvent with a
sentence saying why, and nothing else ever escapes parse_event: a dead letter beats a crashed worker.

The chain ids (execution_id, root_execution_id) are used exactly as ingest keys the Kafka record (no stripping,
no number conversion), so a chain's state always lives in the partition its events are routed to.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

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
_TYPES = {t: t for t in CANONICAL_TYPES} | ALIASES
OUTCOMES = {"FLOW_COMPLETE": "completed", "FLOW_FAIL": "failed", "FLOW_CANCEL": "canceled"}
MAX_FIELD_CHARS = 1000
MIN_TS_MS = 946_684_800_000     # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_133_980_800_000   # 2101-01-01T00:00:00Z (exclusive): years 2000..2100 are accepted
_TRUE = frozenset(("true", "1", "yes", "y", "t"))
_FALSE = frozenset(("false", "0", "no", "n", "f"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class InvalidEvent(ValueError):
    """Not an event we can use; `reason` is a human sentence for the dead-letter header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def canonical_event_type(s: str) -> str:
    """Okta's published and plausible spellings onto one name; unknown types are kept, upper-cased."""
    t = s.strip().upper()
    c = _TYPES.get(t)
    if c is not None:
        return c
    # "Flow Completed", "flow-failed": the doc's display names with other separators
    return _TYPES.get(t.replace(" ", "_").replace("-", "_"), t)


def _str(v) -> str | None:
    if isinstance(v, str):
        v = v.strip()
        return v[:MAX_FIELD_CHARS] if v else None
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)[:MAX_FIELD_CHARS] if -10**18 < v < 10**18 else None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return str(int(v)) if v.is_integer() and abs(v) < 1e18 else repr(v)
    return None


def _float(v) -> float | None:
    """A non-negative finite number (durations), else None."""
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    elif isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v < 10**300:
            return None
        v = float(v)
    elif not isinstance(v, float):
        return None
    return v if 0.0 <= v < math.inf else None  # also False for NaN


def _int(v) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v if 0 <= v < 10**18 else None
    f = _float(v)
    return int(f) if f is not None and f < 1e18 else None


def _bool(v) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        return True if s in _TRUE else False if s in _FALSE else None
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    return None


def _id(ev: dict, name: str, required: bool) -> str | None:
    """An execution id exactly as sent (it is the Kafka key); too long to be an id is refused rather than cut."""
    v = ev.get(name)
    if isinstance(v, str) and v:
        if len(v) > MAX_FIELD_CHARS:
            raise InvalidEvent(f"{name} is longer than {MAX_FIELD_CHARS} characters")
        if not v.isascii():  # a lone surrogate (only a dict can hold one: JSON refuses it) is no Kafka key
            try:
                v.encode()
            except UnicodeEncodeError:
                raise InvalidEvent(f"{name} is not valid Unicode") from None
        if not required or v.strip():
            return v
    if required:
        raise InvalidEvent(f"{name} must be a non-empty string")
    return None


def _epoch_ms(n: float) -> int:
    return round(n * 1000) if n < 1e11 else int(n)


def parse_timestamp(v) -> int | None:
    """ms since epoch from ISO 8601 (Z or offset, with or without fraction) or epoch seconds/ms; None if absent."""
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            if "T" in s or "-" in s[1:] or ":" in s:
                d = datetime.fromisoformat(s)
                if d.tzinfo is None:
                    d = d.replace(tzinfo=UTC)  # Okta sends UTC
                ms = (d - _EPOCH) // _MS
            else:
                n = float(s)
                if not math.isfinite(n):
                    raise ValueError
                ms = _epoch_ms(n)
        except (ValueError, OverflowError):
            raise InvalidEvent(f"timestamp is not ISO 8601: {s[:60]!r}") from None
    elif v is None:
        return None
    elif isinstance(v, bool):
        raise InvalidEvent("timestamp is a boolean, not a time")
    elif isinstance(v, int):
        ms = v * 1000 if v < 10**11 else v
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise InvalidEvent("timestamp is not a finite number")
        ms = _epoch_ms(v) if abs(v) < 1e300 else -1
    else:
        raise InvalidEvent(f"timestamp must be a string or a number, not a JSON {_json_kind(v)}")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("timestamp out of range (years 2000 to 2100 only)")
    return ms


def _json_kind(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(
        type(v), type(v).__name__)


class _RawField:
    """A field read from the raw event when asked: most are used by few events (errors by failures, throttling
    by throttles) or only by logs, so the hot path does not normalise them. The converters never raise."""

    __slots__ = ("field", "convert")

    def __init__(self, field: str, convert):
        self.field = field
        self.convert = convert

    def __get__(self, event: FlowEvent | None, owner=None):
        if event is None:
            return self
        v = event.raw.get(self.field)
        return None if v is None else self.convert(v)


class FlowEvent:
    """One ELS event, normalised. Build it with parse_event.

    What every event needs (type, ids, time, key, flow) is parsed at once; the other fields are read from `raw`
    on access, with the same normalisation."""

    __slots__ = ("event_type", "execution_id", "root_execution_id", "is_root", "parent_execution_id",
                 "timestamp_ms", "idempotency_key", "flow_id", "flow_name", "outcome", "raw")

    parent_flow_id = _RawField("parent_flow_id", _str)
    parent_flow_name = _RawField("parent_flow_name", _str)
    org_id = _RawField("org_id", _str)
    org_name = _RawField("org_name", _str)
    org_hostname = _RawField("org_hostname", _str)
    duration_ms = _RawField("duration", _float)
    step_count = _RawField("step_count", _int)
    pause_duration_ms = _RawField("pause_duration", _float)
    error_type = _RawField("error_type", _str)
    error_code = _RawField("error_code", _str)
    error_message = _RawField("error_message", _str)
    fatal = _RawField("fatal", _bool)
    throttled = _RawField("throttled", _bool)
    throttling_type = _RawField("throttling_type", _str)
    throttling_level = _RawField("throttling_level", _str)
    hostname = _RawField("hostname", _str)
    status_code = _RawField("status_code", _str)
    _root_flow_id = _RawField("root_flow_id", _str)
    _root_flow_name = _RawField("root_flow_name", _str)

    @property
    def root_flow_id(self) -> str | None:
        """The root's flow: the event's own for a root execution."""
        return self.flow_id if self.is_root else self._root_flow_id

    @property
    def root_flow_name(self) -> str | None:
        return self.flow_name if self.is_root else self._root_flow_name

    def __repr__(self) -> str:
        return f"FlowEvent({self.event_type} {self.execution_id} flow={self.flow_id} ts={self.timestamp_ms})"


def parse_event(value: bytes | str | dict, received_ms: int | None = None) -> FlowEvent:
    """Parse and normalise one event; raises InvalidEvent (and nothing else) when it cannot be one."""
    try:
        return _parse(value, received_ms)
    except InvalidEvent:
        raise
    except Exception as exc:  # a guarantee for the hot path: hostile input must dead-letter, not crash
        raise InvalidEvent(f"unusable event ({type(exc).__name__}: {str(exc)[:200]})") from None


def _load(value) -> dict:
    if isinstance(value, dict):
        return value
    if not isinstance(value, bytes | bytearray | memoryview | str):
        raise InvalidEvent(f"an event must be JSON bytes, text or a dict, not {type(value).__name__}")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"a JSON {_json_kind(raw)} is not an event object")
    return raw


def _parse(value, received_ms: int | None) -> FlowEvent:
    raw = _load(value)
    g = raw.get
    et = g("event_type")
    if not isinstance(et, str) or not et.strip():
        raise InvalidEvent("event_type must be a non-empty string")
    ex = _id(raw, "execution_id", True)
    root = _id(raw, "root_execution_id", False)
    e = FlowEvent()
    e.raw = raw
    e.event_type = canonical_event_type(et)[:MAX_FIELD_CHARS]
    e.execution_id = ex
    e.is_root = root is None or root == ex
    e.root_execution_id = ex if root is None else root
    e.parent_execution_id = _id(raw, "parent_execution_id", False)
    ts = parse_timestamp(g("timestamp"))
    if ts is None:
        if received_ms is None:
            raise InvalidEvent("timestamp is missing and no receive time is known")
        ts = received_ms
    e.timestamp_ms = ts
    e.idempotency_key = _idempotency_key(g("idempotency_key"), value, raw)
    e.flow_id = None if (v := g("flow_id")) is None else _str(v)
    e.flow_name = None if (v := g("flow_name")) is None else _str(v)
    e.outcome = OUTCOMES.get(e.event_type)
    return e


def _idempotency_key(ik, value, raw: dict) -> str:
    if not (isinstance(ik, str) and (ik := ik.strip())):
        ik = _str(ik) if isinstance(ik, int | float) and not isinstance(ik, bool) else None
        if ik is None:
            ik = _digest(value if not isinstance(value, dict) else None, raw)
    elif len(ik) > MAX_FIELD_CHARS:  # a cut key could merge distinct events; a digest cannot
        ik = hashlib.blake2b(ik.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return ik


def _digest(value, raw: dict) -> str:
    """The fallback idempotency key: a re-delivery of the same bytes gets the same key, so it still dedups."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif value is not None:
        data = bytes(value)
    else:
        data = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(data, digest_size=16).hexdigest()
