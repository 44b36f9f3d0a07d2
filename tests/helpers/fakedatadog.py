"""A fake Datadog intake: a real HTTP server (aiohttp.web) on 127.0.0.1 that behaves like Datadog's
metrics and logs intake, for the tests and benches of the Datadog sink.

Use it on the current event loop::

    async with FakeDatadog(api_key="test-key") as dd:
        ...  # point the product at dd.url (DD_URL), then look at dd.points(...), dd.logs, dd.requests

or in its own loop on a daemon thread (sync tests, benches)::

    with FakeDatadog.in_thread(api_key="test-key") as dd:
        ...

or from a shell: ``python -m tests.helpers.fakedatadog --port 8126 --api-key KEY`` (serves until Ctrl-C, then prints a
summary).

``dd.url`` (``http://127.0.0.1:PORT``) replaces *every* Datadog intake host: one port serves

- ``POST /api/v2/series``  metrics (answers 202 ``{"errors": []}``)
- ``POST /api/v2/logs``    logs (answers 202 ``{}``)
- ``GET  /api/v1/validate`` API key check (answers 200 ``{"valid": true}``)
- ``GET/POST /api/v1/dashboard``, ``GET/PUT /api/v1/dashboard/{id}``, ``GET/POST /api/v1/monitor``,
  ``GET/PUT /api/v1/monitor/{id}``: the management API ``els datadog install`` uses (needs DD-API-KEY and
  DD-APPLICATION-KEY, ``app_key=`` of the constructor; see ``_ManagementApi``); ``dd.dashboards``,
  ``dd.monitors`` show what is held

API (all readers are thread-safe and return copies)
--------------------------------------------------
- ``FakeDatadog(api_key="test-key", host="127.0.0.1", port=0, drop_out_of_window=False)``; ``async with``
  (current loop) or ``with FakeDatadog.in_thread(...)`` (own loop, daemon thread); or ``await dd.start()`` /
  ``await dd.stop()``, ``dd.start_in_thread()`` / ``dd.stop_thread()``. ``dd.url``, ``dd.port``, ``dd.api_key``.
- Metrics: ``dd.points(metric)`` -> [(timestamp, tags tuple, value)]; ``dd.series_value(metric, tags_subset,
  timestamp=None)``; ``dd.sum(metric, [tags], **tag_filters)``; ``dd.last(metric, [tags], **tag_filters)``;
  ``dd.stored_points(metric=None)`` (StoredPoint: tags, resources, type, interval, unit, writes,
  received_at);
  ``dd.metric_names()``, ``dd.metric_type(metric)``; counters ``points_received``, ``points_overwritten``,
  ``out_of_window_points``.
- Logs: ``dd.logs`` (every item as received, duplicates included); ``dd.find_logs({"error.kind": "X"},
  tags=[...], where=fn, **attrs)``; ``FakeDatadog.log_tags(item)``; ``truncated_logs``, ``old_logs``.
- Faults: ``dd.fail(status, count=None, seconds=None, headers=None, paths=None)`` -> Fault (``.hits``);
  ``dd.hang(seconds, count=None, paths=None, for_seconds=None)``; ``dd.heal()``.
- Accounting: ``dd.requests`` [(path, status, compressed_bytes, uncompressed_bytes, api_key_ok)],
  ``dd.request_details`` (RequestInfo: encoding, items, error, redacted headers, ...), ``dd.statuses(path)``,
  ``dd.request_count(path=None, ok_only=True)``, ``dd.request_counts``, ``dd.status_by_path``,
  ``dd.bytes_compressed`` / ``bytes_uncompressed`` / ``bytes_accepted`` (per path), ``dd.stats()``,
  ``dd.warnings``, ``dd.reset()`` (data, accounting and faults).
- Waiting: ``dd.wait_for(pred, timeout)`` (thread mode) / ``await dd.await_for(pred, timeout)`` (same loop).

Behaviour, as Datadog documents it
----------------------------------
- Auth: the ``DD-API-KEY`` header must equal the configured key (``api_key=None``: any non-empty key).
  Missing or wrong -> 403 ``{"errors": ["Forbidden"]}`` (Datadog answers 403 for an invalid key on these
  endpoints; its logs docs list 401 for a *missing* key, this fake answers 403 for both). The key value is
  never logged, printed or stored (``dd.request_details`` headers are redacted).
- ``Content-Encoding``: ``gzip``, ``deflate`` (zlib-wrapped, as datadog-api-client's ``zlib.compress``
  sends it, or raw deflate), ``identity``/absent, and ``zstd1``/``zstd`` only when the ``zstandard`` module
  is importable. Unknown encoding -> 415. Corrupt or truncated compressed body -> 400. Decompression is
  bounded (a zip bomb gets 413, not a full inflate).
- Limits (https://docs.datadoghq.com/api/latest/metrics/#submit-metrics and
  https://docs.datadoghq.com/api/latest/logs/#send-logs, also in the docstrings of
  ``MetricsApi.submit_metrics`` / ``LogsApi.submit_log`` of datadog-api-client):

  * series: "The maximum payload size is 500 kilobytes (512000 bytes). Compressed payloads must have a
    decompressed size of less than 5 megabytes (5242880 bytes)." -> 413 when the body as sent is over
    512,000 bytes or the decompressed body over 5,242,880 bytes.
  * logs: "Maximum content size per payload (uncompressed): 5MB; Maximum size for a single log: 1MB; Maximum
    array size if sending multiple logs in an array: 1000 entries." -> 413 when the decompressed body is
    over 5,242,880 bytes or holds more than 1,000 entries. "Any log exceeding 1MB is accepted and truncated
    by Datadog": an entry whose JSON is over 1,048,576 bytes is accepted, stored as received, counted in
    ``dd.truncated_logs`` and noted in ``dd.warnings``.
- Bodies are validated with datadog-api-client's own models: the series body as
  ``datadog_api_client.v2.model.metric_payload.MetricPayload``, the logs body (a JSON array; a single
  object is taken as one log, as Datadog does) as a list of
  ``datadog_api_client.v2.model.http_log_item.HTTPLogItem``. Entry point:
  ``datadog_api_client.model_utils.validate_and_convert_types(data, (Model,), path, True, True,
  configuration=Configuration(...))`` -- the same call ``ApiClient.deserialize`` makes. It is lenient: a
  wrong type deep inside does not raise, the item becomes an ``UnparsedObject`` (or a ``ModelSimple`` with
  ``_unparsed=True`` for an enum value out of range, e.g. ``type: 9``), so the result is walked and any
  unparsed node is an error. Invalid -> 400 ``{"errors": [reason]}``. Unknown extra keys are accepted, as
  the models (and Datadog) accept them.
- Metrics are stored as Datadog stores what the API sends: for the same (metric name, tag set,
  resources/host, timestamp) the LAST value received wins, nothing is aggregated. Datadog also drops points
  more than 1 hour old (unless Historical Metrics Ingestion is on) or more than 10 minutes in the future,
  and logs more than 18 hours old: the fake notes them in ``dd.warnings`` / ``dd.out_of_window_points`` and
  stores them anyway unless ``drop_out_of_window=True``. Tags and metric names Datadog would rewrite
  (lower case, characters outside ``[a-z0-9_:./-]``, not starting with a letter) are noted in
  ``dd.warnings`` too, so ``assert dd.warnings == []`` checks "what the user sees is what was sent".
- Failed requests (auth, limits, invalid bodies, scripted faults, clients that hung up) are recorded in
  the accounting but store nothing.

Findings about datadog-api-client 2.62 (for the sink)
------------------------------------------------------
Host override (DD_URL), for metrics AND logs::

    conf = Configuration(host=dd_url)        # or: conf = Configuration(); conf.host = dd_url

``Configuration.__init__`` sets ``server_index = None`` when ``host`` is given (the ``host`` setter does the
same). Each operation picks its host in ``_Endpoint._validate_and_get_host``:
``index = conf.server_operation_index.get(operation_id, conf.server_index)`` then
``conf.get_host_from_settings(index, variables=..., servers=endpoint_servers)``, and
``get_host_from_settings(None, ...)`` returns the base path, i.e. ``host``. ``submit_log`` is the operation
that normally lives elsewhere: its endpoint carries its own ``servers`` list
(``https://{subdomain}.{site}`` with subdomain ``http-intake.logs``), used only when the index is not None
-- so with ``host=`` both ``/api/v2/series`` and ``/api/v2/logs`` go to ``dd.url``. Do NOT set
``conf.server_operation_index["submit_log"]`` (that would bring the intake server list back); setting
``conf.server_variables["site"]`` is harmless then. Without ``host=`` (server_index 0): metrics go to
``https://api.{site}``, logs to ``https://http-intake.logs.{site}``, with site from
``conf.server_variables["site"]``; ``Configuration()`` also reads ``DD_SITE``, ``DD_API_KEY`` and
``DD_APP_KEY`` from the environment. ``http://`` hosts work (no TLS needed for the fake).

Request compression: ``Configuration(compress=True)`` is NOT it -- it only adds ``Accept-Encoding: gzip``
for responses. The request body is compressed by ``rest.py`` when the *operation's* ``Content-Encoding``
header parameter is set::

    MetricsApi(client).submit_metrics(body=payload, content_encoding=MetricContentEncoding.GZIP)
    LogsApi(client).submit_log(body=HTTPLog([...]), content_encoding=ContentEncoding.GZIP)

(``datadog_api_client.v2.model.metric_content_encoding.MetricContentEncoding``: deflate, zstd1, gzip;
``datadog_api_client.v2.model.content_encoding.ContentEncoding``: identity, gzip, deflate). Without it the
body goes uncompressed. The client's own retries: ``enable_retry=False`` is the default (sync client:
urllib3 ``ClientRetry`` honouring ``X-RateLimit-Reset`` when on; async: the same policy in
``AsyncRESTClientObject._retry``). ``request_timeout`` (seconds, or (connect, read)) bounds one request.

Async client: ``datadog_api_client.AsyncApiClient`` is NOT on aiohttp: it is built on **aiosonic**
(``rest.AsyncRESTClientObject``), which is only installed by the ``datadog-api-client[async]`` extra; without
it ``AsyncApiClient(conf)`` raises ``ModuleNotFoundError: No module named 'aiosonic'``. Its transport errors
are ``aiosonic.exceptions.*`` (e.g. ``RequestTimeout``, ``ReadTimeout``, ``ConnectTimeout``, all
``AiosonicError``) and ``OSError``/``ConnectionRefusedError`` -- not ``aiohttp.ClientError``.
``AsyncApiClient.close()`` is a plain (non-async) method; ``async with AsyncApiClient(conf) as c:`` closes
the aiosonic client. Non-2xx answers raise ``ApiException`` (``ForbiddenException`` for 403,
``ServiceException`` for 5xx) with ``.status``, ``.headers`` (a plain dict: look headers up
case-insensitively) and ``.body`` (already ``json.loads``-ed when it is JSON, so a dict, else str).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import logging
import re
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from datadog_api_client import Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    UnparsedObject,
    validate_and_convert_types,
)
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_payload import MetricPayload

try:  # optional, as in datadog-api-client (its "zstandard" extra)
    import zstandard as _zstd  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None

log = logging.getLogger("fakedatadog")

SERIES_PATH = "/api/v2/series"
LOGS_PATH = "/api/v2/logs"
VALIDATE_PATH = "/api/v1/validate"
_PATH_ALIASES = {"series": SERIES_PATH, "metrics": SERIES_PATH, "logs": LOGS_PATH, "validate": VALIDATE_PATH}
DASHBOARD_PATH = "/api/v1/dashboard"
MONITOR_PATH = "/api/v1/monitor"
MANAGE_PATHS = (DASHBOARD_PATH, MONITOR_PATH)  # the management API: DD-API-KEY and DD-APPLICATION-KEY

# Datadog's documented limits (see the module docstring for the sources).
SERIES_MAX_COMPRESSED = 512_000  # "The maximum payload size is 500 kilobytes (512000 bytes)"
SERIES_MAX_UNCOMPRESSED = 5_242_880  # "decompressed size of less than 5 megabytes (5242880 bytes)"
LOGS_MAX_UNCOMPRESSED = 5_242_880  # "Maximum content size per payload (uncompressed): 5MB"
LOGS_MAX_ENTRIES = 1_000  # "Maximum array size if sending multiple logs in an array: 1000 entries"
LOG_MAX_ENTRY_BYTES = 1_048_576  # "Maximum size for a single log: 1MB" (larger ones are truncated, not refused)
# Datadog drops metric points older than 1 hour / more than 10 minutes ahead, and logs older than 18 hours.
METRIC_MAX_AGE_S = 3600
METRIC_MAX_FUTURE_S = 600
LOG_MAX_AGE_S = 18 * 3600

_READ_LIMIT = 64 * 1024 * 1024  # aiohttp's own cap on a body; our 413s are decided below it
_INTAKE_TYPES = {0: "unspecified", 1: "count", 2: "rate", 3: "gauge"}
_REDACTED_HEADERS = {"dd-api-key", "dd-application-key", "authorization"}
_TAG_OK = re.compile(r"^[^\W\d_][\w:./-]*$")  # starts with a letter; letters, digits, _ : . / - after
_METRIC_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class RequestRecord(NamedTuple):
    """One request as ``dd.requests`` lists it."""

    path: str
    status: int
    compressed_bytes: int
    uncompressed_bytes: int | None  # None when the body could not be decompressed
    api_key_ok: bool


@dataclass
class RequestInfo:
    """The longer record of one request (``dd.request_details``)."""

    method: str
    path: str
    status: int
    content_encoding: str
    compressed_bytes: int
    uncompressed_bytes: int | None
    api_key_ok: bool
    items: int = 0  # series or log entries in the body (when it parsed)
    error: str | None = None
    received_at: float = 0.0  # time.time()
    duration_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # API/app keys redacted
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class StoredPoint:
    """The value Datadog keeps for one (metric, tags, resources, timestamp)."""

    metric: str
    timestamp: int
    tags: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]  # ((type, name), ...), e.g. (("host", "web-1"),)
    value: float
    type: int  # intake type: 0 unspecified, 1 count, 2 rate, 3 gauge
    interval: int | None
    unit: str | None
    seq: int  # arrival order of the write that set this value
    writes: int = 1  # how many times this point was received (last one wins)
    received_at: float = 0.0  # time.time() when the write that set this value arrived (freshness benches)


@dataclass
class Fault:
    """A scripted failure: ``status`` for the next ``count`` requests and/or ``seconds``; see ``fail``."""

    status: int
    count: int | None = None
    until: float | None = None  # time.monotonic() deadline
    headers: dict[str, str] = field(default_factory=dict)
    paths: frozenset[str] | None = None
    hits: int = 0

    def active(self, now: float) -> bool:
        return (self.count is None or self.count > 0) and (self.until is None or now < self.until)

    def matches(self, path: str) -> bool:
        return self.paths is None or path in self.paths


@dataclass
class Hang:
    seconds: float
    count: int | None = None
    until: float | None = None
    paths: frozenset[str] | None = None
    hits: int = 0


class _Reject(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _client_gone(request: web.Request) -> bool:
    """The client closed its connection (gave up on a request the fake is hanging)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _norm_paths(paths: str | Iterable[str] | None) -> frozenset[str] | None:
    if paths is None:
        return None
    if isinstance(paths, str):
        paths = [paths]
    return frozenset(_PATH_ALIASES.get(p, p) for p in paths)


def _tag_str(key: str, value: Any) -> str:
    if value is True or value is False:
        value = "true" if value else "false"
    return f"{key}:{value}"


def _wanted_tags(tags: dict | Iterable[str] | None, kw: dict[str, Any]) -> set[str]:
    want: set[str] = set()
    if isinstance(tags, dict):
        want.update(_tag_str(k, v) for k, v in tags.items())
    elif tags is not None:
        if isinstance(tags, str):
            tags = [tags]
        want.update(tags)
    want.update(_tag_str(k, v) for k, v in kw.items())
    return want


def datadog_tag(tag: str) -> str:
    """Approximately how Datadog normalises a tag (https://docs.datadoghq.com/getting_started/tagging/):
    lower case, must start with a letter, other characters than letters, digits, ``_ - : . /`` become
    ``_``, at most 200 characters."""
    t = tag.lower()
    t = "".join(c if (c.isalnum() or c in "_-:./") else "_" for c in t)
    t = re.sub(r"__+", "_", t)
    while t and not t[0].isalpha():
        t = t[1:]
    return t[:200].rstrip("_") if len(t) > 200 else t


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Decompress zlib/gzip/raw-deflate data, refusing (413) beyond ``limit`` bytes of output."""
    out = bytearray()
    d = zlib.decompressobj(wbits)
    buf = data
    while True:
        try:
            out += d.decompress(buf, limit + 1 - len(out))
        except zlib.error as exc:
            raise _Reject(400, f"corrupt compressed body: {exc}") from None
        if len(out) > limit:
            raise _Reject(413, f"Payload too large: decompressed body over {limit} bytes")
        if d.eof:
            rest = d.unused_data
            if wbits >= 16 + 8 and rest.strip(b"\0"):  # concatenated gzip members
                d = zlib.decompressobj(wbits)
                buf = rest
                continue
            return bytes(out)
        buf = d.unconsumed_tail
        if not buf:
            raise _Reject(400, "corrupt compressed body: truncated stream")


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise _Reject(413, f"Payload too large: body over {limit} bytes")
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if enc == "deflate":
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except _Reject as exc:
            if exc.status != 400:
                raise
            return _inflate(body, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send it
    if enc in ("zstd", "zstd1") and _zstd is not None:
        try:
            with _zstd.ZstdDecompressor().stream_reader(body) as reader:
                out = reader.read(limit + 1)
        except _zstd.ZstdError as exc:
            raise _Reject(400, f"corrupt compressed body: {exc}") from None
        if len(out) > limit:
            raise _Reject(413, f"Payload too large: decompressed body over {limit} bytes")
        return out
    raise _Reject(415, f"Unsupported Content-Encoding: {encoding}")


_VALIDATION_CONF = Configuration(host="http://127.0.0.1", discard_unknown_keys=False)


def _item_types(expected: tuple) -> tuple | None:
    for t in expected:
        if isinstance(t, list):
            return tuple(t)
    return None


def _revalidate(raw: Any, expected: tuple, path: list) -> str:
    """The reason an UnparsedObject failed: validate its raw data again, against its expected type alone."""
    try:
        result = validate_and_convert_types(raw, expected, list(path), True, True, configuration=_VALIDATION_CONF)
    except Exception as exc:  # any failure of the models is the reason
        msg = str(exc)
        if "argument after ** must be a mapping" in msg:
            return f"invalid value at {_fmt_path(path)}: an item has the wrong type"
        if "missing" in msg and "required positional argument" in msg:
            return f"invalid value at {_fmt_path(path)}: {msg.split('.__init__() ', 1)[-1]}"
        return msg
    inner = _find_unparsed(result, expected, path)
    return inner or f"invalid value at {_fmt_path(path)}"


def _fmt_path(path: list) -> str:
    return "".join(f"[{p!r}]" for p in path) or "body"


def _find_unparsed(value: Any, expected: tuple, path: list) -> str | None:
    """Walk a deserialised model and return the first reason something did not parse, else None."""
    if isinstance(value, UnparsedObject):
        return _revalidate(dict(value._data_store), expected, path)
    if isinstance(value, ModelSimple):
        if value._unparsed:
            allowed = sorted(value.allowed_values, key=str)
            return f"invalid value {value.value!r} at {_fmt_path(path)}: must be one of {allowed}"
        return None
    if isinstance(value, ModelComposed):
        if value._unparsed:
            return f"invalid value at {_fmt_path(path)}: matches no {type(value).__name__}"
        for inner in value._composed_instances:
            reason = _find_unparsed(inner, (type(inner),), path)
            if reason:
                return reason
        return None
    if isinstance(value, ModelNormal):
        for name, inner in value._data_store.items():
            types = value.openapi_types.get(name) or value.additional_properties_type or ()
            reason = _find_unparsed(inner, types, [*path, name])
            if reason:
                return reason
        return None
    if isinstance(value, list):
        item_types = _item_types(expected)
        if item_types is None:
            return None
        for i, inner in enumerate(value):
            reason = _find_unparsed(inner, item_types, [*path, i])
            if reason:
                return reason
    return None


def validate_model(data: Any, expected: tuple, path: str = "body") -> str | None:
    """Validate JSON data with datadog-api-client's models; None when valid, else the reason."""
    try:
        result = validate_and_convert_types(data, expected, [path], True, True, configuration=_VALIDATION_CONF)
    except Exception as exc:
        msg = str(exc)
        if "required positional argument" in msg:
            return f"invalid {path}: {msg}"
        if "argument after ** must be a mapping" in msg:
            return f"invalid {path}: an item has the wrong type"
        return msg
    return _find_unparsed(result, expected, [path])


def _log_time(item: dict) -> float | None:
    """The timestamp Datadog would read from a log's reserved date attributes (seconds), when it can."""
    for key in ("timestamp", "date", "@timestamp", "_timestamp"):
        v = item.get(key)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            return v / 1000.0 if v > 1e11 else float(v)
        if isinstance(v, str):
            try:
                d = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                continue
            if d.tzinfo is None:
                d = d.replace(tzinfo=_dt.UTC)
            return d.timestamp()
    return None


def _get_path(item: dict, dotted: str) -> Any:
    if dotted in item:
        return item[dotted]
    cur: Any = item
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


class FakeDatadog:
    """A fake Datadog intake (metrics, logs, key validation) on 127.0.0.1:<ephemeral port>.

    Parameters:
        api_key: the accepted ``DD-API-KEY`` (a string or several); None accepts any non-empty key.
        host, port: where to listen (port 0: an ephemeral port; see ``dd.url``).
        drop_out_of_window: drop (do not store) metric points Datadog would drop for their age (over 1 h
            old, over 10 min ahead) and logs over 18 h old, as Datadog does without Historical Metrics
            Ingestion. Off by default: they are stored and noted in ``dd.warnings``.
    """

    def __init__(self, api_key: str | Iterable[str] | None = "test-key", *, host: str = "127.0.0.1",
                 port: int = 0, drop_out_of_window: bool = False, app_key: str | None = "test-app-key"):
        self.api_key = api_key if isinstance(api_key, str) else None  # for DD_API_KEY in tests; never logged
        self.app_key = app_key  # DD-APPLICATION-KEY the management API (dashboards, monitors) requires
        if isinstance(api_key, str):
            self._keys: frozenset[str] | None = frozenset([api_key])
        else:
            self._keys = None if api_key is None else frozenset(api_key)
        self.host = host
        self.port = port
        self.drop_out_of_window = drop_out_of_window
        self._lock = threading.RLock()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._faults: list[Fault] = []
        self._hangs: list[Hang] = []
        self._heal_gen = 0
        self._clear()
        self._manage = _ManagementApi(self)

    # ------------------------------------------------------------------ state
    def _clear(self) -> None:
        self._points: dict[tuple, StoredPoint] = {}  # (metric, tags, resources, ts) -> point
        self._logs: list[dict] = []
        self._requests: list[RequestRecord] = []
        self._details: list[RequestInfo] = []
        self._warnings: list[str] = []
        self._seq = 0
        self.points_received: Counter[str] = Counter()  # metric -> points received (overwrites included)
        self.points_overwritten: Counter[str] = Counter()  # metric -> points that replaced an earlier value
        self.out_of_window_points: list[tuple[str, int, tuple[str, ...]]] = []
        self.old_logs = 0
        self.truncated_logs = 0
        self.request_counts: Counter[str] = Counter()  # path -> requests
        self.status_by_path: dict[str, Counter[int]] = defaultdict(Counter)
        self.bytes_compressed: Counter[str] = Counter()  # path -> bytes as sent (all requests)
        self.bytes_uncompressed: Counter[str] = Counter()  # path -> decompressed bytes (when known)
        self.bytes_accepted: Counter[str] = Counter()  # path -> decompressed bytes of 2xx requests
        self._dashboards: dict[str, dict] = {}  # id -> dashboard as stored (management API)
        self._monitors: dict[int, dict] = {}  # id -> monitor as stored

    def reset(self) -> None:
        """Forget everything received and all accounting, and clear faults and hangs (a fresh fake)."""
        with self._lock:
            self._clear()
            self._heal_gen += 1
            self._faults.clear()
            self._hangs.clear()

    # ------------------------------------------------------------------ faults
    def fail(self, status: int, count: int | None = None, seconds: float | None = None,
             headers: dict[str, str] | None = None, paths: str | Iterable[str] | None = None) -> Fault:
        """Answer ``status`` to the next ``count`` requests and/or during ``seconds`` (neither: until
        ``heal()``), optionally only for ``paths`` (full paths or "series", "logs", "validate").

        The answer is JSON ``{"errors": [...]}`` with ``headers`` added. A 429 without ``headers`` carries
        Datadog's rate-limit headers with ``X-RateLimit-Reset: 1`` (seconds). Faults are checked before the
        key and the body; several faults queue up, the oldest active matching one answers. Nothing of a
        failed request is stored. Returns the Fault (its ``hits`` counts the requests it answered).
        """
        if headers is None and status == 429:
            headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Period": "10", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": "1", "X-RateLimit-Name": "fake_intake"}
        fault = Fault(status=int(status), count=count,
                      until=None if seconds is None else time.monotonic() + seconds,
                      headers=dict(headers or {}), paths=_norm_paths(paths))
        with self._lock:
            self._faults.append(fault)
        return fault

    def hang(self, seconds: float, count: int | None = None, paths: str | Iterable[str] | None = None,
             for_seconds: float | None = None) -> Hang:
        """Delay the answer to requests by ``seconds`` (a slow Datadog), for the next ``count`` requests,
        during ``for_seconds``, or until ``heal()``. A client that gave up meanwhile gets nothing stored
        (recorded with status 499); one that waited gets the normal answer. ``heal()`` ends waits early."""
        h = Hang(seconds=seconds, count=count, paths=_norm_paths(paths),
                 until=None if for_seconds is None else time.monotonic() + for_seconds)
        with self._lock:
            self._hangs.append(h)
        return h

    def heal(self) -> None:
        """Clear every scripted fault and hang (and wake requests that are hanging)."""
        with self._lock:
            self._heal_gen += 1
            self._faults.clear()
            self._hangs.clear()

    def _take_fault(self, path: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            for f in self._faults:
                if f.matches(path):
                    f.hits += 1
                    if f.count is not None:
                        f.count -= 1
                    return f
        return None

    def _take_hang(self, path: str) -> Hang | None:
        now = time.monotonic()
        with self._lock:
            self._hangs = [h for h in self._hangs
                           if (h.count is None or h.count > 0) and (h.until is None or now < h.until)]
            for h in self._hangs:
                if h.paths is None or path in h.paths:
                    h.hits += 1
                    if h.count is not None:
                        h.count -= 1
                    return h
        return None

    async def _sleep_hang(self, h: Hang, request: web.Request) -> None:
        """Until the hang is over, healed, or the client is gone: a client that gave up is seen as soon as its
        connection closes, not only when heal() wakes the handler (which a loaded machine may do first)."""
        deadline = time.monotonic() + h.seconds
        gen = self._heal_gen
        while not self._closing and gen == self._heal_gen:  # heal()/reset() end the wait
            left = deadline - time.monotonic()
            if left <= 0 or _client_gone(request):
                return
            await asyncio.sleep(min(left, 0.02))

    # ------------------------------------------------------------------ server
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=_READ_LIMIT)
        app.router.add_post(SERIES_PATH, self._handle)
        app.router.add_post(LOGS_PATH, self._handle)
        app.router.add_get(VALIDATE_PATH, self._handle)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (DD_URL / ``Configuration(host=dd.url)``)."""
        if not self.port:
            raise RuntimeError("FakeDatadog is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeDatadog:
        """Start serving on the running loop."""
        self._closing = False
        # auto_decompress=False: aiohttp would otherwise inflate gzip/deflate request bodies itself, hiding
        # the bytes as sent (the 512,000-byte series limit is on those) and breaking our own decoding.
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.debug("fake Datadog serving on %s", self.url)
        return self

    async def stop(self) -> None:
        self._closing = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDatadog:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @classmethod
    def in_thread(cls, api_key: str | Iterable[str] | None = "test-key", **kwargs) -> FakeDatadog:
        """A FakeDatadog to use as ``with FakeDatadog.in_thread(...) as dd:`` (own loop, daemon thread)."""
        return cls(api_key, **kwargs)

    def start_in_thread(self, timeout: float = 10.0) -> FakeDatadog:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the starting thread
                error.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-datadog", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("fake Datadog did not start")
        if error:
            raise error[0]
        return self

    def stop_thread(self, timeout: float = 10.0) -> None:
        loop, thread = self._thread_loop, self._thread
        if loop is None or thread is None:
            return
        self._closing = True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = self._thread_loop = None

    def __enter__(self) -> FakeDatadog:
        return self.start_in_thread()

    def __exit__(self, *exc) -> None:
        self.stop_thread()

    # ------------------------------------------------------------------ handler
    def _key_ok(self, key: str | None) -> bool:
        if not key:
            return False
        return True if self._keys is None else key in self._keys

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        path = request.path
        encoding = request.headers.get("Content-Encoding", "")
        key_ok = self._key_ok(request.headers.get("DD-API-KEY"))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer(request, 413, {"errors": ["Payload too large"]}, started, encoding, 0, None,
                                key_ok, error="body over the server's read limit")
        hang = self._take_hang(path)
        if hang is not None:
            await self._sleep_hang(hang, request)
            if _client_gone(request):
                return self._answer(request, 499, {"errors": ["client closed request"]}, started, encoding,
                                    len(body), None, key_ok, error="client gave up while the fake hung")
        fault = self._take_fault(path)
        if fault is not None:
            reason = web.Response(status=fault.status).reason or "Error"
            uncompressed = self._size_quietly(body, encoding)
            return self._answer(request, fault.status, {"errors": [reason]}, started, encoding, len(body),
                                uncompressed, key_ok, headers=fault.headers, error=f"scripted {fault.status}")
        if path.startswith(MANAGE_PATHS):
            return self._manage.handle(request, body, started, encoding, key_ok)
        known = {(SERIES_PATH, "POST"), (LOGS_PATH, "POST"), (VALIDATE_PATH, "GET")}
        if (path, request.method) not in known:
            status = 405 if path in (SERIES_PATH, LOGS_PATH, VALIDATE_PATH) else 404
            return self._answer(request, status, {"errors": ["Method not allowed" if status == 405 else "Not found"]},
                                started, encoding, len(body), None, key_ok, error="no such endpoint")
        if not key_ok:
            return self._answer(request, 403, {"errors": ["Forbidden"]}, started, encoding, len(body),
                                self._size_quietly(body, encoding), key_ok, error="invalid or missing API key")
        if path == VALIDATE_PATH:
            return self._answer(request, 200, {"valid": True}, started, encoding, len(body), len(body), key_ok)
        uncompressed: int | None = None
        try:
            if path == SERIES_PATH:
                if len(body) > SERIES_MAX_COMPRESSED:
                    raise _Reject(413, f"Payload too large: {len(body)} bytes over {SERIES_MAX_COMPRESSED}")
                raw = _decompress(body, encoding, SERIES_MAX_UNCOMPRESSED)
            else:
                raw = _decompress(body, encoding, LOGS_MAX_UNCOMPRESSED)
            uncompressed = len(raw)
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _Reject(400, f"invalid JSON: {exc}") from None
            if path == SERIES_PATH:
                items = self._accept_series(data, len(raw))
                answer: dict = {"errors": []}
            else:
                items = self._accept_logs(data, len(raw), request.query.get("ddtags"))
                answer = {}
        except _Reject as rej:
            if uncompressed is None and rej.status != 413:
                uncompressed = self._size_quietly(body, encoding)
            return self._answer(request, rej.status, {"errors": [rej.reason]}, started, encoding, len(body),
                                uncompressed, key_ok, error=rej.reason)
        except Exception as exc:  # a bug of the fake: answer (and record) 500 rather than crash the handler
            log.exception("fake Datadog failed on %s", path)
            return self._answer(request, 500, {"errors": [f"fake Datadog error: {exc!r}"]}, started, encoding,
                                len(body), uncompressed, key_ok, error=repr(exc))
        return self._answer(request, 202, answer, started, encoding, len(body), uncompressed, key_ok, items=items)

    @staticmethod
    def _size_quietly(body: bytes, encoding: str) -> int | None:
        try:
            return len(_decompress(body, encoding, _READ_LIMIT))
        except _Reject:
            return None

    def _answer(self, request: web.Request, status: int, payload: Any, started: float, encoding: str,
                compressed: int, uncompressed: int | None, key_ok: bool, *, headers: dict | None = None,
                items: int = 0, error: str | None = None) -> web.Response:
        path = request.path
        info = RequestInfo(
            method=request.method, path=path, status=status, content_encoding=encoding or "identity",
            compressed_bytes=compressed, uncompressed_bytes=uncompressed, api_key_ok=key_ok, items=items,
            error=error, received_at=time.time(), duration_s=time.monotonic() - started,
            headers={k: ("<redacted>" if k.lower() in _REDACTED_HEADERS else v) for k, v in request.headers.items()},
            query={k: v for k, v in request.query.items() if k.lower() not in ("api_key", "dd-api-key")},
        )
        with self._lock:
            self._requests.append(RequestRecord(path, status, compressed, uncompressed, key_ok))
            self._details.append(info)
            self.request_counts[path] += 1
            self.status_by_path[path][status] += 1
            self.bytes_compressed[path] += compressed
            if uncompressed is not None:
                self.bytes_uncompressed[path] += uncompressed
                if 200 <= status < 300:
                    self.bytes_accepted[path] += uncompressed
        log.debug("%s %s -> %s (%s bytes, %s)", request.method, path, status, compressed, error or "ok")
        return web.json_response(payload, status=status, headers=headers,
                                 dumps=lambda o: orjson.dumps(o).decode())

    def _accept_series(self, data: Any, size: int) -> int:
        if not isinstance(data, dict):
            raise _Reject(400, "invalid body: a JSON object with a 'series' array is expected")
        reason = validate_model(data, (MetricPayload,))
        if reason:
            raise _Reject(400, reason)
        # the models let JSON null through for any field (their type check skips None): Datadog would not
        for i, s in enumerate(data["series"]):
            if not isinstance(s.get("metric"), str) or not s["metric"] or not isinstance(s.get("points"), list):
                raise _Reject(400, f"invalid series [{i}]: 'metric' and 'points' are required")
            for j, p in enumerate(s["points"]):
                ts, v = p.get("timestamp"), p.get("value")
                if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(v, (int, float)) \
                        or isinstance(v, bool):
                    raise _Reject(400, f"invalid point [{i}][{j}]: an integer 'timestamp' and a number 'value'")
        now = time.time()
        with self._lock:
            for s in data["series"]:
                metric = s["metric"]
                tags = tuple(sorted(set(s.get("tags") or ())))
                resources = tuple(sorted({(r.get("type", ""), r.get("name", "")) for r in s.get("resources") or ()}))
                mtype = int(s.get("type", 0) or 0)
                if not _METRIC_OK.match(metric) or len(metric) > 200:
                    self._warn(f"metric name {metric!r} would be rewritten by Datadog")
                for t in tags:
                    if datadog_tag(t) != t or not _TAG_OK.match(t):
                        self._warn(f"tag {t!r} of {metric} would be stored by Datadog as {datadog_tag(t)!r}")
                for p in s["points"]:
                    ts = int(p["timestamp"])
                    self.points_received[metric] += 1
                    if ts < now - METRIC_MAX_AGE_S or ts > now + METRIC_MAX_FUTURE_S:
                        self.out_of_window_points.append((metric, ts, tags))
                        self._warn(f"point {metric}@{ts} is outside Datadog's window (-1h/+10min)")
                        if self.drop_out_of_window:
                            continue
                    self._seq += 1
                    key = (metric, tags, resources, ts)
                    old = self._points.get(key)
                    if old is not None:
                        self.points_overwritten[metric] += 1
                    self._points[key] = StoredPoint(
                        metric=metric, timestamp=ts, tags=tags, resources=resources, value=float(p["value"]),
                        type=mtype, interval=s.get("interval"), unit=s.get("unit"), seq=self._seq,
                        writes=(old.writes + 1) if old else 1, received_at=now)
        return len(data["series"])

    def _accept_logs(self, data: Any, size: int, query_tags: str | None) -> int:
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise _Reject(400, "invalid body: a JSON array of log objects is expected")
        if len(data) > LOGS_MAX_ENTRIES:
            raise _Reject(413, f"Payload too large: {len(data)} entries over {LOGS_MAX_ENTRIES}")
        reason = validate_model(data, ([HTTPLogItem],))
        if reason:
            raise _Reject(400, reason)
        now = time.time()
        with self._lock:
            for item in data:
                if query_tags:
                    item["ddtags"] = ",".join(t for t in (item.get("ddtags"), query_tags) if t)
                if len(orjson.dumps(item)) > LOG_MAX_ENTRY_BYTES:
                    self.truncated_logs += 1
                    self._warn(f"a log of {len(orjson.dumps(item))} bytes would be truncated to 1 MB by Datadog")
                at = _log_time(item)
                if at is not None and at < now - LOG_MAX_AGE_S:
                    self.old_logs += 1
                    self._warn("a log older than 18 hours would be dropped by Datadog")
                    if self.drop_out_of_window:
                        continue
                self._logs.append(item)
        return len(data)

    def _warn(self, msg: str) -> None:
        if len(self._warnings) < 10_000:
            self._warnings.append(msg)

    # ------------------------------------------------------------------ reading: requests
    @property
    def requests(self) -> list[RequestRecord]:
        """Every request: (path, status, compressed_bytes, uncompressed_bytes, api_key_ok)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_details(self) -> list[RequestInfo]:
        with self._lock:
            return list(self._details)

    @property
    def warnings(self) -> list[str]:
        """What Datadog would have altered or dropped silently (tags, names, ages, truncation)."""
        with self._lock:
            return list(self._warnings)

    def statuses(self, path: str | None = None) -> list[int]:
        """Statuses answered, in order (for one path, full or alias, if given)."""
        p = _PATH_ALIASES.get(path, path) if path else None
        with self._lock:
            return [r.status for r in self._requests if p is None or r.path == p]

    def request_count(self, path: str | None = None, ok_only: bool = True) -> int:
        """Requests (to ``path``, full or alias, if given); by default only those answered 2xx."""
        p = _PATH_ALIASES.get(path, path) if path else None
        with self._lock:
            return sum(1 for r in self._requests
                       if (p is None or r.path == p) and (not ok_only or 200 <= r.status < 300))

    def stats(self) -> dict[str, Any]:
        """A JSON-able summary (the CLI prints it)."""
        with self._lock:
            return {
                "requests": dict(self.request_counts),
                "statuses": {p: dict(c) for p, c in self.status_by_path.items()},
                "bytes_compressed": dict(self.bytes_compressed),
                "bytes_uncompressed": dict(self.bytes_uncompressed),
                "bytes_accepted": dict(self.bytes_accepted),
                "metrics": len({k[0] for k in self._points}),
                "series": len({k[:3] for k in self._points}),
                "points_stored": len(self._points),
                "points_received": sum(self.points_received.values()),
                "points_overwritten": sum(self.points_overwritten.values()),
                "out_of_window_points": len(self.out_of_window_points),
                "logs": len(self._logs),
                "truncated_logs": self.truncated_logs,
                "old_logs": self.old_logs,
                "warnings": len(self._warnings),
            }

    # ------------------------------------------------------------------ reading: metrics
    def metric_names(self) -> list[str]:
        with self._lock:
            return sorted({k[0] for k in self._points})

    def stored_points(self, metric: str | None = None) -> list[StoredPoint]:
        """Every stored point (the last value of each (metric, tags, resources, timestamp)), by timestamp."""
        with self._lock:
            pts = [p for p in self._points.values() if metric is None or p.metric == metric]
        return sorted(pts, key=lambda p: (p.metric, p.timestamp, p.tags, p.resources))

    def points(self, metric: str) -> list[tuple[int, tuple[str, ...], float]]:
        """[(timestamp, tags, value)] of a metric, the last value received for each series and timestamp."""
        return [(p.timestamp, p.tags, p.value) for p in self.stored_points(metric)]

    def _matching(self, metric: str, tags: dict | Iterable[str] | None, kw: dict[str, Any],
                  timestamp: int | None = None) -> list[StoredPoint]:
        want = _wanted_tags(tags, kw)
        out = []
        for p in self.stored_points(metric):
            if timestamp is not None and p.timestamp != timestamp:
                continue
            have = set(p.tags) | {f"{t}:{n}" for t, n in p.resources}
            if want <= have:
                out.append(p)
        return out

    def series_value(self, metric: str, tags_subset: dict | Iterable[str] | None = None,
                     timestamp: int | None = None) -> float | None:
        """The value Datadog holds for the one series of ``metric`` whose tags include ``tags_subset``
        ({"flow_name": "x"} or ["flow_name:x"]), at ``timestamp`` (None: its latest timestamp).
        None when nothing matches; ValueError when several series match (make the subset narrower)."""
        pts = self._matching(metric, tags_subset, {}, timestamp)
        if not pts:
            return None
        keys = {(p.tags, p.resources) for p in pts}
        if len(keys) > 1:
            raise ValueError(f"{len(keys)} series of {metric} match {tags_subset!r}: {sorted(keys)[:5]}")
        return max(pts, key=lambda p: p.timestamp).value

    def sum(self, metric: str, tags: dict | Iterable[str] | None = None, /, **tag_filters: Any) -> float:
        """Sum of the stored (last) values of every matching series and timestamp. Filters: a dict or list
        of tags and/or keywords (``flow_name="x"``, ``fatal=True`` -> ``fatal:true``)."""
        return sum(p.value for p in self._matching(metric, tags, tag_filters))

    def last(self, metric: str, tags: dict | Iterable[str] | None = None, /, **tag_filters: Any) -> float | None:
        """The value at the latest timestamp among matching points (ties: the most recently received)."""
        pts = self._matching(metric, tags, tag_filters)
        if not pts:
            return None
        return max(pts, key=lambda p: (p.timestamp, p.seq)).value

    def metric_type(self, metric: str) -> str | None:
        """Intake type of the last point received for ``metric``: count, rate, gauge or unspecified."""
        pts = self.stored_points(metric)
        if not pts:
            return None
        return _INTAKE_TYPES.get(max(pts, key=lambda p: p.seq).type, "unspecified")

    # ------------------------------------------------------------------ reading: logs
    @property
    def logs(self) -> list[dict]:
        """Every log item received (as received, duplicates included), in arrival order."""
        with self._lock:
            return list(self._logs)

    @staticmethod
    def log_tags(item: dict) -> list[str]:
        return [t.strip() for t in str(item.get("ddtags") or "").split(",") if t.strip()]

    def find_logs(self, match: dict | None = None, /, *, tags: Iterable[str] | None = None,
                  where: Callable[[dict], bool] | None = None, **attrs: Any) -> list[dict]:
        """Logs whose attributes equal ``match`` / ``attrs`` (dotted keys reach nested attributes:
        ``{"error.kind": "X"}``), carrying every tag of ``tags`` in ``ddtags``, and passing ``where``."""
        want = dict(match or {}) | attrs
        need = set(tags or ())
        out = []
        for item in self.logs:
            if any(_get_path(item, k) != v for k, v in want.items()):
                continue
            if need and not need <= set(self.log_tags(item)):
                continue
            if where is not None and not where(item):
                continue
            out.append(item)
        return out

    # ------------------------------------------------------------------ reading: dashboards and monitors
    @property
    def dashboards(self) -> list[dict]:
        """Every dashboard held (as Datadog would return it: the body plus id, url, widget ids, times)."""
        with self._lock:
            return json.loads(json.dumps(list(self._dashboards.values())))

    @property
    def monitors(self) -> list[dict]:
        """Every monitor held, by id."""
        with self._lock:
            return json.loads(json.dumps([self._monitors[k] for k in sorted(self._monitors)]))

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[FakeDatadog], Any], timeout: float = 10.0,
                 interval: float = 0.02) -> Any:
        """Poll ``predicate(dd)`` until truthy (returns it) or raise TimeoutError. For thread mode; in an
        asyncio test with the fake on the same loop use ``await dd.await_for(...)``."""
        deadline = time.monotonic() + timeout
        while not (result := self._met(predicate, deadline, timeout)):
            time.sleep(interval)
        return result

    async def await_for(self, predicate: Callable[[FakeDatadog], Any], timeout: float = 10.0,
                        interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := self._met(predicate, deadline, timeout)):
            await asyncio.sleep(interval)
        return result

    def _met(self, predicate: Callable[[FakeDatadog], Any], deadline: float, timeout: float) -> Any:
        """predicate(dd), or TimeoutError once the deadline passed without it."""
        result = predicate(self)
        if not result and time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met in {timeout}s; fake Datadog saw {self.stats()}")
        return result


# ---------------------------------------------------------------------- management API
class _ManagementApi:
    """Dashboards and monitors, as `els datadog install` uses them (Datadog API v1):
    ``GET/POST /api/v1/dashboard`` (list with count/start; create), ``GET/PUT /api/v1/dashboard/{id}``,
    ``GET/POST /api/v1/monitor`` (list with monitor_tags (all must match), name, page/page_size; create),
    ``GET/PUT /api/v1/monitor/{id}``. Both DD-API-KEY and DD-APPLICATION-KEY are required (403 otherwise, as
    Datadog answers). Bodies are validated with the client's models (Dashboard, Monitor, MonitorUpdateRequest):
    400 ``{"errors": [reason]}``. Stored objects get what Datadog adds: ids (widgets too), url, times."""

    def __init__(self, dd: FakeDatadog):
        self.dd = dd
        self._next = 0

    def _id(self) -> int:
        self._next += 1
        return self._next

    @staticmethod
    def _now() -> str:
        return _dt.datetime.now(_dt.UTC).isoformat()

    def handle(self, request: web.Request, body: bytes, started: float, encoding: str, key_ok: bool):
        dd = self.dd
        app_key = request.headers.get("DD-APPLICATION-KEY")
        app_ok = bool(app_key) and (dd.app_key is None or app_key == dd.app_key)

        def answer(status: int, payload: Any, error: str | None = None) -> web.Response:
            return dd._answer(request, status, payload, started, encoding, len(body), len(body), key_ok,
                              error=error)

        if not (key_ok and app_ok):
            return answer(403, {"errors": ["Forbidden"]}, "invalid or missing API or application key")
        base, _, ident = request.path.rstrip("/").partition(DASHBOARD_PATH if request.path.startswith(
            DASHBOARD_PATH) else MONITOR_PATH)
        kind = "dashboard" if request.path.startswith(DASHBOARD_PATH) else "monitor"
        ident = ident.lstrip("/")
        if base or "/" in ident:
            return answer(404, {"errors": ["Not found"]}, "no such endpoint")
        data = None
        if request.method in ("POST", "PUT"):
            try:
                data = orjson.loads(_decompress(body, encoding, _READ_LIMIT) or b"null")
            except (_Reject, orjson.JSONDecodeError) as exc:
                return answer(400, {"errors": [f"invalid JSON: {exc}"]}, "invalid JSON")
        route = (kind, request.method, bool(ident))
        handler = {("dashboard", "GET", False): self._list_dashboards, ("dashboard", "POST", False): self._create_dashboard,
                   ("dashboard", "GET", True): self._get_dashboard, ("dashboard", "PUT", True): self._update_dashboard,
                   ("monitor", "GET", False): self._list_monitors, ("monitor", "POST", False): self._create_monitor,
                   ("monitor", "GET", True): self._get_monitor, ("monitor", "PUT", True): self._update_monitor,
                   }.get(route)
        if handler is None:
            return answer(405, {"errors": ["Method not allowed"]}, "no such endpoint")
        try:
            status, payload = handler(request.query, ident, data)
        except _Reject as rej:
            return answer(rej.status, {"errors": [rej.reason]}, rej.reason)
        return answer(status, payload)

    @staticmethod
    def _valid(data: Any, model: type) -> dict:
        if not isinstance(data, dict):
            raise _Reject(400, "invalid body: a JSON object is expected")
        reason = validate_model(data, (model,))
        if reason:
            raise _Reject(400, reason)
        return data

    # dashboards
    def _widget_ids(self, widgets: list) -> None:
        for w in widgets or ():
            w.setdefault("id", self._id())
            self._widget_ids((w.get("definition") or {}).get("widgets") or [])

    def _summary(self, d: dict) -> dict:
        return {k: d.get(k) for k in ("id", "title", "description", "layout_type", "url", "created_at",
                                      "modified_at", "author_handle", "is_read_only")}

    def _list_dashboards(self, query, ident, data):
        with self.dd._lock:
            items = [self._summary(d) for d in self.dd._dashboards.values()]
        start = int(query.get("start", 0))
        count = int(query["count"]) if "count" in query else len(items)
        return 200, {"dashboards": items[start:start + count]}

    def _get_dashboard(self, query, ident, data):
        with self.dd._lock:
            d = self.dd._dashboards.get(ident)
        if d is None:
            raise _Reject(404, f"Dashboard {ident} not found")
        return 200, d

    def _store_dashboard(self, ident: str, data: dict, created: str) -> dict:
        d = json.loads(json.dumps(data))
        self._widget_ids(d.get("widgets"))
        slug = re.sub(r"[^a-z0-9]+", "-", str(d.get("title", "")).lower()).strip("-")
        d.update(id=ident, url=f"/dashboard/{ident}/{slug}", created_at=created, modified_at=self._now(),
                 author_handle="fake@example.com", is_read_only=False)
        d.setdefault("description", None)
        with self.dd._lock:
            self.dd._dashboards[ident] = d
        return d

    def _create_dashboard(self, query, ident, data):
        self._valid(data, Dashboard)
        n = self._id()
        return 200, self._store_dashboard(f"{n:03d}-fak-{n % 1000:03d}", data, self._now())

    def _update_dashboard(self, query, ident, data):
        _, old = self._get_dashboard(query, ident, None)
        self._valid(data, Dashboard)
        return 200, self._store_dashboard(ident, data, old["created_at"])

    # monitors
    def _list_monitors(self, query, ident, data):
        want = {t.strip() for t in query.get("monitor_tags", "").split(",") if t.strip()}
        name = query.get("name")
        with self.dd._lock:
            items = [m for _, m in sorted(self.dd._monitors.items())
                     if want <= set(m.get("tags") or ()) and (not name or name in m.get("name", ""))]
        if "page" in query:
            size = int(query.get("page_size", 100))
            items = items[int(query["page"]) * size:(int(query["page"]) + 1) * size]
        return 200, items

    def _get_monitor(self, query, ident, data):
        with self.dd._lock:
            m = self.dd._monitors.get(int(ident)) if ident.isdigit() else None
        if m is None:
            raise _Reject(404, f"Monitor {ident} not found")
        return 200, m

    def _create_monitor(self, query, ident, data):
        self._valid(data, Monitor)
        m = json.loads(json.dumps(data))
        mid = 1000 + self._id()
        now = self._now()
        m.update(id=mid, created=now, modified=now, overall_state="No Data", multi=" by " in m.get("query", ""))
        with self.dd._lock:
            self.dd._monitors[mid] = m
        return 200, m

    def _update_monitor(self, query, ident, data):
        _, old = self._get_monitor(query, ident, None)
        self._valid(data, MonitorUpdateRequest)
        m = {**old, **json.loads(json.dumps(data)), "id": old["id"], "modified": self._now()}
        with self.dd._lock:
            self.dd._monitors[old["id"]] = m
        return 200, m


# ---------------------------------------------------------------------- CLI
async def _serve(args: argparse.Namespace) -> FakeDatadog:
    import signal

    dd = FakeDatadog(api_key=args.api_key, host=args.host, port=args.port,
                     drop_out_of_window=args.drop_out_of_window)
    await dd.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    key_note = "any non-empty DD-API-KEY" if args.api_key is None else "the given DD-API-KEY"
    print(f"fake Datadog on {dd.url} (DD_URL={dd.url}); accepting {key_note}; Ctrl-C stops", flush=True)
    try:
        if args.report_every:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.report_every)
                s = dd.stats()
                print(f"requests={s['requests']} points={s['points_stored']} logs={s['logs']}", flush=True)
        else:
            await stop.wait()
    finally:
        await dd.stop()
    return dd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.fakedatadog",
                                     description="A fake Datadog intake (series, logs, validate) for benches.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--api-key", default=None,
                        help="the accepted DD-API-KEY (default: any non-empty key); never printed")
    parser.add_argument("--drop-out-of-window", action="store_true",
                        help="drop points/logs Datadog would drop for their age, instead of storing them")
    parser.add_argument("--report-every", type=float, default=0.0, help="print counters every N seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request (never the key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    dd = asyncio.run(_serve(args))
    print(json.dumps(dd.stats(), indent=2, sort_keys=True))
    for w in dd.warnings[:20]:
        print("warning:", w)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
