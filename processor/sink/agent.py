"""The sink in the Faust worker: an agent on the outbox, a flush timer, the `sink` table, at least once.

Outbox partials are keyed by group and window, so one sink partition sees every processor partition's partial of
a window; the sink (sink.py) keeps the latest of each in the `sink` table and sends the merged value, which
Datadog stores as the last value of that series and timestamp (re-sending replaces). Records are held in a
Buffer and flushed together; a flush acks them (lets Faust commit their outbox offsets) only once Datadog
answered 2xx or they were dead-lettered, and the table writes are in Kafka. While Datadog is down the flush waits
and retries; the outbox absorbs the backlog while the processor keeps aggregating and ingest keeps accepting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping

import orjson
from faust.types import TP

from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from common.kafka import faust_client_kwargs
from common.range_reader import read_range
from processor.core.bag import Bag
from processor.core.tags import counter_key
from processor.core.windows import window_start
from processor.health import Health, Inbound, Loop
from processor.outbox import outbox_partition
from processor.revocation import Abandoned, Fence
from processor.sink.buffer import Buffer
from processor.sink.client import DatadogClient
from processor.sink.merge import MergedWindow, SinkCounts, held_form, retries_key, window_key
from processor.sink.position import OutboxPositions, ReadEvent
from processor.sink.sink import Sink

log = logging.getLogger("els.sink")

FLUSH_RETRY_SECONDS = 2.0  # a flush that failed (not Datadog: the sink's own writes) is retried this soon
STOP_FLUSH_SECONDS = 10.0  # a stop delivers what is held if Datadog takes it this soon (well within Kubernetes' grace)
REPORT_EVERY_S = 60.0      # a failing flush is logged at most this often
CLEANUP_EVERY_S = 60.0     # expired merged windows are looked for this often
FLUSH_CHECK_SECONDS = 0.25  # how often the held records are checked for being due
TABLE_HELP = ("The sink's merge. '<group>|<window start ms>' (e.g. 'flow:100000|1714564800000'): the latest "
              "partial of every processor partition; 'position|<outbox partition>': the offset after the outbox "
              "records delivered; 'retries|<outbox partition>|<window start ms>': the sink's "
              "retry count.")


def let_go(event):
    """A record waiting for its ack without its bytes: the ack needs only its partition and offset, and the
    records of a backlog's close-out are ~20 MB (Faust's Event and Message keep the value until acked)."""
    event.value = None
    event.message.value = None
    return event


class SinkAgent:
    """The worker-side state of the sink: what is held, and the flush that delivers, persists and acks it.

    A flush sends everything held, or only its logs (a logs request's worth arrived while a burst of partials is
    still coming, as when a tick closes a backlog's chains). A logs-only flush merges the partials into the table
    as any flush does, but renders nothing and acks nothing: the windows it touched are owed, and the records it
    took wait, their bytes let go, until the burst's full flush sends each owed window once and acks them all. So
    an outbox record is still acked only once everything in it reached Datadog; rendered at every logs flush
    instead, a window was sent again after each processor partition's tick (~100,000 series for ~12,000 partials
    after a 100,000-event backlog, docs/benchmarks.md).
    """

    def __init__(self, cfg: Config, sink: Sink, producer, table, health: Health | None = None,
                 positions: OutboxPositions | None = None, fence: Fence | None = None):
        self.cfg = cfg
        self.fence = fence or Fence()  # a rebalance or a stop abandons a flush under way (processor/revocation.py)
        self.positions = positions  # None: records are merged as Faust hands them over (tests of the flush)
        self.health = health or Health()
        self.sink = sink
        self.producer = producer
        self.table = table
        self.buffer = Buffer(hold_seconds=float(cfg.els_flush_seconds))
        self.flushing = asyncio.Lock()
        self.owed: set[str] = set()  # merged windows a logs-only flush touched, not yet sent
        self.taken: list = []  # records a logs-only flush took, acked by the next full flush
        self.last_cleanup = 0.0
        self.last_failure_report = 0.0
        self.last_flush: asyncio.Future | None = None  # a stop's delivery of what is held (flow_stopped)
        self.catch_up_due = False  # the flow resumed: catch up once the rebalance has ended (register)

    def resumed(self) -> None:
        self.catch_up_due = True

    async def take(self, event) -> None:
        """A record Faust handed over: admitted in offset order from the sink's position (a gap before it read on
        its own first), held, and flushed at once when the buffer is full."""
        try:
            kept = await self.fence.run(self.positions.admit(event.message))
        except Abandoned:  # a rebalance or a stop began: the record comes again from the position
            kept = []
        if not kept:
            event.ack()  # delivered already, or after a gap being sought back: it comes again
            return
        self._hold(kept, event)
        if not self.fence.flowing:  # the flow stopped meanwhile: no flush comes but a stop's last one
            self.flow_stopped()
            return
        self.sink.stats["held"] = len(self.buffer.events)
        if self.buffer.full():
            await self.flush()  # back-pressure: the agent waits for the flush
        elif self.buffer.logs_full():
            await self.flush(series=False)

    async def catch_up(self, starts: Mapping[int, int | None]) -> None:
        """Once a rebalance has ended, outbox partition -> where Faust starts handing over: the
        records before it and after the sink's position (let go at the rebalance, or skipped during one) are
        read and held now (position.py)."""
        try:
            kept = await self.fence.run(self.positions.catch_up(starts))
        except Abandoned:
            return
        except Exception:  # noqa: BLE001 (the broker unreachable: the gap is read when the next record comes)
            log.warning("the sink could not read the outbox records the last rebalance let go; it reads them when "
                        "the next record of those partitions comes", exc_info=True)
            return
        self._hold(kept)

    def _hold(self, messages: list, event=None) -> None:
        """Hold records for the next flush: Faust's `event` as it is, the records read on their own as ReadEvents
        (their ack is the sink position's business)."""
        now = time.monotonic()
        for message in messages:
            held = event if event is not None and message is event.message else ReadEvent(message)
            self.buffer.add(held, message.partition, held_form(orjson.loads(message.value)), now)

    async def flush(self, series: bool = True) -> None:
        """Deliver what is held: all of it, what is owed and the records waiting; or (series=False) its logs."""
        async with self.flushing:
            events, values = self.buffer.take() if series else self.buffer.take_for_logs()
            self.sink.stats["held"] = 0
            if not events and not (series and self.taken):
                return
            try:
                await self.fence.run(self.deliver_held(events, values, series))
            except Abandoned:  # held again: a stop's last flush delivers them, a rebalance lets them go
                self.buffer.restore(events, values, time.monotonic(), owed=not series or bool(self.taken))
            except Exception as exc:
                self.health.failed(Loop.SINK, exc)
                # e.g. the broker refused the sink's state writes: nothing was acked, so keep holding the records
                # and try again shortly (Datadog's own failures never get here: the sender retries them itself)
                self.buffer.restore(events, values, time.monotonic() + FLUSH_RETRY_SECONDS,
                                    owed=not series or bool(self.taken))
                self.sink.stats["held"] = len(self.buffer.events)
                now = time.monotonic()
                if now - self.last_failure_report > REPORT_EVERY_S:
                    self.last_failure_report = now
                    log.exception("sink flush failed; the records stay held and are retried")
        if not self.fence.flowing:  # it ended as the flow stopped
            self.flow_stopped()

    def flow_stopped(self) -> None:
        """What is held as the flow stops (processor/revocation.py): at a rebalance every record is let go at once;
        at a stop, Datadog is first given STOP_FLUSH_SECONDS to take it (last_flush)."""
        if not self.fence.stopping:
            self.release()
        elif self.last_flush is None:
            self.last_flush = asyncio.ensure_future(self._last_flush())
        elif self.last_flush.done():  # handed over after the last flush
            self.release()

    async def _last_flush(self) -> None:
        """A stop delivers what the sink holds if Datadog takes it within STOP_FLUSH_SECONDS (Faust leaves once
        it is acked), else lets it go as a rebalance does: the next owner delivers it from the position."""
        async with self.flushing:  # after a flush under way, abandoned, has put its records back
            events, values = self.buffer.take()
            if events or self.taken:
                try:
                    await asyncio.wait_for(self.deliver_held(events, values), STOP_FLUSH_SECONDS)
                    events = []
                except Exception:  # noqa: BLE001 (Datadog still refusing, a timeout: the next owner delivers)
                    log.warning("the sink could not deliver what it held within %g s of the stop; the next owner "
                                "of its outbox partitions delivers it", STOP_FLUSH_SECONDS)
            self.release(events)

    def release(self, events: list = ()) -> None:
        """The flow stopped (a rebalance or a stop began): every record held, waiting or being flushed is acked
        undelivered, so Faust's revocation does not wait on Datadog. The position in the table still says where
        delivery stands: the next owner of each outbox partition reads these records again from there
        (catch_up)."""
        held, _ = self.buffer.take()
        for event in [*self.taken, *held, *events]:
            event.ack()
        self.taken = []
        self.owed.clear()
        self.sink.stats["held"] = 0

    async def deliver_held(self, events: list, values: dict[int, list[dict]], series: bool = True) -> None:
        """Merge, deliver, persist the merged windows (and expired keys), then ack the held records (a full
        flush), or keep them waiting (logs only)."""
        sink = self.sink
        now_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        touched: dict[str, MergedWindow] = {}
        logs: list[dict] = []
        for op, vals in values.items():
            windows, lg = sink.absorb(vals, op)
            touched.update(windows)
            logs += lg
        if series:
            touched.update(self._owed_windows(touched))
        done = await sink.deliver(sink.series(touched.values(), now_ms) if series else (), logs)
        by_op: dict[int, dict] = defaultdict(dict)
        for key, merged in touched.items():
            by_op[merged.op][key] = merged.to_dict()
        if series and self.positions is not None:  # the position after what this flush acks (position.py)
            for op, writes in OutboxPositions.writes(e.message for e in self.taken + events).items():
                by_op[op].update(writes)
        if series and time.monotonic() - self.last_cleanup > CLEANUP_EVERY_S:  # never an owed window unsent
            self.last_cleanup = time.monotonic()
            for op in {e.message.partition for e in events}:
                by_op[op].update(dict.fromkeys(sink.expired_keys(op, now_ms)))
        persist = self.producer.persist
        await asyncio.gather(*[f for op, writes in by_op.items() for f in await persist(self.table, op, writes)])
        counts = sink_counts(done)
        if counts:
            await self.count(counts, min(e.message.partition for e in self.taken + events), now_ms)
        if series:
            for event in self.taken + events:
                event.ack()
            self.owed.clear()
            self.taken = []
        else:
            self.owed.update(touched)
            self.taken += map(let_go, events)
        sink.stats["flushes"] += 1
        sink.stats["t_sink_ms"] += int((time.perf_counter() - t0) * 1000)

    def _owed_windows(self, touched: dict[str, MergedWindow]) -> dict[str, MergedWindow]:
        out = {}
        for key in self.owed - touched.keys():
            stored = self.table.get(key)
            if stored:  # not expired meanwhile
                out[key] = MergedWindow.from_dict(stored)
        return out

    async def count(self, counts: dict[str, float], op: int, now_ms: int) -> None:
        """The sink's own counters go through the outbox like any partial, so they merge with the processor's
        pipeline counters and survive restarts: the totals per (outbox partition, window) live in the table."""
        cfg = self.cfg
        ws = window_start(now_ms, cfg.els_window_seconds * 1000)
        key = retries_key(op, ws)
        stored = self.table.get(key)
        totals = SinkCounts.from_dict(stored).counts if stored else {}
        for k, n in counts.items():
            totals[k] = totals.get(k, 0) + n
        await asyncio.gather(*await self.producer.persist(self.table, op, {key: SinkCounts(totals, ws, op).to_dict()}))
        bag = Bag()
        for k, n in totals.items():
            bag.count(k, n)
        value = {"kind": "partial", "p": f"sink{op}", "group": "pipeline", "ws": ws, "seq": int(sum(totals.values())),
                 "final": False, "bag": bag.to_dict()}
        # where the processor's pipeline partials of this window go
        q = outbox_partition(window_key("pipeline", ws).encode(), cfg.els_partitions)
        await (await self.producer.send(cfg.els_out_topic, None, orjson.dumps(value), q))


def sink_counts(done) -> dict[str, float]:
    """What one delivery adds to the sink's counters: retries, and what it dead-lettered, by reason."""
    counts: dict[str, float] = {}
    if done.retries:
        counts["pipeline.sink_retries"] = done.retries
    for reason, n in (("point_dropped", done.points_dropped), ("log_dropped", done.logs_dropped),
                      ("series_refused", done.series_refused), ("logs_refused", done.logs_refused)):
        if n:
            counts[counter_key("pipeline.deadletters", (("stage", "sink"), ("reason", reason)))] = n
    return counts


def _outbox_positions(app, cfg: Config, table) -> OutboxPositions:
    """The sink's position per outbox partition (position.py), with the worker's consumer and a reader of gaps."""
    async def earliest(op: int) -> int:
        tp = TP(cfg.els_out_topic, op)
        return (await app.consumer.earliest_offsets(tp)).get(tp, 0) or 0

    async def seek(op: int, offset: int) -> None:
        await app.consumer.seek_wait({TP(cfg.els_out_topic, op): offset})  # on the consumer's thread (worker.py)

    async def read(op: int, start: int, end: int) -> list:
        return await read_range(cfg.bootstrap_list, cfg.els_out_topic, op, start, end, faust_client_kwargs(app))

    return OutboxPositions(table, earliest, seek, read)


def register(app, cfg: Config, out_topic, producer, make_table, health: Health, fence: Fence) -> Sink:
    """Add the sink agent, its flush timer and its table to the Faust app."""
    table = make_table("sink", TABLE_HELP)
    client = DatadogClient(cfg)

    async def send(topic: str, value: bytes, headers) -> asyncio.Future:
        return await producer.send(topic, None, value, None, headers)

    sink = Sink(cfg, client, DeadLetterWriter(cfg.els_deadletter_topic, Stage.SINK, send), table)
    if client.dry_run:
        log.warning("DD_API_KEY is not set: nothing goes to Datadog; the requests are written to %s, "
                    "this run's lines with \"run\": \"%s\"", cfg.els_dry_run_file, client.run_id)
    positions = _outbox_positions(app, cfg, table)
    agent = SinkAgent(cfg, sink, producer, table, health, positions, fence)
    fence.on_abandon(agent.flow_stopped)

    inbound = Inbound(app.monitor.stream_inbound_time)

    @app.agent(out_topic)
    async def deliver(stream):
        async for event in stream.noack().events():
            inbound.took((event.message.tp,))
            try:
                await agent.take(event)
            except Exception as exc:  # Faust restarts the agent; a record it cannot read would do this every time
                health.failed(Loop.SINK, exc)
                raise

    @app.task
    async def flush_when_due():
        """Flush the held records once due (as a rebalance or a stop begins they are let go instead: release),
        and catch up once a rebalance has ended: its recovery has restored the positions, and Faust has sought
        to the committed offsets it hands over from (Faust resumes the flow earlier, to read the changelogs)."""
        consumer = app.consumer
        while True:
            await asyncio.sleep(FLUSH_CHECK_SECONDS)
            if agent.catch_up_due and not app.rebalancing:
                agent.catch_up_due = False
                await agent.catch_up({tp.partition: consumer.committed(tp) for tp in consumer.assignment()
                                      if tp.topic == cfg.els_out_topic})
            if agent.buffer.due(time.monotonic()):
                await agent.flush()

    fence.on_resume(agent.resumed)

    async def forget_positions(app_, *args, **kwargs):
        positions.forget()

    app.on_partitions_revoked.connect(forget_positions)
    app.on_partitions_assigned.connect(forget_positions)
    return sink
