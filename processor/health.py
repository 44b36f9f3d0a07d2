"""Whether the worker's two loops work: the agent that applies raw records, and the sink that delivers.

Faust restarts an agent that raises, so an agent failing on every batch looks alive: its web server answers, and
a status page computed from the tables stays green while nothing moves. Each loop reports its failures here; one
that failed FAILING_AFTER times within FAILING_WINDOW_S makes the worker unhealthy until that many minutes pass
without them: `/els/stats/` says `ready: false` (the Kubernetes readiness probe), and the status page turns red
with the reason. (Not "in a row": between two crashes a restarted agent may well apply a batch of ticks.)
"""

from __future__ import annotations

import time
from collections import deque
from enum import StrEnum

FAILING_AFTER = 3
FAILING_WINDOW_S = 120.0


class Loop(StrEnum):
    AGENT = "agent"  # raw records -> engine -> outbox and state
    SINK = "sink"    # outbox -> Datadog, and the sink's state


class Health:
    """Recent failures per loop, and the problems they make."""

    def __init__(self, failing_after: int = FAILING_AFTER, window_s: float = FAILING_WINDOW_S, clock=time.monotonic):
        self.failing_after, self.window_s, self._clock = failing_after, window_s, clock
        self._failures: dict[Loop, deque[float]] = {loop: deque(maxlen=failing_after) for loop in Loop}
        self._last_error: dict[Loop, str] = {}

    def failed(self, loop: Loop, exc: BaseException) -> None:
        self._failures[loop].append(self._clock())
        self._last_error[loop] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

    def _failing(self, loop: Loop) -> bool:
        recent = self._failures[loop]
        return len(recent) == self.failing_after and self._clock() - recent[0] <= self.window_s

    def problems(self) -> list[str]:
        """One line per failing loop, saying what failed."""
        return [f"the {loop} failed {self.failing_after}+ times in {self.window_s:g} s, last: {self._last_error[loop]}"
                for loop in Loop if self._failing(loop)]

    @property
    def failing(self) -> bool:
        return any(self._failing(loop) for loop in Loop)


class Inbound:
    """When each partition's records were last taken, where Faust's livelock check reads it.

    Faust's consumer logs a long ERROR for a partition once records wait in it and nothing has taken one for
    STREAM_PROCESSING_TIMEOUT (default 300 s). It reads the time from its Monitor sensor, which the worker runs
    without (its per-event bookkeeping: processor/worker.py), and the raw topic has no stream at all
    (processor/inbox.py): a backlog read for longer than the timeout logged the error although records flowed.
    The processor and the sink say here when they take records, so an agent that stops taking them is still
    reported: its time grows old.
    """

    def __init__(self, times: dict) -> None:
        self._times = times  # Faust's Monitor.stream_inbound_time: TP -> time.monotonic()

    def took(self, partitions) -> None:
        now = time.monotonic()
        for tp in partitions:
            self._times[tp] = now
