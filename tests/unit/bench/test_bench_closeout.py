"""bench/closeout.py: the close-out of a small backlog goes through the engine and the sink agent's flushes."""

from __future__ import annotations

from bench.closeout import run


def test_every_closed_chain_s_log_and_every_window_is_sent_once():
    figures = run(10_000, profile=False)
    assert figures["logs"] > 1_000  # more than one logs-only flush
    assert figures["logs_sent"] == figures["logs"]
    assert figures["series_sent"] > 0 and figures["partials"] > 0
    assert figures["renders_per_window"] == 1.0  # every window sent once, after the burst, not at every logs flush
