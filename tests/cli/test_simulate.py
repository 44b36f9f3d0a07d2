"""`els simulate` as a user runs it: a subprocess posting to a real ingest that writes to a real broker.

What reaches the raw topic must be exactly what the printed expected totals say (distinct events, per-flow
counts by event type), for every body shape the simulator sends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from els.broker import free_port
from tests.e2e.test_ingest import TOKEN, Ingest, make_config
from tests.helpers.kafka import read_topic

pytestmark = pytest.mark.broker


async def run_simulate(*args: str, env: dict | None = None, timeout: float = 180) -> tuple[int, str, str]:
    """The CLI in a subprocess, awaited without blocking the loop that serves the in-process ingest."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "els.cli", "simulate", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def ingest(kafka_bootstrap, topic_names):
    async with Ingest(make_config(kafka_bootstrap, topic_names)) as ing:
        yield ing


def topic_totals(records) -> tuple[int, dict]:
    """Distinct idempotency keys, and distinct events per flow and event type, in the raw topic."""
    seen: set[str] = set()
    per_flow: dict[str, Counter] = {}
    for r in records:
        ev = json.loads(r.value)
        if ev["idempotency_key"] in seen:
            continue
        seen.add(ev["idempotency_key"])
        per_flow.setdefault(ev["flow_id"], Counter())[ev["event_type"].lower()] += 1
    return len(seen), {f: dict(c) for f, c in per_flow.items()}


async def test_what_lands_in_kafka_is_what_the_expected_json_says(ingest, kafka_bootstrap, tmp_path):
    url = ingest.url + "v1/events"
    path = tmp_path / "expected.json"
    code, out, err = await run_simulate("--url", url, "--count", "600", "--seed", "42", "--flows", "5",
                                        "--duplicates", "0.1", "--expected-json", str(path), "--progress",
                                        env={"ELS_AUTH_TOKENS": TOKEN})
    assert code == 0, err
    assert "finally refused 0" in out and "simulate:" in err  # summary on stdout, progress on stderr
    expected = json.loads(path.read_text())
    assert expected["sent"] >= 600 and expected["duplicates"] > 0
    records = await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, expect=expected["sent"], timeout=30)
    assert len(records) == expected["sent"]  # every delivery, duplicates included, was written once
    distinct, per_flow = topic_totals(records)
    assert distinct == expected["sent"] - expected["duplicates"]
    assert per_flow == {fid: f["events"] for fid, f in expected["flows"].items()}
    kinds = {t for f in per_flow.values() for t in f}
    assert {"flow_start", "flow_complete", "flow_fail", "flow_cancel", "flow_throttle", "flow_rate_limit",
            "flow_pause"} <= kinds
    for shape in ("event", "array", "ndjson", "wrapped", "datadog", "gzip"):
        assert f"{shape} " in out, f"no {shape} body sent: {out}"


async def test_same_seed_same_expected_totals_and_rate_is_honoured(ingest):
    url = ingest.url + "v1/events"
    runs = []
    for _ in range(2):
        t0 = time.monotonic()
        code, out, err = await run_simulate("--url", url, "--count", "150", "--rate", "200", "--seed", "7",
                                            "--json", "--token", TOKEN)
        runs.append((time.monotonic() - t0, code, json.loads(out), err))
    assert [r[1] for r in runs] == [0, 0], runs[0][3]
    assert runs[0][2] == runs[1][2]
    # 150 events at 200/s take about 0.75 s; only assert it was paced at all (the machine is shared)
    assert runs[0][0] >= 0.5 * 150 / 200
    assert "events/s" in runs[0][3]  # the summary went to stderr


async def test_refused_events_give_a_non_zero_exit(ingest):
    code, out, _err = await run_simulate("--url", ingest.url + "v1/events", "--count", "20",
                                         "--token", "wrong-secret")
    assert code == 1
    assert "401 (the secret is not one ingest accepts: ELS_AUTH_TOKENS" in out and "accepted 0" in out


async def test_without_a_seed_each_run_gets_a_fresh_one_and_prints_it(ingest):
    url = ingest.url + "v1/events"
    seeds, totals = [], []
    for _ in range(2):
        code, out, err = await run_simulate("--url", url, "--count", "30", "--json", "--token", TOKEN)
        assert code == 0, err
        seeds.append(int(re.search(r"seed (\d+) \(--seed \1 repeats this run\)", err).group(1)))
        totals.append(json.loads(out))
    assert seeds[0] != seeds[1] and totals[0] != totals[1]
    code, out, err = await run_simulate("--url", url, "--count", "30", "--json", "--token", TOKEN,
                                        "--seed", str(seeds[0]))
    assert code == 0 and json.loads(out) == totals[0], err


def test_a_silent_target_fails_at_once_with_one_line():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "els.cli", "simulate", "--url",
                           f"http://127.0.0.1:{free_port()}/v1/events", "--count", "10"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and time.monotonic() - started < 15
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "nothing answers at 127.0.0.1" in lines[0] and "ELS_SIMULATE_URL" in lines[0], lines
