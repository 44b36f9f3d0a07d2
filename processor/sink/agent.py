"""The Datadog sink: outbox -> merged windows -> a few gzip requests per flush, at least once.

A Faust agent on the outbox topic. Outbox partials are keyed by group and window, so one sink partition sees
every partition's partial of a window; it keeps the latest of each (by `seq`) in the `sink` table and sends the
merged value, which Datadog stores as the last value of that series and timestamp (re-sending replaces).
The agent finishes a batch, and so lets Faust commit its outbox offsets, only once Datadog answered 2xx or the
item was dead-lettered; while Datadog is down it waits and retries, and the outbox absorbs the backlog while the
processor keeps aggregating and ingest keeps accepting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import orjson

from common.config import Config
from processor.core.bag import Bag
from processor.core.tags import parse_dd_tags, tag_value
from processor.core.windows import window_start
from processor.outbox import outbox_partition, unpacked
from processor.sink.client import Answer, DatadogClient
from processor.sink.delivery import (
    LOGS_MAX_ENTRIES,
    decide,
    log_droppable,
    log_requests,
    metric_point_droppable,
    series_requests,
)
from processor.sink.render import render_series

log = logging.getLogger("els.sink")

SINK_RETENTION_MS = 15 * 60_000  # merged windows are kept this long after they can no longer change
FLUSH_RETRY_SECONDS = 2.0  # a flush that failed (not Datadog: the sink's own writes) is retried this soon
REPORT_EVERY_S = 60.0  # a recurring problem (refused key, failing flush) is logged at most this often


class Sink:
    """Merges partials and delivers; the Faust wiring is in `register`, the logic here is testable alone."""

    def __init__(self, cfg: Config, client: DatadogClient, deadletter, table, historical: bool = False):
        self.cfg = cfg
        self.client = client
        self.deadletter = deadletter  # async (value: bytes, reason: str) -> None
        self.table = table            # "group|ws" -> {"group", "ws", "parts": {p: {"seq", "bag"}}}
        self.historical = historical
        self.base_tags = self._base_tags(cfg)
        self.stats: dict[str, int] = defaultdict(int)
        self._auth_reported = 0.0

    @staticmethod
    def _base_tags(cfg: Config) -> list[str]:
        tags = parse_dd_tags(cfg.dd_tags)
        if cfg.dd_env and not any(t.startswith("env:") for t in tags):
            tags.append(f"env:{tag_value(cfg.dd_env)}")
        if not any(t.startswith("service:") for t in tags):
            tags.append(f"service:{tag_value(cfg.dd_service)}")
        return tags

    # -- merging -------------------------------------------------------------------------------------------
    def absorb(self, records: list[dict], p_out: int = 0) -> tuple[dict[str, dict], list[dict]]:
        """Fold outbox values into the table's entries; return the touched entries and the log items."""
        touched: dict[str, dict] = {}
        logs: list[dict] = []
        for v in unpacked(records):
            kind = v.get("kind")
            if kind == "log":
                logs.append(v["item"])
            elif kind == "partial":
                key = f"{v['group']}|{v['ws']}"
                entry = touched.get(key)
                if entry is None:
                    stored = self.table.get(key)
                    entry = {"group": v["group"], "ws": v["ws"], "op": p_out,
                             "parts": dict(stored["parts"]) if stored else {}}
                    touched[key] = entry
                p = str(v["p"])
                old = entry["parts"].get(p)
                if old is None or old["seq"] <= v["seq"]:
                    entry["parts"][p] = {"seq": v["seq"], "bag": v["bag"]}
        return touched, logs

    def render(self, entries: dict[str, dict], now_ms: int) -> list[dict]:
        cfg = self.cfg
        series = []
        for entry in entries.values():
            merged = Bag()
            for part in entry["parts"].values():
                merged.merge(Bag.from_dict(part["bag"]))
            group = entry["group"]
            ws = window_start(now_ms, cfg.els_window_seconds * 1000) if group.startswith("org:") else entry["ws"]
            series += render_series(group, ws, cfg.els_window_seconds, merged, prefix=cfg.els_metric_prefix,
                                    base_tags=self.base_tags, monthly_step_limit=cfg.els_monthly_step_limit)
        return series

    def decorate_log(self, item: dict) -> dict:
        item = dict(item)
        item.setdefault("service", self.cfg.dd_service)
        tags = list(self.base_tags)
        if item.get("ddtags"):
            tags.insert(0, item["ddtags"])
        item["ddtags"] = ",".join(tags)
        return item

    # -- delivery ------------------------------------------------------------------------------------------
    async def deliver(self, series: list[dict], logs: list[dict], now_s: float | None = None) -> None:
        now_s = time.time() if now_s is None else now_s
        sendable = []
        for s in series:
            why = metric_point_droppable(s["points"][0]["timestamp"], now_s, self.historical)
            if why:
                self.stats["dropped_points"] += 1
                await self.deadletter(orjson.dumps(s), f"not sent to Datadog: point {why}")
            else:
                sendable.append(s)
        items = []
        for item in logs:
            why = log_droppable(item.get("timestamp"), now_s)
            if why:
                self.stats["dropped_logs"] += 1
                await self.deadletter(orjson.dumps(item), f"not sent to Datadog: {why}")
            else:
                items.append(self.decorate_log(item))
        for batch in series_requests(sendable):
            await self._send(self.client.post_series, batch, "series")
        for batch in log_requests(items):
            await self._send(self.client.post_logs, batch, "logs")

    async def _send(self, post, batch: list[dict], what: str) -> None:
        """One request, retried until Datadog takes it; 413/400 split it down to the item that is refused."""
        pending = [batch]
        while pending:
            chunk = pending.pop()
            attempt = 0
            while True:
                answer: Answer = await post(chunk)
                d = decide(answer.status, answer.headers, attempt, len(chunk))
                if d.action == "done":
                    self.stats[f"{what}_sent"] += len(chunk)
                    break
                if d.action == "split":
                    mid = len(chunk) // 2
                    pending += [chunk[mid:], chunk[:mid]]
                    break
                if d.action == "deadletter":
                    self.stats[f"{what}_deadlettered"] += len(chunk)
                    for item in chunk:
                        await self.deadletter(orjson.dumps(item),
                                              f"Datadog refused it: {answer.status} {answer.body[:2000]}")
                    break
                attempt += 1
                self.stats["sink_retries"] += 1
                if d.action == "auth":
                    now = time.monotonic()
                    if now - self._auth_reported >= REPORT_EVERY_S:
                        self._auth_reported = now
                        log.error("Datadog refuses the API key (%s): check DD_API_KEY and DD_SITE; retrying "
                                  "every %.0fs, nothing is lost meanwhile", answer.status, d.delay_s)
                elif attempt == 1 or attempt % 10 == 0:
                    log.warning("Datadog did not take the %s request; retrying", what,
                                extra={"status": answer.status, "attempt": attempt, "retry_in_s": round(d.delay_s, 2),
                                       "items": len(chunk)})
                await asyncio.sleep(d.delay_s)

    def expired_keys(self, now_ms: int, p_out: int) -> list[str]:
        """Merged windows of outbox partition p_out that can no longer change (org months: after the month)."""
        horizon = (self.cfg.els_window_seconds + self.cfg.els_lateness_seconds) * 1000 + SINK_RETENTION_MS
        out = []
        for key, entry in list(self.table.items()):
            if entry.get("op") != p_out:
                continue
            span = 32 * 86_400_000 if entry["group"].startswith("org:") else 0
            if entry["ws"] + span + horizon < now_ms:
                out.append(key)
        return out


class Buffer:
    """Outbox records held until one flush sends them: one series request and one logs request per tick.

    The processor emits partials in a burst at every tick (ELS_FLUSH_SECONDS); logs trickle in between. The
    buffer is flushed once a burst of partials has settled (no partial for SETTLE_SECONDS), and anyway when its
    oldest record has waited ELS_FLUSH_SECONDS or it holds a request's worth. Records are acked (their outbox
    offsets become committable) only after the flush delivered them.
    """

    SETTLE_SECONDS = 0.5
    MAX_RECORDS = 20_000

    def __init__(self, hold_seconds: float):
        self.hold_seconds = hold_seconds
        self.clear()

    def clear(self) -> None:
        self.events: list = []
        self.values: dict[int, list[dict]] = defaultdict(list)
        self.logs = 0
        self.first_at: float | None = None
        self.last_partial_at: float | None = None
        self.not_before = 0.0

    def add(self, event, partition: int, value: dict, now: float) -> None:
        self.events.append(event)
        self.values[partition].append(value)
        if self.first_at is None:
            self.first_at = now
        for item in unpacked([value]):
            if item.get("kind") == "partial":
                self.last_partial_at = now
            else:
                self.logs += 1

    def due(self, now: float) -> bool:
        if not self.events or now < self.not_before:
            return False
        return (len(self.events) >= self.MAX_RECORDS or self.logs >= LOGS_MAX_ENTRIES
                or (self.last_partial_at is not None and now - self.last_partial_at >= self.SETTLE_SECONDS)
                or now - self.first_at >= self.hold_seconds)

    def restore(self, events: list, values: dict[int, list[dict]], not_before: float) -> None:
        """Put back records a failed flush took (ahead of what arrived since); no flush before not_before."""
        self.events[:0] = events
        for p, vals in values.items():
            self.values[p][:0] = vals
            self.logs += sum(1 for v in unpacked(vals) if v.get("kind") != "partial")
        self.first_at = not_before - self.hold_seconds  # due again as soon as not_before has passed
        self.not_before = not_before

    def take(self) -> tuple[list, dict[int, list[dict]]]:
        events, values = self.events, self.values
        self.clear()
        return events, values


def register(app, cfg: Config, out_topic, producer, make_table) -> Sink:
    """Add the sink agent, its flush timer and its table to the Faust app."""
    table = make_table("sink", "Latest partial of every partition, per group and window (the sink's merge); "
                               "'retries|<outbox partition>|<window>': the sink's own retry counts.")
    client = DatadogClient(cfg)

    async def deadletter(value: bytes, reason: str) -> None:
        await (await producer.send(cfg.els_deadletter_topic, None, value, None,
                                   [("reason", reason.encode()[:4000]), ("stage", b"sink")]))

    sink = Sink(cfg, client, deadletter, table)
    if client.dry_run:
        log.warning("DD_API_KEY is not set: nothing goes to Datadog; the requests are written to %s",
                    cfg.els_dry_run_file)
    buffer = Buffer(hold_seconds=float(cfg.els_flush_seconds))
    flushing = asyncio.Lock()
    last_cleanup = [0.0]
    last_failure_report = [0.0]
    window_ms = cfg.els_window_seconds * 1000

    async def count_retries(n: int, p_out: int, now_ms: int) -> None:
        """pipeline.sink_retries goes through the outbox like any partial, so it merges with the processor's
        pipeline counters and survives restarts: the count per (outbox partition, window) lives in the table."""
        ws = window_start(now_ms, window_ms)
        key = f"retries|{p_out}|{ws}"
        total = int((table.get(key) or {}).get("n", 0)) + n
        record = {"n": total, "ws": ws, "op": p_out, "group": "retries"}  # op/group/ws: expired like the rest
        await asyncio.gather(*await producer.persist(table, p_out, {key: record}))
        bag = Bag()
        bag.count("pipeline.sink_retries", total)
        value = {"kind": "partial", "p": f"sink{p_out}", "group": "pipeline", "ws": ws, "seq": total, "final": False,
                 "bag": bag.to_dict()}
        key = f"pipeline|{ws}".encode()  # where the processor's pipeline partials of this window go
        await (await producer.send(cfg.els_out_topic, None, orjson.dumps(value),
                                   outbox_partition(key, cfg.els_partitions)))

    async def flush() -> None:
        async with flushing:
            events, values = buffer.take()
            if not events:
                return
            try:
                await deliver_held(events, values)
            except Exception:
                # e.g. the broker refused the sink's state writes: nothing was acked, so keep holding the records
                # and try again shortly (Datadog's own failures never get here: deliver retries them itself)
                buffer.restore(events, values, time.monotonic() + FLUSH_RETRY_SECONDS)
                now = time.monotonic()
                if now - last_failure_report[0] > REPORT_EVERY_S:
                    last_failure_report[0] = now
                    log.exception("sink flush failed; the records stay held and are retried")

    async def deliver_held(events: list, values: dict[int, list[dict]]) -> None:
        now_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        touched: dict[str, dict] = {}
        logs: list[dict] = []
        for p, vals in values.items():
            t, lg = sink.absorb(vals, p)
            touched.update(t)  # a key lives in exactly one outbox partition
            logs += lg
        retries = sink.stats["sink_retries"]
        await sink.deliver(sink.render(touched, now_ms), logs)
        retries = sink.stats["sink_retries"] - retries
        cleanup = time.monotonic() - last_cleanup[0] > 60
        by_p: dict[int, dict] = defaultdict(dict)
        for key, entry in touched.items():
            by_p[entry["op"]][key] = entry
        if cleanup:
            last_cleanup[0] = time.monotonic()
            for p in {e.message.partition for e in events}:
                for key in sink.expired_keys(now_ms, p):
                    by_p[p][key] = None
        await asyncio.gather(*[f for p, writes in by_p.items() for f in await producer.persist(table, p, writes)])
        if retries:
            await count_retries(retries, min(values), now_ms)
        for event in events:
            event.ack()
        sink.stats["flushes"] += 1
        sink.stats["t_sink_ms"] += int((time.perf_counter() - t0) * 1000)

    @app.agent(out_topic)
    async def deliver(stream):
        async for event in stream.noack().events():
            buffer.add(event, event.message.partition, orjson.loads(event.message.value), time.monotonic())
            if len(buffer.events) >= Buffer.MAX_RECORDS:
                await flush()  # back-pressure: the agent waits for the flush

    @app.timer(0.25)
    async def flush_when_due():
        if buffer.due(time.monotonic()):
            await flush()

    async def flush_before_revocation(app_, *args, **kwargs):
        """Deliver (and ack) what is held before the outbox partitions may move (Faust waits for the acks)."""
        await flush()

    app.on_partitions_revoked.connect(flush_before_revocation)
    return sink
