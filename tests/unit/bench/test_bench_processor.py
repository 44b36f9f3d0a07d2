"""The processor benches' helpers: the engine's µs/event from /els/stats/, and the wrk script that POSTs every
event of a file exactly once and then says so (against bench/bare.py, no broker)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from bench.__main__ import engine_us, make_events
from bench.via_ingest import WRK, _post_all
from els.broker import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_engine_us_prefers_the_workers_own_figure():
    assert engine_us({"engine_us_per_event": 41.234, "t_step_ms": 900, "records": 1000}) == (
        41.2, "engine_us_per_event")


def test_engine_us_falls_back_to_step_time_over_records():
    assert engine_us({"t_step_ms": 115, "records": 1000}) == (115.0, "t_step_ms/records")
    assert engine_us({"engine_us_per_event": None, "t_step_ms": 115, "records": 1000})[1] == "t_step_ms/records"
    assert engine_us({"records": 0}) == (None, "absent")


def test_backlog_events_span_the_minutes_asked_and_end_in_the_past():
    _sim, events = make_events(2000, seed=11, minutes=40, ago=41)
    stamps = [e["timestamp"] for e in events]
    assert len(events) == 2000 and stamps == sorted(stamps)
    from bench.freshness import event_ms

    span_min = (event_ms(events[-1]) - event_ms(events[0])) / 60_000
    assert 35 < span_min < 45
    assert event_ms(events[-1]) < time.time() * 1000


@pytest.fixture
def bare_url():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(not Path(WRK).exists(), reason="needs Debian's wrk")
def test_wrk_script_posts_every_event_once_and_stops(bare_url, tmp_path):
    events = tmp_path / "events.ndjson"
    events.write_bytes(b"\n".join(orjson.dumps({"n": i}) for i in range(300)) + b"\n")
    # the cap is far beyond the run: _post_all returning with every answer counted means the script said
    # "all posts answered" and wrk was interrupted, not that the cap ran out
    got = _post_all(bare_url, events, "secret", 120)
    assert got["answered"] == 300
    assert got["accepted"] == 300
