"""Realistic ELS traffic with known answers: chains of root and helper flows, and the totals they must produce.

`els simulate` posts it to ingest (els/simulate.py); tests and benches also write it straight to Kafka
(produce_events).

The generator computes the expected per-flow totals itself, independently of the processor, so tests and
benches can compare what reached the outbox (or Datadog) with what was sent. Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from common.kafka import KafkaSecurity

ORG = {"org_id": "00o4mhtja45vHndwd0g7", "org_name": "logstream-01", "org_hostname": "atko.okta.com"}
ERRORS = [("ConnectorError", "E0000001", "Connection to Salesforce timed out"),
          ("ValidationError", "E0000002", "Missing required field: email"),
          ("HTTPError", "E0000003", "404 Not Found")]


@dataclass
class Expected:
    """What a correct pipeline reports for the generated traffic (duplicates excluded)."""

    events: Counter = field(default_factory=Counter)          # (flow_id, event_type lower) -> n
    failures: Counter = field(default_factory=Counter)        # (flow_id, error_type) -> n
    ended: Counter = field(default_factory=Counter)           # (flow_id, outcome) -> n
    steps: Counter = field(default_factory=Counter)           # flow_id -> sum of step_count
    durations: dict = field(default_factory=lambda: defaultdict(list))  # flow_id -> [ms]
    chains: Counter = field(default_factory=Counter)          # (root_flow_id, status, had_failures) -> n
    flow_names: dict = field(default_factory=dict)
    sent: int = 0
    duplicates: int = 0

    def error_rate(self, flow_id: str) -> float | None:
        done = sum(n for (f, _), n in self.ended.items() if f == flow_id)
        return self.ended[(flow_id, "failed")] / done if done else None

    def as_json(self) -> dict:
        flows = {}
        for fid, name in sorted(self.flow_names.items()):
            flows[fid] = {
                "flow_name": name,
                "events": {t: n for (f, t), n in sorted(self.events.items()) if f == fid},
                "failures": {t: n for (f, t), n in sorted(self.failures.items()) if f == fid},
                "error_rate": self.error_rate(fid),
                "steps": self.steps[fid],
                "chains": {f"{s}/{'had_failures' if h else 'clean'}": n
                           for (r, s, h), n in sorted(self.chains.items()) if r == fid},
            }
        return {"sent": self.sent, "duplicates": self.duplicates, "flows": flows}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Simulator:
    """Generates chains; `chain()` returns the events of one chain in delivery order (shuffled, duplicated)."""

    def __init__(self, seed: int = 1, flows: int = 20, helpers: int = 5, dup_rate: float = 0.05,
                 shuffle: bool = True):
        self.rng = random.Random(seed)
        self.roots = [(f"{100000 + i}", f"Root flow {i}") for i in range(flows)]
        self.helpers = [(f"{900000 + i}", f"Helper flow {i} ") for i in range(helpers)]  # trailing space, as in docs
        self.dup_rate = dup_rate
        self.shuffle = shuffle
        self.expected = Expected()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _event(self, kind: str, ts: int, flow: tuple[str, str], ex: str, parent=None, root=None, **extra) -> dict:
        ev = {"event_type": kind, "execution_id": ex, "timestamp": iso(ts), "flow_id": flow[0],
              "flow_name": flow[1], **ORG, "user_email": "hashed", "folder_id_path": "", "folder_id": "",
              "engine_mode": "realtime", "idempotency_key": self.rng.getrandbits(128).to_bytes(16, "big").hex(),
              "throttled": self.rng.choice([False, "false"])}
        if parent:
            ev.update({"parent_execution_id": parent[0], "parent_flow_id": parent[1][0],
                       "parent_flow_name": parent[1][1], "root_execution_id": root[0], "root_flow_id": root[1][0],
                       "root_flow_name": root[1][1]})
        ev.update(extra)
        self.expected.flow_names[flow[0]] = flow[1].strip()
        self.expected.events[(flow[0], kind.lower())] += 1
        return ev

    def _execution(self, t0: int, flow, ex, parent, root, outcome: str) -> tuple[list[dict], int]:
        """Start (+ maybe throttle/rate limit) + end of one execution; returns events and end time."""
        evs = [self._event("FLOW_START", t0, flow, ex, parent, root, depth=1 if parent is None else 2,
                           address="root:kernel:control:0.0.1:callable")]
        r = self.rng.random()
        if r < 0.05:
            evs.append(self._event("FLOW_THROTTLE", t0 + 5, flow, ex, parent, root,
                                   throttling_type="execution", throttling_level="org"))
        elif r < 0.10:
            evs.append(self._event("FLOW_RATE_LIMIT", t0 + 5, flow, ex, parent, root, hostname="api.example.com",
                                   status_code="429", backoff_duration="30"))
        elif r < 0.13:  # a Pause card (or a wait for an approval) suspends the execution for a while
            evs.append(self._event("FLOW_PAUSE", t0 + 5, flow, ex, parent, root))
        duration = int(self.rng.lognormvariate(5, 1)) + 1
        steps = self.rng.randint(1, 60)
        end = t0 + duration
        kind = {"completed": "FLOW_COMPLETE", "failed": "FLOW_FAIL", "canceled": "FLOW_CANCEL"}[outcome]
        extra = {"duration": self.rng.choice([duration, str(duration)]), "step_count": steps,
                 "address": "root:kernel:control:0.0.1:return"}
        if outcome == "failed":
            etype, code, msg = self.rng.choice(ERRORS)
            extra.update(error_type=etype, error_code=code, error_message=msg, fatal="TRUE", retry_policy="none")
            self.expected.failures[(flow[0], etype)] += 1
        evs.append(self._event(kind, end, flow, ex, parent, root, **extra))
        self.expected.ended[(flow[0], outcome)] += 1
        self.expected.steps[flow[0]] += steps
        self.expected.durations[flow[0]].append(duration)
        return evs, end

    def chain(self, t0: int) -> list[dict]:
        rng = self.rng
        root_flow = rng.choice(self.roots)
        root_ex = self._uuid()
        root = (root_ex, root_flow)
        events: list[dict] = []
        had_failures = False
        t = t0 + rng.randint(1, 50)
        n_helpers = rng.choice([0, 0, 1, 1, 2])
        helper_events = []
        for _ in range(n_helpers):
            h_outcome = rng.choices(["completed", "failed"], [0.9, 0.1])[0]
            had_failures |= h_outcome == "failed"
            evs, t = self._execution(t + 2, rng.choice(self.helpers), self._uuid(), root, root, h_outcome)
            helper_events += evs
        root_outcome = rng.choices(["completed", "failed", "canceled"], [0.85, 0.1, 0.05])[0]
        had_failures |= root_outcome == "failed"
        start = self._event("FLOW_START", t0, root_flow, root_ex, depth=1, address="root:kernel:string:0.0.1:compose")
        evs, _end = self._execution_end_only(t + 3, root_flow, root_ex, root_outcome, t0)
        events = [start, *helper_events, *evs]
        self.expected.chains[(root_flow[0], root_outcome, had_failures)] += 1
        if self.shuffle and rng.random() < 0.3:
            rng.shuffle(events)
        out = []
        for ev in events:
            out.append(ev)
            if rng.random() < self.dup_rate:
                out.append(dict(ev))
                self.expected.duplicates += 1
        self.expected.sent += len(out)
        return out

    def _execution_end_only(self, end: int, flow, ex, outcome: str, start: int) -> tuple[list[dict], int]:
        kind = {"completed": "FLOW_COMPLETE", "failed": "FLOW_FAIL", "canceled": "FLOW_CANCEL"}[outcome]
        steps = self.rng.randint(1, 120)
        duration = end - start
        extra = {"duration": duration, "step_count": str(steps), "address": "root:kernel:control:0.0.1:return"}
        if outcome == "failed":
            etype, code, msg = self.rng.choice(ERRORS)
            extra.update(error_type=etype, error_code=code, error_message=msg, fatal="TRUE")
            self.expected.failures[(flow[0], etype)] += 1
        ev = self._event(kind, end, flow, ex, **extra)
        self.expected.ended[(flow[0], outcome)] += 1
        self.expected.steps[flow[0]] += steps
        self.expected.durations[flow[0]].append(duration)
        return [ev], end

    def workload(self, chains: int, start_ms: int, spread_ms: int) -> list[dict]:
        """`chains` chains starting uniformly over [start_ms, start_ms + spread_ms)."""
        out = []
        for _ in range(chains):
            out.extend(self.chain(start_ms + self.rng.randrange(max(spread_ms, 1))))
        return out


async def produce_events(bootstrap: str, topic: str, events: list[dict], linger_ms: int = 5,
                         max_batch_size: int = 16384, security: KafkaSecurity | None = None) -> None:
    """Write events straight to the raw topic the way ingest does (key = chain root, same headers); Kafka
    security from `security`, else from the environment's settings."""
    import asyncio
    import time

    from aiokafka import AIOKafkaProducer

    from common.kafka import client_kwargs
    from ingest.envelope import event_key

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                                max_batch_size=max_batch_size, **client_kwargs(security))
    await producer.start()
    try:
        now = str(int(time.time() * 1000)).encode()
        futures = []
        for ev in events:
            headers = [("received_at", now), ("idempotency_key", ev["idempotency_key"].encode())]
            futures.append(await producer.send(topic, orjson.dumps(ev), key=event_key(ev), headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
