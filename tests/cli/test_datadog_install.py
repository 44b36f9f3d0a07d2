"""The Datadog dashboard and monitors as code, and `els datadog install` against the fake Datadog.

What a user relies on: every file is a body Datadog accepts (datadog-api-client's models), every metric and
tag the dashboard and monitors query is one the pipeline really sends (derived from processor/sink/render.py
and the processor's own counters, so renaming a metric breaks this test), and the command converges Datadog
to the files: created once, then unchanged or updated in place, never duplicated, keys never printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from common.config import Config
from els.datadog_install import DEFAULT_PREFIX, SILENCE_MONITOR, app_base, load, same, with_silence
from els.datadog_models import InvalidBody, validate
from processor.core.bag import Bag
from processor.core.contributions import add_chain, add_event, add_org_usage
from processor.core.model import parse_event
from processor.engine.watch import Live
from processor.sink.agent import sink_counts
from processor.sink.render import render_series
from processor.sink.sender import Delivered
from tests.helpers.fakedatadog import FakeDatadog, validate_model
from tests.helpers.paths import ROOT
from tests.unit.engine.test_engine import T0, Harness
from tests.unit.engine.test_engine import ev as engine_event
from tests.unit.engine.test_watch import report

DD_DIR = ROOT / "datadog"
DASHBOARDS = sorted(DD_DIR.glob("dashboard*.json"))
MONITORS = sorted((DD_DIR / "monitors").glob("*.json"))
API_KEY = "api-key-0123456789abcdef"
APP_KEY = "app-key-fedcba9876543210"
NOT_EMITTED_YET: set[str] = set()  # in PRODUCT.md's metrics table, queried, but not sent yet
BASE_TAGS = ["service:okta-workflows", "env:prod"]  # every series carries these (PRODUCT.md "Metrics")


# ---------------------------------------------------------------------------- the files are valid bodies
@pytest.mark.parametrize("path", DASHBOARDS + MONITORS, ids=lambda p: p.name)
def test_every_file_is_a_body_the_client_models_accept(path):
    data = json.loads(path.read_text())
    models = (Dashboard,) if path in DASHBOARDS else (Monitor, MonitorUpdateRequest)
    for model in models:
        validate(data, model, path.name)  # strict: unparsed nodes and unknown fields refused
        assert validate_model(data, (model,)) is None  # the fake's own, independent check


def test_the_files_are_there_and_monitors_carry_their_managed_tag():
    assert [p.name for p in DASHBOARDS] == ["dashboard.json"]
    assert len(MONITORS) >= 5
    for path in MONITORS:
        body = json.loads(path.read_text())
        assert "service:okta-workflows" in body["tags"]
        assert f"els-managed:{path.stem}" in body["tags"]
        assert body["message"].strip() and "{{" in body["message"]  # a message that says which flow/what
    dash = json.loads(DASHBOARDS[0].read_text())
    assert dash["layout_type"] == "ordered"
    assert {v["name"] for v in dash["template_variables"]} == {"flow_name", "env"}


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["widgets"][0]["definition"]["widgets"][0]["definition"].update(type="timeseriez"),
     "widgets[0].definition.widgets[0].definition"),
    (lambda d: d["widgets"][0]["definition"]["widgets"][0]["definition"]["requests"][0].update(dispaly_type="x"),
     "dispaly_type"),
    (lambda d: d["widgets"][0]["definition"]["widgets"][0]["definition"]["requests"][0].update(display_type="barz"),
     "display_type"),
    (lambda d: d.pop("layout_type"), "layout_type"),
    (lambda d: d.update(layout_type="grid"), "layout_type"),
])
def test_validation_refuses_what_datadog_would_refuse_and_says_where(mutate, where):
    data = json.loads(DASHBOARDS[0].read_text())
    mutate(data)
    with pytest.raises(InvalidBody) as exc:
        validate(data, Dashboard, "dashboard.json")
    assert where in str(exc.value) and "dashboard.json" in str(exc.value)


# ---------------------------------------------------------------------------- queried metrics are emitted
EVENTS_AT_MS = 1_712_255_438_730  # 2024-04-04T18:30:38.730Z


def _ev(event_type: str, i: int, **fields) -> dict:
    return {"event_type": event_type, "execution_id": f"e{i}", "timestamp": "2024-04-04T18:30:38.730Z",
            "flow_id": "f1", "flow_name": "Flow One", "org_name": "acme", "idempotency_key": f"k{i}", **fields}


def emitted_series() -> dict[str, set[str]]:
    """metric -> tag keys, from the pipeline's own aggregation and rendering code: one event of each kind into
    a flow bag, a chain into a chain bag, steps into an org bag, and the processor's pipeline counters."""
    events = [_ev("FLOW_START", 1), _ev("FLOW_COMPLETE", 2, duration=120, step_count=7),
              _ev("FLOW_FAIL", 3, duration=40, step_count=2, error_type="E", fatal="TRUE"),
              _ev("FLOW_CANCEL", 4, duration=5, step_count=1),
              _ev("FLOW_THROTTLE", 5, throttling_type="t", throttling_level="org"),
              _ev("FLOW_RATE_LIMIT", 6, hostname="api.example.com", status_code="429")]
    flow, org, chain, pipeline = Bag(), Bag(), Bag(), Bag()
    for raw in events:
        ev = parse_event(raw)
        add_event(flow, ev)
        add_org_usage(org, ev)
    add_chain(chain, {"root_flow_id": "f1", "root_flow_name": "Flow One", "status": "failed",
                      "had_failures": True, "duration_ms": 300, "end_ms": 1})
    # the processor's own counters: every literal the engine counts into the pipeline group
    source = "\n".join(p.read_text() for p in (ROOT / "processor").rglob("*.py"))
    names = set(re.findall(r"(?:pipeline_count|\.count)\(\s*[\"'](pipeline\.[a-z_]+)[\"']", source))
    assert names, "found no pipeline_count(\"pipeline.x\", ...) in processor/: update this test's scan"
    for n in names:
        pipeline.count(n)
    # ingest's window reports, the live gauges and the sink's own counters, through the code the worker runs
    h = Harness()
    h.run([report(h, "host:1:0@w", T0, T0 + 100, tls_days_left=30.0),
           h.rec(engine_event("FLOW_FAIL", T0 + 5), received_ms=T0 + 200), h.tick(T0 + 1_000)],
          live=Live(T0 + 1_000, end_offset=10))
    pipeline.merge(h.bag("pipeline", T0))
    for key, n in sink_counts(Delivered(retries=1, points_dropped=1, logs_dropped=1, series_refused=1,
                                        logs_refused=1)).items():
        pipeline.count(key, n)
    series = []
    for group, bag in (("flow:f1", flow), ("org:acme", org), ("chain:f1", chain), ("pipeline", pipeline)):
        series += render_series(group, 0, 60, bag, base_tags=BASE_TAGS, monthly_step_limit=1000,
                                monthly_event_limit=10_000, now_ms=EVENTS_AT_MS)  # the org's month, as of then
    out: dict[str, set[str]] = {}
    for s in series:
        out.setdefault(s["metric"], set()).update(t.partition(":")[0] for t in s["tags"])
    return out


_QUERY = re.compile(r"\b(?:sum|avg|max|min|count):([A-Za-z0-9_.]+)\{([^}]*)\}(?:\s*by\s*\{([^}]*)\})?")


def _query_strings(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k in ("q", "query") and isinstance(v, str)] + \
            [q for k, v in node.items() if k not in ("q", "query") for q in _query_strings(v)]
    if isinstance(node, list):
        return [q for v in node for q in _query_strings(v)]
    return []


def query_problems(query: str, emitted: dict[str, set[str]], template_vars: dict[str, str]) -> list[str]:
    """What in one query names a metric or a tag the pipeline does not send."""
    found = _QUERY.findall(query)
    if not found:
        return [f"no metric query recognised in {query!r}"]
    problems = []
    for metric, scope, by in found:
        name = metric.removeprefix(DEFAULT_PREFIX + ".")
        if not metric.startswith(DEFAULT_PREFIX + ".") or name not in emitted and name not in NOT_EMITTED_YET:
            problems.append(f"{metric} is not emitted by the pipeline")
            continue
        have = emitted.get(name) or set(k.partition(":")[0] for k in BASE_TAGS)
        keys = []
        for term in filter(None, (t.strip() for t in scope.split(","))):
            if term == "*":
                continue
            if term.startswith("$"):  # {$flow_name}: the template variable's prefix is the tag
                keys.append(template_vars[term[1:].split(".")[0]])
            else:
                keys.append(term.partition(":")[0])
        keys += [t.strip() for t in by.split(",") if t.strip()]
        problems += [f"{metric} has no tag {k!r} (it has {sorted(have)})" for k in keys if k not in have]
    return problems


def test_every_metric_and_tag_queried_is_one_the_pipeline_sends():
    emitted = {m.removeprefix(DEFAULT_PREFIX + "."): tags for m, tags in emitted_series().items()}
    dash = json.loads(DASHBOARDS[0].read_text())
    tvars = {v["name"]: v["prefix"] for v in dash["template_variables"]}
    queries = _query_strings(dash) + [json.loads(p.read_text())["query"] for p in MONITORS]
    problems = [p for q in queries for p in query_problems(q, emitted, tvars)]
    assert problems == []
    queried = {m.removeprefix(DEFAULT_PREFIX + ".") for q in queries for m, _, _ in _QUERY.findall(q)}
    # the dashboard covers what the brief asks for
    assert {"events", "error_rate", "duration.p95", "failures", "chains", "steps", "steps.month_to_date",
            "steps.limit_utilization", "pipeline.events_in", "pipeline.duplicates", "pipeline.late_events",
            "pipeline.deadletters", "pipeline.sink_retries", "throttled", "pipeline.ingest.requests",
            "pipeline.silence_seconds", "pipeline.delay_seconds.max", "pipeline.backlog_records",
            "pipeline.ingest.tls_days_left"} <= queried


def test_the_metric_check_catches_a_renamed_metric_or_a_missing_tag():
    emitted = {m.removeprefix(DEFAULT_PREFIX + "."): tags for m, tags in emitted_series().items()}
    tv = {"flow_name": "flow_name", "env": "env"}
    assert query_problems("sum:okta.workflows.events{$flow_name} by {event_type}.as_count()", emitted, tv) == []
    assert query_problems("sum:okta.workflows.event{*}.as_count()", emitted, tv)
    assert query_problems("sum:okta.workflows.chains{$flow_name}", emitted, tv)  # chains carry root_flow_name
    assert query_problems("max:okta.workflows.error_rate{*} by {error_type}", emitted, tv)


def test_monitor_messages_only_name_tags_their_query_groups_by():
    for path in MONITORS:
        body = json.loads(path.read_text())
        groups = {t.strip() for _, _, by in _QUERY.findall(body["query"]) for t in by.split(",") if t.strip()}
        used = set(re.findall(r"\{\{(\w+)\.name\}\}", body["message"] + body["name"]))
        assert used <= groups, f"{path.name}: {used - groups} not in the query's group-by"


# ---------------------------------------------------------------------------- loading and small pieces
def test_a_changed_prefix_rewrites_queries_title_names_and_managed_tags():
    items = load(DD_DIR, "acme.wf")
    text = json.dumps([i.body for i in items])
    assert "okta.workflows." not in text and "acme.wf.events" in text
    dash = next(i for i in items if i.kind == "dashboard")
    assert dash.key == "Okta Workflows (acme.wf)"
    tags = {i.key for i in items if i.kind == "monitor"}
    assert tags == {f"els-managed:acme.wf.{p.stem}" for p in MONITORS}
    assert {i.key for i in load(DD_DIR) if i.kind == "monitor"} == {f"els-managed:{p.stem}" for p in MONITORS}


def test_same_ignores_what_datadog_adds_but_not_a_changed_value():
    want = {"a": 1, "tags": ["x:1", "y:2"], "w": [{"q": "z"}]}
    assert same(want, {"a": 1.0, "id": 5, "tags": ["y:2", "x:1"], "w": [{"q": "z", "id": 9}]})
    assert not same(want, {"a": 2, "tags": ["x:1", "y:2"], "w": [{"q": "z"}]})
    assert not same(want, {"a": 1, "tags": ["x:1"], "w": [{"q": "z"}]})
    assert not same(want, {"a": 1, "tags": ["x:1", "y:2"], "w": [{"q": "z"}, {"q": "z2"}]})


@pytest.mark.parametrize("site, url", [("datadoghq.com", "https://app.datadoghq.com"),
                                       ("datadoghq.eu", "https://app.datadoghq.eu"),
                                       ("us3.datadoghq.com", "https://us3.datadoghq.com")])
def test_links_point_at_the_site_web_app(site, url):
    assert app_base(Config.from_env({"DD_SITE": site})) == url
    assert app_base(Config.from_env({"DD_SITE": site, "DD_URL": "http://127.0.0.1:9/"})) == "http://127.0.0.1:9"


# ---------------------------------------------------------------------------- the command, end to end
@pytest.fixture
def dd():
    with FakeDatadog.in_thread(api_key=API_KEY, app_key=APP_KEY) as fake:
        yield fake


def els(*args: str, dd: FakeDatadog | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "ELS_"))}
    if dd is not None:
        base.update(DD_URL=dd.url, DD_API_KEY=API_KEY, DD_APP_KEY=APP_KEY)
    base.update(env)
    r = subprocess.run([sys.executable, "-m", "els.cli", "datadog", *args], env={**base, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = r.stdout + r.stderr
    assert API_KEY not in out and APP_KEY not in out, "a key was printed"
    return r


def _writes(dd: FakeDatadog) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in dd.request_details if r.method in ("POST", "PUT", "DELETE")]


def test_install_creates_everything_then_converges_without_duplicates(dd, tmp_path):
    r = els("install", dd=dd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert sum(" created, id " in ln for ln in lines) == 1 + len(MONITORS)
    assert len(dd.dashboards) == 1 and len(dd.monitors) == len(MONITORS)
    held = dd.dashboards[0]
    assert same(json.loads(DASHBOARDS[0].read_text()), held)
    assert f"{dd.url}/dashboard/{held['id']}" in r.stdout
    by_tag = {t: m for m in dd.monitors for t in m["tags"] if t.startswith("els-managed:")}
    for path in MONITORS:
        body = json.loads(path.read_text())
        if path.stem == SILENCE_MONITOR:  # its minutes are the install's option (default 60)
            body = with_silence(body, 60)
        assert same(body, by_tag[f"els-managed:{path.stem}"])
    ids = {m["id"] for m in dd.monitors} | {held["id"]}

    writes = len(_writes(dd))
    r = els("install", dd=dd)
    assert r.returncode == 0, r.stderr
    assert sum(" unchanged, id " in ln for ln in r.stdout.splitlines()) == 1 + len(MONITORS)
    assert len(_writes(dd)) == writes  # nothing sent again
    assert len(dd.dashboards) == 1 and len(dd.monitors) == len(MONITORS)

    # edited files: updated in place (same ids), the others untouched
    edited = tmp_path / "datadog"
    shutil.copytree(DD_DIR, edited)
    mon_path = edited / "monitors" / "flow-error-rate.json"
    mon = json.loads(mon_path.read_text())
    mon["options"]["thresholds"] = {"critical": 0.5, "warning": 0.25}
    mon["query"] = mon["query"].replace("> 0.2", "> 0.5")
    mon_path.write_text(json.dumps(mon))
    dash = json.loads((edited / "dashboard.json").read_text())
    dash["widgets"][0]["definition"]["title"] = "Flow executions (edited)"
    (edited / "dashboard.json").write_text(json.dumps(dash))

    r = els("install", "--dry-run", "--dir", str(edited), dd=dd)
    assert r.returncode == 0, r.stderr
    assert sum(" would update id " in ln for ln in r.stdout.splitlines()) == 2
    assert len(_writes(dd)) == writes  # a dry run changes nothing

    r = els("install", "--dir", str(edited), dd=dd)
    assert r.returncode == 0, r.stderr
    assert sum(" updated, id " in ln for ln in r.stdout.splitlines()) == 2
    assert sum(" unchanged, id " in ln for ln in r.stdout.splitlines()) == len(MONITORS) - 1
    assert sorted(_writes(dd)[writes:]) == sorted([("PUT", f"/api/v1/dashboard/{held['id']}"),
                                                   ("PUT", f"/api/v1/monitor/{by_tag['els-managed:flow-error-rate']['id']}")])
    assert {m["id"] for m in dd.monitors} | {d["id"] for d in dd.dashboards} == ids
    now = {t: m for m in dd.monitors for t in m["tags"] if t.startswith("els-managed:")}
    assert now["els-managed:flow-error-rate"]["options"]["thresholds"]["critical"] == 0.5
    assert dd.dashboards[0]["widgets"][0]["definition"]["title"] == "Flow executions (edited)"


def test_a_changed_prefix_installs_its_own_objects_beside_the_default_ones(dd):
    assert els("install", dd=dd).returncode == 0
    r = els("install", dd=dd, ELS_METRIC_PREFIX="acme.wf")
    assert r.returncode == 0, r.stderr
    assert sum(" created, id " in ln for ln in r.stdout.splitlines()) == 1 + len(MONITORS)
    assert len(dd.dashboards) == 2 and len(dd.monitors) == 2 * len(MONITORS)
    acme = next(d for d in dd.dashboards if d["title"] == "Okta Workflows (acme.wf)")
    qs = _query_strings(acme)
    assert qs and all("acme.wf." in q and "okta.workflows." not in q for q in qs)
    acme_monitors = [m for m in dd.monitors if any(t.startswith("els-managed:acme.wf.") for t in m["tags"])]
    assert len(acme_monitors) == len(MONITORS)
    assert all(m["query"].count("acme.wf.") >= 1 and "okta.workflows." not in m["query"] for m in acme_monitors)
    r = els("install", dd=dd, ELS_METRIC_PREFIX="acme.wf")  # and converges too
    assert r.returncode == 0 and " created" not in r.stdout
    assert len(dd.dashboards) == 2 and len(dd.monitors) == 2 * len(MONITORS)


def test_without_an_application_key_it_exits_2_and_says_why(dd):
    r = els("install", DD_URL=dd.url, DD_API_KEY=API_KEY)
    assert r.returncode == 2
    assert "DD_APP_KEY" in r.stderr and "application key" in r.stderr
    assert dd.requests == []


def test_without_either_key_it_names_both(dd):
    r = els("install", DD_URL=dd.url)
    assert r.returncode == 2
    assert "DD_API_KEY and DD_APP_KEY are not set" in r.stderr and "application key" in r.stderr
    assert dd.requests == []


def test_a_wrong_application_key_is_reported_without_printing_keys(dd):
    r = els("install", DD_URL=dd.url, DD_API_KEY=API_KEY, DD_APP_KEY="wrong-app-key-123456")
    assert r.returncode == 1
    assert "403" in r.stderr and "DD_APP_KEY" in r.stderr
    assert "wrong-app-key-123456" not in r.stdout + r.stderr
    assert dd.dashboards == [] and dd.monitors == []


def test_an_invalid_file_fails_before_any_request(dd, tmp_path):
    bad = tmp_path / "datadog"
    shutil.copytree(DD_DIR, bad)
    mon = json.loads((bad / "monitors" / "throttling.json").read_text())
    mon["options"]["thresholds"]["critical"] = "ten"
    (bad / "monitors" / "throttling.json").write_text(json.dumps(mon))
    r = els("install", "--dir", str(bad), dd=dd)
    assert r.returncode == 2
    assert "throttling.json" in r.stderr and "critical" in r.stderr
    assert dd.requests == []
    (bad / "monitors" / "throttling.json").write_text("{not json")
    r = els("install", "--dir", str(bad), dd=dd)
    assert r.returncode == 2 and "invalid JSON" in r.stderr and dd.requests == []


def test_dry_run_without_keys_only_validates():
    r = els("install", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("valid; would create or update") == 1 + len(MONITORS)


def test_unreachable_datadog_is_a_clear_error_not_a_traceback():
    from els.broker import free_port

    r = els("install", DD_URL=f"http://127.0.0.1:{free_port()}", DD_API_KEY=API_KEY, DD_APP_KEY=APP_KEY)
    assert r.returncode == 1
    assert "cannot reach Datadog" in r.stderr and "Traceback" not in r.stderr


def test_the_silence_monitor_takes_its_window_from_silence_minutes():
    """No ELS event for N minutes: the monitor's query window, its no-data timeframe and its text all say N."""
    [default] = [i for i in load() if i.key == "els-managed:pipeline-silence"]
    assert default.body["options"]["no_data_timeframe"] == 60 and default.body["query"].endswith(">= 3600")
    [item] = [i for i in load(silence_minutes=15) if i.key == "els-managed:pipeline-silence"]
    body = item.body
    assert body["name"] == "Okta Workflows pipeline: no ELS events for 15 minutes"
    assert body["query"] == "min(last_5m):min:okta.workflows.pipeline.silence_seconds{*} >= 900"
    assert body["options"]["thresholds"]["critical"] == 900
    assert body["options"]["notify_no_data"] is True and body["options"]["no_data_timeframe"] == 15
    assert "{silence_minutes}" not in json.dumps(body) and "last 15 minutes" in body["message"]
    proc = subprocess.run([sys.executable, "-m", "els.cli", "datadog", "install", "--dry-run", "--silence-minutes",
                           "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--silence-minutes must be at least 1" in proc.stderr
