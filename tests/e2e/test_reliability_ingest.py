"""Ingest under failure and attack: a broker outage, fuzzed requests against a running server, hostile events
at the processor's parser, and secrets that must neither be guessed nor logged.

Short versions run by default; `make soak` (-m soak) runs the long ones (30 s outage, 5,000 fuzz examples).
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import math
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from els.broker import EmbeddedBroker, free_port
from processor.core.model import InvalidEvent, parse_event
from tests.e2e.test_ingest import SAMPLE_EVENTS, Ingest, make_config
from tests.helpers.ingest_process import IngestProcess
from tests.helpers.kafka import read_topic
from tests.helpers.paths import ARTIFACTS
from tests.unit.core.test_model import FIELDS, check_invariants
from tests.unit.ingest.test_envelope import json_values

pytestmark = pytest.mark.broker



# -- a running `els ingest` process --------------------------------------------------------------------------
def _get(port: int, path: str, timeout: float = 10) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _topics() -> dict[str, str]:
    s = uuid.uuid4().hex[:8]
    return {"ELS_RAW_TOPIC": f"rel-raw-{s}", "ELS_DEADLETTER_TOPIC": f"rel-dl-{s}", "ELS_OUT_TOPIC": f"rel-out-{s}"}


def _event(ident: str) -> dict:
    return {**SAMPLE_EVENTS[0], "execution_id": f"ex-{ident}", "idempotency_key": f"ik-{ident}"}


# -- 1. broker outage ----------------------------------------------------------------------------------------
@dataclass
class Answer:
    ik: str
    status: int | None
    sent: float
    answered: float
    retry_after: str | None


@pytest.mark.parametrize("outage_s", [pytest.param(8, id="8s"), pytest.param(30, id="30s", marks=pytest.mark.soak)])
async def test_broker_outage_no_2xx_while_down_and_every_later_2xx_is_in_kafka(topic_names, outage_s):
    """Clients post all along; while the broker is away nothing gets a 2xx (503 + Retry-After in bounded time,
    also for a body that could only be dead-lettered), /readyz says so; after the broker comes back ingest
    recovers by itself and every event it then acknowledged is in the raw topic. (The embedded broker keeps
    nothing across a restart, so events acknowledged before the outage are not looked for.)"""
    port = free_port()
    log = str(ARTIFACTS / "outage-broker.log")
    broker = EmbeddedBroker(port=port, log_path=log).start()
    cfg = make_config(broker.bootstrap, topic_names, els_ack_timeout_seconds=1.5)
    answers: list[Answer] = []
    marks: dict[str, float] = {}
    stop = asyncio.Event()
    try:
        async with Ingest(cfg) as ing:

            async def poster(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    ik = f"ik-p{n}-{i}"
                    sent = time.monotonic()
                    try:
                        status, _, headers = await ing.post(orjson.dumps(_event(f"p{n}-{i}")))
                        retry_after = headers.get("Retry-After")
                    except aiohttp.ClientError:
                        status, retry_after = None, None
                    answers.append(Answer(ik, status, sent, time.monotonic(), retry_after))
                    await asyncio.sleep(0.02)

            posters = [asyncio.create_task(poster(n)) for n in range(4)]
            await asyncio.sleep(2)
            assert any(a.status == 202 for a in answers)
            await asyncio.to_thread(broker.stop)
            marks["stopped"] = time.monotonic()
            await asyncio.sleep(outage_s / 2)
            await asyncio.sleep(1.1)  # readiness is cached for a second
            async with ing.session.get("/readyz") as r:
                ready_while_down = r.status
            broken_while_down = (await ing.post(b"{broken"))[0]
            await asyncio.sleep(max(0.0, marks["stopped"] + outage_s - time.monotonic()))
            marks["restart"] = time.monotonic()
            broker = EmbeddedBroker(port=port, log_path=log)
            await asyncio.to_thread(broker.start)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # recovered: every poster got 202s again
                recent = {a.ik.split("-")[1] for a in answers if a.status == 202 and a.sent > marks["restart"]}
                if len(recent) == 4 and sum(a.status == 202 and a.sent > marks["restart"] for a in answers) >= 40:
                    break
                await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*posters)
            async with ing.session.get("/readyz") as r:
                ready_after = r.status
            broken_after, broken_answer, _ = await ing.post(b"{broken")
            sent_after_stop = [a for a in answers if a.sent > marks["stopped"]]
            acked = [a for a in sent_after_stop if a.status == 202]
            raw = await read_topic(broker.bootstrap, cfg.els_raw_topic, expect=len(acked), timeout=60)
            dl = await read_topic(broker.bootstrap, cfg.els_deadletter_topic, expect=1, timeout=30)
    finally:
        stop.set()
        broker.stop()

    while_down = [a for a in sent_after_stop if a.answered < marks["restart"]]
    print(f"outage: {len(while_down)} answers while down {dict(Counter(a.status for a in while_down))}, "
          f"{len(acked)} acknowledged after the stop, raw topic {len(raw)}")
    assert len(while_down) >= 8, "the posters must have kept asking during the outage"
    assert [a for a in while_down if a.status == 202] == [], "a 2xx without a broker to acknowledge it"
    assert all(a.status == 503 and a.retry_after for a in while_down), Counter(a.status for a in while_down)
    assert max(a.answered - a.sent for a in while_down) < cfg.els_ack_timeout_seconds + 15, "503 in bounded time"
    assert ready_while_down == 503 and broken_while_down == 503
    assert ready_after == 200
    assert len(acked) >= 40, Counter(a.status for a in sent_after_stop)
    in_topic = {dict(r.headers)["idempotency_key"].decode() for r in raw}
    missing = [a.ik for a in acked if a.ik not in in_topic]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged events are not in Kafka"
    assert broken_after == 400 and [r.value for r in dl] == [b"{broken"], broken_answer


# -- 2. fuzzed requests against a running ingest -------------------------------------------------------------
FUZZ_TOKEN = "fuzz-" + uuid.uuid4().hex
MAX_BODY = 8192
GOOD_AUTH = {"bearer": f"Bearer {FUZZ_TOKEN}", "bare": FUZZ_TOKEN, "lower": f"bearer {FUZZ_TOKEN}"}
BAD_AUTH = {"wrong": "Bearer nope", "prefix": f"Bearer {FUZZ_TOKEN[:-1]}", "suffix": f"Bearer {FUZZ_TOKEN}x",
            "case": f"Bearer {FUZZ_TOKEN.upper()}", "inner-space": f"Bearer {FUZZ_TOKEN[:6]} {FUZZ_TOKEN[6:]}",
            "bearer-only": "Bearer", "basic": f"Basic {FUZZ_TOKEN}", "missing": None, "double": "double"}
# (declared Content-Encoding, how the body is actually encoded)
CONSISTENT = [(None, "none"), ("identity", "none"), ("gzip", "gzip"), ("x-gzip", "gzip"), ("GZIP", "gzip"),
              (None, "gzip"), ("deflate", "zlib"), ("deflate", "rawdeflate"), ("gzip", "zlib")]
INCONSISTENT = [("gzip", "none"), ("deflate", "none"), ("br", "none"), ("zstd", "gzip"), ("gzip, deflate", "gzip"),
                ("deflate", "truncated-gzip"), (None, "truncated-gzip"), ("gzip", "truncated-gzip"), ("", "zlib")]
CONTENT_TYPES = [None, "application/json", "application/x-ndjson", "text/plain", "application/octet-stream",
                 "application/json; charset=utf-8", "multipart/form-data; boundary=x", "nonsense"]

# A body plan: a shape and its items; an item is ("event", wrapping) or ("junk", any JSON value). Ids are
# filled in when the request is sent, so that a replayed example never re-sends an event already in Kafka.
WRAPS = ["plain", "event", "message", "string", "single"]
# Weighted by sampled_from (hypothesis' one_of does not weight): three in four items are events, and three
# in five bodies are made of items, the rest raw JSON, random bytes, oversized bodies and compression bombs.
items = st.sampled_from(["event"] * 3 + ["junk"]).flatmap(
    lambda k: st.tuples(st.just(k), st.sampled_from(WRAPS) if k == "event" else json_values))
OTHER_PLANS = {"raw-json": json_values, "bytes": st.binary(max_size=300),
               "oversized": st.integers(MAX_BODY + 1, 3 * MAX_BODY), "bomb": st.integers(MAX_BODY + 1, 40 * MAX_BODY)}
plans = st.sampled_from(["object", "array", "ndjson"] * 2 + list(OTHER_PLANS)).flatmap(
    lambda k: st.tuples(st.just(k), OTHER_PLANS[k] if k in OTHER_PLANS else st.lists(items, min_size=1, max_size=4)))
fuzz_requests = st.fixed_dictionaries({
    "plan": plans,
    "encoding": st.sampled_from(CONSISTENT * 3 + INCONSISTENT),
    "content_type": st.sampled_from(CONTENT_TYPES),
    "auth": st.sampled_from(list(GOOD_AUTH) * 10 + list(BAD_AUTH)),
})


def _wrap(ev: dict, how: str):
    return {"plain": ev, "event": {"event": ev}, "message": {"ddsource": "okta", "message": ev},
            "string": {"event": json.dumps(ev)}, "single": {"payload": ev}}[how]


def _build(plan, counter) -> tuple[bytes, list[str], int, bool]:
    """Body bytes, the execution ids of the events in it, the number of junk items, and whether the shape
    guarantees that every event is accepted and every junk item rejected one for one."""
    kind, content = plan
    if kind == "raw-json":
        try:
            return orjson.dumps(content), [], 0, False
        except orjson.JSONEncodeError:
            return b"[]", [], 0, False
    if kind == "bytes":
        return content, [], 0, False
    if kind == "oversized":
        ident = next(counter)
        return orjson.dumps({**_event(ident), "pad": "x" * content}), [f"ex-{ident}"], 0, False
    if kind == "bomb":
        return b"[" + b" " * content + b"]", [], 0, False
    values: list[tuple[object, str | None]] = []
    for what, detail in content:
        if what == "event":
            ident = next(counter)
            values.append((_wrap(_event(ident), detail), f"ex-{ident}"))
        else:
            values.append((detail, None))
    if kind == "object":
        values = values[:1]
    ids = [i for _, i in values if i is not None]
    junk = len(values) - len(ids)
    if kind == "object":
        body = orjson.dumps(values[0][0])
    elif kind == "array":
        body = orjson.dumps([v for v, _ in values])
    else:
        body = b"\n".join(orjson.dumps(v) for v, _ in values)
    return body, ids, junk, kind == "array" or (kind == "object" and bool(ids))


def _encode(body: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(body)
    if how == "zlib":
        return zlib.compress(body)
    if how == "rawdeflate":
        c = zlib.compressobj(wbits=-15)
        return c.compress(body) + c.flush()
    if how == "truncated-gzip":
        return gzip.compress(body)[:-6]
    return body


@dataclass
class FuzzLog:
    statuses: Counter = field(default_factory=Counter)
    refused: list[tuple[int, bytes]] = field(default_factory=list)       # (400 or 413, bytes sent)
    accepted_ids: set[str] = field(default_factory=set)                  # must be in the raw topic
    unauthorised_ids: set[str] = field(default_factory=set)              # must not be
    exact_checks: int = 0
    accepted_total: int = 0
    rejected_total: int = 0
    problems: list[str] = field(default_factory=list)


@pytest.mark.parametrize("examples", [pytest.param(500, id="500"), pytest.param(5000, id="5000", marks=pytest.mark.soak)])
def test_fuzzed_requests_never_5xx_and_everything_lands_where_it_should(kafka_bootstrap, examples):
    """Bodies, shapes, encodings (declared right and wrong), content types and secrets from hypothesis against
    a running `els ingest`: only 202/400/401/413; a right secret is never 401 and a wrong one always is; a
    body with events in a consistent encoding is accepted event for event; every 400/413 body is in the
    dead-letter topic and every rejected item too; every accepted event is in the raw topic and nothing from
    an unauthorised request is; the server is alive and logged no unexpected error afterwards."""
    topics = _topics()
    server = IngestProcess({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELS_AUTH_TOKENS": FUZZ_TOKEN,
                            "ELS_PARTITIONS": "4", "ELS_MAX_BODY_BYTES": str(MAX_BODY),
                            "ELS_ACK_TIMEOUT_SECONDS": "60", **topics})
    fl = FuzzLog()
    counter = iter(f"fz{n}" for n in range(10**9))
    try:
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(fuzz_requests)
        def one(req):
            body, ids, junk, exact = _build(req["plan"], counter)
            declared, applied = req["encoding"]
            wire = _encode(body, applied)
            headers = []
            if req["content_type"] is not None:
                headers.append(("Content-Type", req["content_type"]))
            if declared is not None:
                headers.append(("Content-Encoding", declared))
            auth = req["auth"]
            if auth == "double":  # the right secret and a wrong one: two secrets is no secret
                headers += [("Authorization", GOOD_AUTH["bearer"]), ("Authorization", "Bearer nope")]
            elif (value := GOOD_AUTH.get(auth) or BAD_AUTH.get(auth)) is not None:
                headers.append(("Authorization", value))
            status, answer = server.post(wire, headers)
            fl.statuses[status] += 1
            what = f"{status} {answer[:200]!r} for {req!r}"
            if status not in (202, 400, 401, 413):
                fl.problems.append("unexpected " + what)
            if (auth in GOOD_AUTH) == (status == 401):
                fl.problems.append("secret misjudged: " + what)
            if status == 401:
                fl.unauthorised_ids.update(ids)
                return
            if status in (400, 413):
                fl.refused.append((status, wire))
                return
            if status == 202:
                got = orjson.loads(answer)
                fl.accepted_total += got["accepted"]
                fl.rejected_total += got["rejected"]
                fl.accepted_ids.update(ids)
            if exact and (declared, applied) in CONSISTENT and ids:
                fl.exact_checks += 1
                want = {"accepted": len(ids), "rejected": junk}
                if status != 202 or orjson.loads(answer) != want:
                    fl.problems.append(f"want 202 {want}: " + what)

        one()
        assert _get(server.port, "/healthz") == 200 and server.proc.poll() is None, "ingest did not survive"
        raw = asyncio.run(read_topic(kafka_bootstrap, topics["ELS_RAW_TOPIC"], expect=fl.accepted_total,
                                     timeout=60, partitions=4))
        want_dl = len(fl.refused) + fl.rejected_total
        dl = asyncio.run(read_topic(kafka_bootstrap, topics["ELS_DEADLETTER_TOPIC"], expect=want_dl, timeout=60,
                                    partitions=4))
    finally:
        server.stop()
    output = server.output()
    print(f"fuzz: statuses {dict(fl.statuses)}, exact checks {fl.exact_checks}, accepted {fl.accepted_total}, rejected items {fl.rejected_total}, "
          f"raw {len(raw)}, dead letters {len(dl)}")
    assert fl.problems == [], "\n".join(fl.problems[:20])
    assert fl.exact_checks >= examples // 20, fl.exact_checks
    assert fl.statuses[202] >= examples // 10 and fl.statuses[400] and fl.statuses[401] and fl.statuses[413], \
        fl.statuses
    raw_ids = {orjson.loads(r.value)["execution_id"] for r in raw}
    assert len(raw) == fl.accepted_total
    assert fl.accepted_ids <= raw_ids, sorted(fl.accepted_ids - raw_ids)[:10]
    assert not (fl.unauthorised_ids & raw_ids)
    assert len(dl) == want_dl
    dl_values = Counter(r.value for r in dl)
    for status, wire in fl.refused:
        kept = wire[:64 * 1024]
        assert dl_values[kept] > 0, f"a {status} body is not in the dead-letter topic: {wire[:100]!r}"
        dl_values[kept] -= 1
    assert "unexpected error" not in output and "Traceback" not in output, output[-3000:]


# -- 3. hostile events at the processor's parser -------------------------------------------------------------
def _deep(n: int, leaf="x"):
    v = leaf
    for _ in range(n):
        v = {"a": [v]}
    return v


HOSTILE_VALUES = [
    "x" * 1_000_000, " " * 100_000, "\u0000" * 1000, "\ud800", "é" * 50_000, "🙂" * 10_000,
    10**400, -(10**400), 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf,
    True, False, None, [], {}, [None] * 10_000, {str(i): i for i in range(10_000)}, _deep(400),
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2100-12-31T23:59:59.999Z",
    "2101-01-01T00:00:00Z", "1999-12-31T23:59:59.999Z", "-1", "1e400", "NaN", "Infinity", "-Infinity",
    "253402300800000", "-62135596800000", 253402300800000, -62135596800000, 1e20, -1, 0, "0", "",
    "2024-02-30T00:00:00Z", "2024-04-04T25:61:61Z", "2024-04-04T18:30:38.730+25:00", "T", "Z", "--",
]
hostile = st.sampled_from(HOSTILE_VALUES) | json_values | st.floats() | st.integers() | st.text(max_size=50)
FIELD_NAMES = FIELDS + ["event_type", "execution_id", "root_execution_id", "parent_execution_id",
                        "idempotency_key", "timestamp", "duration", "step_count", "pause_duration", "fatal",
                        "throttled", "folder_name"]


def _parsed_or_invalid(value, received_ms=None) -> None:
    try:
        ev = parse_event(value, received_ms)
    except InvalidEvent as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    check_invariants(ev)


# A generous deadline catches only pathological (quadratic, exponential) handling, not a busy machine.
HOSTILE_SETTINGS = settings(max_examples=300, deadline=timedelta(seconds=5),
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HOSTILE_SETTINGS
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), hostile, min_size=1, max_size=6),
       st.booleans(), st.none() | st.integers(-(2**63), 2**63))
def test_hostile_fields_give_a_normalised_event_or_invalid_event(fields, on_sample, received_ms):
    """Every field, of a valid sample or alone, set to huge, deep, non-finite, out-of-range or wrong-typed
    values: parse_event returns an event that keeps every invariant, or raises InvalidEvent; as a dict and
    as the JSON bytes a broker would carry (when the value can be JSON at all)."""
    raw = {**SAMPLE_EVENTS[0], **fields} if on_sample else dict(fields)
    _parsed_or_invalid(raw, received_ms)
    try:
        data = orjson.dumps(raw)
    except (orjson.JSONEncodeError, TypeError):
        return
    _parsed_or_invalid(data, received_ms)


@HOSTILE_SETTINGS
@given(st.sampled_from(FIELD_NAMES), st.binary(min_size=1, max_size=40), st.integers(0, 3))
def test_non_utf8_and_broken_bytes_give_invalid_event_or_an_event(field_name, junk, where):
    """Invalid UTF-8, lone surrogate escapes, bare NaN/Infinity literals and cut-off JSON inside otherwise
    valid event bytes."""
    base = orjson.dumps({**SAMPLE_EVENTS[0], field_name: "@@"})
    literal = [b'"' + junk + b'"', junk, b'"\\ud800' + junk + b'"', b"NaN"][where]
    data = base.replace(b'"@@"', literal)
    _parsed_or_invalid(data)
    _parsed_or_invalid(data[: len(data) // 2])
    _parsed_or_invalid(data.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("value", [
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, orjson.dumps(_deep(60)),
    b"\xff\xfe" + "{}".encode("utf-16-le"), b'{"event_type": "FLOW_START", "execution_id": "\xc3\x28"}',
    b'{"event_type": NaN, "execution_id": Infinity}', b"\x00" * 1000, b'{"event_type":"' + b"A" * 2_000_000 + b'"}',
], ids=["deep-array", "deep-object", "deep-valid", "utf16", "bad-utf8", "nan-literals", "nul", "huge-type"])
def test_pathological_bytes(value):
    _parsed_or_invalid(value)
    _parsed_or_invalid(value.decode("utf-8", "surrogateescape"))


# -- 4. secrets ----------------------------------------------------------------------------------------------
def test_almost_right_secrets_are_refused_and_no_secret_is_ever_logged(kafka_bootstrap):
    """A running ingest with a known secret and DD_API_KEY set, at DEBUG level: variants of the secret get
    401 (nothing written), the secret works; then no log line holds either value or any 8-character piece
    of them (a logged Authorization header, even a wrong one, would show up as a piece)."""
    secret = "s3cr3t-" + uuid.uuid4().hex
    dd_key = "ddkey" + uuid.uuid4().hex
    topics = _topics()
    server = IngestProcess({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELS_AUTH_TOKENS": f"other-{secret[:5]},{secret}",
                            "DD_API_KEY": dd_key, "ELS_LOG_LEVEL": "DEBUG", "ELS_PARTITIONS": "2",
                            "ELS_MAX_BODY_BYTES": "4096", **topics})
    body = orjson.dumps(_event("secret-ok"))
    refused = {
        "missing": [], "empty": [("Authorization", "")], "bearer-only": [("Authorization", "Bearer")],
        "bearer-space": [("Authorization", "Bearer ")], "prefix": [("Authorization", f"Bearer {secret[:-1]}")],
        "suffix": [("Authorization", f"Bearer {secret}0")], "upper": [("Authorization", f"Bearer {secret.upper()}")],
        "inner-space": [("Authorization", f"Bearer {secret[:8]} {secret[8:]}")],
        "tab": [("Authorization", f"Bearer\t\t{secret}x")], "basic": [("Authorization", f"Basic {secret}")],
        "two-schemes": [("Authorization", f"Bearer Bearer {secret}")],
        "both-secrets": [("Authorization", f"other-{secret[:5]},{secret}")],
        "two-headers": [("Authorization", f"Bearer {secret}"), ("Authorization", f"Bearer {secret}")],
        "two-headers-one-wrong": [("Authorization", f"Bearer {secret}"), ("Authorization", "Bearer x")],
        "other-header": [("X-Authorization", f"Bearer {secret}")], "dd-key": [("Authorization", dd_key)],
    }
    try:
        answers = {name: server.post(body, headers) for name, headers in refused.items()}
        ok = server.post(body, [("Authorization", f"Bearer {secret}")])
        ok_bare = server.post(orjson.dumps(_event("secret-ok-2")), [("Authorization", secret)])
        # also exercise the paths that log: a refused body, an oversized one, a wrong method
        bad = server.post(b"{not json " + secret.encode(), [("Authorization", f"Bearer {secret}")])
        big = server.post(b"x" * 5000, [("Authorization", f"Bearer {secret}")])
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {secret}"})
        wrong_method = conn.getresponse().status
        conn.close()
        raw = asyncio.run(read_topic(kafka_bootstrap, topics["ELS_RAW_TOPIC"], expect=2, timeout=30, partitions=2))
    finally:
        code = server.stop()
    out = server.output()
    assert {name: status for name, (status, _) in answers.items()} == {name: 401 for name in refused}
    assert all(secret.encode() not in answer and secret[:8].encode() not in answer for _, answer in answers.values())
    assert ok[0] == 202 and ok_bare[0] == 202 and bad[0] == 400 and big[0] == 413 and wrong_method == 405
    assert sorted(orjson.loads(r.value)["execution_id"] for r in raw) == ["ex-secret-ok", "ex-secret-ok-2"]
    assert code == 0 and "ingest stats" in out, out[-2000:]
    assert "DEBUG" in out.upper(), "the log level must have been DEBUG for this test to mean much"
    for value in (secret, dd_key):
        pieces = {value[i:i + 8] for i in range(len(value) - 7)}
        leaked = sorted(p for p in pieces if p in out)
        assert leaked == [], f"pieces of a secret in the log: {leaked}"
