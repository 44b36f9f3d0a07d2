"""bench/ab.py's pure parts: variant specs, and ratios taken round by round (never between medians of runs
made at different moments on a shared machine)."""

from __future__ import annotations

import pytest

from bench.ab import pair, parse


def test_variant_specs():
    v = parse("uv=ingest@a4ee809+ELS_INGEST_UVLOOP=1+ELS_PARTITIONS=4")
    assert (v.label, v.kind, v.rev, v.env) == ("uv", "ingest", "a4ee809", {"ELS_INGEST_UVLOOP": "1",
                                                                          "ELS_PARTITIONS": "4"})
    b = parse("bare_uv=bare+uvloop")
    assert (b.kind, b.uvloop, b.rev) == ("bare", True, None)
    k = parse("ak=aiokafka+headers=1")
    assert k.kind == "aiokafka" and k.env == {"headers": "1"}
    c = parse("ck=confluent+uvloop+BENCH_RDKAFKA=max.in.flight=1,linger.ms=0.5")
    assert (c.kind, c.uvloop, c.env) == ("confluent", True, {"BENCH_RDKAFKA": "max.in.flight=1,linger.ms=0.5"})
    with pytest.raises(SystemExit):
        parse("x=nginx")


def test_pair_is_the_median_of_per_round_ratios():
    def run(rps, cpu):
        return {"rps": rps, "server_cpu_us_per_request": cpu}

    runs = {"a": [run(100, 50), run(300, 40), run(90, 60)], "b": [run(200, 25), run(200, 40), run(100, 30)]}
    got = pair(runs, "a", "b")
    assert got["rps_ratios"] == [0.5, 1.5, 0.9] and got["rps_ratio"] == 0.9
    assert got["cpu_per_request_ratio"] == 2.0
