"""`els replay`: re-process a time range of the raw topic and send its windows to Datadog with their own times.

The live pipeline is untouched: the replay reads with its own consumer (group `<ELS_APP_ID>-replay-<since>`),
keeps its state in plain dicts, and runs the very engine the worker runs (processor/engine/) in replay mode,
where the clock is event time, so windows close as the replay goes and memory stays flat. The partials of all
partitions are merged and delivered through the sink's public API (processor/sink/sink.py, via emit.py); a window
is sent once, when every partition has closed it (or at the end). Partitions running ahead in event time are
paused, so the windows waiting for the slowest partition stay few.

Start: offsets-for-times of the range start, minus a minute for clock skew, on every partition (the record
timestamp is the receive time, never earlier than the event). End: the first record received after the replay
started, or the end of the partition (its high watermark; the embedded broker under-reports ListOffsets, so
the fetch's is used). Records received after `until` are read too: a backlog delivered late (after an outage)
still holds events of the range. Events whose own timestamp falls outside the range (times.py) are skipped.

The range's end: in replay mode only events move the clock, so the chains of the range's last quiet stretch
would never close. At the end every partition gets what the live pipeline would have had by --until: a tick at
that time, through the engine's live mode, which closes (and counts) every chain whose last news is at least
ELS_CHAIN_QUIET_SECONDS before it (or that timed out); the chains still open are left to the live pipeline.

Not sent: the pipeline group (summarised on the terminal instead) and the org groups (a month's totals and
projections, which a partial range would understate). Points older than one hour are sent only with --historical.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from common import kafka_check
from common.config import Config
from common.deadletter import DeadLetterWriter, Stage
from processor.core.model import InvalidEvent, parse_timestamp
from processor.engine import TICK_HEADER, TICK_KEY, Engine, Record, Settings, is_tick
from processor.replay.emit import Emitter
from processor.replay.summary import ReplayStats
from processor.replay.times import Range, ReplayError, label, parse_time
from processor.sink.client import DatadogClient
from processor.sink.sink import Sink

__all__ = ["Replay", "ReplayError", "ReplayStats", "parse_time", "replay_config", "run_replay"]

SKEW_MS = 60_000            # receive clocks may be behind event clocks by this much
BATCH_RECORDS = 2000
SEND_EVERY_S = 2.0
SEND_AT_SERIES = 5000
IDLE_GIVE_UP_S = 30.0
DRY_RUN_FILE = "var/datadog-dry-run-replay.ndjson"  # apart from the live sink's, unless ELS_DRY_RUN_FILE is set


def replay_config(cfg: Config, environ: Mapping[str, str] | None = None) -> Config:
    """The settings as the replay uses them: a dry run writes DRY_RUN_FILE unless ELS_DRY_RUN_FILE was given."""
    env = os.environ if environ is None else environ
    return cfg if env.get("ELS_DRY_RUN_FILE") else dataclasses.replace(cfg, els_dry_run_file=DRY_RUN_FILE)


@dataclass
class _Part:
    start: int
    end: int
    done: bool = False
    paused: bool = False
    clock: int = 0   # the highest event time the engine took here (its replay-mode clock)
    last: int = -1   # the last offset handed to the engine


class Replay:
    def __init__(self, cfg: Config, since_ms: int, until_ms: int, *, historical: bool = False,
                 held_file: str | None = None, progress: bool = False, out=None):
        self.cfg = cfg
        self.window_ms = cfg.els_window_seconds * 1000
        self.lateness_ms = cfg.els_lateness_seconds * 1000
        self.started_ms = int(time.time() * 1000)
        self.range = Range.of(since_ms, until_ms, self.window_ms, self.started_ms)
        self.historical = historical
        self.held_file = held_file or f"var/replay-{label(self.range.since_ms)}-held.ndjson"
        self.group_id = f"{cfg.els_app_id}-replay-{label(self.range.since_ms)}"
        self.progress = progress
        self.out = out or sys.stderr
        self.stats = ReplayStats()
        self.chains: dict = {}
        self.windows: dict = {}
        self.engine = Engine(self._settings(replay=True), self.chains, self.windows)
        self.client = DatadogClient(cfg)
        self._producer = None
        deadletters = DeadLetterWriter(cfg.els_deadletter_topic, Stage.REPLAY, self._send_deadletter)
        # what Datadog would drop is counted, not dead-lettered: old points are held back in a file instead
        self.sink = Sink(cfg, self.client, deadletters, {}, historical=historical, deadletter_drops=False)
        self.emitter = Emitter(self.sink, self.stats, self.held_file, historical)
        self._t0 = time.monotonic()

    def _settings(self, replay: bool) -> Settings:
        cfg = self.cfg
        return Settings(window_ms=self.window_ms, lateness_ms=self.lateness_ms,
                        quiet_ms=cfg.els_chain_quiet_seconds * 1000, timeout_ms=cfg.els_chain_timeout_seconds * 1000,
                        logs=cfg.logs_enabled, replay=replay)

    @property
    def dry_run_file(self) -> str | None:
        """Where the requests go instead of Datadog (None: to Datadog)."""
        return self.cfg.els_dry_run_file if self.client.dry_run else None

    async def _send_deadletter(self, topic: str, value: bytes, headers) -> asyncio.Future:
        """Datadog's final refusals go to the dead-letter topic, through a producer started on first use."""
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            self._producer = AIOKafkaProducer(bootstrap_servers=self.cfg.bootstrap_list, acks="all",
                                              **self.cfg.kafka_security.client_kwargs())
            await self._producer.start()
        return await self._producer.send(topic, value, headers=headers)

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> ReplayStats:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(bootstrap_servers=self.cfg.bootstrap_list, group_id=self.group_id,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=BATCH_RECORDS, **self.cfg.kafka_security.client_kwargs())
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            # the cause in words, naming the setting to fix: KafkaRefused (exit 2) or KafkaUnreachable (exit 1)
            raise await kafka_check.failure(self.cfg.bootstrap_list, self.cfg.kafka_security, exc) from None
        try:
            await self._replay(consumer)
        finally:
            await consumer.stop()
            await self.client.close()
            if self._producer is not None:
                await self._producer.stop()
        return self.stats

    async def _replay(self, consumer) -> None:
        from aiokafka import TopicPartition

        parts = await self._partitions(consumer)
        tps = [TopicPartition(self.cfg.els_raw_topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: max(self.range.since_ms - SKEW_MS, 0) for tp in tps})
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
        self._end_range(state)
        await self.emitter.emit()
        if self.progress:
            self._report(final=True)
        if active:
            try:  # the group's committed position shows how far the replay went (kafka-consumer-groups)
                await consumer.commit({tp: state[tp.partition].end for tp in active})
            except Exception as exc:  # noqa: BLE001 - informative only
                self._say(f"could not commit the replay group's offsets ({exc!r}); nothing else is affected")

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
        last_report = last_send = last_data = time.monotonic()
        while not all(s.done for s in state.values()):
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH_RECORDS)
            for tp, msgs in batch.items():
                await self._take(consumer, tp, msgs, state[tp.partition])
            now = time.monotonic()
            if batch:
                last_data = now
            await self._find_ends(consumer, state, tps, batch)
            if now - last_data > IDLE_GIVE_UP_S:
                stuck = sorted(p for p, st in state.items() if not st.done)
                self._say(f"no records from partitions {stuck} for {IDLE_GIVE_UP_S:.0f}s although the broker "
                          "reported more; ending the replay there")
                for p in stuck:
                    state[p].done = True
            self._throttle(consumer, state, tps)
            self._total(state)
            if self.emitter.pending >= SEND_AT_SERIES or now - last_send >= SEND_EVERY_S:
                await self.emitter.emit(self._watermark(state))
                last_send = time.monotonic()
            if self.progress and now - last_report >= 0.5:
                last_report = now
                self._report()

    async def _take(self, consumer, tp, msgs, st: _Part) -> None:
        """Hand one partition's fetched records to the engine, up to the first one received after the start."""
        if st.done:
            return
        records: list[tuple[Record, int]] = []
        for m in msgs:
            if m.timestamp is not None and m.timestamp >= self.started_ms:
                st.done = True
                break
            self.stats.read += 1
            rec = self._record(m)
            if rec is not None:
                records.append(rec)
        if records:
            self._step(tp.partition, records, st)
        st.end = max(st.end, consumer.highwater(tp) or 0)
        if not st.done and await consumer.position(tp) >= st.end:
            st.done = True
        if st.done:
            consumer.pause(tp)

    async def _find_ends(self, consumer, state: dict[int, _Part], tps: dict, batch: dict) -> None:
        """Partitions that answered nothing may be at their end already."""
        for p, st in state.items():
            if not st.done and not st.paused and tps[p] not in batch:
                hw = consumer.highwater(tps[p])
                if hw is not None and await consumer.position(tps[p]) >= max(st.end, hw):
                    st.done = True
                    consumer.pause(tps[p])

    def _record(self, m) -> tuple[Record, int] | None:
        """The engine's Record for a raw record in the range, with its event time; None (counted) otherwise."""
        headers = dict(m.headers or ())
        rec = Record(m.offset, m.key, m.value, headers, m.timestamp)
        if is_tick(rec):
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
        if ts not in self.range:
            self.stats.outside += 1
            return None
        return rec, ts

    def _step(self, p: int, records: list[tuple[Record, int]], st: _Part) -> None:
        out = self._apply(p, self.engine.step(p, [rec for rec, _ts in records]))
        refused = {value for value, *_why in out.deadletters}
        st.clock = max([st.clock, *(ts for rec, ts in records if rec.value not in refused)])
        st.last = max(st.last, records[-1][0].offset)

    def _apply(self, p: int, result):
        """Store what the engine wrote and hand its outputs to the emitter; returns the outputs."""
        out, writes = result
        if writes is not None:
            writes.apply_to(self.chains, self.windows)
        self.stats.invalid += len(out.deadletters)
        partials = [v for _k, v in out.partials if not v["group"].startswith("org:")]
        self.emitter.absorb(partials, [v["item"] for _k, v in out.logs])
        return out

    def _end_range(self, state: dict[int, _Part]) -> None:
        """Every partition at --until as the live pipeline sees it: a tick at range.close_ms, in the engine's live
        mode (replay mode ignores ticks), closes and counts the chains quiet (or timed out) by then, and closes the
        windows due; the chains still open are counted and left to the live pipeline."""
        live = Engine(self._settings(replay=False), self.chains, self.windows)
        tick = orjson.dumps({"tick": self.range.close_ms})
        for p, st in state.items():
            if st.last < 0:
                continue  # nothing of the range was read there
            rec = Record(st.last + 1, TICK_KEY, tick, {TICK_HEADER: b"tick"}, self.range.close_ms)
            self._apply(p, live.step(p, [rec]))
            self.stats.chains_open += len(live.open_chains_of(p) or ())

    @staticmethod
    def _watermark(state: dict[int, _Part]) -> int:
        """The event time every partition has closed its windows up to. A partition that is done counts too: the
        range's end may still close its chains, into windows it has not closed."""
        return min((st.clock for st in state.values() if not st.done or st.last >= 0), default=0)

    def _total(self, state: dict[int, _Part]) -> None:
        self.stats.total = sum(st.end - st.start for st in state.values())

    def _throttle(self, consumer, state: dict[int, _Part], tps: dict) -> None:
        """Pause partitions more than two windows plus lateness ahead of the slowest one (in event time)."""
        running = [p for p, s in state.items() if not s.done]
        if not running:
            return
        floor = min(state[p].clock for p in running)
        gap = 2 * (self.window_ms + self.lateness_ms)
        for p in running:
            st = state[p]
            ahead = st.clock > floor + gap
            if ahead and not st.paused:
                consumer.pause(tps[p])
                st.paused = True
            elif not ahead and st.paused:
                consumer.resume(tps[p])
                st.paused = False

    def _say(self, message: str) -> None:
        self.out.write(f"\nels replay: {message}\n")
        self.out.flush()

    def _report(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._t0
        rate = self.stats.read / elapsed if elapsed > 0 else 0.0
        self.out.write("\r" + self.stats.progress(rate) + "   " + ("\n" if final else ""))
        self.out.flush()


def run_replay(cfg: Config, since: str, until: str | None, *, historical: bool = False, held_file: str | None = None,
               progress: bool = False) -> tuple[Replay, ReplayStats]:
    now_ms = int(time.time() * 1000)
    since_ms = parse_time(since, now_ms)
    until_ms = parse_time(until, now_ms) if until else now_ms
    replay = Replay(replay_config(cfg), since_ms, until_ms, historical=historical, held_file=held_file,
                    progress=progress)
    return replay, asyncio.run(replay.run())
