"""`els simulate`: the generated traffic (els/traffic.py) posted to an ingest URL in every body shape Okta and
its custom event bodies produce, with retries, pacing and a progress line."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import orjson

from els.traffic import Simulator

# -- delivery over HTTP (`els simulate`) ---------------------------------------------------------------------
# What each non-2xx answer means, in the summary's words.
_CAUSES: dict[int | str, str] = {
    400: "nothing usable in the body; it is in the dead-letter topic",
    401: "the secret is not one ingest accepts: ELS_AUTH_TOKENS, or var/ingest-secret under els up",
    413: "body larger than ingest's ELS_MAX_BODY_BYTES",
    429: "rate limited",
    503: "Kafka did not acknowledge in time",
    "conn": "no answer: nothing listens at the URL, or the connection broke",
}


def nothing_listens(url: str, timeout: float = 3.0) -> str | None:
    """Why the URL cannot be reached at all (refused, unresolvable, no answer within `timeout`), in one line; None
    when something accepts a TCP connection there. Checked once before sending, so a wrong URL fails at once
    instead of after every body's retries."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url {url!r} is not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return (f"nothing answers at {parts.hostname}:{port} ({exc.strerror or exc}): start ingest "
                "(make up, or els ingest) or point --url (ELS_SIMULATE_URL) at it")


def seed_for_run(seed: int | None) -> int:
    """The seed given, or a fresh one: a second run must not repeat the first (ingest would deduplicate it)."""
    return seed if seed is not None else random.SystemRandom().randrange(1, 1 << 31)


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
        non2xx = ", ".join(f"{k} ({_CAUSES.get(k, 'see ingest log')}): {v}"
                           for k, v in sorted(self.statuses.items(), key=str)) or "none"
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
    seed: int = 1                    # cmd_simulate passes a fresh one unless --seed is given
    flows: int = 20
    helpers: int = 5
    duplicates: float = 0.05
    late: float = 0.05               # fraction of events held back and delivered after the next chain
    concurrency: int = 8
    retries: int = 8
    progress: bool = False


class _Poster:
    """Posts bodies to ingest in the background, at most `concurrency` at a time, retrying what may pass later.

    A 503 (or 429, 5xx, no answer) is retried, honouring Retry-After; any other non-2xx, or retries running out,
    leaves the body's events refused.
    """

    def __init__(self, opts: SimulateOptions, session, result: Delivery):
        import asyncio

        self.opts = opts
        self.session = session
        self.result = result
        self.headers = {"Content-Type": "application/json"}
        if opts.token:
            auth = opts.header.lower() == "authorization"
            self.headers[opts.header] = f"Bearer {opts.token}" if auth else opts.token
        self._slots = asyncio.Semaphore(opts.concurrency)
        self._pending: set[asyncio.Task] = set()

    async def submit(self, shape: str, body: bytes, extra: dict, n: int) -> None:
        import asyncio

        await self._slots.acquire()
        self.result.bodies += 1
        self.result.events += n
        self.result.shapes[shape] += 1
        task = asyncio.create_task(self._post(body, extra, n))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        import asyncio

        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def _post(self, body: bytes, extra: dict, n: int) -> None:
        import asyncio

        result = self.result
        try:
            for attempt in range(self.opts.retries + 1):
                status, wait = await self._attempt(body, extra, n)
                if status == 0:
                    return
                result.statuses[status if status is not None else "conn"] += 1
                if status is not None and status not in (408, 429) and status < 500:
                    break  # 400/401/413...: this body will never be accepted
                if attempt < self.opts.retries:
                    result.retries += 1
                    await asyncio.sleep(wait if wait is not None else min(0.2 * 2 ** attempt, 10.0))
            result.refused += n
        finally:
            self._slots.release()

    async def _attempt(self, body: bytes, extra: dict, n: int) -> tuple[int | None, float | None]:
        """One POST: (0, None) once accepted; else the status (None: no answer) and Retry-After."""
        import aiohttp

        try:
            async with self.session.post(self.opts.url, data=body, headers={**self.headers, **extra}) as r:
                if 200 <= r.status < 300:
                    answer = await r.json(content_type=None)
                    ok = isinstance(answer, dict)
                    self.result.accepted += int(answer.get("accepted", n)) if ok else n
                    self.result.rejected += int(answer.get("rejected", 0)) if ok else 0
                    return 0, None
                await r.read()
                return r.status, _retry_after(r.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None, None


class _Progress:
    """The one-line progress report on stderr."""

    def __init__(self, opts: SimulateOptions, result: Delivery, out, started: float):
        self.opts, self.result, self.out, self.started = opts, result, out, started
        self._last = 0.0

    def maybe(self, now: float) -> None:
        if self.opts.progress and now - self._last > 0.5:
            self._last = now
            self.write(now)

    def write(self, now: float, final: bool = False) -> None:
        opts, result = self.opts, self.result
        elapsed = now - self.started
        goal = f"/{opts.count}" if opts.count else (f" ({elapsed:.0f}/{opts.duration:.0f}s)" if opts.duration else "")
        bad = sum(result.statuses.values())
        self.out.write(f"\rsimulate: {result.events}{goal} events, {result.events / max(elapsed, 1e-9):.0f}/s, "
                       f"non-2xx {bad}, refused {result.refused}   " + ("\n" if final else ""))
        self.out.flush()


async def simulate(opts: SimulateOptions, out=None) -> tuple[Simulator, Delivery, float]:
    """Generate chains and POST them to an ingest URL; returns the generator (its `expected`), the outcome, seconds.

    Chains are generated as time goes (timestamps are the wall clock), so a long run at a rate looks like live
    traffic. Ordering is disturbed three ways: events shuffled within a chain, some events held back until
    after the next chain, and concurrent requests.
    """
    import asyncio
    import sys

    import aiohttp

    sim = Simulator(seed=opts.seed, flows=opts.flows, helpers=opts.helpers, dup_rate=opts.duplicates)
    result = Delivery()
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    progress = _Progress(opts, result, out or sys.stderr, t_start)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        poster = _Poster(opts, session, result)
        await _generate(opts, sim, poster, progress)
        await poster.drain()
    if opts.progress:
        progress.write(loop.time(), final=True)
    return sim, result, loop.time() - t_start


async def _generate(opts: SimulateOptions, sim: Simulator, poster: _Poster, progress: _Progress) -> None:
    """Chains until the count or duration is reached, paced to the rate; held-back events go last."""
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    shape_rng = random.Random(opts.seed * 7919 + 1)
    scheduled = 0
    deferred: list[dict] = []
    while True:
        if opts.count is not None and sim.expected.sent >= opts.count:
            break
        if opts.duration is not None and loop.time() - progress.started >= opts.duration:
            break
        keep, held = [], []
        for e in sim.chain(int(time.time() * 1000)):
            (held if shape_rng.random() < opts.late else keep).append(e)
        events, deferred = deferred + keep, held
        for shape, body, extra, n in shape_bodies(events, shape_rng):
            if opts.rate:
                delay = progress.started + scheduled / opts.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            scheduled += n
            await poster.submit(shape, body, extra, n)
        progress.maybe(loop.time())
    for shape, body, extra, n in shape_bodies(deferred, shape_rng):
        await poster.submit(shape, body, extra, n)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds; an HTTP date is not worth parsing here), capped."""
    try:
        return min(max(float(value), 0.0), 60.0) if value else None
    except ValueError:
        return None
