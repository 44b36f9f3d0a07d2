"""The worker's consumer: the fetch size docs/configuration.md documents, and Faust's variable overriding it."""

from __future__ import annotations

import pytest

from common.config import Config
from processor.worker import CONSUMER_FETCH_BYTES, create_app


async def _fetch_bytes(tmp_path) -> int:
    app = create_app(Config.from_env({"ELS_DATA_DIR": str(tmp_path)}))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # the real aiokafka consumer, not started
    try:
        return consumer._max_partition_fetch_bytes
    finally:
        await consumer.stop()


async def test_the_consumer_fetches_2_mib_per_partition(tmp_path, monkeypatch):
    monkeypatch.delenv("CONSUMER_MAX_FETCH_SIZE", raising=False)
    assert CONSUMER_FETCH_BYTES == 2 * 1024 * 1024
    assert await _fetch_bytes(tmp_path) == CONSUMER_FETCH_BYTES


@pytest.mark.parametrize("size", [1024 * 1024, 4 * 1024 * 1024])
async def test_fausts_consumer_max_fetch_size_overrides_it(tmp_path, monkeypatch, size):
    monkeypatch.setenv("CONSUMER_MAX_FETCH_SIZE", str(size))
    assert await _fetch_bytes(tmp_path) == size
