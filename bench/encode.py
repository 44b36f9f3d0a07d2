"""The sink's cost to build and serialise a request body, per series and per log (no gzip, no HTTP), on a
backlog's close-out (bench/closeout.py's engine run): the models path (a datadog-api-client MetricSeries /
HTTPLogItem per item, then what the client's rest.py does with it, data_to_dict and json.dumps) against the
fast path (processor/sink/encode.py: orjson per item, joined), on the same items, in turn, in one run.

    python -m bench.encode [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from datadog_api_client.model_utils import data_to_dict
from datadog_api_client.v2.model.http_log import HTTPLog
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_payload import MetricPayload

from processor.sink.client import Answer, series_model
from processor.sink.encode import logs_batcher, logs_json, series_batcher, series_json


class Keeping:
    dry_run = False

    def __init__(self):
        self.series: list[dict] = []
        self.logs: list[dict] = []

    async def post_series(self, batch):
        self.series += batch
        return Answer(202)

    async def post_logs(self, batch):
        self.logs += batch
        return Answer(202)


def closeout_items(n: int) -> tuple[list[dict], list[dict]]:
    """The series and log items the sink sends for an n-event backlog's close-out."""
    import orjson

    from bench.__main__ import PARTITIONS
    from bench.closeout import Backlog
    from common.config import Config
    from common.deadletter import DeadLetterWriter, Stage
    from processor.outbox import outbox_records
    from processor.sink.agent import SinkAgent
    from processor.sink.sink import Sink
    from tests.unit.sink.test_encode import Held, Table, _ack  # the same no-broker sink wiring as the test

    outputs = Backlog(n).close_out()
    cfg = Config.from_env({"DD_API_KEY": "k", "ELS_LATENESS_SECONDS": "3600"})
    client, table = Keeping(), Table()
    agent = SinkAgent(cfg, Sink(cfg, client, DeadLetterWriter("dl", Stage.SINK, _ack), table), table, table)

    async def run():
        for q, value in outbox_records(outputs, PARTITIONS):
            agent.buffer.add(Held(q), q, orjson.loads(value), 0.0)
            if agent.buffer.logs_full():
                await agent.flush(series=False)
        await agent.flush()

    asyncio.run(run())
    return client.series, client.logs


def models_series(items):
    return json.dumps(data_to_dict(MetricPayload(series=[series_model(s) for s in items])))


def models_logs(items):
    return json.dumps(data_to_dict(HTTPLog([HTTPLogItem(**i) for i in items])))


def _bodies(batcher, join, items) -> list[bytes]:
    """The bodies as the sink writes them (its batchers, processor/sink/encode.py)."""
    return [b.json_body(join) for b in batcher.fill(items) + batcher.rest()]


def fast_series(items):
    return _bodies(series_batcher(), series_json, items)


def fast_logs(items):
    return _bodies(logs_batcher(), logs_json, items)


def us_per_item(fn, items, chunk: int) -> float:
    """CPU microseconds per item (this thread), in request-sized chunks."""
    t = time.thread_time()
    for i in range(0, len(items), chunk):
        fn(items[i:i + chunk])
    return (time.thread_time() - t) * 1e6 / max(len(items), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    series, logs = closeout_items(args.events)
    runs: dict[str, list[float]] = {k: [] for k in ("models_series", "fast_series", "models_logs", "fast_logs")}
    for _ in range(args.rounds):  # interleaved: drift on the shared machine hits both alike
        runs["models_series"].append(us_per_item(models_series, series, 5000))
        runs["fast_series"].append(us_per_item(fast_series, series, 5000))
        runs["models_logs"].append(us_per_item(models_logs, logs, 1000))
        runs["fast_logs"].append(us_per_item(fast_logs, logs, 1000))
    out = {"events": args.events, "series": len(series), "logs": len(logs), "rounds": args.rounds}
    for k, v in runs.items():
        out[f"{k}_us"] = round(statistics.median(v), 2)
        out[f"{k}_us_per_round"] = [round(x, 2) for x in v]
    out["series_speedup"] = round(out["models_series_us"] / out["fast_series_us"], 1)
    out["logs_speedup"] = round(out["models_logs_us"] / out["fast_logs_us"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
