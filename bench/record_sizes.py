"""Sizes of the state records the processor writes, on the bench's workload shape, without a broker.

`.venv/bin/python -m bench.record_sizes [--chains N]`: N simulated chains over 45 minutes of event time, keyed
into 8 partitions as ingest keys them, through the engine with dict stores (ELS_LATENESS_SECONDS=3600, as the
processor bench runs, so every window stays open); prints the window, clock and chain record sizes in bytes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import zlib

import orjson

from common.config import Config
from els.traffic import Simulator
from ingest.envelope import event_key
from processor.engine import Engine, Record, settings_from

PARTITIONS = 8


def record_sizes(chains: int) -> dict:
    cfg = Config.from_env({**os.environ, "ELS_LATENESS_SECONDS": "3600"})
    chain_store: dict[str, bytes] = {}
    window_store: dict[str, bytes] = {}
    engine = Engine(settings_from(cfg), chain_store, window_store)
    now = int(time.time() * 1000)
    events = Simulator(seed=1, flows=20, helpers=5, dup_rate=0.05).workload(chains, now - 45 * 60_000, 45 * 60_000)
    by_partition: dict[int, list[dict]] = {}
    for ev in events:
        by_partition.setdefault(zlib.crc32(event_key(ev)) % PARTITIONS, []).append(ev)
    for p, evs in by_partition.items():
        records = [Record(i, event_key(e), orjson.dumps(e), {"received_at": str(now).encode()}, now)
                   for i, e in enumerate(evs)]
        _out, chain_writes, window_writes = engine.step(p, records)
        for store, writes in ((chain_store, chain_writes), (window_store, window_writes)):
            store.update({k: v for k, v in writes.items() if v is not None})
    windows = [len(v) for k, v in window_store.items() if not k.endswith("|clock")]
    return {"events": len(events), "window_records": len(windows), "window_mean_bytes": int(statistics.mean(windows)),
            "window_max_bytes": max(windows), "chain_records": len(chain_store),
            "chain_mean_bytes": int(statistics.mean(len(v) for v in chain_store.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, default=3000)
    print(orjson.dumps(record_sizes(ap.parse_args().chains)).decode())


if __name__ == "__main__":
    main()
