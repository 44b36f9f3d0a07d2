"""A rebalance or a stop abandons the work under way instead of waiting for it.

Faust's revocation waits until every record it handed to an agent is acked, and the group coordinator waits for
a member's revocation only ELS_REBALANCE_TIMEOUT_SECONDS. A member still busy then (a gap being read, a state
flush waiting for Kafka, the sink retrying Datadog during an outage) is put out of the group: its partitions go
to another worker while it finishes, and its late writes land in changelogs the new owner has already restored
from, behind the new owner's own. Values went short that way under a rolling restart on a loaded machine, and a
worker whose sink held records it could not deliver never finished a revocation at all.

So when a rebalance or a stop begins (Faust stops the consumer's flow), the work under way is abandoned, not
finished: the processor drops its batch and open transactions, the sink lets go of the records it holds (a stop
first gives Datadog a few seconds to take them: processor/sink/agent.py). Their records are acked, Faust's
revocation completes in milliseconds, and nothing of the old assignment is written after it began. Nothing is
lost: the processor and the sink keep their own positions in their state (processor/state/positions.py,
processor/sink/position.py), so the next owner, this worker or another, reads the abandoned records again from
there, as it would after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Abandoned(Exception):
    """A rebalance or a stop began while the work ran, or before it could start: its records come again."""


class Fence:
    """Runs work of the current assignment so that a rebalance or a stop abandons it (the consumer calls
    `abandon` when Faust stops its flow, and `resume` when Faust lets it flow again)."""

    def __init__(self) -> None:
        self.flowing = True
        self.stopping = False  # the flow stopped for a stop (the worker leaves), not for a rebalance
        self.abandoned = 0  # pieces of work abandoned so far (/els/stats/)
        self._stopped: asyncio.Future | None = None  # resolved when the current flow stops
        self._on_abandon: list[Callable[[], None]] = []
        self._on_resume: list[Callable[[], None]] = []

    def on_abandon(self, release: Callable[[], None]) -> None:
        """`release()` runs as the flow stops: what is held for later (the sink's records) is let go."""
        self._on_abandon.append(release)

    def on_resume(self, resumed: Callable[[], None]) -> None:
        """`resumed()` runs as the flow resumes (Faust does so as a rebalance's recovery starts, to read the
        changelogs, and again once it is done): the sink then catches up on what was let go."""
        self._on_resume.append(resumed)

    def abandon(self, stopping: bool = False) -> None:
        """The flow stops (a rebalance or, `stopping`, a stop begins): work under way ends now, and none starts
        until resume."""
        self.flowing = False
        self.stopping = stopping
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        self._stopped = None
        for release in self._on_abandon:
            release()

    def resume(self) -> None:
        self.flowing = True
        self.stopping = False
        for resumed in self._on_resume:
            resumed()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, or Abandoned if the flow stops before it ends (it is then cancelled)."""
        if not self.flowing:
            work.close()
            self.abandoned += 1
            raise Abandoned
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
        stopped = self._stopped
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # what it did so far is re-done anyway
            await task
        self.abandoned += 1
        raise Abandoned
