"""Ingest's periodic stats line reports each interval's counts (and the totals apart, under `since_start`)."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from ingest.app import create_app
from ingest.stats import IntervalReport, Stats
from tests.e2e.test_ingest import SAMPLE_EVENTS, Ingest, make_config


def test_each_line_counts_its_own_interval_and_totals_are_apart():
    stats = Stats()
    report = IntervalReport(stats, now=100.0)
    stats.requests += 3
    stats.status_202 += 2
    stats.status_401 += 1
    assert report.line(160.0) == {"interval_s": 60.0, "requests": 3, "status_202": 2, "status_401": 1,
                                  "since_start": {"requests": 3, "status_202": 2, "status_401": 1}}
    stats.requests += 1
    stats.refused(413)
    assert report.line(220.0) == {"interval_s": 60.0, "requests": 1, "status_413": 1,
                                  "since_start": {"requests": 4, "status_202": 2, "status_401": 1, "status_413": 1}}
    assert report.line(280.0) is None  # a quiet interval logs nothing
    stats.refused(400)
    line = report.line(292.5)  # the last, shorter interval at shutdown
    assert line["interval_s"] == 12.5 and line["status_400"] == 1 and "requests" not in line


@pytest.mark.broker
async def test_the_running_app_logs_per_interval(kafka_bootstrap, topic_names, caplog):
    """Two accepted requests, a pause of several intervals, one refused: the lines add up to the three requests
    (totals would count the first two again), the refused one is in a line of its own, and `since_start` of
    the last line has every count."""
    every = 0.3
    caplog.set_level(logging.INFO, logger="els.ingest")
    cfg = make_config(kafka_bootstrap, topic_names)
    async with Ingest(cfg, create_app(cfg, stats_every=every)) as ing:
        for _ in range(2):
            assert (await ing.post(orjson.dumps(SAMPLE_EVENTS[0])))[0] == 202
        await asyncio.sleep(every * 5)
        assert (await ing.post(orjson.dumps(SAMPLE_EVENTS[0]), auth=False))[0] == 401
        await asyncio.sleep(every * 5)
    lines = [r for r in caplog.records if r.getMessage() == "ingest stats"]
    assert sum(r.requests for r in lines) == 3
    assert sum(getattr(r, "status_202", 0) for r in lines) == 2
    assert [(r.requests, getattr(r, "status_202", 0)) for r in lines if getattr(r, "status_401", 0)] == [(1, 0)]
    assert lines[-1].since_start == {"requests": 3, "bytes_in": 2 * len(orjson.dumps(SAMPLE_EVENTS[0])),
                                     "events_accepted": 2, "status_202": 2, "status_401": 1}
    assert all(r.interval_s > 0 for r in lines)
