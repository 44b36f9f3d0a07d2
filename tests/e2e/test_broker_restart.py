"""The embedded broker restarted under a running worker: a bounded number of log lines while it is down, then,
since it comes back without any data, one line saying the worker's state matches no log any more, and exit 1
(a supervisor starts it afresh)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from els.broker import EmbeddedBroker
from tests.e2e.test_processor_e2e import worker_env
from tests.helpers.paths import ARTIFACTS
from tests.helpers.workers import Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DOWN_S = 20


async def applied(worker: Worker, timeout: float = 90) -> None:
    """Until the worker has applied records (its ticks at least): it has state that Kafka holds."""
    deadline = time.monotonic() + timeout
    while not ((await asyncio.to_thread(worker.stats)).get("records", 0) > 0):
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.output()[-3000:]
        await asyncio.sleep(0.5)


def lines(worker: Worker) -> int:
    return worker.output().count("\n")


async def test_a_broker_restart_gives_bounded_lines_then_one_clear_line_and_exit_1(topic_names):
    broker = EmbeddedBroker(log_path=str(ARTIFACTS / "restarted-broker.log")).start()
    worker = Worker(worker_env(broker.bootstrap, topic_names), "broker-restart").start()
    try:
        await applied(worker)
        before = lines(worker)
        broker.stop()
        await asyncio.sleep(DOWN_S)
        while_down = lines(worker) - before
        assert worker.proc.poll() is None, "a worker waits for its broker:\n" + worker.output()[-3000:]
        assert while_down <= 60, f"{while_down} lines in {DOWN_S} s with the broker down:\n{worker.output()[-4000:]}"
        broker.start()
        rc = await asyncio.to_thread(worker.proc.wait, 90)
        out = worker.output()
        assert rc == 1, out[-3000:]
        tail = out.splitlines()[-1]
        assert "[CRITICAL] Kafka lost what this worker applied (topic" in tail and "stopping" in tail
        assert out.count("Traceback") == 0, out[-4000:]
        assert lines(worker) - before <= 150, f"{lines(worker) - before} lines from the stop to the exit"
    except subprocess.TimeoutExpired:
        pytest.fail("the worker never stopped:\n" + worker.output()[-4000:])
    finally:
        worker.stop()
        broker.stop()
