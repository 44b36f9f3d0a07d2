"""Baseline: the smallest Faust agent on the raw topic, parsing each event and nothing else.

It measures the framework's own per-event cost on this machine, so the processor's rate can be given as a ratio.
"""

import os

import faust
import orjson

from common.kafka import KafkaSecurity

app = faust.App(os.environ["BENCH_APP_ID"], broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
                broker_credentials=KafkaSecurity.from_env().faust_credentials(),
                topic_partitions=int(os.environ["ELS_PARTITIONS"]), store="memory://",
                broker_rebalance_timeout=3.0, web_port=int(os.environ["ELS_WEB_PORT"]), autodiscover=False,
                consumer_auto_offset_reset="earliest", datadir=os.environ.get("ELS_DATA_DIR", "var/faust-bench"))
raw = app.topic(os.environ["ELS_RAW_TOPIC"], key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw")
seen = {"records": 0}


@app.agent(raw)
async def parse(stream):
    async for value in stream:
        orjson.loads(value)
        seen["records"] += 1


@app.page("/els/stats/")
async def stats(web, request):
    return web.json(seen)
