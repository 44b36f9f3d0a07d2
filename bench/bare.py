"""The ingest bench's baselines: aiohttp servers that do the least a front door can do.

    python -m bench.bare PORT [--kafka BOOTSTRAP TOPIC [--confluent]] [--uvloop]

Without --kafka: read the body and answer 202 without any work (aiohttp's own cost). With --kafka: read the
body, produce it as one record with aiokafka (acks=all, the same producer settings as `els ingest`), await
Kafka's acknowledgement, answer 202 (aiohttp's and aiokafka's cost together). Same aiohttp, same server options
as `els ingest` (no access log, no auto-decompression), so `els ingest` against these two separates its own cost
from aiokafka's. --confluent produces with librdkafka (confluent-kafka, bench/rdkafka.py: a poll thread
resolving the futures on the loop) instead of aiokafka, with the same settings (BENCH_RDKAFKA and BENCH_CK_KIND
vary them). --uvloop runs the server on uvloop's event loop instead of asyncio's.
"""

from __future__ import annotations

import argparse
import itertools
import os

from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench import rdkafka

ANSWER = b'{"accepted":1,"rejected":0}'
PRODUCER = web.AppKey("producer", object)
TOPIC = web.AppKey("topic", str)
HEADERS = web.AppKey("headers", bool)
_ids = itertools.count()


async def post_events(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, body=ANSWER, content_type="application/json")


async def post_events_kafka(request: web.Request) -> web.Response:
    body = await request.read()
    app = request.app
    key = b"%d" % next(_ids)  # a different key per request, like ingest's execution ids
    headers = [("received_at", b"1700000000000"), ("idempotency_key", key)] if app[HEADERS] else None
    future = await app[PRODUCER].send(app[TOPIC], value=body, key=key, headers=headers)
    await future
    return web.Response(status=202, body=ANSWER, content_type="application/json")


async def post_events_confluent(request: web.Request) -> web.Response:
    body = await request.read()
    app = request.app
    key = b"%d" % next(_ids)
    headers = [("received_at", b"1700000000000"), ("idempotency_key", key)] if app[HEADERS] else None
    await app[PRODUCER].produce(app[TOPIC], body, key, headers)  # a future, or a coroutine
    return web.Response(status=202, body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(status=200, body=b'{"status":"alive"}', content_type="application/json")


def _producer_ctx(bootstrap: str):
    async def ctx(app: web.Application):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        app[PRODUCER] = producer
        yield
        await producer.stop()

    return ctx


def _rdkafka_overrides() -> dict[str, str]:
    """BENCH_RDKAFKA="linger.ms=1,max.in.flight=1": librdkafka settings to try on the --confluent baseline."""
    pairs = [kv.split("=", 1) for kv in os.environ.get("BENCH_RDKAFKA", "").split(",") if kv]
    return dict(pairs)


def _confluent_ctx(bootstrap: str):
    async def ctx(app: web.Application):
        producer = rdkafka.KINDS[os.environ.get("BENCH_CK_KIND", "")]({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                                  "partitioner": "murmur2_random", "enable.idempotence": False,
                                  **_rdkafka_overrides()})
        await producer.list_topics(None, 10)
        app[PRODUCER] = producer
        yield
        await producer.close()

    return ctx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("--kafka", nargs=2, metavar=("BOOTSTRAP", "TOPIC"))
    ap.add_argument("--confluent", action="store_true", help="librdkafka instead of aiokafka (--kafka)")
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--headers", action="store_true", help="two record headers, as ingest writes (--kafka)")
    args = ap.parse_args()
    app = web.Application()
    if args.kafka:
        app[TOPIC] = args.kafka[1]
        app[HEADERS] = args.headers
        if args.confluent:
            app.cleanup_ctx.append(_confluent_ctx(args.kafka[0]))
            app.router.add_post("/v1/events", post_events_confluent)
        else:
            app.cleanup_ctx.append(_producer_ctx(args.kafka[0]))
            app.router.add_post("/v1/events", post_events_kafka)
    else:
        app.router.add_post("/v1/events", post_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, auto_decompress=False,
                loop=loop)


if __name__ == "__main__":
    main()
