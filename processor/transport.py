"""The worker's Kafka transport: Faust's aiokafka transport, with a producer that is idempotent where the broker
allows it (common/producer.py), as Apache Kafka's own clients are by default.

Faust makes its producer idempotent only with processing_guarantee=exactly_once (transactions). The worker's
producer writes the outbox, the changelogs and the ticks; with idempotence a send that aiokafka retries after a
lost acknowledgement (a broker failover) is written once. Installed with faust.App's public `transport` setter
(processor/worker.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka

from common.producer import start_producer

log = logging.getLogger("els.processor.kafka")


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, started by common.producer.start_producer."""

    idempotent = True

    def _settings_extra(self) -> Mapping[str, Any]:
        if self.idempotent:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}
        return super()._settings_extra()

    def _new_idempotent(self, idempotent: bool):
        self.idempotent = idempotent
        return self._new_producer()

    async def on_start(self) -> None:
        """As Faust's, but the aiokafka producer is tried idempotent first."""
        await faust_producer.Producer.on_start(self)
        self._producer, self.idempotent = await start_producer(self._new_idempotent, log)
        self.beacon.add(self._producer)
        log.info("Kafka producer started (idempotent=%s)", self.idempotent)


class Transport(faust_aiokafka.Transport):
    Producer = IdempotentProducer
