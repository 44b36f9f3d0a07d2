"""State record sizes and the engine's own cost on the processor bench's workload, in process (no Kafka).

    python -m bench.record_sizes [--events N] [--live]

The events of `python -m bench --only processor` (a 45-minute backlog, 8 partitions keyed like ingest does) go
through the engine in batches of 1,000 per partition, flushed after each batch, with a tick per partition every
5,000 events, a minute apart (so chains close and windows emit). Reported: encoded bytes of the window and chain records held at
the end (what the changelogs carry and the tables keep), the memory they take as held in the tables (Python
objects, tracemalloc), and the engine's microseconds per event. `--live` processes as the worker does (each
event's delay sampled, each tick carrying the orgs' last events: processor/engine/watch.py); without it, as a
replay or a test does.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
import zlib

import orjson

from bench.__main__ import PARTITIONS, make_events
from processor.engine import TICK_KEY, Engine, Record, Settings
from processor.engine.watch import Live
from processor.state import keys


def run(n: int, live: bool = False) -> dict:
    _sim, events = make_events(n)
    by_p: dict[int, list[dict]] = {}
    for e in events:
        root = (e.get("root_execution_id") or e["execution_id"]).encode()
        by_p.setdefault(zlib.crc32(root) % PARTITIONS, []).append(e)
    s = Settings(window_ms=60_000, lateness_ms=3_600_000, quiet_ms=30_000, timeout_ms=3_600_000,
                 logs=frozenset({"failures", "chains"}))
    chains: dict = {}
    windows: dict = {}
    engine = Engine(s, chains, windows)
    now = int(time.time() * 1000)
    batches = []
    for p, evs in sorted(by_p.items()):
        recs = []
        for i, e in enumerate(evs):
            recs.append(Record(len(recs), b"k", orjson.dumps(e), {"received_at": str(now).encode()}, now))
            if i % 5000 == 4999:  # a minute passes: chains quiet for 30 s close
                tick = orjson.dumps({"tick": now + 60_000 * (i // 5000 + 1)})
                recs.append(Record(len(recs), TICK_KEY, tick, {"els-kind": b"tick"}, now))
        batches += [(p, recs[i:i + 1000]) for i in range(0, len(recs), 1000)]
    t = time.perf_counter()
    for p, batch in batches:
        _out, writes = engine.step(p, batch, Live(now) if live else None)
        if writes is not None:
            writes.apply_to(chains, windows)
    elapsed = time.perf_counter() - t
    return _figures(n, elapsed, chains, windows)


def _held(store: dict) -> float:
    """Bytes per record the table holds (key and value objects), measured on a copy."""
    gc.collect()
    tracemalloc.start()
    copy = {bytes(k, "utf-8").decode(): bytes(bytearray(v)) for k, v in store.items()}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / max(len(copy), 1)


def _figures(n: int, elapsed: float, chains: dict, windows: dict) -> dict:
    win = {k: v for k, v in windows.items() if not keys.is_clock(k)}
    by_kind: dict[str, list[int]] = {}
    for k, v in win.items():
        by_kind.setdefault(keys.parse(k).kind.value, []).append(len(v))
    sizes = [len(v) for v in win.values()]
    chain_sizes = [len(v) for v in chains.values()]
    return {
        "events": n, "engine_us_per_event": round(elapsed / n * 1e6, 1),
        "window_records": len(win), "window_bytes_mean": round(statistics.mean(sizes)),
        "window_bytes_median": statistics.median(sizes), "window_bytes_max": max(sizes),
        **{f"window_bytes_mean_{kind}": round(statistics.mean(v)) for kind, v in sorted(by_kind.items())},
        "window_held_bytes_per_record": round(_held(win)),
        "chain_records": len(chains), "chain_bytes_mean": round(statistics.mean(chain_sizes)),
        "chain_bytes_max": max(chain_sizes), "chain_held_bytes_per_record": round(_held(chains)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--live", action="store_true", help="process as the live worker does (delay, silence)")
    args = ap.parse_args()
    print(json.dumps(run(args.events, args.live), indent=1))


if __name__ == "__main__":
    main()
