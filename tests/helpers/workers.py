"""Real processes for end-to-end tests: Faust workers (`els process`) and outbox readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from common.kafka import KafkaSecurity, client_kwargs
from els.broker import free_port
from processor.core.bag import Bag
from processor.outbox import unpacked
from tests.helpers.paths import ARTIFACTS


class Worker:
    """`els process` as a child process, its output kept in test-artifacts/ for post-mortems."""

    def __init__(self, env: dict[str, str], name: str = "worker"):
        self.env = {**os.environ, **env, "ELS_WEB_PORT": env.get("ELS_WEB_PORT") or str(free_port())}
        self.web_port = int(self.env["ELS_WEB_PORT"])
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{env.get('ELS_RAW_TOPIC', '')}-{int(time.time() * 1000)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "els.cli", "process"], env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def stats(self) -> dict:
        """The worker's /els/stats/ ({} while its web server does not answer yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/els/stats/", timeout=2) as r:
                return orjson.loads(r.read())
        except (OSError, ValueError):
            return {}

    def get(self, path: str) -> dict:
        """A JSON page of the worker's web server."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
            return orjson.loads(r.read())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


# What a post-mortem of a rebalance needs from a worker's log; Faust's recovery tables and routine lines are not.
TELLING = ("[WARNING]", "[ERROR]", "[CRITICAL]", "Traceback", "skipped", "gone from", "seeking", "Worker ready",
           "Executing _on_partitions_assigned", "[^Worker]: Stopping", "Error")


def story(topic: str, limit: int = 12_000) -> str:
    """The telling lines of every worker log of a test's raw topic (restarted workers too), oldest log first:
    a failure message shows what happened to each worker, not the tail of the last ones."""
    out = []
    for path in sorted(ARTIFACTS.glob(f"*-{topic}-*.log"), key=lambda p: p.name.rsplit("-", 1)[-1]):
        lines = [ln[:300] for ln in path.read_text(errors="replace").splitlines() if any(t in ln for t in TELLING)]
        out.append(f"== {path.name}\n" + "\n".join(lines[-60:]))
    text = "\n".join(out)
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


class OutboxReader:
    """Follows the outbox and keeps, like the sink, the latest partial of every (group, window, partition)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, security: KafkaSecurity | None = None):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.security = security  # None: the environment's Kafka security settings
        self.partials: dict[tuple[str, int, int], dict] = {}
        self.logs: list[dict] = []
        self.records = 0

    async def __aenter__(self):
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest", **client_kwargs(self.security))
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc):
        await self.consumer.stop()

    async def poll(self, seconds: float = 0.5) -> None:
        batch = await self.consumer.getmany(timeout_ms=int(seconds * 1000))
        for records in batch.values():
            for r in records:
                self.records += 1
                for v in unpacked([orjson.loads(r.value)]):
                    self._take(v)

    def _take(self, v: dict) -> None:
        if v["kind"] == "partial":
            k = (v["group"], v["ws"], v["p"])
            old = self.partials.get(k)
            if old is None or old["seq"] <= v["seq"]:
                self.partials[k] = v
        else:
            self.logs.append(v.get("item", v))

    def merged(self) -> dict[tuple[str, int], Bag]:
        out: dict[tuple[str, int], Bag] = {}
        for (group, ws, _p), v in self.partials.items():
            out.setdefault((group, ws), Bag()).merge(Bag.from_dict(v["bag"]))
        return out

    def totals(self) -> dict[str, Bag]:
        """One bag per group, all windows merged."""
        out: dict[str, Bag] = {}
        for (group, _ws), bag in self.merged().items():
            out.setdefault(group, Bag()).merge(bag)
        return out

    async def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll()
            if predicate(self):
                return True
        return False
