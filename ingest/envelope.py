"""Turn whatever body Okta sends into ELS events, and say precisely why anything else is unusable.

Okta may send one event, a JSON array, newline-delimited events, any of them gzip-compressed, and an admin
may wrap each event in a custom body (Splunk HEC `{"event": ...}`, Datadog `{"message": ..., "ddsource": ...}`,
or any object with exactly one member) where the event is an object or a JSON string. This module is pure:
bytes in, events and rejects out, so every shape is unit-tested without a server.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import orjson

MAX_WRAP_DEPTH = 4
WRAPPER_KEYS = ("event", "message")


class BodyError(Exception):
    """The whole body is unusable: `status` is the HTTP answer, `reason` a sentence for the client."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Event:
    """One accepted ELS event, ready for Kafka."""

    key: bytes
    value: bytes
    idempotency_key: str | None


@dataclass(slots=True)
class Reject:
    """One unusable item of a body, kept with its bytes for the dead-letter topic."""

    reason: str
    raw: bytes


@dataclass(slots=True)
class Unwrapped:
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding (gzip, deflate, identity); gzip is also recognised by its magic bytes."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if body[:2] != b"\x1f\x8b":
            return body
        enc = "gzip"
    if enc in ("gzip", "x-gzip"):
        wbits = 47  # gzip or zlib header, auto-detected
    elif enc == "deflate":
        wbits = 15
    else:
        raise BodyError(400, f"unsupported Content-Encoding {enc!r}: send gzip, deflate or identity")
    try:
        return _inflate(body, wbits, max_bytes, enc)
    except zlib.error as exc:
        if enc == "deflate":  # some clients send raw DEFLATE (no zlib header) as `deflate`
            try:
                return _inflate(body, -15, max_bytes, enc)
            except zlib.error:
                pass
        raise BodyError(400, f"body is not valid {enc}: {exc}") from None


def _inflate(body: bytes, wbits: int, max_bytes: int, enc: str) -> bytes:
    """Decompress with a bound, so a small bomb cannot make a huge body."""
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, max_bytes + 1)
    if len(out) > max_bytes or d.unconsumed_tail:
        raise BodyError(413, f"body is larger than {max_bytes} bytes once decompressed")
    out += d.flush()
    if not d.eof:
        raise BodyError(400, f"{enc} body is truncated")
    return out


def event_key(event: dict) -> bytes:
    """Kafka key: the chain root, so a root flow and every helper it calls land in one partition, in order."""
    root = event.get("root_execution_id")
    if isinstance(root, str) and root:
        return root.encode()
    return event["execution_id"].encode()


def _idempotency_key(event: dict) -> str | None:
    ik = event.get("idempotency_key")
    if isinstance(ik, str) and ik:
        return ik
    if isinstance(ik, int | float) and not isinstance(ik, bool):
        return str(ik)
    return None


def _why_not_event(obj: dict) -> str | None:
    """None when obj is an ELS event (a string event_type and a string execution_id), else the reason."""
    et = obj.get("event_type")
    ex = obj.get("execution_id")
    if isinstance(et, str) and et.strip() and isinstance(ex, str) and ex.strip():
        return None
    if "event_type" not in obj and "execution_id" not in obj:
        return "object is not an ELS event (no event_type or execution_id) and wraps none"
    if not (isinstance(et, str) and et.strip()):
        return "event_type is missing or not a non-empty string"
    return "execution_id is missing or not a non-empty string"


def extract(item, depth: int = 0) -> list[dict]:
    """The events inside one item (an event, a wrapper, or a JSON string of either); raises ValueError(reason)."""
    if isinstance(item, str | bytes):
        try:
            item = orjson.loads(item)
        except orjson.JSONDecodeError:
            raise ValueError("a string that is not a JSON event") from None
        if isinstance(item, str):
            raise ValueError("a string that is not a JSON event")
    if isinstance(item, list):
        if depth == 0:
            raise ValueError("nested arrays are not events")
        out = []
        for sub in item:
            out.extend(extract(sub, depth + 1))
        if not out:  # dropping it silently would lose the item: neither accepted nor dead-lettered
            raise ValueError("an empty array holds no event")
        return out
    if not isinstance(item, dict):
        raise ValueError(f"a JSON {type(item).__name__} is not an event object")
    reason = _why_not_event(item)
    if reason is None:
        return [item]
    if depth < MAX_WRAP_DEPTH and "event_type" not in item and "execution_id" not in item:
        for key in WRAPPER_KEYS:
            inner = item.get(key)
            if isinstance(inner, dict | str | list):
                return extract(inner, depth + 1)
        if len(item) == 1:
            (inner,) = item.values()
            if isinstance(inner, dict | str | list):
                return extract(inner, depth + 1)
    raise ValueError(reason)


def _json_items(doc) -> list:
    """Top-level items of a JSON body: the object itself, or an array's elements."""
    if isinstance(doc, list):
        if not doc:
            raise BodyError(400, "body is an empty JSON array")
        return doc
    if isinstance(doc, dict | str):  # a string: the whole body is one event as a JSON string
        return [doc]
    raise BodyError(400, f"body is a JSON {type(doc).__name__}, not an event object, array or NDJSON")


def _ndjson_items(text: bytes) -> tuple[list, list[Reject]]:
    """Top-level items of a body that is not one JSON document: its NDJSON lines."""
    items, rejects = [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            rejects.append(Reject(f"line {n} is not valid JSON: {exc}", line))
            continue
        if isinstance(value, list):
            if not value:
                rejects.append(Reject(f"line {n} is an empty array", line))
            items.extend(value)
        else:
            items.append(value)
    if not items:
        if len(rejects) == 1:
            raise BodyError(400, f"body is not valid JSON: {rejects[0].reason.split(': ', 1)[-1]}")
        raise BodyError(400, "body is neither JSON nor newline-delimited JSON")
    return items, rejects


def unwrap(body: bytes, content_encoding: str | None = None, max_bytes: int = 1 << 20) -> Unwrapped:
    """Every event in a request body, and every unusable item with its reason. Raises BodyError."""
    text = decompress(body, content_encoding, max_bytes)
    if not text or text.isspace():  # same as `not text.strip()`, without copying the body
        raise BodyError(400, "empty body")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        items, rejects = _ndjson_items(text)
    else:
        if type(doc) is dict and _why_not_event(doc) is None:
            # Okta's usual body, one plain event: none of the shape handling below applies
            return Unwrapped([Event(event_key(doc), orjson.dumps(doc), _idempotency_key(doc))])
        items, rejects = _json_items(doc), []
    out = Unwrapped(rejects=rejects)
    for item in items:
        try:
            events = extract(item)
        except ValueError as exc:
            out.rejects.append(Reject(str(exc), item if isinstance(item, bytes) else orjson.dumps(item)))
            continue
        except orjson.JSONEncodeError as exc:  # pragma: no cover - items came from orjson
            out.rejects.append(Reject(f"unserialisable item: {exc}", repr(item).encode()))
            continue
        for ev in events:
            out.events.append(Event(event_key(ev), orjson.dumps(ev), _idempotency_key(ev)))
    if not out.events:
        reasons = sorted({r.reason for r in out.rejects})
        raise BodyError(400, "no usable event in the body: " + "; ".join(reasons[:5]))
    return out
