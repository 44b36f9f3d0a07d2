"""The sink's public API: outbox values in, Datadog requests out (merge -> render -> send).

Both the worker's sink agent (agent.py: Faust wiring, persistence, flushing) and `els replay` (processor/replay)
use it, so a backfill merges, renders, batches, retries and dead-letters exactly as the live sink does. The table
holds the merged windows (merge.py); where it lives (a Faust table, a dict) and when it is written is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, MutableMapping

from common.config import Config
from common.deadletter import DeadLetterWriter
from processor.sink.client import DatadogClient
from processor.sink.merge import Merge, MergedWindow, keep_after_end_ms
from processor.sink.render import Renderer
from processor.sink.sender import Delivered, Sender


class Sink:
    def __init__(self, cfg: Config, client: DatadogClient, deadletters: DeadLetterWriter, table: MutableMapping, *,
                 historical: bool = False, deadletter_drops: bool = True):
        self.cfg = cfg
        self.client = client
        self.table = table
        failover_s = cfg.els_session_timeout_seconds + cfg.els_rebalance_timeout_seconds
        self.merge = Merge(table, cfg.els_window_seconds * 1000, cfg.els_lateness_seconds * 1000,
                           keep_after_end_ms(cfg.els_window_seconds, cfg.els_lateness_seconds, failover_s))
        self.renderer = Renderer(cfg)
        self.sender = Sender(client, deadletters, historical=historical, deadletter_drops=deadletter_drops)

    @property
    def stats(self) -> dict[str, int]:
        """Cumulative counters (series_sent, logs_sent, *_deadlettered, dropped_*, sink_retries, ...)."""
        return self.sender.stats

    def absorb(self, values: Iterable[dict], op: int = 0) -> tuple[dict[str, MergedWindow], list[dict]]:
        """Merge outbox values (of outbox partition `op`); returns the merged windows touched and the log items."""
        return self.merge.absorb(values, op)

    def keep(self, windows: dict[str, MergedWindow]) -> None:
        """Store merged windows in the table as they are (the worker persists through its changelog instead)."""
        self.merge.keep(windows)

    def take_closed(self, clock_ms: float = math.inf) -> dict[str, MergedWindow]:
        """Remove and return the merged windows closed at `clock_ms` (end + lateness passed; default: all)."""
        return self.merge.take_closed(clock_ms)

    def render(self, windows: Iterable[MergedWindow], now_ms: int) -> list[dict]:
        return list(self.renderer.series(windows, now_ms))

    def series(self, windows: Iterable[MergedWindow], now_ms: int) -> Iterator[dict]:
        """The windows' series, rendered as the sender takes them (deliver)."""
        return self.renderer.series(windows, now_ms)

    async def deliver(self, series: Iterable[dict], logs: Iterable[dict], now_s: float | None = None) -> Delivered:
        """Send (retrying until Datadog takes them) or dead-letter; returns what this call did. `series` may be
        lazy (series()): it is rendered a slice at a time while earlier requests go out."""
        return await self.sender.deliver(series, map(self.renderer.log, logs), now_s)

    def expired_keys(self, op: int, now_ms: int) -> list[str]:
        return self.merge.expired_keys(op, now_ms)
