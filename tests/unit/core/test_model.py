"""processor.core.model: every ELS sample parses, every documented quirk is normalised, hostile input dead-letters."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.envelope import event_key
from processor.core.model import (
    CANONICAL_TYPES,
    MAX_FIELD_CHARS,
    OUTCOMES,
    FlowEvent,
    InvalidEvent,
    canonical_event_type,
    parse_event,
)
from tests.helpers.paths import SAMPLES as SAMPLES_DIR

SAMPLE_FILES = sorted(SAMPLES_DIR.glob("*.json"))
SAMPLES = {p.name: orjson.loads(p.read_bytes()) for p in SAMPLE_FILES}
BASE = SAMPLES["doc-base-schema-all-fields.json"]
STR_FIELDS = ("flow_id", "flow_name", "parent_flow_id", "parent_flow_name", "root_flow_id", "root_flow_name",
              "org_id", "org_name", "org_hostname", "error_type", "error_code", "error_message", "throttling_type",
              "throttling_level", "hostname", "status_code")


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def parse(**fields) -> FlowEvent:
    """A minimal valid event plus `fields` (None values are dropped from the event, not sent as null)."""
    d = {"event_type": "FLOW_START", "execution_id": "ex-1", "timestamp": "2024-04-04T18:30:38.730Z",
         "idempotency_key": "k-1"}
    d.update(fields)
    return parse_event({k: v for k, v in d.items() if v is not None})


def reason(value, received_ms=None) -> str:
    with pytest.raises(InvalidEvent) as ei:
        parse_event(value, received_ms)
    assert isinstance(ei.value, ValueError)
    return ei.value.reason


# -- the samples ------------------------------------------------------------------------------------------------
def test_samples_present():
    assert len(SAMPLE_FILES) >= 6


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_parses_from_bytes_text_and_dict(path):
    data = path.read_bytes()
    for value in (data, data.decode(), orjson.loads(data)):
        ev = parse_event(value)
        assert ev.event_type in CANONICAL_TYPES
        assert ev.raw == orjson.loads(data)
        assert ev.execution_id and ev.root_execution_id and ev.idempotency_key
        assert MIN_2000 <= ev.timestamp_ms < MAX_2101
        assert ev.outcome == OUTCOMES.get(ev.event_type)


MIN_2000 = ms("2000-01-01T00:00:00+00:00")
MAX_2101 = ms("2101-01-01T00:00:00+00:00")


def test_sample_base_schema_all_fields():
    ev = parse_event(orjson.dumps(BASE))
    assert ev.event_type == "FLOW_START"
    assert ev.execution_id == "4632dc20-6989-4c57-9b5f-c17528474086"
    assert ev.root_execution_id == "0af35fac-d6d8-47cc-b59a-9954711c5ec8"
    assert ev.is_root is False
    assert ev.parent_execution_id == "5001fcad-2ec4-4cd8-935e-57f14166e673"
    assert ev.timestamp_ms == 1712255438730
    assert ev.parent_flow_name == "Immediate Parent Flow Calling Example Flow"
    assert ev.root_flow_id == "01J29TTS7X37QSTKPJBGS52ENF"
    assert ev.root_flow_name == "Root Flow Calling Example Flow"
    assert ev.org_hostname == "atko.okta.com"
    assert ev.throttled is False  # "false", a string
    assert ev.idempotency_key == "f1aaa750-6d92-485e-acf7-dd167e00db2f"
    assert ev.outcome is None and ev.duration_ms is None and ev.step_count is None
    assert ev.raw["folder_name"] == ["My parent folder", "My child folder"]  # kept as received, in raw only
    assert not hasattr(ev, "folder_name")


def test_sample_root_flow_complete():
    ev = parse_event(orjson.dumps(SAMPLES["doc-parent-flow-complete.json"]))
    assert ev.is_root and ev.root_execution_id == ev.execution_id == "326b7317-6ea5-4d6a-a9f5-0ee8675c0428"
    assert ev.parent_execution_id is None
    assert (ev.root_flow_id, ev.root_flow_name) == (ev.flow_id, ev.flow_name) == ("632567", "PDV Log Streaming")
    assert ev.duration_ms == 1827.0 and ev.step_count == 108
    assert ev.outcome == "completed" and ev.throttled is False
    assert ev.org_hostname is None  # absent


def test_sample_helper_flow_trailing_space_and_missing_root_name():
    ev = parse_event(orjson.dumps(SAMPLES["doc-helper-flow-complete.json"]))
    assert ev.flow_name == "2. Simple Helper flow"
    assert ev.is_root is False and ev.root_execution_id == "13881f3b-b0e0-4385-afca-7ad833e40c77"
    assert ev.root_flow_id == "543087" and ev.root_flow_name is None
    assert ev.parent_flow_name == "Flow 1: API Invoke Flow"
    assert ev.raw["folder_id"] == ""


def test_sample_community_folder_name_string():
    ev = parse_event(orjson.dumps(SAMPLES["community-sample-flow-complete.json"]))
    assert ev.raw["folder_name"] == "Example Folder"
    assert ev.duration_ms == 30.0 and ev.step_count == 2 and ev.org_name == "example-org"
    assert ev.org_hostname == "example-org.workflows.oktapreview.com"


# -- event types ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given_,want", [
    ("FLOW_START", "FLOW_START"), ("flow_start", "FLOW_START"), ("  Flow_Start \n", "FLOW_START"),
    ("FLOW_COMPLETED", "FLOW_COMPLETE"), ("FLOW_FAILED", "FLOW_FAIL"), ("FLOW_FAILURE", "FLOW_FAIL"),
    ("FLOW_CANCELED", "FLOW_CANCEL"), ("FLOW_CANCELLED", "FLOW_CANCEL"), ("flow_cancelled", "FLOW_CANCEL"),
    ("FLOW_THROTTLED", "FLOW_THROTTLE"), ("FLOW_PAUSED", "FLOW_PAUSE"), ("FLOW_RATE_LIMITED", "FLOW_RATE_LIMIT"),
    ("FLOW_RATELIMITED", "FLOW_RATE_LIMIT"), ("FLOW_RATELIMIT", "FLOW_RATE_LIMIT"),
    ("Flow Completed", "FLOW_COMPLETE"), ("flow-failed", "FLOW_FAIL"),
    ("flow_resumed", "FLOW_RESUMED"), ("Something New", "SOMETHING NEW"),
])
def test_canonical_event_type(given_, want):
    assert canonical_event_type(given_) == want


@pytest.mark.parametrize("t", CANONICAL_TYPES)
def test_canonical_types_are_fixed_points(t):
    assert canonical_event_type(t) == t


def test_unknown_event_type_kept_with_no_outcome():
    ev = parse(event_type="flow_resumed")
    assert ev.event_type == "FLOW_RESUMED" and ev.outcome is None


@pytest.mark.parametrize("t,outcome", [("FLOW_COMPLETED", "completed"), ("FLOW_FAIL", "failed"),
                                       ("flow_canceled", "canceled"), ("FLOW_START", None),
                                       ("FLOW_THROTTLE", None), ("FLOW_PAUSE", None), ("FLOW_RATE_LIMIT", None)])
def test_outcome(t, outcome):
    assert parse(event_type=t).outcome == outcome


# -- quirks ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v,want", [(1827, 1827.0), ("1827", 1827.0), (" 41 ", 41.0), ("1.5", 1.5), (0, 0.0),
                                    (2.25, 2.25), ("abc", None), ("", None), (None, None), (-1, None), ("-5", None),
                                    ("NaN", None), ("nan", None), ("Infinity", None), ("1e999", None),
                                    (True, None), ([1], None), ({"ms": 1}, None), (10**400, None),
                                    (math.nan, None), (math.inf, None)])
def test_duration_and_pause_duration(v, want):
    ev = parse(duration=v, pause_duration=v)
    assert ev.duration_ms == want and ev.pause_duration_ms == want
    assert want is None or isinstance(ev.duration_ms, float)


@pytest.mark.parametrize("v,want", [(108, 108), ("108", 108), ("1.5", 1), (2.0, 2), ("x", None), (-3, None),
                                    (False, None), ({}, None), ("", None), (10**30, None)])
def test_step_count(v, want):
    got = parse(step_count=v).step_count
    assert got == want and (got is None or type(got) is int)


@pytest.mark.parametrize("v,want", [(True, True), (False, False), ("true", True), ("TRUE", True), ("false", False),
                                    ("False", False), (" FALSE ", False), ("1", True), ("0", False), (1, True),
                                    (0, False), ("yes", True), ("no", False), ("maybe", None), ("", None),
                                    (2, None), ({}, None), ([], None)])
def test_booleans(v, want):
    ev = parse(throttled=v, fatal=v)
    assert ev.throttled is want and ev.fatal is want


@pytest.mark.parametrize("field", STR_FIELDS)
@pytest.mark.parametrize("v", ["", None, "   ", {"a": 1}, [], ["x"]])
def test_optional_string_fields_absent_null_empty_or_wrong_type_are_none(field, v):
    raw = {"event_type": "FLOW_FAIL", "execution_id": "ex", "root_execution_id": "root",
           "timestamp": "2024-04-04T18:30:38Z", field: v}
    assert getattr(parse_event(raw), field) is None
    raw.pop(field)
    assert getattr(parse_event(raw), field) is None


@pytest.mark.parametrize("field", STR_FIELDS)
def test_optional_string_fields_stripped_and_truncated(field):
    raw = {"event_type": "FLOW_FAIL", "execution_id": "ex", "root_execution_id": "root",
           "timestamp": "2024-04-04T18:30:38Z", field: "  " + "x" * 5000 + " "}
    ev = parse_event(orjson.dumps(raw))
    assert getattr(ev, field) == "x" * MAX_FIELD_CHARS
    assert ev.raw[field] == raw[field]  # raw keeps the value as received
    raw[field] = " value \t"
    assert getattr(parse_event(raw), field) == "value"


@pytest.mark.parametrize("v,want", [(429, "429"), ("429", "429"), (429.0, "429"), (" 503 ", "503"), (4.5, "4.5"),
                                    (True, "true")])
def test_status_code_is_a_string(v, want):
    assert parse(event_type="FLOW_RATE_LIMITED", status_code=v).status_code == want


def test_numbers_in_string_fields_converted():
    ev = parse(flow_id=625207, error_code=500, org_id=1.0)
    assert (ev.flow_id, ev.error_code, ev.org_id) == ("625207", "500", "1")


def test_failure_fields():
    ev = parse(event_type="FLOW_FAILED", duration="12", step_count="3", error_message=" boom ",
               error_code="E0000", error_type="Timeout", fatal="TRUE", retry_policy="none", retry_delay="30")
    assert (ev.event_type, ev.outcome, ev.error_type, ev.error_code, ev.error_message, ev.fatal) == \
        ("FLOW_FAIL", "failed", "Timeout", "E0000", "boom", True)
    assert ev.raw["retry_policy"] == "none"


def test_throttle_and_rate_limit_fields():
    ev = parse(event_type="FLOW_THROTTLE", throttling_type="concurrency", throttling_level="org")
    assert (ev.throttling_type, ev.throttling_level) == ("concurrency", "org")
    ev = parse(event_type="FLOW_RATE_LIMIT", status_code="429", hostname="api.example.com", backoff_duration="5")
    assert (ev.status_code, ev.hostname, ev.raw["backoff_duration"]) == ("429", "api.example.com", "5")


def test_unknown_fields_kept_in_raw():
    ev = parse(brand_new_field={"nested": [1, 2]}, depth="5")
    assert ev.raw["brand_new_field"] == {"nested": [1, 2]} and ev.raw["depth"] == "5"


def test_flow_event_has_slots():
    ev = parse()
    assert not hasattr(ev, "__dict__")
    assert "FLOW_START" in repr(ev)


# -- chain ids -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("root", [None, ""])
def test_root_flow_when_root_execution_id_absent_or_empty(root):
    ev = parse(root_execution_id=root, flow_id="f1", flow_name="Root ", root_flow_name="ignored")
    assert ev.is_root and ev.root_execution_id == "ex-1"
    assert (ev.root_flow_id, ev.root_flow_name) == ("f1", "Root")


def test_root_execution_id_null_or_non_string_means_root():
    for v in (None, 12, {"id": "x"}):
        raw = {"event_type": "FLOW_START", "execution_id": "ex", "timestamp": 1712255438, "root_execution_id": v}
        ev = parse_event(raw)
        assert ev.is_root and ev.root_execution_id == "ex"


def test_root_execution_id_equal_to_execution_id_is_root():
    ev = parse(root_execution_id="ex-1", flow_name="R", root_flow_name="other")
    assert ev.is_root and ev.root_flow_name == "R"


def test_execution_id_is_required_string():
    assert reason(orjson.dumps({"event_type": "FLOW_START", "execution_id": 12})) == \
        "execution_id must be a non-empty string"
    for v in ("", "   ", None, [], {}):
        assert "execution_id" in reason({"event_type": "FLOW_START", "execution_id": v, "timestamp": 1712255438})
    assert "execution_id" in reason({"event_type": "FLOW_START", "timestamp": 1712255438})


def test_event_type_is_required_string():
    for v in ("", " ", 3, None, ["FLOW_START"]):
        assert reason({"event_type": v, "execution_id": "e", "timestamp": 1712255438}) == \
            "event_type must be a non-empty string"


def test_overlong_ids_are_refused_not_cut():
    # a cut id could merge two chains that ingest routed to different partitions
    for field in ("execution_id", "root_execution_id", "parent_execution_id"):
        assert "longer than" in reason({"event_type": "FLOW_START", "execution_id": "e", "timestamp": 1712255438,
                                        field: "e" * 1001})


def test_ids_used_exactly_as_the_kafka_key():
    ev = parse(execution_id=" ex ", root_execution_id=" r ")
    assert (ev.execution_id, ev.root_execution_id) == (" ex ", " r ")


# -- timestamps -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v,want", [
    ("2024-04-04T18:30:38.730Z", 1712255438730),
    ("2024-04-04T18:30:38.730+00:00", 1712255438730),
    ("2024-04-04T20:30:38.730+02:00", 1712255438730),
    ("2024-04-04T13:30:38.730-05:00", 1712255438730),
    ("2024-04-04T18:30:38Z", 1712255438000),
    ("2024-04-04T18:30:38.7Z", 1712255438700),
    ("2024-04-04T18:30:38.730999Z", 1712255438730),
    ("2024-04-04T18:30:38.730999999Z", 1712255438730),
    ("2024-04-04T18:30:38.730", 1712255438730),  # naive: Okta sends UTC
    ("2024-04-04 18:30:38.730Z", 1712255438730),
    (" 2024-04-04T18:30:38.730Z ", 1712255438730),
    (1712255438, 1712255438000),
    (1712255438730, 1712255438730),
    (1712255438.73, 1712255438730),
    ("1712255438", 1712255438000),
    ("1712255438730", 1712255438730),
    ("1712255438.73", 1712255438730),
    ("2000-01-01T00:00:00Z", 946684800000),
    ("2100-12-31T23:59:59.999Z", 4133980799999),
])
def test_timestamps(v, want):
    assert parse(timestamp=v).timestamp_ms == want


def test_timestamp_ms_exact_for_every_millisecond():
    for m in range(1000):
        assert parse(timestamp=f"2024-04-04T18:30:38.{m:03d}Z").timestamp_ms == 1712255438000 + m


@pytest.mark.parametrize("v", ["yesterday", "2024-13-01T00:00:00Z", "2024-04-04T25:00:00Z", "12:30", "nan",
                               "inf", "2024-04-04T18:30:38.730ZZ", "--", "T"])
def test_unparseable_timestamp(v):
    r = reason(orjson.dumps({"event_type": "FLOW_START", "execution_id": "e", "timestamp": v}), 1712255438000)
    assert r.startswith("timestamp is not ISO 8601: ")


def test_unparseable_timestamp_reason_quotes_the_value():
    assert reason({"event_type": "FLOW_START", "execution_id": "e", "timestamp": "yesterday"}) == \
        "timestamp is not ISO 8601: 'yesterday'"


@pytest.mark.parametrize("v", ["1999-12-31T23:59:59.999Z", "2101-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                               "9999-12-31T23:59:59-14:00", 0, -1, 1, "0", "-5", 1e20, -1e308, 1e308, 10**40,
                               -(10**40), "1e30"])
def test_timestamp_out_of_range(v):
    assert reason({"event_type": "FLOW_START", "execution_id": "e", "timestamp": v}).startswith(
        "timestamp out of range")


@pytest.mark.parametrize("v", [True, False, {"t": 1}, [1712255438], math.nan, math.inf, -math.inf])
def test_timestamp_wrong_type(v):
    assert "timestamp" in reason({"event_type": "FLOW_START", "execution_id": "e", "timestamp": v}, 1712255438000)


@pytest.mark.parametrize("v", [None, "", "   "])
def test_missing_timestamp_falls_back_to_received(v):
    raw = {"event_type": "FLOW_START", "execution_id": "e", "timestamp": v}
    assert parse_event(raw, received_ms=1712255438123).timestamp_ms == 1712255438123
    assert "no receive time" in reason(raw)
    raw.pop("timestamp")
    assert parse_event(raw, 1712255438124).timestamp_ms == 1712255438124


# -- idempotency ------------------------------------------------------------------------------------------------
def test_idempotency_fallback_is_stable_per_bytes():
    raw = {"event_type": "FLOW_START", "execution_id": "e", "timestamp": "2024-04-04T18:30:38.730Z"}
    data = orjson.dumps(raw)
    k1 = parse_event(data).idempotency_key
    assert k1 == parse_event(data).idempotency_key == parse_event(data.decode()).idempotency_key
    assert len(k1) == 32 and int(k1, 16) >= 0
    assert parse_event(orjson.dumps(raw | {"timestamp": "2024-04-04T18:30:38.731Z"})).idempotency_key != k1
    for empty in ("", "  ", None, {}, True):
        assert parse_event(orjson.dumps(raw | {"idempotency_key": empty})).idempotency_key not in ("", None)


def test_idempotency_fallback_for_dicts_ignores_key_order():
    a = {"event_type": "FLOW_START", "execution_id": "e", "timestamp": 1712255438}
    b = dict(reversed(list(a.items())))
    assert parse_event(a).idempotency_key == parse_event(b).idempotency_key
    assert parse_event(a).idempotency_key != parse_event(a | {"x": 1}).idempotency_key


def test_idempotency_key_given():
    assert parse(idempotency_key=" abc ").idempotency_key == "abc"
    assert parse(idempotency_key=12345).idempotency_key == "12345"
    long = "k" * 5000
    k = parse(idempotency_key=long).idempotency_key
    assert len(k) == 32 and k == parse(idempotency_key=long).idempotency_key
    assert k != parse(idempotency_key=long + "x").idempotency_key  # not merged, as a cut would


# -- hostile input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [b"", b"   ", b"{", b"not json", b"\xff\xfe", b"{'a': 1}", b'{"a":NaN}',
                                   b'{"a": 1e999}', "\ud800", b'"\\ud800"', b"[1,2", b"\x00"])
def test_invalid_json(value):
    assert reason(value).startswith("not valid JSON")


@pytest.mark.parametrize("value,kind", [(b"[]", "array"), (b'"FLOW_START"', "string"), (b"1", "number"),
                                        (b"null", "null"), (b"true", "boolean"),
                                        (b'[{"event_type":"FLOW_START","execution_id":"e"}]', "array")])
def test_non_object_json(value, kind):
    assert reason(value) == f"a JSON {kind} is not an event object"


def test_deep_nesting():
    deep = b'{"event_type":"FLOW_START","execution_id":"e","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert "depth" in reason(deep)
    nested: dict = {}
    for _ in range(3000):
        nested = {"a": nested}
    # as a dict (already parsed by someone else), the deep value is only kept in raw, never walked
    ev = parse_event({"event_type": "FLOW_START", "execution_id": "e", "timestamp": 1712255438, "x": nested,
                      "idempotency_key": "k"})
    assert ev.raw["x"] is nested
    # without a key the digest must serialise it: still an InvalidEvent, never a RecursionError
    with pytest.raises(InvalidEvent):
        parse_event({"event_type": "FLOW_START", "execution_id": "e", "timestamp": 1712255438, "x": nested})


@pytest.mark.parametrize("value", [None, 12, 1.5, ["a"], object(), {1, 2}])
def test_wrong_value_type(value):
    assert reason(value)


def test_dict_with_unserialisable_values_and_no_key():
    for extra in ({"x": object()}, {"x": "\ud800"}, {1: "int key"}):
        try:
            ev = parse_event({"event_type": "FLOW_START", "execution_id": "e", "timestamp": 1712255438} | extra)
        except InvalidEvent:
            continue
        assert len(ev.idempotency_key) == 32


def test_huge_event():
    raw = {"event_type": "FLOW_FAIL", "execution_id": "e", "timestamp": 1712255438,
           "error_message": "x" * 2_000_000, "flow_name": "n" * 100_000}
    ev = parse_event(orjson.dumps(raw))
    assert len(ev.error_message) == len(ev.flow_name) == MAX_FIELD_CHARS
    assert len(ev.raw["error_message"]) == 2_000_000


def test_invalid_event_is_a_value_error_with_reason():
    e = InvalidEvent("because")
    assert isinstance(e, ValueError) and e.reason == "because" and str(e) == "because"


# -- properties -----------------------------------------------------------------------------------------------------
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True)
                | st.text(max_size=30)
                | st.sampled_from(["", " ", "TRUE", "false", "1827", "1.5", "-1", "NaN", "Infinity", "429",
                                   "2024-04-04T18:30:38.730Z", "2024-04-04T18:30:38+02:00", "1712255438",
                                   "FLOW_COMPLETED", "flow_fail", "yesterday", "0"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
FIELDS = sorted({k for s in SAMPLES.values() for k in s} | set(STR_FIELDS)
                | {"duration", "step_count", "pause_duration", "fatal", "status_code", "timestamp"})


def check_invariants(ev: FlowEvent) -> None:
    assert isinstance(ev, FlowEvent)
    assert isinstance(ev.event_type, str) and ev.event_type and len(ev.event_type) <= MAX_FIELD_CHARS
    assert isinstance(ev.execution_id, str) and ev.execution_id.strip()
    assert isinstance(ev.root_execution_id, str) and ev.root_execution_id
    assert ev.is_root == (ev.root_execution_id == ev.execution_id)
    assert type(ev.timestamp_ms) is int
    assert isinstance(ev.idempotency_key, str) and ev.idempotency_key and len(ev.idempotency_key) <= MAX_FIELD_CHARS
    for f in STR_FIELDS:
        v = getattr(ev, f)
        assert v is None or (isinstance(v, str) and v and len(v) <= MAX_FIELD_CHARS and v == v.strip()), (f, v)
    for f in ("duration_ms", "pause_duration_ms"):
        v = getattr(ev, f)
        assert v is None or (type(v) is float and math.isfinite(v) and v >= 0)
    assert ev.step_count is None or (type(ev.step_count) is int and ev.step_count >= 0)
    assert ev.fatal in (None, True, False) and ev.throttled in (None, True, False)
    assert ev.outcome == OUTCOMES.get(ev.event_type)
    assert isinstance(ev.raw, dict)
    # the chain key must be the Kafka key ingest chose, or the chain's state lands in another partition
    assert event_key(ev.raw) == ev.root_execution_id.encode()


def parses_or_invalid(value, received_ms=None):
    try:
        ev = parse_event(value, received_ms)
    except InvalidEvent as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return None
    check_invariants(ev)
    return ev


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES, st.none() | st.integers(0, 4 * 10**12))
def test_arbitrary_json_never_raises_anything_else(value, received_ms):
    parses_or_invalid(value, received_ms)
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return
    parses_or_invalid(data, received_ms)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(data):
    parses_or_invalid(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SAMPLES)),
       st.lists(st.tuples(st.sampled_from(FIELDS + ["event_type", "execution_id", "root_execution_id",
                                                    "parent_execution_id", "idempotency_key", "new_field"]),
                          st.none() | JSON_VALUES, st.booleans()), max_size=6),
       st.none() | st.integers(946_684_800_000, 4_000_000_000_000))
def test_mutated_samples_never_raise_anything_else(name, mutations, received_ms):
    raw = dict(SAMPLES[name])
    for field, value, delete in mutations:
        if delete:
            raw.pop(field, None)
        else:
            raw[field] = value
    ev = parses_or_invalid(raw, received_ms)
    try:
        data = orjson.dumps(raw)
    except orjson.JSONEncodeError:
        return
    if orjson.loads(data) != raw:  # not JSON's own value (orjson writes inf and nan as null): another input
        return
    ev2 = parses_or_invalid(data, received_ms)
    assert (ev is None) == (ev2 is None)
    if ev is not None and "idempotency_key" in raw and isinstance(raw["idempotency_key"], str) \
            and raw["idempotency_key"].strip():
        assert ev.idempotency_key == ev2.idempotency_key


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31, 23, 59, 59),
                    timezones=st.just(UTC)))
def test_iso_timestamps_round_trip(dt):
    want = int(dt.timestamp()) * 1000 + dt.microsecond // 1000
    assert parse(timestamp=dt.isoformat().replace("+00:00", "Z")).timestamp_ms == want
    assert parse(timestamp=dt.isoformat(timespec="milliseconds")).timestamp_ms == want


def test_an_id_that_is_not_valid_unicode_is_an_invalid_event():
    """Only a dict can hold a lone surrogate (JSON refuses it), but an id must be usable as the Kafka key."""
    import pytest

    from processor.core.model import InvalidEvent, parse_event

    with pytest.raises(InvalidEvent, match="execution_id is not valid Unicode"):
        parse_event({"event_type": "FLOW_START", "execution_id": "\ud800", "timestamp": "2024-08-20T19:46:09Z"})
