"""The Faust worker: raw events in, partial aggregates and logs out to the outbox.

`faust -A processor.app worker` and `els process` run the app this module builds (processor/app.py). The agent takes batches of
raw records, hands each partition's share to the engine (processor/engine.py), waits until Kafka acknowledged
the outputs, and only then writes the new state to the tables. A leader-only timer sends a tick record into
every raw partition each ELS_FLUSH_SECONDS: ticks travel with the events, so window closing and emission
happen inside the stream, in order, for every partition, also after restarts and rebalances (Faust's own
on_window_close is not used; README "The processor" says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

import faust
import orjson
from faust.types import TP

from common import logs as els_logs
from common.config import Config
from processor.engine import TICK_HEADER, TICK_KEY, Engine, Record, Settings
from processor.outbox import outbox_records
from processor.web.tables import table_help

log = logging.getLogger("els.processor")

# Large batches: a chain or window touched several times in a batch is written to its changelog once, and
# Faust's per-batch costs amortise; a second adds little next to ELS_FLUSH_SECONDS.
BATCH_MAX = 10000
BATCH_WITHIN_SECONDS = 1.0
GAP_ACCEPT_SECONDS = 30.0

class Producer:
    """Sends through the worker's own aiokafka producer, already serialised.

    Faust's Topic.send costs ~200-300 us a record (schemas, callbacks, futures of its own); the state and the
    outbox are written thousands of times a second, so they go to the producer directly (~20 us).
    """

    def __init__(self, app: faust.App):
        self.app = app

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None):
        return await self.app.producer.send(topic, key, value, partition, None, headers)

    async def persist(self, table: faust.Table, p: int, writes: dict) -> list:
        """Apply writes (None = delete) to a table's local store and send them to changelog partition p.

        Returns the send futures: the caller awaits them, so a batch counts as done (and its offsets become
        committable) only once its state is in Kafka. This bypasses Faust's table write path on purpose: that
        one puts every write in a buffer that Faust's commit does not always drain (it gives up after 0.1 s
        without progress), and picks the changelog partition from the last event of a batch, which may be
        another partition's; here the partition is the raw partition the state belongs to, always. Keys and
        values are JSON, as Faust's own codec writes them, so Faust's recovery reads them back.
        """
        data = table.data
        topic = table.changelog_topic.get_topic_name()
        send = self.app.producer.send
        dumps = orjson.dumps
        futures = []
        for key, value in writes.items():
            if value is None:
                if key in data:
                    del data[key]
                futures.append(await send(topic, dumps(key), None, p, None, None))
            else:
                data[key] = value
                futures.append(await send(topic, dumps(key), dumps(value), p, None, None))
        return futures


def settings_from(cfg: Config, replay: bool = False) -> Settings:
    return Settings(window_ms=cfg.els_window_seconds * 1000, lateness_ms=cfg.els_lateness_seconds * 1000,
                    quiet_ms=cfg.els_chain_quiet_seconds * 1000, timeout_ms=cfg.els_chain_timeout_seconds * 1000,
                    logs=cfg.logs_enabled, replay=replay)


def create_app(cfg: Config) -> faust.App:
    els_logs.register_secrets([cfg.dd_api_key or ""])
    app = faust.App(
        cfg.els_app_id,
        broker=[f"kafka://{h}" for h in cfg.bootstrap_list],
        broker_credentials=cfg.kafka_security.faust_credentials(),
        topic_partitions=cfg.els_partitions,
        topic_replication_factor=1,
        broker_rebalance_timeout=cfg.els_rebalance_timeout_seconds,
        broker_session_timeout=cfg.els_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, cfg.els_session_timeout_seconds / 3),
        datadir=cfg.els_data_dir,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        web_port=cfg.els_web_port,
        web_bind="0.0.0.0",
        autodiscover=False,
        producer_acks=-1,
        logging_config=None,
    )
    raw_topic = app.topic(cfg.els_raw_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=cfg.els_partitions)
    out_topic = app.topic(cfg.els_out_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=cfg.els_partitions)

    def table(name: str, help_: str) -> faust.Table:
        return app.Table(name, key_type=str, partitions=cfg.els_partitions, help=table_help(name, help_))

    chains = table("chains", "Open chains and recently closed chain markers, by root execution id.")
    windows = table("windows", "Per-partition window aggregates: '<partition>|<group>|<window start ms>'.")
    engine = Engine(settings_from(cfg), chains, windows)
    app.els = {"cfg": cfg, "engine": engine, "chains": chains, "windows": windows, "raw": raw_topic,
               "out": out_topic, "stats": defaultdict(int)}
    stats = app.els["stats"]
    producer = Producer(app)
    persist = producer.persist

    expected: dict[int, int] = {}   # next raw offset to apply, per partition (from the persisted clock)
    seeked: dict[int, tuple[int, float]] = {}  # partition -> (offset sought, when first sought)

    async def in_order(p: int, records: list[Record]) -> list[Record]:
        """The records to apply: in offset order, from the partition's persisted position, without gaps.

        Faust acks (and may commit) records it skips while a rebalance or recovery is under way, and may hand
        over later records before earlier ones after a restart; so the position that counts is the one in our
        own state. Records before it were applied already; a gap after it means records were skipped: seek
        back to it and drop the rest of the batch (they come again; records fetched before the seek may still
        arrive first, and are dropped the same way). A gap that persists for GAP_ACCEPT_SECONDS after the first
        seek is a real hole in the log (retention deleted it) and is accepted, loudly.
        """
        exp = expected.get(p)
        if exp is None:
            clock = windows.get(f"{p}|clock")
            if clock and clock.get("off", -1) >= 0:
                exp = clock["off"] + 1
            else:  # nothing applied yet: start at the log's beginning, whatever Faust committed or hands over
                tp = TP(cfg.els_raw_topic, p)
                exp = (await app.consumer.earliest_offsets(tp)).get(tp, 0) or 0
            expected[p] = exp
        keep: list[Record] = []
        for r in sorted(records, key=lambda r: r.offset):
            if r.offset < exp:
                stats["already_applied"] += 1
                continue
            sought = seeked.get(p)
            hole = sought is not None and sought[0] == exp and time.monotonic() - sought[1] > GAP_ACCEPT_SECONDS
            if r.offset == exp or hole:
                if hole:
                    log.error("raw records %s..%s are gone from the topic (retention?); continuing after them",
                              exp, r.offset - 1, extra={"partition": p})
                keep.append(r)
                exp = r.offset + 1
                seeked.pop(p, None)
                continue
            stats["gap_seeks"] += 1
            if sought is None or sought[0] != exp:
                seeked[p] = (exp, time.monotonic())
                log.warning("records skipped by the consumer; seeking back",
                            extra={"partition": p, "to": exp, "got": r.offset})
            await app.consumer.seek(TP(cfg.els_raw_topic, p), exp)
            break
        return keep

    @app.agent(raw_topic)
    async def process(stream):
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            try:
                await apply_batch(events)
            except BaseException:
                # the engine's caches and positions may be ahead of what reached Kafka: re-read from the store
                await forget_positions(app)
                raise

    t_wait = time.perf_counter()

    async def apply_batch(events) -> None:
        nonlocal t_wait
        t0 = time.perf_counter()
        stats["t_wait_ms"] += int((t0 - t_wait) * 1000)
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for e in events:
            m = e.message
            by_partition[m.partition].append(
                Record(m.offset, m.key, m.value, dict(m.headers or ()), m.timestamp and int(m.timestamp * 1000)))
        steps = []
        for p, records in by_partition.items():
            records = await in_order(p, records)
            if records:
                steps.append((p, records, *engine.step(p, records)))
        t1 = time.perf_counter()
        stats["t_step_ms"] += int((t1 - t0) * 1000)
        # outputs first: state that says "emitted" must never be ahead of the outbox; one round trip each
        pending = []
        for _p, _records, out, _cw, _ww in steps:
            for value, reason in out.deadletters:
                pending.append(await producer.send(cfg.els_deadletter_topic, None, value, None,
                                                   [("reason", reason.encode()), ("stage", b"processor")]))
        for q, value in outbox_records([o for _p, _r, o, _c, _w in steps], cfg.els_partitions):
            pending.append(await producer.send(cfg.els_out_topic, None, value, q))
        t2 = time.perf_counter()
        if pending:
            await asyncio.gather(*pending)
        t3 = time.perf_counter()
        stats["t_out_send_ms"] += int((t2 - t1) * 1000)
        stats["t_out_ack_ms"] += int((t3 - t2) * 1000)
        pending = []
        clocks = []
        for p, records, out, chain_writes, window_writes in steps:
            clocks.append((p, {f"{p}|clock": window_writes.pop(f"{p}|clock")}))
            pending += await persist(chains, p, chain_writes)
            pending += await persist(windows, p, window_writes)
            stats["records"] += len(records)
            stats["partials"] += len(out.partials)
            stats["logs"] += len(out.logs)
            stats["deadletters"] += len(out.deadletters)
        t4 = time.perf_counter()
        await asyncio.gather(*pending)
        # the clock (this partition's position) last: it says everything up to it is in the state
        await asyncio.gather(*[f for p, clock in clocks for f in await persist(windows, p, clock)])
        for p, records, *_ in steps:
            expected[p] = records[-1].offset + 1
        t_wait = time.perf_counter()
        stats["t_state_send_ms"] += int((t4 - t3) * 1000)
        stats["t_state_ack_ms"] += int((t_wait - t4) * 1000)
        stats["state_writes"] += len(pending)
        stats["batches"] += 1

    @app.timer(cfg.els_flush_seconds, on_leader=True)
    async def tick():
        now = int(time.time() * 1000)
        value = orjson.dumps({"tick": now})
        futures = [await raw_topic.send(key=TICK_KEY, value=value, partition=p, headers={TICK_HEADER: b"tick"})
                   for p in range(cfg.els_partitions)]
        await asyncio.gather(*futures)

    async def forget_positions(app_, *args, **kwargs):
        """After any assignment change (or a failed batch), positions and indexes are re-read from the state."""
        expected.clear()
        seeked.clear()
        for p in range(cfg.els_partitions):
            engine.forget_partition(p)

    @app.task
    async def drop_per_event_monitor() -> None:
        """Faust's Monitor sensor records statistics on every message and stream event (Faust's /stats/ page);
        nothing here reads them and they cost a few percent per event, so the worker runs without it."""
        with contextlib.suppress(KeyError):
            app.sensors.remove(app.monitor)

    app.on_partitions_assigned.connect(forget_positions)
    app.on_partitions_revoked.connect(forget_positions)

    from processor.sink import agent as sink
    from processor.state import restore
    from processor.web import views as web

    def count_restored(n: int) -> None:
        stats["restored_past_reported_end"] += n

    the_sink = sink.register(app, cfg, out_topic, producer, table)
    restore.register(app, [chains, windows, the_sink.table], cfg.bootstrap_list, on_done=count_restored)
    web.register(app)
    return app

