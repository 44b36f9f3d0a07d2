"""The pipeline's topics, made by whichever component starts first, with ELS_PARTITIONS partitions.

Brokers that auto-create topics pick their own partition count (the embedded broker 4, Apache Kafka 1), and a
count other than ELS_PARTITIONS breaks the pipeline: Faust refuses a table whose changelog's count differs from
its source topic's, the outbox is read per raw partition, and a worker fed the wrong partitions crash-loops
("Unrecognized partition"). So ingest, `els process` and `faust -A processor.app worker` all create every
topic the pipeline uses (Faust's changelogs included) before anything else touches Kafka, and refuse to start
when one that matters exists with another count (TopicMismatch, exit 2 with the fix).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from common.kafka import KafkaSecurity
from common.kafka_check import explained

log = logging.getLogger("common.topics")

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
# the processor's Faust tables (processor/worker.py, processor/sink/agent.py); each has a changelog topic
TABLES = ("chains", "windows", "sink")
COMPACTED = {"cleanup.policy": "compact"}  # as Faust makes a table's changelog


@dataclass(frozen=True)
class TopicSpec:
    """A topic the pipeline uses. `keyed`: its partition count must equal ELS_PARTITIONS (the raw topic, the
    outbox and the changelogs are read partition by partition; the dead-letter topic is not)."""

    name: str
    partitions: int
    keyed: bool = True
    config: dict[str, str] = field(default_factory=dict)


class TopicMismatch(Exception):
    """A topic exists with a partition count the pipeline cannot use; only an operator can fix it."""


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def pipeline_topics(cfg) -> list[TopicSpec]:
    """Every topic the pipeline uses, as `cfg` (common.config.Config) names them."""
    n = cfg.els_partitions
    return [TopicSpec(cfg.els_raw_topic, n), TopicSpec(cfg.els_deadletter_topic, n, keyed=False),
            TopicSpec(cfg.els_out_topic, n),
            *(TopicSpec(changelog_topic(cfg.els_app_id, t), n, config=COMPACTED) for t in TABLES)]


def mismatch_message(spec: TopicSpec, has: int, bootstrap: str) -> str:
    return (f"topic {spec.name} has {has} partition{'s' if has != 1 else ''}; the pipeline needs "
            f"{spec.partitions} (ELS_PARTITIONS). Set ELS_PARTITIONS={has} on every component to use it as it is, "
            f"or delete it (kafka-topics.sh --bootstrap-server {bootstrap} --delete --topic {spec.name}; a raw "
            f"topic's events go with it) and start again: it is made with {spec.partitions}.")


async def ensure_topics(bootstrap: str, names: list[str] | list[TopicSpec], partitions: int | None = None, *,
                        replication: int = 1, configs: dict[str, dict[str, str]] | None = None,
                        security: KafkaSecurity | None = None) -> dict[str, int]:
    """Create missing topics; return each topic's partition count as the broker reports it. `names` are names
    (made with `partitions` each) or TopicSpecs. A keyed TopicSpec with another count raises TopicMismatch.
    Without `security`, the Kafka security settings of the environment apply. A failed connection raises
    KafkaRefused (settings the brokers refuse, named) or KafkaUnreachable."""
    specs = [s if isinstance(s, TopicSpec) else TopicSpec(s, partitions or 1, keyed=False,
                                                           config=(configs or {}).get(s, {}))
             for s in names]
    specs = list({s.name: s for s in specs}.values())
    security = security or KafkaSecurity.from_env()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.client_kwargs())
    try:
        async with explained(bootstrap, security):
            await admin.start()
        existing = set(await admin.list_topics())
        present = [s.name for s in specs if s.name in existing]
        counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(present)} if present else {}
        for s in specs:  # before anything is made: the fix may be another ELS_PARTITIONS
            has = counts.get(s.name)
            if s.keyed and has is not None and has != s.partitions:
                raise TopicMismatch(mismatch_message(s, has, bootstrap))
        missing = [s for s in specs if s.name not in existing]
        if missing:
            resp = await admin.create_topics(
                [NewTopic(s.name, s.partitions, replication, topic_configs=s.config) for s in missing])
            for topic, code, *rest in getattr(resp, "topic_errors", []):
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {topic}: error {code} {rest[0] if rest else ''}")
            log.info("topics created", extra={"topics": [s.name for s in missing], "replication": replication})
            counts.update((s.name, s.partitions) for s in missing)
        return counts
    finally:
        await admin.close()


async def ensure_pipeline_topics(cfg) -> dict[str, int]:
    """`ensure_topics` for every topic of the pipeline, as `cfg` (common.config.Config) names them."""
    return await ensure_topics(cfg.kafka_bootstrap_servers, pipeline_topics(cfg),
                               replication=cfg.els_replication_factor, security=cfg.kafka_security)
