"""The pipeline watching itself (processor/engine/watch.py, engine/reports.py): silence per org carried by every
live tick, delay per event, backlog per partition, and ingest's window reports counted once per id."""

from __future__ import annotations

import orjson

from processor.core.bag import Bag
from processor.engine import Record
from processor.engine.watch import Live, backlog_key, seen_key
from processor.sink.render import render_series
from tests.unit.engine.test_engine import T0, Harness, W, count, ev


def pipeline(h: Harness, ws: int = T0) -> Bag:
    return h.bag("pipeline", ws)


def series(bag: Bag, ws: int = T0) -> dict[tuple[str, tuple], float]:
    return {(s["metric"].removeprefix("okta.workflows."), tuple(sorted(s["tags"]))): s["points"][0]["value"]
            for s in render_series("pipeline", ws, W // 1000, bag)}


def report(h: Harness, rid: str, ws: int, received_ms: int, **counts) -> Record:
    value = {"report": rid, "ws": ws, "requests": {"accepted": 3, "unauthorized": 2}, "events": {"accepted": 7},
             "deadletters": {"bad_item": 1}, **counts}
    off = h.offset
    h.offset += 1
    return Record(off, b"__ingest__", orjson.dumps(value),
                  {"els-kind": b"ingest-report", "received_at": str(received_ms).encode()}, received_ms)


def test_every_live_tick_carries_the_latest_event_of_each_org_into_its_window():
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + 5), received_ms=T0 + 1_000)], live=Live(T0 + 1_500))
    h.run([h.tick(T0 + 3 * W + 10)], live=Live(T0 + 3 * W + 10))  # three quiet windows later
    bag = pipeline(h, T0 + 3 * W)
    assert bag.maxima[seen_key("org")] == T0 + 1_000
    # rendered against the window's end: no event for (4 W - 1 s)
    assert series(bag, T0 + 3 * W)[("pipeline.silence_seconds", ("org:org",))] == (4 * W - 1_000) / 1000


def test_silence_survives_a_restart_through_the_clock():
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + 5), received_ms=T0 + 1_000)])
    h.engine.forget_all()  # the worker restarted: the clock is read back from the store
    h.run([h.tick(T0 + W + 10)], live=Live(T0 + W + 10))
    assert pipeline(h, T0 + W).maxima[seen_key("org")] == T0 + 1_000


def test_delay_is_sampled_per_live_event_and_backlog_per_tick():
    h = Harness()
    h.run([h.rec(ev("FLOW_START", T0 + 5, ex="a"), received_ms=T0 + 1_000),
           h.rec(ev("FLOW_START", T0 + 6, ex="b"), received_ms=T0 + 2_000), h.tick(T0 + 4_000)],
          live=Live(T0 + 4_000, end_offset=12))
    bag = pipeline(h)
    got = series(bag)
    assert got[("pipeline.delay_seconds.max", ())] == 3.0
    assert bag.maxima[backlog_key(0)] == 12 - 2 - 1  # records 3..11 not read when the tick at 2 was applied
    assert got[("pipeline.backlog_records", ("partition:0",))] == 9


def test_a_replay_measures_nothing_live():
    h = Harness(replay=True)
    h.run([h.rec(ev("FLOW_START", T0 + 5)), h.tick(T0 + 10 * W)], live=Live(T0 + 4_000, end_offset=12))
    assert all(not Bag.from_dict(v["bag"]).sketches for (g, _), v in h.partials.items() if g == "pipeline")


def test_an_ingest_report_counts_once_per_id_in_its_window():
    h = Harness()
    first = report(h, "host:1:5@w", T0, T0 + W + 100, tls_days_left=40.5)
    again = report(h, "host:1:5@w", T0, T0 + W + 200, tls_days_left=40.5)  # Kafka's ack was lost: sent again
    other = report(h, "host:2:5@w", T0, T0 + W + 300, tls_days_left=40.5)
    h.run([first, again, other, h.tick(T0 + W + 400)])
    bag = pipeline(h)
    got = series(bag)
    assert got[("pipeline.ingest.requests", ("outcome:accepted",))] == 6
    assert got[("pipeline.ingest.requests", ("outcome:unauthorized",))] == 4
    assert got[("pipeline.ingest.events", ("outcome:accepted",))] == 14
    assert got[("pipeline.deadletters", ("reason:bad_item", "stage:ingest"))] == 2
    assert got[("pipeline.ingest.tls_days_left", ("host:host",))] == 40.5  # per ingest host
    assert series(pipeline(h)).keys() >= {("pipeline.ingest.tls_days_left", ("host:host",))}
    assert count(bag, "pipeline.events_in") == 0


def test_a_report_for_a_closed_window_lands_in_its_arrival_window():
    h = Harness(lateness_ms=10_000)
    h.run([h.tick(T0 + 5 * W)])
    h.run([report(h, "host:1:5@w", T0, T0 + 5 * W + 100), h.tick(T0 + 5 * W + 200)])
    assert count(pipeline(h, T0 + 5 * W), "pipeline.ingest.requests") == 5


def test_an_unreadable_report_is_dead_lettered_with_its_reason():
    h = Harness()
    bad = Record(0, b"__ingest__", b"{not json", {"els-kind": b"ingest-report"}, T0)
    h.offset = 1
    h.run([bad, h.tick(T0 + 1_000)])
    assert h.deadletters and series(pipeline(h))[("pipeline.deadletters", ("reason:invalid_report",
                                                                           "stage:processor"))] == 1
