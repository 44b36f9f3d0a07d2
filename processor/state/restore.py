"""Completes Faust's table recovery up to the true end of every changelog partition this worker owns.

Faust restores a table by reading its changelog up to the end offset the broker reports (ListOffsets). The
embedded broker (Tansu) reports the offset after the *first* record of the last record batch instead of after
the last record, so the rest of that batch, the newest state, would be missing after a restart: chains whose
last writes shared a batch were lost while the windows and the clock (written last, alone) said their events
were applied. The fetch response's high watermark is right on every broker, so after each recovery, before the
streams resume, every active changelog partition is read on from the reported end to the fetched high
watermark and applied like Faust applies changelog records (JSON key; the value as the table's value serializer
reads it: bytes as they are for `raw`, else JSON; no value = deleted). On a broker that reports end offsets
correctly this reads nothing.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.kafka import faust_client_kwargs

log = logging.getLogger("els.processor")

TOP_UP_TIMEOUT_S = 15.0


async def top_up(bootstrap: list[str], tables: list, actives_for_table, auth: dict | None = None) -> int:
    """Apply the changelog records past each active partition's reported end; returns how many were applied.
    `auth`: the aiokafka security arguments (common.kafka.faust_client_kwargs: the same as Faust's own)."""
    work = {}
    for table in tables:
        tps = {tp.partition for tp in actives_for_table.get(table, ())}
        if tps:
            topic = table.changelog_topic.get_topic_name()
            raw = getattr(table, "value_serializer", "json") == "raw"
            work[topic] = (table, sorted(tps), raw)
    if not work:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(auth or {}))
    await consumer.start()
    applied = 0
    try:
        tps = [TopicPartition(topic, p) for topic, (_t, parts, _raw) in work.items() for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        pending = set(tps)
        deadline = time.monotonic() + TOP_UP_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=200)
            for tp, records in batch.items():
                table, _parts, raw = work[tp.topic]
                data = table.data
                for r in records:
                    key = orjson.loads(r.key)
                    if r.value is None:
                        data.pop(key, None)
                    else:
                        data[key] = r.value if raw else orjson.loads(r.value)
                    applied += 1
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    pending.discard(tp)
        if pending:
            log.warning("changelog top-up timed out; state of these partitions may be behind",
                        extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in pending)})
    finally:
        await consumer.stop()
    if applied:
        log.info("restored changelog records past the broker's reported end offsets", extra={"records": applied})
    return applied


def register(app, tables: list, bootstrap: list[str], on_done=None) -> None:
    """Run `top_up` after every recovery, before Faust resumes the streams (it awaits this signal)."""

    async def after_recovery(app_, **kwargs):
        recovery = app.tables.recovery
        n = await top_up(bootstrap, tables, recovery.actives_for_table, faust_client_kwargs(app))
        if on_done is not None:
            on_done(n)

    app.on_rebalance_complete.connect(after_recovery)

