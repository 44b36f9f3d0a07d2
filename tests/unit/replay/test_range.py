"""The replay's range (processor.replay.times.Range) and its words (summary.ReplayStats): window-aligned bounds,
chains closed at --until but never later than the replay's start, and a progress line that says what the summary
says."""

from __future__ import annotations

import pytest

from common.config import Config
from processor.replay.backfill import DRY_RUN_FILE, replay_config
from processor.replay.summary import ReplayStats
from processor.replay.times import Range, ReplayError

W = 60_000


def test_bounds_align_outwards_and_chains_close_at_until():
    r = Range.of(10 * W + 5, 20 * W + 5, W, started_ms=30 * W)
    assert (r.since_ms, r.until_ms, r.close_ms) == (10 * W, 21 * W, 20 * W + 5)
    assert 10 * W in r and 21 * W - 1 in r and 21 * W not in r and 10 * W - 1 not in r


def test_chains_never_close_later_than_the_replays_start():
    assert Range.of(0, 50 * W, W, started_ms=40 * W).close_ms == 40 * W


def test_an_empty_range_is_refused():
    with pytest.raises(ReplayError, match="--until must be after --since"):
        Range.of(5 * W, 5 * W, W, started_ms=10 * W)


def test_progress_and_summary_say_the_same():
    s = ReplayStats(read=10, total=10, windows_sent=4, windows_held=2, chains_sent=7, chains_held=1, chains_open=3)
    assert "4 windows sent, 2 held, 7 chains sent" in s.progress(5.0)
    text = s.summary("held.ndjson", historical=False, dry_run_file=None)
    assert "windows sent: 4 (and 2 held back)" in text
    assert "chains sent: 7 (and 1 held back); still open at --until, left to the live pipeline: 3" in text


def test_a_dry_replay_has_its_own_file_unless_one_is_given():
    cfg = Config.from_env({})
    assert replay_config(cfg, {}).els_dry_run_file == DRY_RUN_FILE != cfg.els_dry_run_file
    given = Config.from_env({"ELS_DRY_RUN_FILE": "x.ndjson"})
    assert replay_config(given, {"ELS_DRY_RUN_FILE": "x.ndjson"}).els_dry_run_file == "x.ndjson"
