"""Asking every partition's owner (processor/web/cluster.py): owners from Faust's metadata, answers, and every
partition's state, also when an owner does not answer, answers late, or no longer holds what it was asked for.
The peers here are real HTTP servers (aiohttp) where the transport matters."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from els.broker import free_port
from processor.web import cluster
from processor.web.cluster import Answer, ask_owners, owners_of, partition_states
from tests.helpers.http import serving

ME = "http://worker-a:6066"
PEER = "http://worker-b:6067"


def test_owners_come_from_faust_host_to_partitions_map_and_gaps_have_none():
    metadata = {ME: {"raw": [0, 2], "out": [1]}, PEER: {"raw": [1], "out": [0, 2, 3]}}
    assert owners_of(metadata, "raw", 4) == {0: ME, 1: PEER, 2: ME, 3: None}
    assert owners_of(metadata, "out", 4) == {0: PEER, 1: ME, 2: PEER, 3: PEER}
    assert owners_of({}, "raw", 2) == {0: None, 1: None}
    assert owners_of({ME: {"raw": [9]}}, "raw", 2) == {0: None, 1: None}  # out of range: ignored


async def test_every_partition_is_reported_answered_or_not():
    owners = {0: ME, 1: PEER, 2: ME, 3: None, 4: "http://worker-c:1"}
    asked_of: dict[str, list[int]] = {}

    def local(asked):
        asked_of[ME] = asked
        return {"partitions": asked, "n": 1}

    async def remote(url, asked):
        asked_of[url] = asked
        if url == PEER:
            return {"partitions": [], "n": 2}  # it no longer holds partition 1
        raise aiohttp.ClientConnectionError("Cannot connect to host worker-c:1")

    answers, states = await ask_owners(owners, "http://worker-a:6066/", local, remote)
    assert asked_of == {ME: [0, 2], PEER: [1], "http://worker-c:1": [4]}
    assert [s.partition for s in states] == [0, 1, 2, 3, 4]
    by = {s.partition: s for s in states}
    assert by[0].answered and by[2].answered and by[0].owner == ME and by[0].error is None
    assert not by[1].answered and "no longer holds" in by[1].error
    assert not by[3].answered and by[3].owner is None and "no owner" in by[3].error
    assert not by[4].answered and "Cannot connect" in by[4].error
    assert {a.url: a.body is not None for a in answers} == {ME: True, PEER: True, "http://worker-c:1": False}


def test_a_malformed_answer_is_not_an_answer():
    states = partition_states({0: PEER}, [Answer(PEER, [0], None, "answered without a partition list")])
    assert states[0].as_json() == {"partition": 0, "owner": PEER, "answered": False,
                                   "error": "answered without a partition list"}


async def test_a_real_peer_that_answers_one_that_is_slow_and_one_that_is_gone(monkeypatch):
    monkeypatch.setattr(cluster, "PEER_TIMEOUT_S", 0.5)

    async def fast(request):
        asked = cluster.parse_partitions(request.query["partitions"])
        return web.json_response({"partitions": asked, "seen": dict(request.query)})

    async def slow(request):
        await asyncio.sleep(2)
        return web.json_response({"partitions": [1]})

    async with serving({"/fast": fast, "/slow": slow}) as base:
        gone = f"http://127.0.0.1:{free_port()}"
        async with aiohttp.ClientSession() as session:
            body = await cluster.fetch_json(session, base, "/fast", {"prefix": "3|flow:", "partitions": "0,2"})
            assert body == {"partitions": [0, 2], "seen": {"prefix": "3|flow:", "partitions": "0,2"}}
            for path, error in (("/slow", "no answer within 0.5 s"), ("/missing", "HTTP 404")):
                try:
                    await cluster.fetch_json(session, base, path, {})
                    raise AssertionError("no error")
                except Exception as exc:  # noqa: BLE001
                    assert error in cluster.describe(exc)

            async def remote(url, asked):
                return await cluster.fetch_json(session, url, "/fast", {"partitions": cluster.partitions_param(asked)})

            _answers, states = await ask_owners({0: base, 1: gone}, ME, lambda asked: {}, remote)
            assert [(s.partition, s.answered) for s in states] == [(0, True), (1, False)]
            assert states[1].owner == gone and states[1].error


def test_partitions_parameter():
    assert cluster.parse_partitions(None) is None
    assert cluster.parse_partitions("") == []
    assert cluster.parse_partitions("0,3") == [0, 3]
    assert cluster.partitions_param([0, 3]) == "0,3"
    try:
        cluster.parse_partitions("a")
        raise AssertionError("no error")
    except ValueError:
        pass
    assert cluster.same_worker("http://h:1", "http://h:1/") and not cluster.same_worker("http://h:1", "http://h:2")


async def test_an_answer_that_cannot_be_read_counts_as_no_answer():
    """A worker of another version, say: its partitions are shown as not answering, not as empty."""
    taken = []

    def accept(url, body):
        if "bad" in body:
            raise KeyError("groups")
        taken.append(url)

    async def remote(url, asked):
        return {"partitions": asked, "bad": True}

    answers, states = await ask_owners({0: ME, 1: PEER}, ME, lambda asked: {"partitions": asked}, remote, accept)
    assert taken == [ME]
    assert [(s.partition, s.answered) for s in states] == [(0, True), (1, False)]
    assert states[1].error.startswith("unreadable answer (KeyError")
