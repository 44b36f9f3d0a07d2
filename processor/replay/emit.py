"""What the replay sends: closed windows, merged by the sink, either to Datadog or (over an hour old) to a file.

The sink (processor/sink/sink.py) merges every partition's partials, renders, batches, retries and dead-letters
exactly as in the worker. The replay adds its own rules: the `pipeline` group is summarised on the terminal
instead of sent (it describes the live pipeline), and windows whose points Datadog would drop for their age are
held back in a file, one `/api/v2/series` body per line, unless --historical.
"""

from __future__ import annotations

import math
import os
import time

from processor.replay.summary import ReplayStats
from processor.sink.delivery import METRIC_MAX_AGE_S
from processor.sink.encode import series_bodies
from processor.sink.merge import MergedWindow
from processor.sink.sink import Sink

PIPELINE = "pipeline"
CHAINS_METRIC = "chains"


def chains_in(series: list[dict], prefix: str) -> int:
    """How many closed chains rendered series count (their `<prefix>.chains` points)."""
    name = f"{prefix}.{CHAINS_METRIC}"
    return int(sum(s["points"][0]["value"] for s in series if s["metric"] == name))


class Emitter:
    """Replay's way out: partials merged and sent through the sink's public API once every partition passed their
    window, points over an hour old held in a file unless --historical, and the counts the summary reports."""

    def __init__(self, sink: Sink, stats: ReplayStats, held_file: str, historical: bool):
        self.sink = sink
        self.stats = stats
        self.held_file = held_file
        self.historical = historical
        self.logs: list[dict] = []
        self.pending = 0  # partials absorbed since the last emit

    def absorb(self, partials: list[dict], logs: list[dict]) -> None:
        touched, _ = self.sink.absorb(partials)
        self.sink.keep(touched)
        self.pending += len(partials)
        self.logs += logs

    async def emit(self, clock_ms: float = math.inf) -> None:
        """Send the windows every partition closed at clock_ms (default: all that are left), and the logs so far."""
        ready = list(self.sink.take_closed(clock_ms).values())
        self._count_pipeline([w for w in ready if w.group == PIPELINE])
        ready = [w for w in ready if w.group != PIPELINE]
        if not ready and not self.logs:
            return
        self.pending = 0
        now_s = time.time()
        too_old = now_s - METRIC_MAX_AGE_S
        held = [] if self.historical else [w for w in ready if w.ws // 1000 < too_old]
        sent = [w for w in ready if self.historical or w.ws // 1000 >= too_old]
        s = self.stats
        prefix = self.sink.cfg.els_metric_prefix
        s.windows_sent += len(sent)
        s.windows_held += len(held)
        if held:
            held_series = self.sink.render(held, int(now_s * 1000))
            s.chains_held += chains_in(held_series, prefix)
            self._hold(held_series)
        series = self.sink.render(sent, int(now_s * 1000))
        s.chains_sent += chains_in(series, prefix)
        logs, self.logs = self.logs, []
        done = await self.sink.deliver(series, logs, now_s)
        s.points_sent += done.series_sent
        s.points_dropped += done.points_dropped
        s.points_refused += done.series_refused
        s.logs_sent += done.logs_sent
        s.logs_dropped += done.logs_dropped
        s.logs_refused += done.logs_refused

    def _count_pipeline(self, windows: list[MergedWindow]) -> None:
        for merged in windows:
            c = merged.bag().counters
            self.stats.duplicates += int(c.get("pipeline.duplicates", 0))
            self.stats.late += int(c.get("pipeline.late_events", 0))
            self.stats.events += int(c.get("pipeline.events_in", 0))

    def _hold(self, series: list[dict]) -> None:
        os.makedirs(os.path.dirname(self.held_file) or ".", exist_ok=True)
        with open(self.held_file, "ab") as f:
            for body in series_bodies(series):
                f.write(body + b"\n")
                self.stats.held_requests += 1
        self.stats.points_held += len(series)
