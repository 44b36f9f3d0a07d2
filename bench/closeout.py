"""A backlog's close-out, in process (no Kafka): what the first tick after a backlog costs the engine and the sink.

    python -m bench.closeout [--events N] [--profile]

The events of `python -m bench --only processor` go through the engine without a tick, in batches of 1,000 per
partition (chains stay open, windows dirty, as in a worker reading a backlog); then one tick per partition, two
minutes on, closes every chain and emits every window: the close-out. Its outputs are packed into outbox records
as the worker writes them and go through the sink as the sink agent takes them (a logs-only flush per 1,000
logs, a full flush at the end), in dry-run mode. Reported: the engine's and the sink's seconds, the partials and
logs made, the series and logs sent, and how many times each window was rendered (`renders_per_window`).
--profile prints cProfile's top functions of the close-out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
import zlib
from types import SimpleNamespace

import orjson

from bench.__main__ import PARTITIONS, make_events
from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from processor.engine import TICK_KEY, Engine, Outputs, Record, Settings
from processor.outbox import outbox_records
from processor.sink.agent import SinkAgent
from processor.sink.client import DatadogClient
from processor.sink.merge import MergedWindow
from processor.sink.sink import Sink
from processor.state.transaction import apply_writes

SETTINGS = Settings(window_ms=60_000, lateness_ms=3_600_000, quiet_ms=30_000, timeout_ms=3_600_000,
                    logs=frozenset({"failures", "chains"}))


class Backlog:
    """An engine that has read the backlog, with the state tables it writes to."""

    def __init__(self, n: int):
        _sim, events = make_events(n)
        by_p: dict[int, list[dict]] = {}
        for e in events:
            root = (e.get("root_execution_id") or e["execution_id"]).encode()
            by_p.setdefault(zlib.crc32(root) % PARTITIONS, []).append(e)
        self.chains: dict = {}
        self.windows: dict = {}
        self.engine = Engine(SETTINGS, self.chains, self.windows)
        self.now = int(time.time() * 1000)
        self.next_offset: dict[int, int] = {}
        headers = {"received_at": str(self.now).encode()}
        for p, evs in sorted(by_p.items()):
            recs = [Record(i, b"k", orjson.dumps(e), headers, self.now) for i, e in enumerate(evs)]
            for i in range(0, len(recs), 1000):
                self._step(p, recs[i:i + 1000])
            self.next_offset[p] = len(recs)

    def _step(self, p: int, records: list[Record]) -> Outputs:
        out, writes = self.engine.step(p, records)
        if writes is not None:
            writes.apply_to(self.chains, self.windows)
        return out

    def close_out(self) -> list[Outputs]:
        """One tick per partition, two minutes on: every chain is quiet by then."""
        tick = orjson.dumps({"tick": self.now + 120_000})
        return [self._step(p, [Record(off, TICK_KEY, tick, {"els-kind": b"tick"}, self.now)])
                for p, off in self.next_offset.items()]


class Table(dict):
    """The sink table: persist applies the writes, as the worker's changelog writer does to its local store."""

    async def persist(self, table: dict, op: int, writes: dict) -> list:
        apply_writes(table, writes)
        return []


class HeldRecord:
    """An outbox record as the sink agent holds it."""

    def __init__(self, op: int):
        self.value = None
        self.message = SimpleNamespace(partition=op, value=None)

    def ack(self) -> None:
        pass


async def through_the_sink(outputs: list[Outputs], dry_run_file: str) -> dict:
    cfg = Config.from_env({"DD_API_KEY": "", "ELS_DRY_RUN_FILE": dry_run_file, "ELS_LATENESS_SECONDS": "3600"})

    async def send(topic, value, headers):
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    table = Table()
    sink = Sink(cfg, DatadogClient(cfg), DeadLetterWriter("dl", Stage.SINK, send), table)
    agent = SinkAgent(cfg, sink, table, table)
    values = [(q, orjson.loads(v)) for q, v in outbox_records(outputs, PARTITIONS)]
    t = time.perf_counter()
    for q, value in values:
        agent.buffer.add(HeldRecord(q), q, value, 0.0)
        if agent.buffer.logs_full():
            await agent.flush(series=False)
    await agent.flush()
    elapsed = time.perf_counter() - t
    once = len(sink.render([MergedWindow.from_dict(v) for v in table.values()], int(time.time() * 1000)))
    return {"sink_s": round(elapsed, 3), "outbox_records": len(values), **sink.stats,
            "series_if_each_window_once": once, "renders_per_window": round(sink.stats["series_sent"] / once, 2)}


def run(n: int, profile: bool) -> dict:
    backlog = Backlog(n)
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t = time.perf_counter()
    outputs = backlog.close_out()
    engine_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        sink = asyncio.run(through_the_sink(outputs, os.path.join(tmp, "dry-run.ndjson")))
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    return {"events": n, "engine_closeout_s": round(engine_s, 3), "partials": sum(o.counts()[0] for o in outputs),
            "logs": sum(o.counts()[1] for o in outputs), **sink}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.profile), indent=1))


if __name__ == "__main__":
    main()
