"""Asking every worker for its part: who owns each partition, and what each owner answered.

At each rebalance Faust's assignor tells every worker which worker (by its web URL, Faust's canonical URL)
actively owns each partition of every topic: `app.router.external_topics_metadata()`. A cluster-wide view asks
each owner, over HTTP with a short timeout, for exactly the partitions it is named for (so no partition is
counted twice while a rebalance moves them), and reports every partition: its owner, and whether that owner
answered for it. A partition without an owner, whose owner did not answer, or whose owner no longer holds it is
listed as such, never silently missing. The worker serving the request answers for itself without HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass

import aiohttp
from yarl import URL

PEER_TIMEOUT_S = 3.0  # how long a cluster view waits for another worker before showing it as not answering


@dataclass
class Answer:
    """One worker's answer for the partitions it was asked for (body None: it did not answer; error says why)."""

    url: str
    asked: list[int]
    body: dict | None
    error: str | None = None


@dataclass
class PartitionState:
    partition: int
    owner: str | None
    answered: bool
    error: str | None = None

    def as_json(self) -> dict:
        return asdict(self)


Local = Callable[[list[int]], dict]
Remote = Callable[[str, list[int]], Awaitable[dict]]


def owners_of(metadata: Mapping[str, Mapping[str, list[int]]], topic: str, count: int) -> dict[int, str | None]:
    """{partition: owner URL or None} for partitions 0..count-1 of `topic`, from Faust's host -> partitions map."""
    owners: dict[int, str | None] = dict.fromkeys(range(count))
    for url, topics in (metadata or {}).items():
        for p in (topics or {}).get(topic, ()):
            if 0 <= p < count:
                owners[p] = str(url)
    return owners


def same_worker(a: str, b: str) -> bool:
    ua, ub = URL(a), URL(b)
    return (ua.host, ua.port) == (ub.host, ub.port)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {PEER_TIMEOUT_S:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    text = str(exc) or type(exc).__name__
    return text[:300]


async def ask_owners(owners: dict[int, str | None], self_url: str, local: Local, remote: Remote,
                     accept: Callable[[str, dict], None] | None = None) -> tuple[list[Answer], list[PartitionState]]:
    """Ask every owner, concurrently, for its partitions; return the answers and every partition's state.

    `accept(url, body)` takes in each answer and raises when it cannot read it (another version of the worker, say):
    such an answer counts as no answer, so its partitions are shown as not answering rather than as empty.
    """
    by_url: dict[str, list[int]] = {}
    for p, url in sorted(owners.items()):
        if url is not None:
            by_url.setdefault(url, []).append(p)

    async def one(url: str, asked: list[int]) -> Answer:
        try:
            body = local(asked) if same_worker(url, self_url) else await remote(url, asked)
            if not isinstance(body, dict) or not isinstance(body.get("partitions"), list):
                return Answer(url, asked, None, "answered without a partition list")
        except Exception as exc:  # noqa: BLE001 - any failure of a peer is shown as that peer not answering
            return Answer(url, asked, None, describe(exc))
        try:
            if accept is not None:
                accept(url, body)
            return Answer(url, asked, body)
        except Exception as exc:  # noqa: BLE001 - an answer this worker cannot read is no answer
            return Answer(url, asked, None, f"unreadable answer ({type(exc).__name__}: {describe(exc)})")

    answers = list(await asyncio.gather(*(one(url, asked) for url, asked in by_url.items())))
    return answers, partition_states(owners, answers)


def partition_states(owners: dict[int, str | None], answers: list[Answer]) -> list[PartitionState]:
    by_url = {a.url: a for a in answers}
    states = []
    for p, url in sorted(owners.items()):
        if url is None:
            states.append(PartitionState(p, None, False, "no owner yet (starting, or a rebalance is under way)"))
            continue
        a = by_url[url]
        if a.body is None:
            states.append(PartitionState(p, url, False, a.error))
        elif p in a.body["partitions"]:
            states.append(PartitionState(p, url, True))
        else:
            states.append(PartitionState(p, url, False, "its owner no longer holds it (a rebalance is under way)"))
    return states


async def fetch_json(session: aiohttp.ClientSession, base_url: str, path: str, params: dict[str, str]) -> dict:
    """GET another worker's local view; raises on anything but a 200 with JSON."""
    url = URL(base_url).with_path(path).with_query(params)
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
    async with session.get(url, timeout=timeout) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} from {path}")
        return await r.json(content_type=None)


def partitions_param(asked: list[int]) -> str:
    return ",".join(str(p) for p in asked)


def parse_partitions(value: str | None) -> list[int] | None:
    """The `partitions` query parameter ("0,3"); None when absent. Raises ValueError when malformed."""
    if value is None:
        return None
    return [int(p) for p in value.split(",") if p.strip()]
