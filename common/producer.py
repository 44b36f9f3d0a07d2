"""Starting an aiokafka producer idempotent where the broker allows it.

Apache Kafka clients are idempotent by default: a send retried after a lost acknowledgement is written once.
The embedded broker (Tansu) refuses InitProducerId; there the producer falls back to acks=all without it, says
so in one warning, and the processor's deduplication on idempotency_key removes what a retried send repeats.
Ingest's producer (ingest/kafka.py) and the worker's (processor/transport.py) both start through here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError


class _InitProducerIdRefusal(logging.Filter):
    """Drops aiokafka's ERROR for a refused InitProducerId: the probe expects it, and our warning explains it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unexpected error during InitProducerIdRequest")


@contextlib.contextmanager
def _refusal_not_logged_as_error() -> Iterator[None]:
    """Only while the idempotent producer is being tried: any other aiokafka error still reaches the logs."""
    sender_log, quiet = logging.getLogger("aiokafka.producer.sender"), _InitProducerIdRefusal()
    sender_log.addFilter(quiet)
    try:
        yield
    finally:
        sender_log.removeFilter(quiet)


async def start_producer(new: Callable[[bool], AIOKafkaProducer], log: logging.Logger,
                         ) -> tuple[AIOKafkaProducer, bool]:
    """Start `new(idempotent=True)`; if the broker refuses idempotence, `new(False)`. Returns the started
    producer and whether it is idempotent. Any other failure (the broker unreachable) raises."""
    producer = new(True)
    try:
        with _refusal_not_logged_as_error():
            await producer.start()
        return producer, True
    except KafkaError as exc:
        await producer.stop()
        log.warning("broker refuses the idempotent producer; using acks=all without it "
                    "(a retried send may duplicate; the processor deduplicates on idempotency_key)",
                    extra={"error": repr(exc)})
    producer = new(False)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer, False
