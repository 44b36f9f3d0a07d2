"""The worker's Kafka transport: Faust's aiokafka transport, with a producer that is idempotent where the broker
allows it, and a consumer that knows where each changelog truly ends. Installed with faust.App's public
`transport` setter (processor/worker.py).

- Faust makes its producer idempotent only with processing_guarantee=exactly_once (transactions). The worker's
  producer writes the outbox, the changelogs and the ticks; with idempotence a send that aiokafka retries after
  a lost acknowledgement (a broker failover) is written once (common/producer.py).
- Faust's table recovery reads each changelog partition up to the end offset the consumer's `highwaters`
  reports, and refuses to start (ConsistencyError) when it has already read further than that, as a standby
  replica has. The embedded broker reports ends short (common/end_offsets.py): recovery then stopped before the
  newest state, and a rolling restart took workers down. The consumer here reports the true ends, so recovery
  reads everything and the check keeps its meaning: it trips only where a changelog really lost records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from common.end_offsets import true_end_offsets
from common.kafka import faust_client_kwargs
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


class TrueEndConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, whose `highwaters` (the end offsets table recovery reads to) are the true ends."""

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        reported = await super().highwaters(*partitions)
        bootstrap = faust_aiokafka.server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(bootstrap, reported, faust_client_kwargs(self.app))


class Transport(faust_aiokafka.Transport):
    Consumer = TrueEndConsumer
    Producer = IdempotentProducer
