"""How the status page draws what status.json says, in Debian's headless Chromium (no broker needed).

The page's own JavaScript renders a status.json computed by processor/web/status.py from real bags, served with
the page by a small aiohttp server: one window, flows at 100 %, 22 %, 10.5 %, 2.7 % and 0 % errors, and a
cluster where one worker does not answer. Checked in the DOM Chromium dumps: the error-rate bars have different
heights for different rates on one scale, only flows above the threshold are marked failing, a single window's
events sparkline is a point, and the unanswered partitions are named.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from processor.web.page import PAGE
from processor.web.status import FAILING_ERROR_RATE, status_data
from tests.e2e.test_status_browser import Rows, chromium, run_chromium
from tests.helpers.http import serving
from tests.helpers.workers import ARTIFACTS
from tests.unit.web.test_status import T0, W, rec, runs

pytestmark = pytest.mark.slow

FLOWS = {"all": (0, 6), "f22": (39, 11), "f105": (17, 2), "f27": (36, 1), "none": (40, 0)}  # id: (ok, failed)
UP, DOWN = "http://worker-a:6066", "http://worker-b:6067"


def status_json() -> dict:
    items = [rec(p, f"flow:{fid}", T0, runs(fid, T0, ok, failed)) for p, (fid, (ok, failed)) in enumerate(FLOWS.items())]
    data = status_data(items, window_seconds=W, prefix="okta.workflows", partitions=None, now_ms=T0 + 20_000)
    data["partition_count"] = 4
    data["partitions"] = [{"partition": p, "owner": UP if p < 2 else DOWN, "answered": p < 2,
                           "error": None if p < 2 else "Cannot connect to host worker-b:6067"} for p in range(4)]
    data["workers"] = [{"url": UP, "answered": True, "partitions": [0, 1]},
                       {"url": DOWN, "answered": False, "partitions": []}]
    data["served_by"] = UP
    data["sink"] = {"state": "dry run", "series_sent": 1, "logs_sent": 2, "sink_retries": 0}
    data["worker"] = {"records": 123}
    return data


async def test_bars_threshold_single_point_and_unanswered_partitions():
    chromium()
    data = status_json()
    assert len(data["windows"]) == 1

    async def page(request):
        return web.Response(text=PAGE, content_type="text/html")

    async def status(request):
        return web.json_response(data)

    async with serving({"/els/status/": page, "/els/status.json": status}) as base:
        url = f"{base}/els/status/"
        dom = (await asyncio.to_thread(run_chromium, url, "--dump-dom")).stdout
        shot = ARTIFACTS / "status-page-one-window.png"
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(run_chromium, url, f"--screenshot={shot}", "--window-size=1280,760",
                                "--hide-scrollbars")

    parser = Rows()
    parser.feed(dom)
    rows = {r["data-flow-id"]: r for r in parser.rows}
    assert list(rows) == ["all", "f22", "f105", "none", "f27"], dom[-3000:]
    failing = {fid for fid, r in rows.items() if "failing" in r["class"].split()}
    assert failing == {fid for fid, (ok, failed) in FLOWS.items() if failed / (ok + failed) > FAILING_ERROR_RATE}
    assert failing == {"all", "f22", "f105"}  # 2.7 % has a failure but is not failing

    body = {m.group(1): m.group(0) for m in re.finditer(r'<tr class="[^"]*" data-flow-id="(\w+)".*?</tr>', dom, re.S)}
    heights = {}
    for fid, html in body.items():
        (h,) = re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"', html)
        heights[fid] = float(h)
        events_svg = re.search(r"<svg class=\"spark\".*?</svg>", html, re.S).group(0)
        assert "<polygon" not in events_svg and "<polyline" not in events_svg and "<circle" in events_svg, fid
    assert heights["all"] > heights["f22"] > heights["f105"] > heights["f27"] > heights["none"], heights
    assert 'class="rate warn">2.7%' in dom and 'class="rate bad">10.5%' in dom

    assert "<b>2 of 4</b> raw partitions answered, from <b>1 of 2</b> worker" in dom
    assert "Partial view: partitions 2, 3 did not answer (worker-b:6067: Cannot connect to host worker-b:6067)" in dom
    assert len(re.findall(r'class="part down"', dom)) == 2 and len(re.findall(r'class="part ok"', dom)) == 2
    assert shot.exists() and shot.stat().st_size > 10_000
