"""Live traffic and event-to-Datadog freshness, for the delivery and memory benches.

Live traffic: events are written to the raw topic when their timestamp comes (Okta sends events as they
happen), keyed and headed the way ingest writes them, and each event's acknowledgement time is kept.

Freshness of an event: from Kafka's acknowledgement (the moment ingest would answer 202) to the moment the fake
Datadog first holds a value that counts it. The k-th accepted event of a series (flow_id, event_type, window)
is visible once the fake stores a value >= k for that series at that window's timestamp; the fake records
when every stored value arrived (StoredPoint.received_at), and polling it faster than the flush interval sees
every value the series takes.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict
from datetime import datetime

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from common.kafka import client_kwargs
from els.traffic import Simulator
from ingest.envelope import event_key

METRIC = "okta.workflows.events"


def event_ms(ev: dict) -> int:
    return int(datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


def live_workload(sim: Simulator, n: int, start_ms: int, seconds: float) -> list[dict]:
    """Whole chains starting uniformly over [start_ms, start_ms + seconds) until there are at least n events,
    all of them returned (so the generator's expected totals are exactly what is sent), in timestamp order."""
    events: list[dict] = []
    spread = max(int(seconds * 1000), 1)
    while len(events) < n:
        events += sim.chain(start_ms + sim.rng.randrange(spread))
    return sorted(events, key=event_ms)  # stable: a duplicate stays right after its original


async def feed_live(bootstrap: str, topic: str, events: list[dict], on_ack=None, tick: float = 0.05) -> float:
    """Write each event once its timestamp has come (events in timestamp order); on_ack(event, time.time())
    when Kafka acknowledged it. Returns the largest lag of a write behind its event's timestamp (seconds)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client_kwargs())
    await producer.start()
    lag = 0.0
    try:
        pending = []
        i = 0
        while i < len(events):
            now_ms = time.time() * 1000
            j = i
            while j < len(events) and event_ms(events[j]) <= now_ms:
                j += 1
            if j == i:
                await asyncio.sleep(min(tick, max((event_ms(events[i]) - now_ms) / 1000, 0.001)))
                continue
            received = str(int(now_ms)).encode()
            for ev in events[i:j]:
                lag = max(lag, (now_ms - event_ms(ev)) / 1000)
                fut = await producer.send(topic, orjson.dumps(ev), key=event_key(ev),
                                          headers=[("received_at", received),
                                                   ("idempotency_key", ev["idempotency_key"].encode())])
                if on_ack is not None:
                    fut.add_done_callback(lambda f, ev=ev: not f.cancelled() and f.exception() is None and on_ack(ev, time.time()))
                pending.append(fut)
            i = j
            pending = [f for f in pending if not f.done()]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return lag


async def wait_assigned(proc: subprocess.Popen, port: int, partitions: int, timeout: float = 180) -> None:
    """Until the worker owns every raw partition (its status page says so), so fed events do not wait for it."""
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the worker exited; see its log in var/")
            try:
                async with s.get(f"http://127.0.0.1:{port}/els/status.json") as r:
                    if sum(bool(p.get("answered")) for p in (await r.json()).get("partitions") or ()) >= partitions:
                        return
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("the worker was not assigned its partitions")


class Freshness:
    """Accept times per series, values seen at the fake per series; freshness per event from both."""

    def __init__(self, window_seconds: int, metric: str = METRIC):
        self.window_ms = window_seconds * 1000
        self.metric = metric
        self._seen_keys: set[str] = set()
        self.accepted: dict[tuple, list[float]] = defaultdict(list)  # (flow_id, event_type, ts s) -> ack times
        self.values: dict[tuple, list[tuple[float, float]]] = defaultdict(list)  # -> [(value, received_at)]

    def on_ack(self, ev: dict, at: float) -> None:
        """Called with events in send order per key; a repeated idempotency_key is a duplicate the processor
        drops, so it is no event of its series."""
        if ev["idempotency_key"] in self._seen_keys:
            return
        self._seen_keys.add(ev["idempotency_key"])
        ms = event_ms(ev)
        self.accepted[(ev["flow_id"], ev["event_type"].lower(), (ms - ms % self.window_ms) // 1000)].append(at)

    def observe(self, dd) -> None:
        for p in dd.stored_points(self.metric):
            tags = dict(t.split(":", 1) for t in p.tags if ":" in t)
            key = (tags.get("flow_id"), tags.get("event_type"), p.timestamp)
            seen = self.values[key]
            if not seen or p.value > seen[-1][0]:
                seen.append((p.value, p.received_at))

    async def watch(self, dd, interval: float = 0.2) -> None:
        """Poll the fake until cancelled (a value replaced within one interval would be seen late, never early;
        the sink re-sends a series at most once per flush)."""
        while True:
            self.observe(dd)
            await asyncio.sleep(interval)

    def delays(self) -> tuple[list[float], int]:
        """Seconds from acknowledgement to visibility for every visible event, and how many never became visible."""
        out: list[float] = []
        unseen = 0
        for key, acks in self.accepted.items():
            steps = self.values.get(key, [])
            for k, acked in enumerate(sorted(acks), start=1):
                at = next((t for v, t in steps if v >= k), None)
                if at is None:
                    unseen += 1
                else:
                    out.append(at - acked)
        return out, unseen

    def result(self) -> dict:
        d, unseen = self.delays()
        d.sort()

        def pct(q: float) -> float | None:
            return round(d[min(len(d) - 1, int(q * len(d)))], 2) if d else None

        return {"freshness_p50_s": pct(0.50), "freshness_p95_s": pct(0.95), "freshness_max_s": pct(1.0),
                "freshness_events": len(d), "freshness_never_visible": unseen}
