"""The status page in a real browser: real broker, real worker, simulated traffic, Debian's headless Chromium.

Chromium runs the page's own JavaScript (it fetches /els/status.json), so the DOM it dumps is what a person
sees: the simulated flows with their exact error rates, the always-failing flow first, healthy flows after every
failing one. A screenshot is kept in test-artifacts/ to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from common.topics import ensure_topics
from els.traffic import Simulator, produce_events
from tests.helpers.workers import ARTIFACTS, Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PARTITIONS = 2
CHROMIUM = "/usr/bin/chromium"
FAILING = ("555001", "Sync failing flow")
HEALTHY = ("555002", "Quiet healthy flow")


def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed")


def run_chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class Rows(HTMLParser):
    """The flow rows' data-* attributes, in page order."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "flow" in (a.get("class") or "").split():
            self.rows.append(a)


def workload() -> tuple[Simulator, list[dict]]:
    """Simulated chains over the last minute, plus a flow that always fails and one that never does."""
    sim = Simulator(seed=21, flows=5, helpers=2, dup_rate=0.05)
    now = int(time.time() * 1000)
    events = sim.workload(120, now - 60_000, 50_000)
    for i in range(6):
        t = now - 55_000 + i * 8_000
        events += sim._execution(t, FAILING, sim._uuid(), None, None, "failed")[0]
        events += sim._execution(t + 100, HEALTHY, sim._uuid(), None, None, "completed")[0]
    return sim, events


async def status_json(port: int) -> dict | None:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/els/status.json",
                                                       timeout=aiohttp.ClientTimeout(total=10)) as r:
            return await r.json() if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


async def test_status_page_in_headless_chromium(kafka_bootstrap, topic_names):
    chromium()  # skip (or fail in CI) before starting anything
    sim, events = workload()
    expected_events = sum(sim.expected.events.values())
    topics = list(topic_names.values())
    await ensure_topics(kafka_bootstrap, topics, PARTITIONS)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELS_PARTITIONS": str(PARTITIONS),
           "ELS_WINDOW_SECONDS": "10", "ELS_FLUSH_SECONDS": "1", "ELS_LATENESS_SECONDS": "3600",
           "ELS_CHAIN_QUIET_SECONDS": "1", "ELS_REBALANCE_TIMEOUT_SECONDS": "3", "ELS_SESSION_TIMEOUT_SECONDS": "6",
           "ELS_DATA_DIR": "test-artifacts/faust-data", "ELS_APP_ID": "els-" + topic_names["ELS_RAW_TOPIC"],
           "DD_API_KEY": "", "ELS_DRY_RUN_FILE": f"test-artifacts/dry-run-{topic_names['ELS_RAW_TOPIC']}.ndjson",
           **topic_names}
    worker = Worker(env, "status").start()
    try:
        port = worker.web_port
        # before any event: the page answers and says there is no data yet
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline and not (data and all(p["answered"] for p in data["partitions"])):
            assert worker.proc.poll() is None, worker.output()[-4000:]
            data = await status_json(port)
            await asyncio.sleep(0.5)
        assert data and [p["partition"] for p in data["partitions"] if p["answered"]] == list(range(PARTITIONS)), \
            worker.output()[-4000:]
        assert data["has_data"] is False
        empty = run_chromium(f"http://127.0.0.1:{port}/", "--dump-dom")  # "/" redirects to the page
        assert "No data yet." in empty.stdout, empty.stderr[-2000:]
        run_chromium(f"http://127.0.0.1:{port}/els/status/", f"--screenshot={ARTIFACTS / 'status-page-empty.png'}",
                     "--window-size=1280,600", "--hide-scrollbars")

        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.output()[-4000:]
            data = await status_json(port)
            if data and data["totals"]["events"] == expected_events:
                break
            await asyncio.sleep(1)
        assert data and data["totals"]["events"] == expected_events, (data and data["totals"], expected_events)

        dom = run_chromium(f"http://127.0.0.1:{port}/els/status/", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert re.search(r'<span id="updated-text">updated \d\d:\d\d:\d\d</span>', dom.stdout), dom.stdout[-3000:]
        parser = Rows()
        parser.feed(dom.stdout)
        rows = parser.rows
        assert [r["data-flow-id"] for r in rows] and {r["data-flow-id"] for r in rows} == set(sim.expected.flow_names)
        for r in rows:
            fid = r["data-flow-id"]
            assert r["data-flow-name"] == sim.expected.flow_names[fid]
            assert sim.expected.flow_names[fid] in dom.stdout
            assert int(r["data-events"]) == sum(n for (f, _), n in sim.expected.events.items() if f == fid)
            assert float(r["data-error-rate"]) == sim.expected.error_rate(fid), fid
        assert rows[0]["data-flow-id"] == FAILING[0] and rows[0]["data-error-rate"] == "1"
        assert "100.0%" in dom.stdout
        failing = [i for i, r in enumerate(rows) if "failing" in r["class"].split()]
        assert failing == list(range(len(failing)))  # failing flows first
        healthy = [r["data-flow-id"] for r in rows].index(HEALTHY[0])
        assert healthy >= len(failing) and "failing" not in rows[healthy]["class"]
        assert "<b>2 of 2</b> raw partitions answered, from <b>1 of 1</b> worker" in dom.stdout

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        res = run_chromium(f"http://127.0.0.1:{port}/els/status/", f"--screenshot={shot}", "--window-size=1280,900",
                           "--hide-scrollbars")
        assert shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]

        # Faust's own table view still answers beside the page
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/table/") as r:
            assert r.status == 200
    finally:
        worker.stop()
        Path(env["ELS_DRY_RUN_FILE"]).unlink(missing_ok=True)
