"""`els replay` as a user runs it: a subprocess reading a real broker's raw topic, sending to the fake Datadog.

Windows must arrive with their original window-start timestamps and exact counts; points over an hour old must
be held back in the file (or sent with --historical); duplicates count once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter

import orjson
import pytest

from els.traffic import Simulator, produce_events
from processor.core.windows import window_start
from processor.replay.backfill import ReplayError, parse_time
from tests.helpers.fakedatadog import FakeDatadog
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.broker

WINDOW_S = 60
EVENTS = "okta.workflows.events"


def test_times_are_iso_or_a_duration_ago():
    now = 1_700_000_000_000
    assert parse_time("2h", now) == now - 7_200_000
    assert parse_time("30m", now) == now - 1_800_000
    assert parse_time("1.5d", now) == now - 129_600_000
    assert parse_time("2023-11-14T22:13:20Z", now) == now
    assert parse_time("2023-11-14T22:13:20", now) == now  # UTC without an offset
    assert parse_time("2023-11-14T23:13:20+01:00", now) == now
    for bad in ("yesterday", "2h ago", "", "-5m"):
        with pytest.raises(ReplayError, match="neither ISO 8601"):
            parse_time(bad, now)


async def run_replay(*args: str, env: dict, timeout: float = 180) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "els.cli", "replay", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def expected_counts(events: list[dict]) -> Counter:
    """(flow_id, event type, window start s) -> distinct events, computed from what was produced."""
    seen, out = set(), Counter()
    for ev in events:
        if ev["idempotency_key"] in seen:
            continue
        seen.add(ev["idempotency_key"])
        ts = parse_time(ev["timestamp"], 0)
        out[(ev["flow_id"], ev["event_type"].lower(), window_start(ts, WINDOW_S * 1000) // 1000)] += 1
    return out


def counts_of(points) -> Counter:
    out = Counter()
    for ts, tags, value in points:
        t = dict(tag.split(":", 1) for tag in tags)
        out[(t["flow_id"], t["event_type"], ts)] += value
    return out


def held_points(path) -> list[tuple[int, tuple, float]]:
    out = []
    for line in path.read_text().splitlines():
        for s in json.loads(line)["series"]:
            out.append((s["metric"], s["points"][0]["timestamp"], tuple(s["tags"]), s["points"][0]["value"]))
    return out


async def test_replay_sends_recent_windows_with_their_times_and_holds_old_ones(kafka_bootstrap, topic_names,
                                                                               tmp_path):
    now = int(time.time() * 1000)
    old_sim = Simulator(seed=11, flows=4, helpers=2, dup_rate=0.1)
    old = old_sim.workload(40, now - 3 * 3600_000, 240_000)
    new_sim = Simulator(seed=12, flows=4, helpers=2, dup_rate=0.1)
    new = new_sim.workload(40, now - 30 * 60_000, 240_000)
    redelivered = new[::7]  # delivered again later, as Okta does after a timeout
    raw = topic_names["ELS_RAW_TOPIC"]
    await produce_events(kafka_bootstrap, raw, old + new + redelivered)
    duplicates = old_sim.expected.duplicates + new_sim.expected.duplicates + len(redelivered)
    want_old, want_new = expected_counts(old), expected_counts(new)

    async with FakeDatadog(api_key="replay-key") as dd:
        held = tmp_path / "held.ndjson"
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topic_names, "ELS_APP_ID": "app-" + raw,
               "ELS_WINDOW_SECONDS": str(WINDOW_S), "ELS_LATENESS_SECONDS": "3600", "DD_URL": dd.url,
               "DD_API_KEY": "replay-key", "ELS_DRY_RUN_FILE": str(tmp_path / "dry.ndjson")}
        code, out, err = await run_replay("--since", "4h", "--held-file", str(held), "--progress", env=env)
        assert code == 0, err
        assert counts_of(dd.points(EVENTS)) == want_new  # original window starts, exact counts
        assert all(ts >= now / 1000 - 3600 - 60 for ts, _, _ in dd.points(EVENTS))
        stored = held_points(held)
        assert counts_of([(ts, tags, v) for m, ts, tags, v in stored if m == EVENTS]) == want_old
        n_events = sum(want_old.values()) + sum(want_new.values())
        assert f"replayed {n_events} events ({duplicates} duplicates counted once" in out, out
        assert f"held back {len(stored)} metric points older than 1 hour in {held}" in out, out
        sent = int(re.search(r"metric points sent: (\d+)", out).group(1))
        assert sent == len(dd.stored_points()) > 0
        assert re.search(r"replay: \d+/\d+ records", err)  # progress
        failures = {ev["idempotency_key"] for ev in old + new if ev["event_type"] == "FLOW_FAIL"}
        failure_logs = [item for item in dd.logs if " failed: " in item.get("message", "")]
        assert len(failure_logs) == len(failures) > 0  # logs are under 18 h old: all sent, each once
        assert f"logs sent: {len(dd.logs)}," in out
        assert not (tmp_path / "dry.ndjson").exists()

        dd.reset()
        held.unlink()
        code, out, err = await run_replay("--since", "4h", "--historical", "--held-file", str(held), env=env)
        assert code == 0, err
        assert counts_of(dd.points(EVENTS)) == want_old + want_new
        assert not held.exists() and "held back" not in out
        assert f"({duplicates} duplicates counted once" in out


async def test_replay_without_api_key_runs_dry_and_honours_until(kafka_bootstrap, topic_names, tmp_path):
    now = int(time.time() * 1000)
    sim = Simulator(seed=5, flows=2, helpers=1, dup_rate=0.0)
    first = sim.workload(10, now - 50 * 60_000, 60_000)
    later = Simulator(seed=6, flows=2, helpers=1, dup_rate=0.0).workload(10, now - 20 * 60_000, 60_000)
    await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], first + later)
    dry = tmp_path / "dry.ndjson"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topic_names, "ELS_APP_ID": "app-dry",
           "ELS_WINDOW_SECONDS": str(WINDOW_S), "ELS_DRY_RUN_FILE": str(dry), "DD_API_KEY": ""}
    code, out, err = await run_replay("--since", "1h", "--until", "35m", env=env)
    assert code == 0, err
    assert "DD_API_KEY is not set" in err and "dry run" in out, out
    assert dry.exists(), out
    requests = [orjson.loads(line) for line in dry.read_text().splitlines()]
    series = [s for r in requests if r["path"] == "/api/v2/series" for s in r["body"]["series"]
              if s["metric"] == EVENTS]
    got = counts_of([(s["points"][0]["timestamp"], s["tags"], s["points"][0]["value"]) for s in series])
    assert got == expected_counts(first)  # the later events are past --until
    assert "outside the range" in out and "replayed " in out


async def test_replay_of_a_missing_topic_says_so(kafka_bootstrap):
    code, _out, err = await run_replay("--since", "1h", env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                                                            "ELS_RAW_TOPIC": "no-such-topic-xyz"}, timeout=60)
    assert code == 2 and "does not exist" in err


CHAINS = "okta.workflows.chains"


def chain_counts(points) -> Counter:
    """(root_flow_id, status, had_failures) -> chains, from Datadog's chain series."""
    out = Counter()
    for _ts, tags, value in points:
        t = dict(tag.split(":", 1) for tag in tags)
        out[(t["root_flow_id"], t["status"], t["had_failures"])] += value
    return out


def expected_chains(sim: Simulator) -> Counter:
    return Counter({(root, status, "true" if had else "false"): n
                    for (root, status, had), n in sim.expected.chains.items()})


def last_progress(err: str) -> str:
    return [line for line in re.split(r"[\r\n]", err) if line.startswith("replay: ")][-1]


async def test_replay_after_a_quiet_stretch_sends_every_ended_chain(kafka_bootstrap, topic_names, tmp_path):
    """A burst, then quiet: chains close at the end of the range (no later event moves event time on), and the
    summary counts them; chains too recent at --until are left open, and the summary says how many."""
    now = int(time.time() * 1000)
    burst = Simulator(seed=31, flows=5, helpers=2, dup_rate=0.05)
    early = burst.workload(60, now - 10 * 60_000, 5_000)
    recent = Simulator(seed=32, flows=5, helpers=2, dup_rate=0.0)
    late = recent.workload(8, now - 3 * 60_000 - 15_000, 10_000)  # 5-15 s before the second run's --until
    await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], early + late)
    async with FakeDatadog(api_key="replay-key") as dd:
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topic_names, "ELS_APP_ID": "app-quiet",
               "ELS_WINDOW_SECONDS": str(WINDOW_S), "ELS_CHAIN_QUIET_SECONDS": "60", "DD_URL": dd.url,
               "DD_API_KEY": "replay-key", "ELS_DRY_RUN_FILE": str(tmp_path / "dry.ndjson")}
        code, out, err = await run_replay("--since", "15m", "--until", "6m", "--progress", env=env)
        assert code == 0, err
        assert chain_counts(dd.points(CHAINS)) == expected_chains(burst), out
        assert counts_of(dd.points(EVENTS)) == expected_counts(early)
        assert "chains sent: 60;" in out and "left to the live pipeline: 0" in out, out
        windows = int(re.search(r"windows sent: (\d+)", out).group(1))
        assert windows > 0 and f"{windows} windows sent" in last_progress(err), (out, err)

        dd.reset()
        code, out, err = await run_replay("--since", "15m", "--until", "3m", env=env)
        assert code == 0, err
        assert chain_counts(dd.points(CHAINS)) == expected_chains(burst), out  # the recent ones stay open
        assert counts_of(dd.points(EVENTS)) == expected_counts(early + late)
        assert "chains sent: 60;" in out and "left to the live pipeline: 8" in out, out


async def test_dry_run_replay_writes_its_own_file(kafka_bootstrap, topic_names, tmp_path):
    """Without ELS_DRY_RUN_FILE, a dry replay writes var/datadog-dry-run-replay.ndjson, not the live sink's file."""
    now = int(time.time() * 1000)
    events = Simulator(seed=7, flows=2, helpers=1, dup_rate=0.0).workload(5, now - 20 * 60_000, 10_000)
    await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
    env = {k: v for k, v in os.environ.items() if k != "ELS_DRY_RUN_FILE"}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **topic_names, "ELS_APP_ID": "app-dry-own",
                "ELS_WINDOW_SECONDS": str(WINDOW_S), "DD_API_KEY": "",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "els.cli", "replay", "--since", "30m", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    own = tmp_path / "var" / "datadog-dry-run-replay.ndjson"
    assert own.exists() and not (tmp_path / "var" / "datadog-dry-run.ndjson").exists()
    assert str(own.relative_to(tmp_path)) in err.decode() and str(own.relative_to(tmp_path)) in out.decode()
