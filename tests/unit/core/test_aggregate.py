"""Bags, window math, tag normalisation, event/chain contributions and rendering into Datadog v2 series."""

from __future__ import annotations

import math
import random
import re
from types import SimpleNamespace

import orjson
import pytest
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.bag import Bag
from processor.core.contributions import add_chain, add_event, add_org_usage
from processor.core.tags import counter_key, parse_dd_tags, split_key, tag_value
from processor.core.windows import DAY_MS, month_start, window_start
from processor.sink.render import COUNT, GAUGE, render_series

P = "okta.workflows"
W = 60_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % W


# -- helpers --------------------------------------------------------------------------------------------------
def ev(event_type="FLOW_START", ts=T0 + 1, **kw):
    """A stand-in for processor.core.model.FlowEvent (same attribute names, already normalised)."""
    outcome = {"FLOW_COMPLETE": "completed", "FLOW_FAIL": "failed", "FLOW_CANCEL": "canceled"}.get(event_type)
    base = dict(event_type=event_type, execution_id="ex-1", root_execution_id="ex-1", is_root=True,
                timestamp_ms=ts, flow_id="f1", flow_name="Main Flow", root_flow_id="f1", root_flow_name="Main Flow",
                org_name="acme", org_hostname="acme.workflows.okta.com", duration_ms=None, step_count=None,
                error_type=None, error_code=None, error_message=None, fatal=None, throttling_type=None,
                throttling_level=None, hostname=None, status_code=None, outcome=outcome)
    base.update(kw)
    return SimpleNamespace(**base)


def summary(**kw) -> dict:
    d = dict(root_execution_id="ex-1", root_flow_id="f1", root_flow_name="Main Flow", status="completed",
             had_failures=False, duration_ms=1500.0, start_ms=T0, end_ms=T0 + 1500, executions=3,
             helper_flows=["h1"], failing_flow=None, error=None, path=["Main Flow"])
    d.update(kw)
    return d


def by_metric(series: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in series:
        out.setdefault(s["metric"], []).append(s)
    return out


def one(series: list[dict], metric: str) -> dict:
    found = [s for s in series if s["metric"] == f"{P}.{metric}"]
    assert len(found) == 1, (metric, found)
    return found[0]


def value(series: list[dict], metric: str) -> float:
    return one(series, metric)["points"][0]["value"]


def strict_series(s: dict) -> MetricSeries:
    """Build the client's model with type checks on (what the sink would hand to MetricsApi.submit_metrics)."""
    kw = {k: v for k, v in s.items() if k not in ("type", "points")}
    return MetricSeries(type=MetricIntakeType(s["type"]), points=[MetricPoint(**p) for p in s["points"]], **kw)


def assert_valid_payload(series: list[dict]) -> None:
    assert series
    payload = MetricPayload(series=[strict_series(s) for s in series])
    assert payload.to_dict() == {"series": series}  # exactly MetricSeries.to_dict() shape
    # the client's own deserialiser does not raise on bad input; it marks it unparsed
    parsed = validate_and_convert_types({"series": series}, (MetricPayload,), ["body"], True, True,
                                        configuration=Configuration())
    assert isinstance(parsed, MetricPayload) and not parsed._unparsed
    for s in parsed.series:
        assert not s._unparsed and not s.type._unparsed and not any(p._unparsed for p in s.points)
    assert parsed.to_dict() == {"series": series}
    for s in series:
        assert all(re.fullmatch(r"[a-z][^,\s]*", t) and len(t) <= 200 for t in s["tags"]), s["tags"]
        assert not any(t.endswith((":", "_")) for t in s["tags"]), s["tags"]


def clone(b: Bag) -> Bag:
    return Bag.from_dict(orjson.loads(orjson.dumps(b.to_dict())))


def merged(*bags: Bag) -> Bag:
    out = Bag()
    for b in bags:
        out.merge(b)
    return out


# -- time -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ts", "size", "want"), [
    (0, 60_000, 0),
    (59_999, 60_000, 0),
    (60_000, 60_000, 60_000),
    (60_001, 60_000, 60_000),
    (T0, W, T0),
    (T0 + W - 1, W, T0),
    (T0 + W, W, T0 + W),
    (-1, 60_000, -60_000),
    (-60_000, 60_000, -60_000),
    (-60_001, 60_000, -120_000),
    (1_234, 1, 1_234),
    (7, 10, 0),
])
def test_window_start(ts, size, want):
    assert window_start(ts, size) == want


@given(st.integers(min_value=-10**15, max_value=10**15), st.integers(min_value=1, max_value=10**9))
def test_window_start_properties(ts, size):
    ws = window_start(ts, size)
    assert ws % size == 0 and ws <= ts < ws + size


def test_window_size_must_be_positive():
    with pytest.raises(ValueError):
        window_start(5, 0)


def test_month_start_is_utc_calendar_month():
    assert month_start(1_709_251_199_999) == 1_706_745_600_000  # 2024-02-29T23:59:59.999Z -> 2024-02-01
    assert month_start(1_709_251_200_000) == 1_709_251_200_000  # 2024-03-01T00:00:00Z
    assert month_start(1_735_689_599_000) == 1_733_011_200_000  # 2024-12-31T23:59:59Z -> 2024-12-01


# -- tags -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "want"), [
    ("2. Simple Helper flow ", "2._simple_helper_flow"),
    ("Main Flow", "main_flow"),
    ("UPPER", "upper"),
    ("  padded  ", "padded"),
    ("a  __ b", "a_b"),
    ("a,b;c|d=e", "a_b_c_d_e"),
    ("keep-these_:./", "keep-these_:./"),
    ("http://api.example.com:443/v1", "http://api.example.com:443/v1"),
    ("ends with colon:", "ends_with_colon"),
    ("ends:_:", "ends"),
    ("__lead", "lead"),
    ("Ünïcödé Flöw", "ünïcödé_flöw"),
    ("日本語 フロー", "日本語_フロー"),
    ("Ελληνικά", "ελληνικά"),
    ("🚀 launch 🚀", "launch"),
    ("٣ arabic digit", "arabic_digit"),  # only ASCII digits are kept
    ("", "none"),
    ("   ", "none"),
    ("!!!", "none"),
    (None, "none"),
    (True, "true"),
    (429, "429"),
    ("E0000047", "e0000047"),
])
def test_tag_value(raw, want):
    assert tag_value(raw) == want


def test_tag_value_length():
    assert tag_value("a" * 300) == "a" * 200
    assert tag_value("a" * 199 + " b") == "a" * 199  # the cut leaves a trailing '_', which goes
    assert len(tag_value("x" * 1000)) == 200


@settings(max_examples=300)
@given(st.text(max_size=260))
def test_tag_value_properties(s):
    v = tag_value(s)
    assert v and len(v) <= 200
    assert tag_value(v) == v  # what we send is what Datadog keeps: normalising again changes nothing
    assert v == v.lower() and "__" not in v and not v.startswith("_") and not v.endswith(("_", ":"))
    assert all(c.isalpha() or c in "0123456789_-:./" for c in v)


@pytest.mark.parametrize(("raw", "want"), [
    ("env:prod,team:iam", ["env:prod", "team:iam"]),
    ("env:prod team:iam", ["env:prod", "team:iam"]),
    (" env:Prod ,, Team:IAM\tfoo ", ["env:prod", "team:iam", "foo"]),
    ("url:http://x.example.com:8080/a", ["url:http://x.example.com:8080/a"]),
    ("env:prod,env:prod", ["env:prod"]),
    ("k:,:v,", ["k"]),
    ("1env:x", ["env:x"]),
    ("Cost Center:R&D", ["cost", "center:r_d"]),
    ("", []),
    (None, []),
])
def test_parse_dd_tags(raw, want):
    assert parse_dd_tags(raw) == want


# -- counter keys and bags ------------------------------------------------------------------------------------
def test_counter_keys_sorted_normalised_and_stable():
    assert counter_key("m", (("b", "X Y"), ("a", "z"))) == "m|a:z,b:x_y"
    assert counter_key("m", (("a", "z"), ("b", "X Y"))) == "m|a:z,b:x_y"
    assert counter_key("m") == "m"
    assert split_key("m|a:z,b:x_y") == ("m", ["a:z", "b:x_y"])
    assert split_key("m") == ("m", [])
    b = Bag()
    b.count("failures", error_type="Timeout", fatal="true")
    b.count("failures", fatal="true", error_type="Timeout")
    b.count("plain", 2.5)
    assert b.counters == {"failures|error_type:timeout,fatal:true": 2, "plain": 2.5}


def test_bag_roundtrip_and_equality():
    b = Bag()
    for i in range(50):
        add_event(b, ev("FLOW_COMPLETE", T0 + i, duration_ms=10.0 * i + 0.5, step_count=i))
    add_event(b, ev("FLOW_FAIL", T0 + 99, error_type="Timeout", fatal=True, duration_ms=0.0, step_count=1))
    raw = orjson.dumps(b.to_dict())
    back = Bag.from_dict(orjson.loads(raw))
    assert back == b and back.labels == b.labels and back.label_ms == b.label_ms
    assert orjson.dumps(back.to_dict()) == raw
    assert b != Bag() and Bag() == Bag() and Bag.from_dict({}) == Bag()
    for q in (0.5, 0.95, 0.99):
        assert back.sketches["duration"].get_quantile_value(q) == b.sketches["duration"].get_quantile_value(q)
    assert len(raw) < 2048


def test_labels_are_latest_event_time_wins_independent_of_order():
    old, new = ev(ts=T0 + 1, flow_name="Old Name"), ev(ts=T0 + 2, flow_name="New Name")
    a, b = Bag(), Bag()
    add_event(a, old)
    add_event(a, new)
    add_event(b, new)
    add_event(b, old)  # out of order: the older name does not come back
    assert a.labels["flow_name"] == b.labels["flow_name"] == "New Name"
    assert a == b
    c = Bag()
    add_event(c, ev(ts=T0 + 5, flow_name=None))  # an event without a name does not erase it
    assert merged(a, c).labels == {"flow_id": "f1", "flow_name": "New Name"}


def test_merge_adds_counters_and_merges_sketches_without_aliasing():
    a, b = Bag(), Bag()
    a.count("events", event_type="flow_start")
    b.count("events", event_type="flow_start", n=2)
    b.count("pipeline.duplicates")
    b.sample("duration", 100.0)
    a.merge(b)
    assert a.counters == {"events|event_type:flow_start": 3, "pipeline.duplicates": 1}
    a.sample("duration", 200.0)
    assert b.sketches["duration"].count == 1 and a.sketches["duration"].count == 2


_METRICS = st.sampled_from([("events", "event_type", ["flow_start", "flow_fail"]),
                            ("failures", "error_type", ["timeout", "Bad Request"]),
                            ("pipeline.duplicates", None, [None])])


@st.composite
def bags(draw) -> Bag:
    b = Bag()
    for metric, tag, values in draw(st.lists(_METRICS, max_size=6)):
        n = draw(st.integers(min_value=0, max_value=10**6))
        if tag:
            b.count(metric, n, **{tag: draw(st.sampled_from(values))})
        else:
            b.count(metric, n)
    for name in ("duration", "chain.duration"):
        for v in draw(st.lists(st.integers(min_value=0, max_value=10**7), max_size=30)):
            b.sample(name, v)
    for tag in draw(st.lists(st.sampled_from(["flow_name", "flow_id"]), max_size=2)):
        b.label(tag, draw(st.sampled_from(["A", "B", "Flow C"])), draw(st.integers(min_value=0, max_value=3)))
    return b


@settings(max_examples=150, deadline=None)
@given(bags(), bags(), bags())
def test_merge_is_associative_and_commutative(a, b, c):
    assert merged(clone(a), clone(b)) == merged(clone(b), clone(a))
    left = merged(clone(a), clone(b))
    left.merge(clone(c))
    bc = merged(clone(b), clone(c))
    right = clone(a)
    right.merge(bc)
    assert left == right
    assert merged(clone(a), Bag()) == a == merged(Bag(), clone(a))  # the empty bag is neutral
    assert clone(a) == a


@settings(max_examples=150, deadline=None)
@given(bags(), bags())
def test_merging_an_encoded_bag_equals_merging_the_decoded_one(a, b):
    """The sink merges partitions' shares as JSON (Bag.merge_dict): the same bag as merge(from_dict(...))."""
    encoded = orjson.loads(orjson.dumps(b.to_dict()))
    direct, decoded = clone(a), clone(a)
    direct.merge_dict(encoded)
    decoded.merge(Bag.from_dict(encoded))
    assert direct == decoded
    empty = Bag()
    empty.merge_dict(encoded)
    assert empty == b


# -- contributions --------------------------------------------------------------------------------------------
def test_add_event_contributions():
    b = Bag()
    add_event(b, ev("FLOW_START"))
    add_event(b, ev("FLOW_COMPLETE", duration_ms=120.0, step_count=7))
    add_event(b, ev("FLOW_FAIL", error_type="Timeout Error", fatal=True, duration_ms=80.0, step_count=3))
    add_event(b, ev("FLOW_FAIL", error_type=None, fatal=None))
    add_event(b, ev("FLOW_FAIL", error_type="x", fatal=False))
    add_event(b, ev("FLOW_CANCEL", duration_ms=None, step_count=None))
    add_event(b, ev("FLOW_RATE_LIMIT", hostname="api.Slack.com", status_code="429"))
    add_event(b, ev("FLOW_RATE_LIMIT"))
    add_event(b, ev("FLOW_THROTTLE", throttling_type="Flow", throttling_level="ORG"))
    add_event(b, ev("FLOW_PAUSE"))
    add_event(b, ev("FLOW_SOMETHING_NEW"))
    assert b.labels == {"flow_id": "f1", "flow_name": "Main Flow"}
    assert b.counters == {
        "events|event_type:flow_start": 1, "events|event_type:flow_complete": 1, "events|event_type:flow_fail": 3,
        "events|event_type:flow_cancel": 1, "events|event_type:flow_rate_limit": 2,
        "events|event_type:flow_throttle": 1, "events|event_type:flow_pause": 1,
        "events|event_type:flow_something_new": 1,
        "failures|error_type:timeout_error,fatal:true": 1, "failures|error_type:unknown,fatal:unknown": 1,
        "failures|error_type:x,fatal:false": 1,
        "_ended|outcome:completed": 1, "_ended|outcome:failed": 3, "_ended|outcome:canceled": 1,
        "steps": 10, "_steps_n": 2,
        "rate_limited|hostname:api.slack.com,status_code:429": 1,
        "rate_limited|hostname:unknown,status_code:unknown": 1,
        "throttled|throttling_level:org,throttling_type:flow": 1,
    }
    assert b.sketches["duration"].count == 2


def test_add_event_without_flow_id():
    b = Bag()
    add_event(b, ev(flow_id=None, flow_name=None))
    assert b.labels == {"flow_id": "unknown"}


def test_add_chain_contributions():
    b = Bag()
    add_chain(b, summary())
    add_chain(b, summary(status="completed", had_failures=True, duration_ms=3000.0))
    add_chain(b, summary(status="timed_out", had_failures=False, duration_ms=None))
    assert b.labels == {"root_flow_id": "f1", "root_flow_name": "Main Flow"}
    assert b.counters == {"chains|had_failures:false,status:completed": 1,
                          "chains|had_failures:true,status:completed": 1,
                          "chains|had_failures:false,status:timed_out": 1}
    assert b.sketches["chain.duration"].count == 2


def test_add_org_usage_counts_every_event_and_the_steps_of_ended_executions_per_day():
    b = Bag()
    add_org_usage(b, ev("FLOW_COMPLETE", step_count=5))
    add_org_usage(b, ev("FLOW_FAIL", step_count=2))
    add_org_usage(b, ev("FLOW_START", step_count=99))
    add_org_usage(b, ev("FLOW_COMPLETE", step_count=None))
    add_org_usage(b, ev("FLOW_COMPLETE", ts=T0 + DAY_MS, step_count=1))
    day = T0 // DAY_MS
    assert b.counters == {"events": 5, f"events.day|day:{day}": 4, f"events.day|day:{day + 1}": 1,
                          "steps": 8, f"steps.day|day:{day}": 7, f"steps.day|day:{day + 1}": 1}
    assert b.labels == {"org": "acme"}


# -- rendering ------------------------------------------------------------------------------------------------
def rich_flow_bag(flow_name="2. Simple Helper flow ") -> tuple[Bag, list[float]]:
    b = Bag()
    durations = []
    r = random.Random(7)
    for i in range(200):
        kind = "FLOW_COMPLETE" if i % 10 < 7 else "FLOW_FAIL" if i % 10 < 9 else "FLOW_CANCEL"
        d = r.uniform(10, 600_000)
        durations.append(d)
        add_event(b, ev("FLOW_START", flow_name=flow_name))
        add_event(b, ev(kind, flow_name=flow_name, duration_ms=d, step_count=i % 5, error_type="Timeout",
                        fatal=True))
    add_event(b, ev("FLOW_RATE_LIMIT", flow_name=flow_name, hostname="api.slack.com", status_code="429"))
    add_event(b, ev("FLOW_THROTTLE", flow_name=flow_name, throttling_type="flow", throttling_level="org"))
    return b, durations


FLOW_TAGS = ["flow_id:f1", "flow_name:2._simple_helper_flow"]


def test_render_flow_group_every_metric_type_tags_timestamp():
    b, durations = rich_flow_bag()
    series = render_series("flow:f1", T0, 60, b, base_tags=["env:prod", "team:iam"])
    assert_valid_payload(series)
    got = {(s["metric"], s["type"]) for s in series}
    assert got == {(f"{P}.{m}", t) for m, t in [
        ("events", COUNT), ("failures", COUNT), ("steps", COUNT), ("rate_limited", COUNT), ("throttled", COUNT),
        ("error_rate", GAUGE), ("steps.avg", GAUGE), ("duration.avg", GAUGE), ("duration.p50", GAUGE),
        ("duration.p95", GAUGE), ("duration.p99", GAUGE), ("duration.max", GAUGE)]}
    for s in series:
        assert s["points"][0]["timestamp"] == T0 // 1000 and len(s["points"]) == 1
        assert isinstance(s["points"][0]["value"], float)
        assert s["tags"][:2] == FLOW_TAGS and s["tags"][-2:] == ["env:prod", "team:iam"]
        assert ("interval" in s) == (s["type"] == COUNT)
        if s["type"] == COUNT:
            assert s["interval"] == 60
        else:
            assert s["tags"] == [*FLOW_TAGS, "env:prod", "team:iam"]
    m = by_metric(series)
    events = {tuple(s["tags"][2:-2]): s["points"][0]["value"] for s in m[f"{P}.events"]}
    assert events == {("event_type:flow_start",): 200.0, ("event_type:flow_complete",): 140.0,
                      ("event_type:flow_fail",): 40.0, ("event_type:flow_cancel",): 20.0,
                      ("event_type:flow_rate_limit",): 1.0, ("event_type:flow_throttle",): 1.0}
    assert one(series, "failures")["tags"][2:4] == ["error_type:timeout", "fatal:true"]
    assert value(series, "failures") == 40.0
    assert one(series, "rate_limited")["tags"][2:4] == ["hostname:api.slack.com", "status_code:429"]
    assert one(series, "throttled")["tags"][2:4] == ["throttling_level:org", "throttling_type:flow"]
    assert value(series, "error_rate") == pytest.approx(40 / 200)
    assert value(series, "steps") == sum(i % 5 for i in range(200))
    assert value(series, "steps.avg") == pytest.approx(sum(i % 5 for i in range(200)) / 200)
    assert value(series, "duration.avg") == pytest.approx(math.fsum(durations) / len(durations))
    assert value(series, "duration.max") == max(durations)
    ordered = sorted(durations)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        assert value(series, f"duration.{name}") == pytest.approx(exact, rel=0.01)
    assert not any(s["metric"].startswith(f"{P}._") for s in series)


def test_error_rate_formula_and_absence_when_nothing_ended():
    b = Bag()
    for kind, n in (("FLOW_COMPLETE", 3), ("FLOW_FAIL", 1), ("FLOW_CANCEL", 1)):
        for _ in range(n):
            add_event(b, ev(kind))
    assert value(render_series("flow:f1", T0, 60, b), "error_rate") == 0.2
    only_starts = Bag()
    add_event(only_starts, ev("FLOW_START"))
    add_event(only_starts, ev("FLOW_THROTTLE"))
    names = {s["metric"] for s in render_series("flow:f1", T0, 60, only_starts)}
    assert names == {f"{P}.events", f"{P}.throttled"}  # no error_rate, durations or steps without ends
    all_failed = Bag()
    add_event(all_failed, ev("FLOW_FAIL"))
    assert value(render_series("flow:f1", T0, 60, all_failed), "error_rate") == 1.0


def test_ended_without_duration_or_steps_renders_no_duration_or_steps():
    b = Bag()
    add_event(b, ev("FLOW_COMPLETE"))
    names = {s["metric"] for s in render_series("flow:f1", T0, 60, b)}
    assert names == {f"{P}.events", f"{P}.error_rate"}


def test_error_rate_from_merged_partials():
    p1, p2 = Bag(), Bag()
    add_event(p1, ev("FLOW_COMPLETE"))
    add_event(p2, ev("FLOW_FAIL"))
    assert value(render_series("flow:f1", T0, 60, merged(p1, p2)), "error_rate") == 0.5


def test_flow_group_without_name_still_tags_flow_name_and_id():
    b = Bag()
    b.count("events", event_type="flow_start")
    series = render_series("flow:abc123", T0, 60, b)
    assert series[0]["tags"] == ["flow_id:abc123", "flow_name:unknown", "event_type:flow_start"]


def test_render_chain_group():
    b = Bag()
    durs = [1000.0, 2000.0, 4000.0, 8000.0]
    for i, d in enumerate(durs):
        add_chain(b, summary(root_flow_name="Onboard User", duration_ms=d, had_failures=i == 0,
                             status="failed" if i == 3 else "completed"))
    series = render_series("chain:f1", T0, 60, b, base_tags=["env:prod"])
    assert_valid_payload(series)
    assert {(s["metric"], s["type"]) for s in series} == {
        (f"{P}.chains", COUNT), (f"{P}.chain.duration.avg", GAUGE), (f"{P}.chain.duration.p95", GAUGE),
        (f"{P}.chain.duration.max", GAUGE)}
    chains = {tuple(s["tags"]): s["points"][0]["value"] for s in by_metric(series)[f"{P}.chains"]}
    head = ("root_flow_id:f1", "root_flow_name:onboard_user")
    assert chains == {(*head, "had_failures:true", "status:completed", "env:prod"): 1.0,
                      (*head, "had_failures:false", "status:completed", "env:prod"): 2.0,
                      (*head, "had_failures:false", "status:failed", "env:prod"): 1.0}
    for s in series:
        assert s["points"][0]["timestamp"] == T0 // 1000
        if s["type"] == GAUGE:
            assert s["tags"] == [*head, "env:prod"] and "interval" not in s
    assert value(series, "chain.duration.avg") == 3750.0
    assert value(series, "chain.duration.max") == 8000.0
    assert value(series, "chain.duration.p95") == pytest.approx(4000.0, rel=0.01)  # rank floor(0.95 * 3) = 2


def test_render_org_group_month_to_date_and_utilization():
    b = Bag()
    add_org_usage(b, ev("FLOW_COMPLETE", org_name="Acme Corp", step_count=1500))
    add_org_usage(b, ev("FLOW_FAIL", org_name="Acme Corp", step_count=500))
    now_ws = T0 + 7 * W  # the caller passes the current window, not the month start
    series = render_series("org:Acme Corp", now_ws, 60, b, base_tags=["env:prod"], monthly_step_limit=10_000)
    assert_valid_payload(series)
    by_metric = {s["metric"].removeprefix(P + "."): s for s in series}
    assert all(s["type"] == GAUGE and s["tags"] == ["org:acme_corp", "env:prod"]
               and s["points"][0]["timestamp"] == now_ws // 1000 for s in series)
    assert by_metric["steps.month_to_date"]["points"][0]["value"] == 2000.0
    assert by_metric["steps.limit_utilization"]["points"][0]["value"] == 0.2
    assert by_metric["events.month_to_date"]["points"][0]["value"] == 2.0
    assert "events.limit_utilization" not in by_metric
    without_limit = render_series("org:Acme Corp", now_ws, 60, b)
    assert {s["metric"] for s in without_limit} == {f"{P}.{u}.{m}" for u in ("steps", "events")
                                                   for m in ("month_to_date", "projected_month_end")}


def test_render_pipeline_group():
    b = Bag()
    for metric, n in (("pipeline.events_in", 10), ("pipeline.duplicates", 2), ("pipeline.late_events", 1),
                      ("pipeline.future_events", 5), ("pipeline.deadletters", 3), ("pipeline.sink_retries", 4)):
        b.count(metric, n)
    series = render_series("pipeline", T0, 10, b, prefix="acme.wf", base_tags=parse_dd_tags("env:prod"))
    assert_valid_payload(series)
    assert {s["metric"]: s["points"][0]["value"] for s in series} == {
        "acme.wf.pipeline.events_in": 10.0, "acme.wf.pipeline.duplicates": 2.0, "acme.wf.pipeline.late_events": 1.0,
        "acme.wf.pipeline.future_events": 5.0, "acme.wf.pipeline.deadletters": 3.0,
        "acme.wf.pipeline.sink_retries": 4.0}
    for s in series:
        assert s["type"] == COUNT and s["interval"] == 10 and s["tags"] == ["env:prod"]


def test_render_is_deterministic_and_rerender_of_roundtrip_is_identical():
    b, _ = rich_flow_bag()
    assert render_series("flow:f1", T0, 60, b) == render_series("flow:f1", T0, 60, clone(b))


def test_render_empty_bag_and_negative_window():
    assert render_series("flow:f1", T0, 60, Bag()) == []
    b = Bag()
    b.count("events", event_type="flow_start")
    assert render_series("flow:f1", -60_000, 60, b)[0]["points"][0]["timestamp"] == -60


def test_long_and_odd_tags_are_capped_and_valid():
    b = Bag()
    add_event(b, ev("FLOW_FAIL", flow_name="Ω " * 150, error_type="E" * 300, fatal=False, duration_ms=5.0,
                    step_count=1))
    series = render_series("flow:f1", T0, 60, b, base_tags=parse_dd_tags("service:" + "s" * 250))
    assert_valid_payload(series)  # checks every tag <= 200 chars, no trailing '_' or ':'
    assert any(t.startswith("flow_name:ω_ω") for t in series[0]["tags"])
