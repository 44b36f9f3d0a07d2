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

from els.config import Config
from processor.aggregate import Bag, parse_dd_tags, render_series, tag_value, window_start
from processor.datadog import Answer, DatadogClient
from processor.delivery import decide, log_droppable, log_requests, metric_point_droppable, series_requests

log = logging.getLogger("els.sink")

SINK_BATCH_MAX = 5000
SINK_BATCH_WITHIN_SECONDS = 1.0
SINK_RETENTION_MS = 15 * 60_000  # merged windows are kept this long after they can no longer change
AUTH_REPORT_EVERY_S = 60.0


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
        for v in records:
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
                    if now - self._auth_reported >= AUTH_REPORT_EVERY_S:
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


def register(app, cfg: Config, out_topic, producer, make_table) -> Sink:
    """Add the sink agent and its table to the Faust app."""
    table = make_table("sink", "Latest partial of every partition, per group and window (the sink's merge).")
    client = DatadogClient(cfg)

    async def deadletter(value: bytes, reason: str) -> None:
        await (await producer.send(cfg.els_deadletter_topic, None, value, None,
                                   [("reason", reason.encode()[:4000]), ("stage", b"sink")]))

    sink = Sink(cfg, client, deadletter, table)
    if client.dry_run:
        log.warning("DD_API_KEY is not set: nothing goes to Datadog; the requests are written to %s",
                    cfg.els_dry_run_file)

    @app.agent(out_topic)
    async def deliver(stream):
        last_cleanup = 0.0
        async for events in stream.take_events(SINK_BATCH_MAX, within=SINK_BATCH_WITHIN_SECONDS):
            by_partition: dict[int, list[dict]] = defaultdict(list)
            for e in events:
                by_partition[e.message.partition].append(orjson.loads(e.message.value))
            now_ms = int(time.time() * 1000)
            t0 = time.perf_counter()
            cleanup = time.monotonic() - last_cleanup > 60
            for p, values in by_partition.items():
                touched, logs = sink.absorb(values, p)
                await sink.deliver(sink.render(touched, now_ms), logs)
                writes: dict = dict(touched)
                for key in sink.expired_keys(now_ms, p) if cleanup else ():
                    writes[key] = None
                await asyncio.gather(*await producer.persist(table, p, writes))
            if cleanup:
                last_cleanup = time.monotonic()
            sink.stats["t_sink_ms"] += int((time.perf_counter() - t0) * 1000)

    app.els["sink"] = sink
    return sink
