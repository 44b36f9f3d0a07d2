"""One agent batch of raw records: in order per partition -> the engine -> outputs acknowledged -> state flushed.

The write order that keeps Datadog's values exact across crashes (docs/design.md, "Exactness"):
1. outputs (dead letters, outbox partials and logs) are sent and acknowledged (a partition whose outputs are
   large, from a tick closing thousands of chains after a backlog, goes through 1-3 before the next partition
   is processed: memory holds one partition's burst, not all of them);
2. for each partition whose transaction is due (processor/state/transaction.py, FlushPolicy), its chain and
   window records are written and acknowledged;
3. then its clock, the position: everything up to it is in the state.
A failure anywhere drops what the engine and the positions hold in memory; the records come again from the
last position written, and re-applying them is harmless.

The engine runs in a thread of its own, one partition's records at a time, while the event loop goes on (the
sink, the web server, Kafka's acknowledgements): the tick after a backlog closes thousands of chains per
partition, ~250 ms of pure Python that held the loop as long. An assignment change meanwhile (forget) makes the
batch drop what it built: its records come again, from the positions.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from common.deadletter import DeadLetterWriter
from processor.engine import Engine, Record
from processor.engine.watch import Live
from processor.outbox import outbox_records
from processor.pipeline import WorkerStats
from processor.runtime import release_free_memory
from processor.state.changelog import KafkaOut
from processor.state.positions import Positions

# A partition's outputs this large go out (and its state, if due) before the next partition is processed: the
# ticks after a backlog close thousands of chains per partition, and holding every partition's logs at once
# added ~15 MB to the worker's peak (2,000 -> 500, docs/benchmarks.md).
EMIT_EARLY_ITEMS = 500


class BatchApplier:
    def __init__(self, engine: Engine, positions: Positions, kafka: KafkaOut, deadletters: DeadLetterWriter,
                 tables: tuple, out_topic: str, partitions: int, stats: WorkerStats,
                 log_end: Callable[[int], int | None] = lambda p: None):
        self.engine = engine
        self.log_end = log_end  # p -> where the raw partition ends, as the consumer last heard (backlog)
        self.positions = positions
        self.kafka = kafka
        self.deadletters = deadletters
        self.chains, self.windows = tables
        self.out_topic = out_topic
        self.partitions = partitions
        self.stats = stats
        self._t_wait = time.perf_counter()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="els-engine")
        self._generation = 0  # forget() moves it on: a batch that began before drops what it built

    def close(self) -> None:
        """The engine's thread ends (the app stops): a batch still running there is dropped, and its records come
        again from the positions at the next start."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    def forget(self) -> None:
        """After any assignment change, or a failed batch: re-read positions and state from the stores."""
        self._generation += 1
        self.positions.forget()
        self.engine.forget_all()

    async def _run_engine(self, p: int, records: list[Record], live: Live):
        """engine.process in the engine's thread; its CPU time added to stats.engine_ns."""
        self.engine.prepare(p)  # here: indexing reads the stores, which this thread writes

        def process():
            t = time.thread_time_ns()
            out = self.engine.process(p, records, live)
            return out, time.thread_time_ns() - t

        out, ns = await asyncio.get_running_loop().run_in_executor(self._thread, process)
        self.stats.engine_ns += ns
        return out

    async def apply(self, messages) -> None:
        st = self.stats
        t0 = time.perf_counter()
        st.t_wait_ms += int((t0 - self._t_wait) * 1000)
        outputs, touched = await self._process(messages)
        t1 = time.perf_counter()
        st.t_step_ms += int((t1 - t0) * 1000)
        await self._emit(outputs)
        await self._flush(touched)
        st.batches += 1
        self._t_wait = time.perf_counter()

    async def _process(self, messages) -> tuple[list, list[int]]:
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for m in messages:
            by_partition[m.partition].append(
                Record(m.offset, m.key, m.value, dict(m.headers or ()), m.timestamp and int(m.timestamp * 1000)))
        outputs, touched = [], []
        now_ms = int(time.time() * 1000)
        generation = self._generation
        for p, records in by_partition.items():
            records = await self.positions.in_order(p, records)
            if generation != self._generation:
                return [], []
            if not records:
                continue
            out = await self._run_engine(p, records, Live(now_ms, self.log_end(p)))
            if generation != self._generation:  # forgotten meanwhile: the positions no longer match this
                return [], []
            self.positions.processed(p, records[-1].offset)
            self.stats.records += len(records)
            partials, logs = out.counts()
            if partials + logs >= EMIT_EARLY_ITEMS:
                # a tick that closed thousands of chains: its outputs, then its state, before the next partition
                await self._emit([out])
                await self._flush([p])
            else:
                outputs.append(out)
                touched.append(p)
            self.stats.partials += partials
            self.stats.logs += logs
            self.stats.deadletters += len(out.deadletters)
        return outputs, touched

    async def _emit(self, outputs: list) -> None:
        """Dead letters and outbox records, sent and acknowledged: state that says "emitted" comes after."""
        t1 = time.perf_counter()
        pending = [await self.deadletters.write(value, reason, received) for out in outputs
                   for value, reason, received in out.deadletters]
        for q, value in outbox_records(outputs, self.partitions):
            pending.append(await self.kafka.send(self.out_topic, None, value, q))
        t2 = time.perf_counter()
        if pending:
            await asyncio.gather(*pending)
        self.stats.t_out_send_ms += int((t2 - t1) * 1000)
        self.stats.t_out_ack_ms += int((time.perf_counter() - t2) * 1000)

    async def _flush(self, partitions: list[int]) -> None:
        """Each due transaction: its chain and window records, acknowledged, then its clock. One partition at a
        time, so what waits for Kafka is one partition's records (a tick after a backlog rewrites thousands)."""
        flushed = False
        for p in partitions:
            if not self.engine.flush_due(p):
                continue
            flushed = True
            t = time.perf_counter_ns()
            w = self.engine.flush(p)
            t1 = time.perf_counter_ns()
            self.stats.engine_ns += t1 - t
            pending = await self.kafka.persist(self.chains, p, w.chains)
            pending += await self.kafka.persist(self.windows, p, w.windows)
            t2 = time.perf_counter_ns()
            await asyncio.gather(*pending)
            # the clock (the partition's position) last: it says everything up to it is in the state
            await asyncio.gather(*await self.kafka.persist(self.windows, p, {w.clock_key: w.clock}))
            self.stats.t_state_send_ms += (t2 - t1) // 1_000_000
            self.stats.t_state_ack_ms += (time.perf_counter_ns() - t2) // 1_000_000
            self.stats.state_writes += len(w.chains) + len(w.windows) + 1
            self.stats.flushes += 1
        if flushed:
            release_free_memory()
