"""Every body shape Okta (or an admin's custom body) can produce, and every way a body can be unusable."""

from __future__ import annotations

import gzip
import json
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.envelope import BodyError, event_key, extract, unwrap
from tests.helpers.paths import SAMPLES

SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))
SAMPLES_PARSED = [json.loads(p.read_text()) for p in SAMPLE_FILES]
EV = SAMPLES_PARSED[0]


def test_samples_exist():
    assert len(SAMPLE_FILES) >= 6


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_documented_sample_is_accepted_unchanged(path):
    body = path.read_bytes()
    out = unwrap(body)
    assert len(out.events) == 1 and not out.rejects
    assert orjson.loads(out.events[0].value) == json.loads(body)


def test_key_is_the_chain_root_for_helpers_and_the_execution_for_roots():
    helper = json.loads((SAMPLES / "doc-helper-flow-start.json").read_text())
    root = json.loads((SAMPLES / "doc-parent-flow-start.json").read_text())
    assert event_key(helper) == helper["root_execution_id"].encode()
    assert event_key(root) == root["execution_id"].encode()
    assert event_key({**root, "root_execution_id": ""}) == root["execution_id"].encode()
    assert event_key({**root, "root_execution_id": None}) == root["execution_id"].encode()


def test_idempotency_key_carried_and_numbers_stringified():
    out = unwrap(orjson.dumps(EV))
    assert out.events[0].idempotency_key == EV["idempotency_key"]
    out = unwrap(orjson.dumps({**EV, "idempotency_key": 12345}))
    assert out.events[0].idempotency_key == "12345"
    ev = dict(EV)
    del ev["idempotency_key"]
    assert unwrap(orjson.dumps(ev)).events[0].idempotency_key is None


def test_array_of_events():
    out = unwrap(orjson.dumps(SAMPLES_PARSED))
    assert [orjson.loads(e.value) for e in out.events] == SAMPLES_PARSED


def test_ndjson_with_blank_lines_and_crlf():
    body = b"\r\n".join(orjson.dumps(e) for e in SAMPLES_PARSED) + b"\r\n\r\n"
    out = unwrap(body)
    assert len(out.events) == len(SAMPLES_PARSED) and not out.rejects


def test_ndjson_keeps_good_lines_and_rejects_bad_ones():
    body = orjson.dumps(EV) + b"\n{not json\n" + orjson.dumps(SAMPLES_PARSED[1])
    out = unwrap(body)
    assert len(out.events) == 2
    assert len(out.rejects) == 1 and out.rejects[0].raw == b"{not json" and "line 2" in out.rejects[0].reason


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", None])
def test_gzip_bodies(encoding):
    out = unwrap(gzip.compress(orjson.dumps(SAMPLES_PARSED)), encoding)
    assert len(out.events) == len(SAMPLES_PARSED)


def test_deflate_zlib_and_raw():
    body = orjson.dumps(EV)
    assert len(unwrap(zlib.compress(body), "deflate").events) == 1
    raw = zlib.compressobj(wbits=-15)
    assert len(unwrap(raw.compress(body) + raw.flush(), "deflate").events) == 1


def test_gzip_ndjson():
    body = gzip.compress(b"\n".join(orjson.dumps(e) for e in SAMPLES_PARSED))
    assert len(unwrap(body, "gzip").events) == len(SAMPLES_PARSED)


@pytest.mark.parametrize("wrapper", [
    lambda e: {"event": e},                                                  # Splunk HEC, object
    lambda e: {"event": json.dumps(e)},                                      # Splunk HEC, string
    lambda e: {"ddsource": "okta", "ddtags": "a:b", "service": "wf", "message": e},   # Datadog, object
    lambda e: {"ddsource": "okta", "ddtags": "a:b", "service": "wf", "message": json.dumps(e)},  # string
    lambda e: {"payload": e},                                                # any single member
    lambda e: {"payload": json.dumps(e)},
    lambda e: {"outer": {"event": json.dumps(e)}},                           # nested wrappers
    lambda e: json.dumps(e),                                                 # a bare JSON string
], ids=["hec-obj", "hec-str", "dd-obj", "dd-str", "single-obj", "single-str", "nested", "string"])
def test_custom_body_wrappers(wrapper):
    out = unwrap(orjson.dumps(wrapper(EV)))
    assert [orjson.loads(e.value) for e in out.events] == [EV]


def test_array_of_wrapped_events_and_ndjson_of_wrappers():
    body = orjson.dumps([{"event": e} for e in SAMPLES_PARSED])
    assert len(unwrap(body).events) == len(SAMPLES_PARSED)
    body = b"\n".join(orjson.dumps({"message": json.dumps(e)}) for e in SAMPLES_PARSED)
    assert len(unwrap(body).events) == len(SAMPLES_PARSED)


def test_unknown_event_types_and_fields_are_kept():
    ev = {**EV, "event_type": "FLOW_SOMETHING_NEW", "brand_new_field": {"x": [1, 2]}}
    out = unwrap(orjson.dumps(ev))
    assert orjson.loads(out.events[0].value) == ev


def test_quirky_values_pass_through_unchanged():
    ev = {**EV, "duration": "1827", "throttled": "false", "fatal": "TRUE", "depth": "5", "folder_name": ["a", "b"],
          "org_hostname": None, "user_email": ""}
    assert orjson.loads(unwrap(orjson.dumps(ev)).events[0].value) == ev


@pytest.mark.parametrize("body,status,needle", [
    (b"", 400, "empty"),
    (b"   \n  ", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b"42", 400, "int"),
    (b'"just a string"', 400, "not a JSON event"),
    (b"null", 400, "NoneType"),
    (b"[]", 400, "empty JSON array"),
    (b"{}", 400, "no usable event"),
    (b'{"event_type": "FLOW_START"}', 400, "execution_id"),
    (b'{"execution_id": "x"}', 400, "event_type"),
    (b'{"event_type": 5, "execution_id": "x"}', 400, "event_type"),
    (b'{"event_type": "FLOW_START", "execution_id": 7}', 400, "execution_id"),
    (b'{"event_type": "FLOW_START", "execution_id": ""}', 400, "execution_id"),
    (b"[1, 2, 3]", 400, "int"),
    (b'{"event": "not json"}', 400, "string that is not a JSON event"),
    (b'{"a": 1, "b": 2}', 400, "not an ELS event"),
    (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
])
def test_unusable_bodies(body, status, needle):
    with pytest.raises(BodyError) as err:
        unwrap(body)
    assert err.value.status == status
    assert needle in err.value.reason


def test_partially_usable_array_rejects_items_with_reasons():
    body = orjson.dumps([EV, {"event_type": "FLOW_START"}, 7, {"event": "nope"}])
    out = unwrap(body)
    assert len(out.events) == 1
    assert [r.reason for r in out.rejects] == [
        "execution_id is missing or not a non-empty string",
        "a JSON int is not an event object",
        "a string that is not a JSON event",
    ]
    assert orjson.loads(out.rejects[0].raw) == {"event_type": "FLOW_START"}


def test_corrupt_and_truncated_gzip():
    with pytest.raises(BodyError) as err:
        unwrap(b"\x1f\x8b\x08\x00garbage", "gzip")
    assert err.value.status == 400
    full = gzip.compress(orjson.dumps(SAMPLES_PARSED))
    with pytest.raises(BodyError) as err:
        unwrap(full[: len(full) // 2], "gzip")
    assert err.value.status == 400 and "truncated" in err.value.reason


def test_gzip_bomb_is_413_not_memory():
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))
    with pytest.raises(BodyError) as err:
        unwrap(bomb, "gzip", max_bytes=1 << 20)
    assert err.value.status == 413


def test_unsupported_encoding():
    with pytest.raises(BodyError) as err:
        unwrap(b"xx", "br")
    assert err.value.status == 400 and "br" in err.value.reason


def test_wrapping_depth_is_bounded():
    item = EV
    for _ in range(10):
        item = {"w": item}
    with pytest.raises(BodyError):
        unwrap(orjson.dumps(item))


def test_deep_nesting_does_not_crash():
    body = b"[" * 5000 + b"]" * 5000
    with pytest.raises(BodyError):
        unwrap(body)


def test_extract_refuses_nested_arrays_at_top():
    with pytest.raises(ValueError):
        extract([EV])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_gives_events_or_a_body_error(value):
    try:
        out = unwrap(orjson.dumps(value))
    except BodyError as exc:
        assert exc.status == 400
        return
    for ev in out.events:
        parsed = orjson.loads(ev.value)
        assert isinstance(parsed["event_type"], str) and isinstance(parsed["execution_id"], str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_events_or_a_body_error(body):
    try:
        unwrap(body)
    except BodyError as exc:
        assert exc.status in (400, 413)


def test_empty_arrays_inside_a_body_are_rejected_not_dropped():
    """Every item is accepted or dead-lettered: an empty array in a wrapper or on an NDJSON line is neither an
    event nor nothing."""
    out = unwrap(orjson.dumps([EV, {"wrapper": []}]))
    assert len(out.events) == 1 and [r.reason for r in out.rejects] == ["an empty array holds no event"]
    out = unwrap(orjson.dumps(EV) + b"\n[]\n")
    assert len(out.events) == 1 and out.rejects[0].raw == b"[]"
