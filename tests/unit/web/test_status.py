"""The status page's JSON (processor/web/status.py): ordering, the failing threshold, error rates, p95, sparkline
series, partition scope, and merging workers' shares."""

from __future__ import annotations

import re
from types import SimpleNamespace

import orjson
import pytest

from processor.core.bag import Bag
from processor.core.contributions import add_event
from processor.sink.render import render_series
from processor.web.page import PAGE
from processor.web.status import (
    FAILING_ERROR_RATE,
    RETRY_RECENT_MS,
    RecentRise,
    local_share,
    merge_shares,
    sink_state,
    sinks_combined,
    status_data,
    status_view,
)

P = "okta.workflows"
W = 10
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (W * 1000)
NOW = T0 + 3_600_000


def ev(event_type, flow_id, ts, duration=None, name=None):
    outcome = {"FLOW_COMPLETE": "completed", "FLOW_FAIL": "failed", "FLOW_CANCEL": "canceled"}.get(event_type)
    return SimpleNamespace(event_type=event_type, timestamp_ms=ts, flow_id=flow_id, flow_name=name or f"Flow {flow_id}",
                           outcome=outcome, duration_ms=duration, step_count=3 if outcome else None,
                           error_type="HTTPError" if outcome == "failed" else None, fatal=True, hostname=None,
                           status_code=None, throttling_type=None, throttling_level=None)


def runs(flow_id: str, ws: int, ok: int, failed: int, duration: float = 100.0) -> Bag:
    """A window bag with `ok` completed and `failed` failed executions (start + end each)."""
    bag = Bag()
    for i in range(ok + failed):
        add_event(bag, ev("FLOW_START", flow_id, ws + i))
        add_event(bag, ev("FLOW_FAIL" if i < failed else "FLOW_COMPLETE", flow_id, ws + i + 1, duration + i))
    return bag


def rec(p: int, group: str, ws: int, bag: Bag, closed: bool = False) -> tuple[str, dict]:
    return f"{p}|{group}|{ws}", {"group": group, "ws": ws, "bag": bag.to_dict(), "applied": [[0, 1]],
                                 "closed": closed, "dirty": False, "emitted_ms": 0}


def data(items, partitions=None, **kw):
    return status_data(items, window_seconds=W, prefix=P, partitions=partitions, now_ms=T0 + 60_000, **kw)


def test_failing_flows_first_by_error_rate_then_healthy_by_volume():
    items = [rec(0, "flow:big", T0, runs("big", T0, 50, 0)),
             rec(0, "flow:small", T0, runs("small", T0, 3, 0)),
             rec(1, "flow:some", T0, runs("some", T0, 9, 1)),     # 10%
             rec(1, "flow:most", T0, runs("most", T0, 1, 3)),     # 75%
             rec(0, "flow:alsosome", T0, runs("alsosome", T0, 18, 2)),  # 10%, more volume than "some"
             rec(0, "flow:rare", T0, runs("rare", T0, 36, 1))]    # 2.7%: has a failure, is not failing
    d = data(items)
    assert [f["flow_id"] for f in d["flows"]] == ["most", "alsosome", "some", "big", "rare", "small"]
    assert [f["failing"] for f in d["flows"]] == [True, True, True, False, False, False]
    assert d["totals"] == {"flows": 6, "failing": 3, "with_failures": 4, "failures": 7,
                           "events": 2 * (50 + 3 + 10 + 4 + 20 + 37)}
    assert d["has_data"] is True and d["failing_above"] == FAILING_ERROR_RATE


def test_failing_means_an_error_rate_above_the_threshold():
    """5 %: at the threshold a flow is not failing, just above it is."""
    at = runs("at", T0, 19, 1)          # 1 of 20 = 5.0 %
    above = runs("above", T0, 18, 1)    # 1 of 19 = 5.3 %
    d = data([rec(0, "flow:at", T0, at), rec(0, "flow:above", T0, above)])
    by = {f["flow_id"]: f for f in d["flows"]}
    assert by["at"]["error_rate"] == FAILING_ERROR_RATE and by["at"]["failing"] is False
    assert by["above"]["failing"] is True


def test_error_rate_and_p95_come_from_the_merged_bag_across_partitions_and_windows():
    a = runs("f", T0, 7, 1, duration=100)
    b = runs("f", T0, 1, 3, duration=5000)
    c = runs("f", T0 + W * 1000, 4, 4, duration=900)
    d = data([rec(0, "flow:f", T0, a), rec(1, "flow:f", T0, b), rec(0, "flow:f", T0 + W * 1000, c)])
    (f,) = d["flows"]
    assert f["error_rate"] == 8 / 20
    assert f["failures"] == 8 and f["events"] == 40
    merged = Bag()
    for bag in (a, b, c):
        merged.merge(bag)
    want = {s["metric"]: s["points"][0]["value"] for s in render_series("flow:f", T0, W, merged, prefix=P)}
    assert f["p95_ms"] == want[f"{P}.duration.p95"]
    durations = sorted([100 + i for i in range(8)] + [5000 + i for i in range(4)] + [900 + i for i in range(8)])
    assert abs(f["p95_ms"] - durations[18]) <= 0.02 * durations[18]  # the sketch's relative accuracy
    assert f["series"]["error_rate"] == [4 / 12, 4 / 8]
    assert f["series"]["events"] == [24, 16]


def test_sparkline_series_cover_a_common_timeline_with_gaps_and_keep_the_newest_windows():
    step = W * 1000
    items = [rec(0, "flow:a", T0 + i * step, runs("a", T0 + i * step, 1, i % 2)) for i in (0, 1, 2, 5)]
    items.append(rec(0, "flow:b", T0 + 3 * step, runs("b", T0 + 3 * step, 2, 0)))
    d = data(items)
    assert d["windows"] == [T0 + i * step for i in range(6)]
    by = {f["flow_id"]: f for f in d["flows"]}
    assert by["a"]["series"]["events"] == [2, 4, 2, 0, 0, 4]
    assert by["a"]["series"]["error_rate"] == [0.0, 0.5, 0.0, None, None, 0.5]
    assert by["b"]["series"]["events"] == [0, 0, 0, 4, 0, 0]
    assert by["b"]["series"]["p95_ms"][:3] == [None, None, None] and by["b"]["series"]["p95_ms"][3] > 0
    # only the newest 3 windows: flow "a" keeps only its last window in its totals, the rest is older
    short = data(items, max_windows=3)
    assert short["windows"] == [T0 + i * step for i in (3, 4, 5)]
    by = {f["flow_id"]: f for f in short["flows"]}
    assert by["a"]["events"] == 4 and by["a"]["series"]["events"] == [0, 0, 4]
    old_only = data([rec(0, "flow:old", T0, runs("old", T0, 1, 0)), *items], max_windows=3)
    assert "old" not in {f["flow_id"] for f in old_only["flows"]}


def test_only_owned_partitions_count_and_their_clocks_are_reported():
    items = [rec(0, "flow:f", T0, runs("f", T0, 1, 1)), rec(1, "flow:f", T0, runs("f", T0, 5, 0)),
             rec(1, "flow:g", T0, runs("g", T0, 1, 0)),
             ("0|clock", {"now": T0 + 5000, "off": 41}), ("1|clock", {"now": T0 + 6000, "off": 7})]
    d = data(items, partitions=[0])
    assert [f["flow_id"] for f in d["flows"]] == ["f"]
    assert d["flows"][0]["error_rate"] == 0.5
    assert d["clocks"] == {"0": {"now_ms": T0 + 5000, "offset": 41}}
    assert data(items, partitions=[])["has_data"] is False
    assert local_share(items, partitions=[0], window_seconds=W, now_ms=NOW)["partitions"] == [0]
    assert local_share(items, partitions=None, window_seconds=W, now_ms=NOW)["partitions"] == [0, 1]


def test_shares_of_two_workers_merge_to_the_values_of_one():
    """Each worker sends its partitions' bags; merged they give exactly what one worker holding all would show."""
    step = W * 1000
    items = [rec(p, f"flow:{f}", T0 + i * step, runs(f, T0 + i * step, ok=p + i + 1, failed=(p + i) % 3, duration=100 * (p + 1)))
             for p in range(4) for f in ("a", "b") for i in range(3)]
    pipe = Bag()
    pipe.count("pipeline.events_in", 7)
    items += [rec(p, "pipeline", T0, pipe) for p in range(4)]
    items += [(f"{p}|clock", {"now": T0 + p, "off": p}) for p in range(4)]
    whole = data(items)
    shares = [local_share(items, partitions=ps, window_seconds=W, now_ms=NOW) for ps in ([0, 2], [1, 3])]
    shares = [orjson.loads(orjson.dumps(s)) for s in shares]  # as they travel over HTTP
    merged = status_view(merge_shares(shares), window_seconds=W, prefix=P, now_ms=T0 + 60_000)
    assert merged == whole
    assert merged["pipeline"]["events_in"] == 28 and sorted(merged["clocks"]) == ["0", "1", "2", "3"]


def test_a_share_keeps_only_the_newest_windows_the_page_can_show():
    step = W * 1000
    items = [rec(0, "flow:a", T0 + i * step, runs("a", T0 + i * step, 1, 0)) for i in range(5)]
    share = local_share(items, partitions=None, window_seconds=W, now_ms=NOW, max_windows=2)
    assert [g["ws"] for g in share["groups"]] == [T0 + 3 * step, T0 + 4 * step]


def test_pipeline_counters_are_summed_and_other_groups_ignored():
    pipe = Bag()
    pipe.count("pipeline.events_in", 10)
    pipe.count("pipeline.duplicates", 2)
    pipe.count("pipeline.late_events", 1)
    chain = Bag()
    chain.count("chains", status="completed", had_failures="false")
    items = [rec(0, "pipeline", T0, pipe), rec(1, "pipeline", T0 + 10_000, pipe), rec(0, "chain:f", T0, chain),
             rec(0, "org:acme", T0, Bag())]
    d = data(items)
    assert d["pipeline"] == {"events_in": 20, "duplicates": 4, "late_events": 2, "future_events": 0, "deadletters": 0}
    assert d["flows"] == [] and d["has_data"] is False


def test_no_data_and_malformed_records_do_not_crash():
    empty = data([])
    assert empty["flows"] == [] and empty["windows"] == [] and empty["has_data"] is False
    assert empty["totals"] == {"flows": 0, "failing": 0, "with_failures": 0, "events": 0, "failures": 0}
    junk = [("x|flow:f|1", {"group": "flow:f", "ws": 1, "bag": {}}), ("0|flow:f|1", None), ("0|flow:f|2", "text"),
            ("0|flow:f|3", {"group": "flow:f"}),
            rec(0, "flow:ok", T0, runs("ok", T0, 1, 0))]
    assert [f["flow_id"] for f in data(junk)["flows"]] == ["ok"]


def test_sink_state_dry_run_retrying_or_delivering():
    rise = RecentRise()
    assert rise.sample(0, 1_000) is False
    assert rise.sample(0, 2_000) is False
    assert rise.sample(3, 3_000) is True
    assert rise.sample(3, 3_000 + RETRY_RECENT_MS - 1) is True
    assert rise.sample(3, 3_000 + RETRY_RECENT_MS) is False
    stats = {"series_sent": 5, "sink_retries": 3}
    assert sink_state(stats, dry_run=True, retrying=True)["state"] == "dry run"
    s = sink_state(stats, dry_run=False, retrying=True)
    assert s["state"] == "retrying" and s["series_sent"] == 5 and s["logs_sent"] == 0
    assert sink_state(stats, dry_run=False, retrying=False)["state"] == "delivering"


def test_the_cluster_sink_sums_counters_and_says_retrying_if_any_worker_is():
    dry, live, retrying = (sink_state({"series_sent": n}, dry_run=d, retrying=r)
                           for n, d, r in ((1, True, False), (2, False, False), (4, False, True)))
    assert sinks_combined([dry, dry])["state"] == "dry run"
    assert sinks_combined([dry, live])["state"] == "delivering"
    both = sinks_combined([dry, live, retrying])
    assert both["state"] == "retrying" and both["series_sent"] == 7
    assert sinks_combined([])["state"] == "unknown"


def test_page_is_self_contained():
    """The hosts may have no internet: no external scripts, styles, fonts or images."""
    assert not re.search(r"(src|href)\s*=|@import|url\(|https?://", PAGE)
    assert 'fetch("/els/status.json"' in PAGE


def test_a_malformed_share_raises_so_it_is_not_taken_as_empty():
    share = local_share([rec(0, "flow:a", T0, runs("a", T0, 1, 0))], partitions=None, window_seconds=W, now_ms=NOW)
    merge_shares([share])
    for bad in ({**share, "groups": [{"group": "flow:a"}]}, {**share, "groups": [{"group": 1, "ws": T0, "bag": {}}]},
                {**share, "clocks": {"0": 5}}):
        with pytest.raises((KeyError, ValueError, TypeError)):
            merge_shares([bad])


def test_a_window_in_the_future_does_not_hide_the_present():
    """One event stamped two hours ahead, then the present's: the page shows the present, by the wall clock."""
    now = T0 + 5 * W * 1000
    items = [rec(0, "flow:a", ws, runs("a", ws, 4, 0)) for ws in range(T0, now, W * 1000)]
    items.append(rec(1, "flow:ahead", now + 7_200_000, runs("ahead", now + 7_200_000, 1, 0)))
    d = status_data(items, window_seconds=W, prefix=P, partitions=None, now_ms=now)
    assert [f["flow_id"] for f in d["flows"]] == ["a"]
    assert d["windows"][-1] == now - W * 1000 and d["totals"]["events"] == 5 * 8


def test_the_orgs_allowances_this_month_are_on_the_page():
    from processor.core.windows import DAY_MS, month_start

    now = T0 + 3_600_000
    org = Bag()
    org.label("org", "Acme", now)
    org.count("events", 2)
    org.count("events.day", 2, day=str(now // DAY_MS))
    org.count("steps", 12)
    items = [rec(0, "org:acme", month_start(now), org), rec(1, "org:acme", month_start(now) - DAY_MS, org)]
    d = status_data(items, window_seconds=W, prefix=P, partitions=None, now_ms=now)
    assert [a["org"] for a in d["allowances"]] == ["Acme"]  # last month's record left out
    [a] = d["allowances"]
    assert a["events"]["month_to_date"] == 2 and a["steps"]["month_to_date"] == 12
    assert a["events"]["projected_month_end"] > 2 and "limit" not in a["steps"]


def test_the_page_shows_the_pipeline_watching_itself():
    from processor.core.tags import counter_key
    from processor.engine.watch import DELAY, seen_key
    from processor.web.status import Held, health

    held = Held()
    bag = held.pipeline
    bag.at_least(seen_key("acme"), 1_000_000)
    bag.at_least(seen_key("other"), 1_060_000)
    bag.count(counter_key("pipeline.deadletters", (("stage", "ingest"), ("reason", "bad_item"))), 2)
    bag.count(counter_key("pipeline.deadletters", (("stage", "sink"), ("reason", "point_dropped"))), 1)
    bag.count(counter_key("pipeline.ingest.requests", (("outcome", "accepted"),)), 5)
    bag.count(counter_key("pipeline.ingest.requests", (("outcome", "unauthorized"),)), 2)
    bag.sample(DELAY, 1.5)
    bag.at_least(counter_key("pipeline.ingest.tls_days_left", (("host", "a"),)), 20.0)
    bag.at_least(counter_key("pipeline.ingest.tls_days_left", (("host", "b"),)), 9.5)
    h = health(held, 1_090_000, {"pipeline.delay_seconds.max": 1.5})
    assert h["silence_s"] == 30.0  # from the latest event of any org
    assert h["deadletters_by_stage"] == {"ingest": 2, "processor": 0, "sink": 1}
    assert h["ingest_requests"] == {"accepted": 5, "unauthorized": 2}
    assert h["delay_max_s"] == 1.5 and h["tls_days_left"] == 9.5
