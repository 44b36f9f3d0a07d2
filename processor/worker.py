"""The Faust wiring: raw events in, partial aggregates and logs out to the outbox.

`faust -A processor.app worker` and `els process` run the app this module builds (processor/app.py). The agent
takes batches of raw records from the inbox the consumer fills (processor/inbox.py) and hands them to the
BatchApplier (processor/batch.py: engine, outputs, state).
A leader-only timer sends a tick record into every raw partition each ELS_FLUSH_SECONDS: ticks travel with the
events, so window closing and emission happen inside the stream, in order, for every partition, also after
restarts and rebalances (Faust's own on_window_close is not used; README "The processor" says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import faust
from faust.types import TP

from common import logs as els_logs
from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from common.kafka import faust_client_kwargs
from common.range_reader import read_range
from processor.batch import BatchApplier
from processor.engine import TICK_HEADER, TICK_KEY, Engine, Record, settings_from, tick_value
from processor.engine.records import TICK_KIND
from processor.health import Health, Inbound, Loop
from processor.inbox import Inbox
from processor.log_watch import CHECK_EVERY_S, LogWatch
from processor.pipeline import Pipeline
from processor.revocation import Abandoned, Fence
from processor.state.changelog import KafkaOut
from processor.state.positions import Positions
from processor.transport import Transport
from processor.web.tables import table_help

# Batches of up to 2,000 records within 1 s: state is written per transaction, not per batch (FlushPolicy), so
# larger batches bought nothing; smaller ones keep fewer records in memory at once and let Faust's consumer
# thread fetch while the engine works. A/B on a 100k backlog (docs/benchmarks.md), through a Faust stream:
# 10,000 -> 1.18 of the minimal Faust agent, 201 MB peak; 4,096 -> 1.18, 187 MB; 2,000 -> 1.28, 183 MB; 1,000 ->
# 1.27, 180 MB. Through the inbox, with 4,000 held at most (the consumer fetches the next batch while the agent
# applies one): 1.90; 2,000 held: 1.75; batches of 1,000 with 2,000 held: 1.68, peak RSS alike.
BATCH_MAX = 2000
BATCH_WITHIN_SECONDS = 1.0
INBOX_CAPACITY = 2 * BATCH_MAX
CONSUMER_FETCH_BYTES = 2 * 1024 * 1024
log = logging.getLogger("els.processor")


def create_app(cfg: Config) -> faust.App:
    els_logs.register_secrets([cfg.dd_api_key or ""])
    app = faust.App(
        cfg.els_app_id,
        broker=[f"kafka://{h}" for h in cfg.bootstrap_list],
        broker_credentials=cfg.kafka_security.faust_credentials(),
        topic_partitions=cfg.els_partitions,
        topic_replication_factor=cfg.els_replication_factor,
        broker_rebalance_timeout=cfg.els_rebalance_timeout_seconds,
        broker_session_timeout=cfg.els_session_timeout_seconds,
        # a member learns of a rebalance at its next heartbeat and must rejoin within the rebalance timeout, or it
        # is put out of the group: a third of either timeout leaves it the rest of the time to rejoin
        broker_heartbeat_interval=min(3.0, cfg.els_session_timeout_seconds / 3, cfg.els_rebalance_timeout_seconds / 3),
        datadir=cfg.els_data_dir,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        web_port=cfg.els_web_port,
        web_bind="0.0.0.0",
        autodiscover=False,
        # 2 MiB fetched per partition (Faust's default: 1 MiB): a topic written by ingest holds one small record
        # batch per event, and larger fetches keep Faust's consumer thread ahead of the agent. A/B on the
        # 100k-event backlog (docs/benchmarks.md, 2026-11-28): +6 % events/s; 4 MiB: +8 % but +15-20 MB of peak
        # RSS, as aiokafka parses a partition's whole fetch at once. Faust's CONSUMER_MAX_FETCH_SIZE overrides it.
        consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
        producer_acks=-1,
        # state flushes go out as record batches (processor/state/changelog.py): 16 KiB ones (the default)
        # would each wait for the previous one to be sent; 512 KiB keep a request under 1 MB
        producer_max_batch_size=512 * 1024,
        logging_config=None,
    )
    fence = Fence()  # what a rebalance or a stop abandons (processor/revocation.py)
    inbox = _inbox(app, cfg.els_raw_topic, fence)
    # its producer is idempotent where allowed; its consumer puts the raw topic's messages in the inbox
    app.transport = Transport(app.conf.broker_consumer, app, fence=fence, inbox=inbox)
    raw = app.topic(cfg.els_raw_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=cfg.els_partitions)
    out = app.topic(cfg.els_out_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=cfg.els_partitions)
    # values are the state layer's encoded records (processor/state/records.py), stored and restored as bytes
    chains = app.Table("chains", key_type=str, value_type=bytes, partitions=cfg.els_partitions,
                       help=table_help("chains"))
    windows = app.Table("windows", key_type=str, value_type=bytes, partitions=cfg.els_partitions,
                        help=table_help("windows"))
    pipeline = app.pipeline = Pipeline(cfg, Engine(settings_from(cfg), chains.data, windows.data), chains, windows,
                                       raw, out, inbox, fence=fence)
    kafka = KafkaOut(app)
    applier = _applier(app, pipeline, kafka)
    _register_agent(app, raw, inbox, applier, pipeline.health, fence)
    _register_ticks(app, raw, cfg.els_partitions, cfg.els_flush_seconds)
    _register_rest(app, pipeline, kafka)
    return app


def _applier(app: faust.App, pipeline: Pipeline, kafka: KafkaOut) -> BatchApplier:
    cfg, engine = pipeline.cfg, pipeline.engine

    async def earliest(p: int) -> int:
        tp = TP(cfg.els_raw_topic, p)
        return (await app.consumer.earliest_offsets(tp)).get(tp, 0) or 0

    async def seek(p: int, offset: int) -> None:
        # on the consumer's own thread: Faust's `seek` calls aiokafka from this one, racing the thread's fetcher
        # (KeyError in aiokafka's fetched_records crashed a worker during a rolling restart on Apache Kafka)
        await app.consumer.seek_wait({TP(cfg.els_raw_topic, p): offset})

    async def read(p: int, start: int, end: int) -> list[Record]:
        got = await read_range(cfg.bootstrap_list, cfg.els_raw_topic, p, start, end, faust_client_kwargs(app))
        return [Record(r.offset, r.key, r.value, dict(r.headers or ()), r.timestamp) for r in got]

    positions = Positions(lambda p: engine.clock(p).off, earliest, seek, stats=pipeline.stats, read=read)

    async def send_deadletter(topic: str, value: bytes, headers: list):
        return await kafka.send(topic, None, value, None, headers)

    deadletters = DeadLetterWriter(cfg.els_deadletter_topic, Stage.PROCESSOR, send_deadletter)
    def log_end(p: int) -> int | None:
        try:
            return app.consumer.highwater(TP(cfg.els_raw_topic, p))
        except (AssertionError, KeyError, AttributeError):  # not assigned (any more): no backlog figure
            return None

    return BatchApplier(engine, positions, kafka, deadletters, (pipeline.chains, pipeline.windows), cfg.els_out_topic,
                        cfg.els_partitions, pipeline.stats, log_end)


def _inbox(app: faust.App, raw_topic: str, fence: Fence) -> Inbox:
    def generation() -> int | None:
        """The consumer's generation, None while Faust's flow control holds the streams (a rebalance)."""
        return app.consumer_generation_id if app.flow_control.is_active() else None

    inbox = Inbox(raw_topic, BATCH_MAX, INBOX_CAPACITY, generation, lambda message: app.consumer.ack(message))
    fence.on_abandon(inbox.clear)
    return inbox


def _register_agent(app: faust.App, raw, inbox: Inbox, applier: BatchApplier, health: Health,
                    fence: Fence) -> None:
    inbound = Inbound(app.monitor.stream_inbound_time)

    @app.agent(raw)
    async def process(stream):
        """The stream stays idle: the consumer puts the raw topic's messages in the inbox (processor/inbox.py)."""
        while True:
            messages = await inbox.take(BATCH_WITHIN_SECONDS)
            if not messages:
                continue
            inbound.took({m.tp for m in messages})
            try:
                await fence.run(applier.apply(messages))
            except Abandoned:
                # a rebalance or a stop began: the batch and the open transactions are dropped, and their records
                # come again from the positions in the state, here or at the next owner (processor/revocation.py)
                applier.forget()
            except BaseException as exc:
                # the engine's transactions and positions may be ahead of what reached Kafka: re-read the stores
                applier.forget()
                if isinstance(exc, Exception):  # not a cancellation: Faust restarts the agent, health counts it
                    health.failed(Loop.AGENT, exc)
                raise
            finally:
                inbox.ack(messages)  # applied or abandoned: the positions in the state say which

    async def forget(app_, *args, **kwargs):
        """After any assignment change, positions and indexes are re-read from the state."""
        applier.forget()

    async def close(app_, *args, **kwargs):
        applier.close()

    app.on_partitions_assigned.connect(forget)
    app.on_partitions_revoked.connect(forget)
    app.on_before_shutdown.connect(close)


def _register_ticks(app: faust.App, raw, partitions: int, every_s: float) -> None:
    @app.timer(every_s, on_leader=True)
    async def tick():
        value = tick_value(int(time.time() * 1000))
        futures = [await raw.send(key=TICK_KEY, value=value, partition=p, headers={TICK_HEADER: TICK_KIND})
                   for p in range(partitions)]
        await asyncio.gather(*futures)


def _register_rest(app: faust.App, pipeline: Pipeline, kafka: KafkaOut) -> None:
    """The sink, the web views, and Faust's per-event monitor removed."""
    from processor.sink import agent as sink
    from processor.web import views as web

    @app.task
    async def drop_per_event_monitor() -> None:
        """Faust's Monitor sensor records statistics on every message and stream event (Faust's /stats/ page);
        nothing here reads them and they cost a few percent per event, so the worker runs without it."""
        with contextlib.suppress(KeyError):
            app.sensors.remove(app.monitor)
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__)

    def sink_table(name: str, help_: str) -> faust.Table:
        return app.Table(name, key_type=str, partitions=pipeline.cfg.els_partitions, help=table_help(name, help_))

    pipeline.sink = sink.register(app, pipeline.cfg, pipeline.out, kafka, sink_table, pipeline.health,
                                  pipeline.fence)
    _register_log_watch(app, pipeline)
    web.register(app)


def _register_log_watch(app: faust.App, pipeline: Pipeline) -> None:
    """Stop with one line when Kafka no longer holds what the state says was applied (processor/log_watch.py).
    Every partition whose state this worker holds is checked, owned or standby, also while a rebalance is under
    way: a broker that lost its groups may keep one from ever finishing."""
    cfg = pipeline.cfg
    watch = LogWatch(cfg.bootstrap_list, cfg.els_raw_topic, cfg.els_partitions,
                     lambda p: pipeline.engine.clock(p).off, faust_client_kwargs(app))

    @app.timer(CHECK_EVERY_S)
    async def watch_the_raw_log() -> None:
        lost = await watch.loss()
        if lost:
            # nothing can continue from a state that matches no log, and Faust's shutdown would wait on a broker
            # that lost its groups too: one line, and out (exit 1: a supervisor starts it afresh)
            log.critical("Kafka lost what this worker applied (%s): the broker came back without its data (the "
                         "embedded broker keeps nothing across a restart) or the topic was deleted. The worker's "
                         "state matches no log any more; stopping. Start it again to begin from what Kafka holds "
                         "now.", lost)
            logging.shutdown()
            os._exit(1)
