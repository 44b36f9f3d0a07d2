"""The raw topic's messages, from the worker's consumer to the processor's agent in batches, without a stream.

Faust hands every fetched message to a stream: its conductor decodes it into an Event and queues it, and the
stream's iterator takes it with a turn of the event loop, runs the stream's processors (`take_events` is one)
and acks it. The processor wants batches anyway (processor/batch.py), so the worker's consumer puts the raw
topic's messages here (processor/transport.py) and the agent takes up to `batch_max` at a time. What Faust's
stream does per message is done here per batch:
- flow: a rebalance or a stop empties the inbox (the Fence, processor/revocation.py), and a batch keeps only
  messages fetched in the consumer's current generation; what was dropped comes again from the committed offset
  or, beyond it, from the positions in the state (processor/state/positions.py);
- back-pressure: the consumer waits while the inbox holds `capacity` messages;
- acks: each message is acked after its batch (applied or abandoned: the positions say what was applied), so
  Faust's commits go on.
The raw topic still has its Faust agent: it is what subscribes the consumer to the topic, with acks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from faust.types import Message


class Inbox:
    def __init__(self, topic: str, batch_max: int, capacity: int, generation: Callable[[], int | None],
                 ack: Callable[[Message], object]) -> None:
        self.topic = topic
        self.batch_max = batch_max
        self.capacity = capacity
        self.dropped = 0  # messages dropped by a rebalance or a stop
        self._generation = generation  # the consumer's current generation, None while none may be handed over
        self._ack = ack
        self._held: list[Message] = []
        self._ready = asyncio.Event()  # a whole batch waits
        self._room = asyncio.Event()   # fewer than `capacity` wait
        self._room.set()

    def __len__(self) -> int:
        return len(self._held)

    def put(self, message: Message) -> bool:
        """Holds the message; False if the inbox is full now: the consumer waits for `room()` before the next."""
        held = self._held
        held.append(message)
        if len(held) < self.batch_max:
            return True
        self._ready.set()
        if len(held) < self.capacity:
            return True
        self._room.clear()
        return False

    async def room(self) -> None:
        await self._room.wait()

    async def take(self, within: float) -> list[Message]:
        """The next batch: up to `batch_max` messages as soon as that many wait, else those that came `within`
        seconds (maybe none)."""
        if len(self._held) < self.batch_max:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within)
        held = self._held
        batch, self._held = held[:self.batch_max], held[self.batch_max:]
        self._settle()
        generation = self._generation()
        current = [m for m in batch if m.generation_id == generation]
        self.dropped += len(batch) - len(current)
        return current

    def ack(self, messages: list[Message]) -> None:
        ack = self._ack
        for m in messages:
            ack(m)

    def clear(self) -> None:
        """A rebalance or a stop began: what waits is dropped, unacked."""
        self.dropped += len(self._held)
        self._held = []
        self._settle()

    def _settle(self) -> None:
        n = len(self._held)
        if n < self.batch_max:
            self._ready.clear()
        if n < self.capacity:
            self._room.set()
