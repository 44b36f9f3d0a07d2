"""What the worker is made of, as one typed object (`app.pipeline`): settings, engine, tables, topics, stats,
sink. The web views and the sink read it; the Faust wiring that builds it is processor/worker.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from common.config import Config
from processor.engine import Engine
from processor.health import Health
from processor.inbox import Inbox
from processor.revocation import Fence
from processor.state import keys
from processor.state.records import Clock, window_view


@dataclass
class WorkerStats:
    """The worker's counters, as /els/stats/ reports them (`records`: raw records applied, ticks included)."""

    records: int = 0
    batches: int = 0
    partials: int = 0
    logs: int = 0
    deadletters: int = 0
    flushes: int = 0
    state_writes: int = 0
    already_applied: int = 0
    gap_seeks: int = 0
    gap_reads: int = 0
    engine_ns: int = 0          # the engine's own time (process + encoding the flushes)
    t_wait_ms: int = 0          # waiting for Faust to hand over the next batch
    t_step_ms: int = 0          # ordering and the engine
    t_out_send_ms: int = 0
    t_out_ack_ms: int = 0
    t_state_send_ms: int = 0
    t_state_ack_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["engine_us_per_event"] = round(self.engine_ns / self.records / 1000, 2) if self.records else None
        return d


@dataclass
class Pipeline:
    cfg: Config
    engine: Engine
    chains: Any        # faust Table: root -> chain record (bytes)
    windows: Any       # faust Table: window and clock records (bytes)
    raw: Any           # the raw topic
    out: Any           # the outbox topic
    inbox: Inbox       # the raw records the consumer fetched for the next batches
    stats: WorkerStats = field(default_factory=WorkerStats)
    sink: Any = None   # processor.sink.agent.Sink, once registered
    health: Health = field(default_factory=Health)  # whether the agent and the sink keep failing
    fence: Fence = field(default_factory=Fence)     # what a rebalance or a stop abandons

    def window_views(self) -> dict[str, dict]:
        """The windows table's local records, readable: window records as window_view, clocks as {now, off}."""
        out: dict[str, dict] = {}
        for key, data in list(self.windows.data.items()):
            k = keys.parse(key)
            out[key] = Clock.from_bytes(data).view() if isinstance(k, keys.ClockKey) else window_view(k, data)
        return out

    def chain_view(self, root: str) -> dict | None:
        """The chain as processed so far (its latest changes may still wait for the next flush to the table)."""
        ch = self.engine.chain_as_processed(root)
        return None if ch is None else ch.to_dict()
