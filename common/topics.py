"""Create the pipeline's topics explicitly, with ELS_PARTITIONS partitions.

Brokers that auto-create topics pick their own partition count (the embedded broker uses 4), and Faust refuses
to run a table whose changelog has a different count from its source topic. So every process creates the
topics it touches before using them, and warns when an existing topic has a different count.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from common.kafka import KafkaSecurity
from common.kafka_check import explained

log = logging.getLogger("common.topics")

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def ensure_topics(bootstrap: str, names: list[str], partitions: int, *, replication: int = 1,
                        configs: dict[str, dict[str, str]] | None = None,
                        security: KafkaSecurity | None = None) -> dict[str, int]:
    """Create missing topics; return each topic's partition count as the broker reports it. Without `security`,
    the Kafka security settings of the environment apply. A failed connection raises KafkaRefused (settings the
    brokers refuse, named) or KafkaUnreachable."""
    security = security or KafkaSecurity.from_env()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.client_kwargs())
    try:
        async with explained(bootstrap, security):
            await admin.start()
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            resp = await admin.create_topics(
                [NewTopic(n, partitions, replication, topic_configs=(configs or {}).get(n, {})) for n in missing]
            )
            for topic, code, *rest in getattr(resp, "topic_errors", []):
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {topic}: error {code} {rest[0] if rest else ''}")
            log.info("topics created", extra={"topics": missing, "partitions": partitions})
        counts = {}
        for desc in await admin.describe_topics(list(names)):
            counts[desc["topic"]] = len(desc["partitions"])
            if counts[desc["topic"]] != partitions:
                log.warning("topic has a different partition count than ELS_PARTITIONS",
                            extra={"topic": desc["topic"], "partitions": counts[desc["topic"]],
                                   "els_partitions": partitions})
        return counts
    finally:
        await admin.close()
