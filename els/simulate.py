"""Realistic ELS traffic with known answers: chains of root and helper flows, and the totals they must produce.

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


# -- delivery over HTTP (`els simulate`) ---------------------------------------------------------------------
@dataclass
class Delivery:
    """What happened to the bodies posted: the answers, and how many events were finally refused."""

    bodies: int = 0
    events: int = 0
    accepted: int = 0
    rejected: int = 0           # items ingest answered 202 for but dead-lettered
    refused: int = 0            # events in bodies that never got a 2xx
    retries: int = 0
    statuses: Counter = field(default_factory=Counter)  # every non-2xx answer, "conn" for no answer
    shapes: Counter = field(default_factory=Counter)

    def summary(self, elapsed_s: float) -> str:
        rate = self.events / elapsed_s if elapsed_s > 0 else 0.0
        non2xx = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=str)) or "none"
        shapes = ", ".join(f"{k} {v}" for k, v in sorted(self.shapes.items()))
        return (f"sent {self.events} events in {self.bodies} bodies in {elapsed_s:.1f}s ({rate:.0f} events/s); "
                f"accepted {self.accepted}, rejected {self.rejected}, finally refused {self.refused}; "
                f"non-2xx answers: {non2xx}; retries {self.retries}\nbodies: {shapes}")


def shape_bodies(events: list[dict], rng: random.Random) -> list[tuple[str, bytes, dict[str, str], int]]:
    """Split events into request bodies the way ELS and custom event hooks deliver them.

    Returns (shape, body, headers, events in it). Shapes: one plain event (the common case), a JSON array,
    NDJSON, `{"event": ...}`, a Datadog-style `{"message": "<event as a JSON string>", "ddsource": ...}`, and
    now and then a gzip-compressed array.
    """
    import gzip

    out = []
    i = 0
    while i < len(events):
        r = rng.random()
        if r < 0.55:
            out.append(("event", orjson.dumps(events[i]), {}, 1))
            i += 1
        elif r < 0.75:
            n = rng.randint(2, 10)
            batch = events[i:i + n]
            out.append(("array", orjson.dumps(batch), {}, len(batch)))
            i += len(batch)
        elif r < 0.82:
            n = rng.randint(2, 6)
            batch = events[i:i + n]
            out.append(("ndjson", b"\n".join(orjson.dumps(e) for e in batch) + b"\n",
                        {"Content-Type": "application/x-ndjson"}, len(batch)))
            i += len(batch)
        elif r < 0.90:
            out.append(("wrapped", orjson.dumps({"event": events[i]}), {}, 1))
            i += 1
        elif r < 0.97:
            body = {"message": orjson.dumps(events[i]).decode(), "ddsource": "okta-workflows",
                    "service": "okta-workflows", "hostname": events[i].get("org_hostname", "")}
            out.append(("datadog", orjson.dumps(body), {}, 1))
            i += 1
        else:
            n = rng.randint(2, 10)
            batch = events[i:i + n]
            out.append(("gzip", gzip.compress(orjson.dumps(batch)), {"Content-Encoding": "gzip"}, len(batch)))
            i += len(batch)
    return out


@dataclass
class SimulateOptions:
    url: str = "http://127.0.0.1:8080/v1/events"
    token: str | None = None
    header: str = "Authorization"
    rate: float | None = None        # events/s; None: as fast as the concurrency allows
    count: int | None = None         # stop after the chain that reaches this many events
    duration: float | None = None    # or after this many seconds
    seed: int = 1
    flows: int = 20
    helpers: int = 5
    duplicates: float = 0.05
    late: float = 0.05               # fraction of events held back and delivered after the next chain
    concurrency: int = 8
    retries: int = 8
    progress: bool = False


async def simulate(opts: SimulateOptions, out=None) -> tuple[Simulator, Delivery, float]:
    """Generate chains and POST them to an ingest URL; returns the generator (its `expected`), the outcome, seconds.

    Chains are generated as time goes (timestamps are the wall clock), so a long run at a rate looks like live
    traffic. Ordering is disturbed three ways: events shuffled within a chain, some events held back until
    after the next chain, and concurrent requests. A 503 (or 429, 5xx, no answer) is retried, honouring
    Retry-After; any other non-2xx, or retries running out, leaves the body's events refused.
    """
    import asyncio
    import sys
    import time

    import aiohttp

    out = out or sys.stderr
    sim = Simulator(seed=opts.seed, flows=opts.flows, helpers=opts.helpers, dup_rate=opts.duplicates)
    shape_rng = random.Random(opts.seed * 7919 + 1)
    result = Delivery()
    headers = {"Content-Type": "application/json"}
    if opts.token:
        headers[opts.header] = f"Bearer {opts.token}" if opts.header.lower() == "authorization" else opts.token
    sem = asyncio.Semaphore(opts.concurrency)
    pending: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    scheduled = 0

    async def post(session: aiohttp.ClientSession, shape: str, body: bytes, extra: dict, n: int) -> None:
        try:
            for attempt in range(opts.retries + 1):
                status, wait = None, None
                try:
                    async with session.post(opts.url, data=body, headers={**headers, **extra}) as r:
                        status = r.status
                        if 200 <= status < 300:
                            answer = await r.json(content_type=None)
                            result.accepted += int(answer.get("accepted", n)) if isinstance(answer, dict) else n
                            result.rejected += int(answer.get("rejected", 0)) if isinstance(answer, dict) else 0
                            return
                        await r.read()
                        wait = _retry_after(r.headers.get("Retry-After"))
                except (aiohttp.ClientError, TimeoutError, OSError):
                    pass
                result.statuses[status if status is not None else "conn"] += 1
                if status is not None and status not in (408, 429) and status < 500:
                    break  # 400/401/413...: this body will never be accepted
                if attempt < opts.retries:
                    result.retries += 1
                    await asyncio.sleep(wait if wait is not None else min(0.2 * 2 ** attempt, 10.0))
            result.refused += n
        finally:
            sem.release()

    def progress(final: bool = False) -> None:
        elapsed = loop.time() - t_start
        goal = f"/{opts.count}" if opts.count else (f" ({elapsed:.0f}/{opts.duration:.0f}s)" if opts.duration else "")
        bad = sum(result.statuses.values())
        out.write(f"\rsimulate: {result.events}{goal} events, {result.events / max(elapsed, 1e-9):.0f}/s, "
                  f"non-2xx {bad}, refused {result.refused}   " + ("\n" if final else ""))
        out.flush()

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def submit(shape: str, body: bytes, extra: dict, n: int) -> None:
            """Post one body in the background, at most opts.concurrency at a time."""
            await sem.acquire()
            result.bodies += 1
            result.events += n
            result.shapes[shape] += 1
            task = asyncio.create_task(post(session, shape, body, extra, n))
            pending.add(task)
            task.add_done_callback(pending.discard)

        deferred: list[dict] = []
        last_progress = 0.0
        while True:
            now = loop.time()
            if opts.count is not None and sim.expected.sent >= opts.count:
                break
            if opts.duration is not None and now - t_start >= opts.duration:
                break
            events = sim.chain(int(time.time() * 1000))
            keep, held = [], []
            for e in events:
                (held if shape_rng.random() < opts.late else keep).append(e)
            events, deferred = deferred + keep, held
            for shape, body, extra, n in shape_bodies(events, shape_rng):
                if opts.rate:
                    delay = t_start + scheduled / opts.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                scheduled += n
                await submit(shape, body, extra, n)
            if opts.progress and loop.time() - last_progress > 0.5:
                last_progress = loop.time()
                progress()
        for shape, body, extra, n in shape_bodies(deferred, shape_rng):
            await submit(shape, body, extra, n)
        while pending:
            await asyncio.gather(*list(pending))
    if opts.progress:
        progress(final=True)
    return sim, result, loop.time() - t_start


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds; an HTTP date is not worth parsing here), capped."""
    try:
        return min(max(float(value), 0.0), 60.0) if value else None
    except ValueError:
        return None
