"""`els replay`: re-process a time range of the raw topic and send its windows to Datadog with their own times.

The live pipeline is untouched: the replay reads with its own consumer (group `<ELS_APP_ID>-replay-<since>`),
keeps its state in plain dicts, and runs the very engine the worker runs (processor/engine.py) in replay mode,
where the clock is event time, so windows close as the replay goes and memory stays flat. The partials of all
partitions are merged with the sink's own code (processor/sink/agent.py) and delivered by it; a window is sent once,
when every partition has closed it (or at the end). Partitions running ahead in event time are paused, so the
windows waiting for the slowest partition stay few.

Start: offsets-for-times of the range start, minus a minute for clock skew, on every partition (the record
timestamp is the receive time, never earlier than the event). End: the first record received after the replay
started, or the end of the partition (its high watermark; the embedded broker under-reports ListOffsets, so
the fetch's is used). Records received after `until` are read too: a backlog delivered late (after an outage)
still holds events of the range. Events whose own
timestamp falls outside [since, until) are skipped. Both bounds are aligned to window boundaries (since down,
until up), so no window is sent with only part of its events, which would replace its full value in Datadog.

Not sent: the pipeline group (pipeline.*: the live pipeline's health, summarised on the terminal instead) and
steps.month_to_date (a month's total, which a partial range would understate). Points older than one hour are
sent only with --historical; otherwise they go, one series request per line, to the held file.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from common.config import Config
from processor.core.bag import Bag
from processor.core.model import InvalidEvent, parse_timestamp
from processor.core.windows import window_start
from processor.engine import Engine, Record, Settings, is_tick
from processor.sink.agent import Sink
from processor.sink.client import DatadogClient
from processor.sink.delivery import METRIC_MAX_AGE_S, series_requests

SKEW_MS = 60_000            # receive clocks may be behind event clocks by this much
BATCH_RECORDS = 2000
SEND_EVERY_S = 2.0
SEND_AT_SERIES = 5000
IDLE_GIVE_UP_S = 30.0
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReplayError(ValueError):
    """A replay that cannot start (bad range, missing topic); the message says what to change."""


def parse_time(text: str, now_ms: int) -> int:
    """ms since epoch from ISO 8601 (UTC when no offset) or a duration ago: `90s`, `30m`, `2h`, `7d`, `1w`."""
    s = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", s)
    if m:
        return now_ms - int(float(m.group(1)) * UNITS[m.group(2)] * 1000)
    try:
        d = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise ReplayError(f"{text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor a duration ago "
                          "(30m, 2h, 7d)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp() * 1000)


def label(ms: int) -> str:
    """A time as it appears in the replay's group id and held file name: 20240501T120000Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class ReplayStats:
    total: int = 0              # records between the start and end offsets
    read: int = 0
    ticks: int = 0
    outside: int = 0            # events whose own timestamp is outside the range
    invalid: int = 0            # unusable records (the live pipeline dead-lettered them)
    events: int = 0             # events the engine took (duplicates excluded)
    duplicates: int = 0
    late: int = 0
    windows: int = 0            # (group, window) pairs sent or held
    points_sent: int = 0
    points_held: int = 0
    points_dropped: int = 0     # more than 10 minutes in the future, or refused by Datadog
    logs_sent: int = 0
    logs_dropped: int = 0
    held_requests: int = 0

    def summary(self, held_file: str, historical: bool, dry_run: bool) -> str:
        lines = [
            f"replayed {self.events} events ({self.duplicates} duplicates counted once, {self.late} too late for "
            f"their window, {self.outside} outside the range, {self.invalid} unusable) from {self.read} records",
            f"windows emitted: {self.windows}; metric points sent: {self.points_sent}"
            + (" (dry run: written to ELS_DRY_RUN_FILE)" if dry_run else "")
            + f", dropped: {self.points_dropped}; logs sent: {self.logs_sent}, dropped (over 18 h old): "
              f"{self.logs_dropped}",
        ]
        if self.points_held:
            lines.append(f"held back {self.points_held} metric points older than 1 hour in {held_file} "
                         f"({self.held_requests} series requests, one per line); enable Historical Metrics "
                         "Ingestion in Datadog and replay with --historical to send them")
        elif not historical:
            lines.append("held back 0 metric points (none older than 1 hour)")
        return "\n".join(lines)


@dataclass
class _Part:
    start: int
    end: int
    done: bool = False
    paused: bool = False


class Replay:
    def __init__(self, cfg: Config, since_ms: int, until_ms: int, *, historical: bool = False,
                 held_file: str | None = None, progress: bool = False, out=None):
        if until_ms <= since_ms:
            raise ReplayError("--until must be after --since")
        self.cfg = cfg
        self.window_ms = cfg.els_window_seconds * 1000
        self.lateness_ms = cfg.els_lateness_seconds * 1000
        self.since_ms = window_start(since_ms, self.window_ms)
        self.until_ms = -(-until_ms // self.window_ms) * self.window_ms
        self.historical = historical
        self.held_file = held_file or f"var/replay-{label(self.since_ms)}-held.ndjson"
        self.group_id = f"{cfg.els_app_id}-replay-{label(self.since_ms)}"
        self.progress = progress
        self.started_ms = int(time.time() * 1000)
        self.out = out or sys.stderr
        self.stats = ReplayStats()
        self.chains: dict = {}
        self.windows: dict = {}
        self.engine = Engine(Settings(window_ms=self.window_ms, lateness_ms=self.lateness_ms,
                                      quiet_ms=cfg.els_chain_quiet_seconds * 1000,
                                      timeout_ms=cfg.els_chain_timeout_seconds * 1000,
                                      logs=cfg.logs_enabled, replay=True), self.chains, self.windows)
        self.client = DatadogClient(cfg)
        self.merged: dict[str, dict] = {}   # the sink's table: "group|ws" -> {"group", "ws", "parts"}
        self.sink = Sink(cfg, self.client, self._not_sent, self.merged, historical=historical)
        self._producer = None
        self._logs: list[dict] = []
        self._series_pending = 0

    # -- what the sink does not send ---------------------------------------------------------------------
    async def _not_sent(self, value: bytes, reason: str) -> None:
        """The sink's dead-letter hook: too old/too new is counted; refused by Datadog goes to the topic too."""
        is_point = value.startswith(b'{"metric"')
        if reason.startswith("not sent to Datadog"):
            if is_point:
                self.stats.points_dropped += 1
            else:
                self.stats.logs_dropped += 1
            return
        self.stats.points_dropped += is_point
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            self._producer = AIOKafkaProducer(bootstrap_servers=self.cfg.bootstrap_list, acks="all")
            await self._producer.start()
        await self._producer.send_and_wait(self.cfg.els_deadletter_topic, value,
                                           headers=[("reason", reason.encode()[:4000]), ("stage", b"replay")])

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> ReplayStats:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        cfg = self.cfg
        consumer = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap_list, group_id=self.group_id,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=BATCH_RECORDS)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise ReplayError(f"cannot reach Kafka at {cfg.kafka_bootstrap_servers}: {exc!r}") from None
        try:
            parts = await self._partitions(consumer)
            tps = [TopicPartition(cfg.els_raw_topic, p) for p in parts]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.offsets_for_times({tp: max(self.since_ms - SKEW_MS, 0) for tp in tps})
            state: dict[int, _Part] = {}
            for tp in tps:
                found = starts.get(tp)
                start = found.offset if found is not None else ends[tp]
                state[tp.partition] = _Part(start, max(ends[tp], start), done=found is None)
            self._total(state)
            active = [tp for tp in tps if not state[tp.partition].done]
            if active:
                consumer.assign(active)
                for tp in active:
                    consumer.seek(tp, state[tp.partition].start)
            await self._loop(consumer, state, {tp.partition: tp for tp in active})
            await self._send(final=True)
            if active:
                try:  # the group's committed position shows how far the replay went (kafka-consumer-groups)
                    await consumer.commit({tp: state[tp.partition].end for tp in active})
                except Exception as exc:  # noqa: BLE001 - informative only
                    self._say(f"could not commit the replay group's offsets ({exc!r}); nothing else is affected")
        finally:
            await consumer.stop()
            await self.client.close()
            if self._producer is not None:
                await self._producer.stop()
        return self.stats

    async def _partitions(self, consumer) -> list[int]:
        topic = self.cfg.els_raw_topic
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return sorted(parts)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise ReplayError(f"topic {topic!r} does not exist on {self.cfg.kafka_bootstrap_servers} (ELS_RAW_TOPIC)")

    async def _loop(self, consumer, state: dict[int, _Part], tps: dict) -> None:
        t0 = last_report = last_send = last_data = time.monotonic()
        stop_ms = self.started_ms
        while not all(s.done for s in state.values()):
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH_RECORDS)
            for tp, msgs in batch.items():
                st = state[tp.partition]
                if st.done:
                    continue
                records = []
                for m in msgs:
                    if m.timestamp is not None and m.timestamp >= stop_ms:
                        st.done = True
                        break
                    self.stats.read += 1
                    rec = self._record(m)
                    if rec is not None:
                        records.append(rec)
                if records:
                    self._step(tp.partition, records)
                st.end = max(st.end, consumer.highwater(tp) or 0)
                if not st.done and await consumer.position(tp) >= st.end:
                    st.done = True
                if st.done:
                    consumer.pause(tp)
            now = time.monotonic()
            if batch:
                last_data = now
            for p, st in state.items():  # partitions that answered nothing: maybe at their end already
                if not st.done and not st.paused and tps[p] not in batch:
                    hw = consumer.highwater(tps[p])
                    if hw is not None and await consumer.position(tps[p]) >= max(st.end, hw):
                        st.done = True
                        consumer.pause(tps[p])
            if now - last_data > IDLE_GIVE_UP_S:
                stuck = sorted(p for p, st in state.items() if not st.done)
                self._say(f"no records from partitions {stuck} for {IDLE_GIVE_UP_S:.0f}s although the broker "
                          "reported more; ending the replay there")
                for p in stuck:
                    state[p].done = True
            self._throttle(consumer, state, tps)
            self._total(state)
            if self._series_pending >= SEND_AT_SERIES or now - last_send >= SEND_EVERY_S:
                await self._send(final=False, state=state)
                last_send = time.monotonic()
            if self.progress and now - last_report >= 0.5:
                last_report = now
                self._report(now - t0)
        if self.progress:
            self._report(time.monotonic() - t0, final=True)

    def _record(self, m) -> Record | None:
        """The engine's Record for a raw record in the range; None (counted) for ticks and everything else."""
        headers = dict(m.headers or ())
        rec = Record(m.offset, m.key, m.value, headers, m.timestamp)
        if is_tick(rec):
            self.stats.ticks += 1
            return None
        try:
            ev = orjson.loads(m.value)
            ts = parse_timestamp(ev.get("timestamp")) if isinstance(ev, dict) else None
        except (orjson.JSONDecodeError, InvalidEvent):
            self.stats.invalid += 1
            return None
        if not isinstance(ev, dict):
            self.stats.invalid += 1
            return None
        if ts is None:  # the engine places it by its receive time
            try:
                ts = int(headers.get("received_at") or m.timestamp)
            except ValueError:
                ts = m.timestamp
        if not self.since_ms <= ts < self.until_ms:
            self.stats.outside += 1
            return None
        return rec

    def _step(self, p: int, records: list[Record]) -> None:
        out, chain_writes, window_writes = self.engine.step(p, records)
        for store, writes in ((self.chains, chain_writes), (self.windows, window_writes)):
            for key, value in writes.items():
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value
        self.stats.invalid += len(out.deadletters)
        partials = [v for _k, v in out.partials if not v["group"].startswith("org:")]
        touched, _logs = self.sink.absorb(partials, 0)
        self.merged.update(touched)
        self._series_pending += len(partials)
        self._logs += [v["item"] for _k, v in out.logs]

    def _total(self, state: dict[int, _Part]) -> None:
        self.stats.total = sum(st.end - st.start for st in state.values())

    def _clock(self, p: int) -> int:
        return self.engine.clock(p).now

    def _throttle(self, consumer, state: dict[int, _Part], tps: dict) -> None:
        """Pause partitions more than two windows plus lateness ahead of the slowest one (in event time)."""
        running = [p for p, s in state.items() if not s.done]
        if not running:
            return
        floor = min(self._clock(p) for p in running)
        gap = 2 * (self.window_ms + self.lateness_ms)
        for p in running:
            ahead = self._clock(p) > floor + gap
            st = state[p]
            if ahead and not st.paused:
                consumer.pause(tps[p])
                st.paused = True
            elif not ahead and st.paused:
                consumer.resume(tps[p])
                st.paused = False

    async def _send(self, final: bool, state: dict[int, _Part] | None = None) -> None:
        """Send the windows every partition has closed (all of them when final), and the logs so far."""
        if final:
            watermark = math.inf
        else:
            running = [p for p, s in state.items() if not s.done]
            watermark = min((self._clock(p) for p in running), default=math.inf)
        ready: dict[str, dict] = {}
        for key, entry in list(self.merged.items()):
            if entry["ws"] + self.window_ms + self.lateness_ms <= watermark:
                ready[key] = self.merged.pop(key)
        pipeline = {k: e for k, e in ready.items() if e["group"] == "pipeline"}
        for entry in pipeline.values():
            bag = Bag()
            for part in entry["parts"].values():
                bag.merge(Bag.from_dict(part["bag"]))
            c = bag.counters
            self.stats.duplicates += int(c.get("pipeline.duplicates", 0))
            self.stats.late += int(c.get("pipeline.late_events", 0))
            self.stats.events += int(c.get("pipeline.events_in", 0))
        ready = {k: e for k, e in ready.items() if e["group"] != "pipeline"}
        if not ready and not self._logs:
            return
        self._series_pending = 0
        self.stats.windows += len(ready)
        now_s = time.time()
        series = self.sink.render(ready, int(now_s * 1000))
        held = []
        if not self.historical:
            held = [s for s in series if s["points"][0]["timestamp"] < now_s - METRIC_MAX_AGE_S]
            series = [s for s in series if s["points"][0]["timestamp"] >= now_s - METRIC_MAX_AGE_S]
        if held:
            os.makedirs(os.path.dirname(self.held_file) or ".", exist_ok=True)
            with open(self.held_file, "ab") as f:
                for batch in series_requests(held):
                    f.write(orjson.dumps({"series": batch}) + b"\n")
                    self.stats.held_requests += 1
            self.stats.points_held += len(held)
        logs, self._logs = self._logs, []
        before = dict(self.sink.stats)
        await self.sink.deliver(series, logs, now_s)
        self.stats.points_sent += self.sink.stats["series_sent"] - before.get("series_sent", 0)
        self.stats.logs_sent += self.sink.stats["logs_sent"] - before.get("logs_sent", 0)

    def _say(self, message: str) -> None:
        self.out.write(f"\nels replay: {message}\n")
        self.out.flush()

    def _report(self, elapsed: float, final: bool = False) -> None:
        s = self.stats
        rate = s.read / elapsed if elapsed > 0 else 0.0
        self.out.write(f"\rreplay: {s.read}/{s.total} records ({rate:.0f}/s), {s.windows} windows sent, "
                       f"{s.points_held} points held   " + ("\n" if final else ""))
        self.out.flush()


def run_replay(cfg: Config, since: str, until: str | None, *, historical: bool = False, held_file: str | None = None,
               progress: bool = False) -> tuple[Replay, ReplayStats]:
    now_ms = int(time.time() * 1000)
    since_ms = parse_time(since, now_ms)
    until_ms = parse_time(until, now_ms) if until else now_ms
    replay = Replay(cfg, since_ms, until_ms, historical=historical, held_file=held_file, progress=progress)
    return replay, asyncio.run(replay.run())

