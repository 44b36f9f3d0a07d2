"""Strict validation of Datadog API bodies with datadog-api-client's own models.

Why not just build the model: the client's deserializer (`validate_and_convert_types`, what
`ApiClient.deserialize` calls) is lenient. A widget whose `type` matches no definition, or a request missing a
required field, silently becomes an "unparsed" object, and unknown keys (typos) are kept as extra properties.
Datadog would refuse such a body, or worse, store it half-understood. So the result is walked, and the first
unparsed node or unknown key is reported with its path, before any request is sent.
"""

from __future__ import annotations

from typing import Any

from datadog_api_client import Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    UnparsedObject,
    validate_and_convert_types,
)

_CONF = Configuration(host="http://127.0.0.1", discard_unknown_keys=False)


class InvalidBody(ValueError):
    """A body the models refuse; the message says where and why."""


def _where(path: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def _walk(value: Any, path: list) -> str | None:
    """The first reason something in a deserialised model is unparsed or unknown, else None."""
    if isinstance(value, UnparsedObject):
        return f"{_where(path)}: not a valid value here: {dict(value._data_store)!r:.200}"
    if isinstance(value, ModelSimple):
        if value._unparsed:
            allowed = ", ".join(sorted(map(str, value.allowed_values)))
            return f"{_where(path)}: {value.value!r} is not one of {allowed}"
        return None
    if isinstance(value, ModelComposed):
        if value._unparsed:
            raw = next((dict(i._data_store) for i in value._composed_instances if isinstance(i, UnparsedObject)), {})
            return _candidate_reason(type(value), raw, path)
        for inst in value._composed_instances:
            inner = _walk(inst, path)
            if inner:
                return inner
        return None
    if isinstance(value, ModelNormal):
        known = value.openapi_types
        for name, inner in value._data_store.items():
            if name not in known:
                return f"{_where([*path, name])}: unknown field of {type(value).__name__}"
            reason = _walk(inner, [*path, name])
            if reason:
                return reason
        return None
    if isinstance(value, list):
        for i, inner in enumerate(value):
            reason = _walk(inner, [*path, i])
            if reason:
                return reason
    if isinstance(value, dict):
        for k, inner in value.items():
            reason = _walk(inner, [*path, k])
            if reason:
                return reason
    return None


def _candidate_reason(composed: type, raw: dict, path: list) -> str:
    """Why `raw` matches none of a oneOf: the reason of the candidate whose `type` it names (a widget
    definition's type picks its schema), else a list of the types that would be accepted."""
    kinds = []
    for cand in composed._composed_schemas.get("oneOf", ()):
        types = getattr(cand, "openapi_types", {}).get("type", ())
        allowed = set().union(*(getattr(t, "allowed_values", set()) for t in types)) if types else set()
        kinds += sorted(allowed)
        if raw.get("type") in allowed:
            try:
                result = validate_and_convert_types(raw, (cand,), list(path), True, True, configuration=_CONF)
            except Exception as exc:  # the candidate's own refusal is the reason
                return f"{_where(path)}: {_clean(str(exc))}"
            return _walk(result, path) or f"{_where(path)}: not a valid {cand.__name__}"
    if "type" in raw and kinds:
        return f"{_where(path)}: type {raw['type']!r} is not one of {', '.join(sorted(set(kinds)))}"
    return f"{_where(path)}: matches no {composed.__name__}"


def validate(data: Any, model: type, what: str = "body") -> Any:
    """`data` (parsed JSON) as an instance of `model`, or InvalidBody naming `what` and the failing path."""
    if not isinstance(data, dict):
        raise InvalidBody(f"{what}: a JSON object is expected, not {type(data).__name__}")
    try:
        result = validate_and_convert_types(data, (model,), [], True, True, configuration=_CONF)
    except Exception as exc:  # the models raise several types (ApiTypeError, TypeError, ...): each is a refusal
        raise InvalidBody(f"{what}: {_clean(str(exc))}") from None
    reason = _walk(result, [])
    if reason:
        raise InvalidBody(f"{what}: {reason}")
    return result


def _clean(msg: str) -> str:
    if "required positional argument" in msg:
        return "missing required field " + msg.rsplit(":", 1)[-1].strip()
    return msg
