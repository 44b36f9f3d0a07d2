"""One status page for the cluster, and table inspection, with two real workers sharing four raw partitions.

Each worker owns some partitions; either worker's /els/status.json and /els/status/ (in Debian's headless
Chromium) count every event, name every partition's owner, and, once one worker is SIGKILLed, show its partitions
as not answering until the survivor takes them over. The table routes are read the way docs/inspecting.md says:
a flow's window keys by prefix and their values, a chain by its root, Faust's /table/ help.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka.partitioner import murmur2
from yarl import URL

from common.topics import ensure_topics
from els.traffic import produce_events
from processor.core.bag import Bag
from processor.web.tables import TABLE_HELP
from tests.e2e.test_processor_e2e import worker_env
from tests.e2e.test_status_browser import FAILING, Rows, chromium, run_chromium, workload
from tests.helpers.workers import ARTIFACTS, Worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PARTITIONS = 4


async def get(port: int, path: str, params: dict | None = None) -> tuple[int, dict | None]:
    url = URL(f"http://127.0.0.1:{port}{path}").with_query(params or {})
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
            return r.status, await r.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return 0, None


async def wait_for(what: str, check, workers: list[Worker], timeout: float = 180):
    """Poll `check()` (async, truthy when done) until it holds; fail with the workers' logs otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for w in workers:
            assert w.proc.poll() is None, f"worker died:\n{w.output()[-4000:]}"
        last = await check()
        if last:
            return last
        await asyncio.sleep(1)
    pytest.fail(f"{what} never happened\n" + "\n".join(w.output()[-2000:] for w in workers))


def owners(data: dict) -> dict[int, str]:
    return {p["partition"]: p["owner"] for p in data["partitions"] if p["answered"]}


def counted(data: dict) -> dict[str, tuple[int, int]]:
    return {f["flow_id"]: (f["events"], f["failures"]) for f in data["flows"]}


async def test_two_workers_each_page_counts_every_event(kafka_bootstrap, topic_names):
    chromium()
    sim, events = workload()
    exp = sim.expected
    want = {fid: (sum(n for (f, _), n in exp.events.items() if f == fid),
                  sum(n for (f, _), n in exp.failures.items() if f == fid)) for fid in exp.flow_names}
    await ensure_topics(kafka_bootstrap, [topic_names[k] for k in sorted(topic_names)], PARTITIONS)
    env = worker_env(kafka_bootstrap, topic_names)
    workers = [Worker(env, "cluster-a").start(), Worker(env, "cluster-b").start()]
    ports = [w.web_port for w in workers]
    try:
        async def shared():
            found = [(await get(port, "/els/status.json"))[1] for port in ports]
            return found if all(d and len(owners(d)) == PARTITIONS and len(set(owners(d).values())) == 2
                                for d in found) else None
        await wait_for("both workers owning partitions", shared, workers)
        await produce_events(kafka_bootstrap, topic_names["ELS_RAW_TOPIC"], events)

        async def complete():
            found = [(await get(port, "/els/status.json"))[1] for port in ports]
            return found if all(d and counted(d) == want and len(owners(d)) == PARTITIONS for d in found) else None
        datas = await wait_for("every event on both pages", complete, workers)
        for d in datas:
            assert d["totals"]["events"] == sum(exp.events.values())
            assert {f["flow_id"]: f["error_rate"] for f in d["flows"]} == {f: exp.error_rate(f) for f in exp.flow_names}
            assert [p["partition"] for p in d["partitions"]] == list(range(PARTITIONS))
            assert all(set(f) >= {"events", "failures", "error_rate", "p95_ms"} for f in d["flows"])
            assert len(d["workers"]) == 2 and all(w["answered"] for w in d["workers"])
            assert d["worker"]["records"] >= len(events)
        urls = {d["served_by"] for d in datas}
        assert len(urls) == 2 and set(owners(datas[0]).values()) == urls and owners(datas[0]) == owners(datas[1])

        for i, port in enumerate(ports):
            dom = run_chromium(f"http://127.0.0.1:{port}/els/status/", "--dump-dom").stdout
            rows = Rows()
            rows.feed(dom)
            assert {r["data-flow-id"]: (int(r["data-events"]), int(r["data-failures"])) for r in rows.rows} == want
            assert rows.rows[0]["data-flow-id"] == FAILING[0]
            assert f"<b>{PARTITIONS} of {PARTITIONS}</b> raw partitions answered, from <b>2 of 2</b> workers" in dom
            shot = ARTIFACTS / f"status-page-cluster-{'ab'[i]}.png"
            shot.unlink(missing_ok=True)
            run_chromium(f"http://127.0.0.1:{port}/els/status/", f"--screenshot={shot}", "--window-size=1280,1000",
                         "--hide-scrollbars")
            assert shot.exists() and shot.stat().st_size > 10_000

        await check_table_routes(ports, sim, events, owners(datas[0]))
        await check_a_worker_that_does_not_answer(workers, datas, want)
    finally:
        for w in workers:
            w.stop()
        Path(env["ELS_DRY_RUN_FILE"]).unlink(missing_ok=True)


async def check_table_routes(ports: list[int], sim, events: list[dict], owner_of: dict[int, str]) -> None:
    """The docs' way from a flow id to its windows' values, and from a root execution id to its chain."""
    flow_id = FAILING[0]
    want_events = sum(n for (f, _), n in sim.expected.events.items() if f == flow_id)
    for port in ports:
        status, listing = await get(port, "/els/keys/windows/", {"contains": f"|flow:{flow_id}|", "limit": "1000",
                                                                  "values": "1"})
        assert status == 200 and listing["help"] == TABLE_HELP["windows"]
        assert all(p["answered"] for p in listing["partitions"]) and not listing["truncated"]
        keys = listing["keys"]
        assert {k["partition"] for k in keys} == {int(k["key"].split("|")[0]) for k in keys}
        assert all(k["owner"] == owner_of[k["partition"]] for k in keys)
        assert len({k["owner"] for k in keys}) == 2, "the flow's windows are spread over both workers"
        total = Bag()
        for k in keys:
            total.merge(Bag.from_dict(k["value"]["bag"]))
        assert sum(v for c, v in total.counters.items() if c.startswith("events|")) == want_events

        for k in keys:  # every key read back from its owner, whichever worker is asked
            status, one = await get(port, f"/els/table/windows/{k['key']}/")
            assert status == 200 and {f: one[f] for f in k} == k and one["table"] == "windows", (k, status, one)
            assert sum(v for m, v in one["values"].items() if m.startswith("events{")) == sum(
                v for c, v in k["value"]["bag"]["c"].items() if c.startswith("events|"))
        status, missing = await get(port, f"/els/table/windows/{keys[0]['key']}0/")
        assert status == 404 and missing["error"] == "key not found"

        p = keys[0]["partition"]
        status, one_partition = await get(port, "/els/keys/windows/", {"prefix": f"{p}|flow:", "limit": "2"})
        assert status == 200 and len(one_partition["keys"]) == 2 and one_partition["truncated"] is True
        assert all(k["key"].startswith(f"{p}|flow:") and "value" not in k for k in one_partition["keys"])

        root = next(e["execution_id"] for e in events if e["flow_id"] == flow_id)
        p_root = (murmur2(root.encode()) & 0x7FFFFFFF) % PARTITIONS
        status, chains = await get(port, "/els/keys/chains/", {"prefix": root, "values": "1"})
        assert status == 200 and [k["key"] for k in chains["keys"]] == [root]
        assert chains["keys"][0]["partition"] == p_root and chains["keys"][0]["owner"] == owner_of[p_root]
        status, chain = await get(port, f"/els/chains/{root}/")
        assert status == 200 and chain["root"] == root and chain["p"] == p_root
        status, value = await get(port, f"/els/table/chains/{root}/")
        assert status == 200 and value["value"]["root"] == root and value["owner"] == owner_of[p_root]

        status, sink = await get(port, "/els/keys/sink/", {"prefix": f"flow:{flow_id}|"})
        assert status == 200 and sink["matched"] >= 1 and sink["partitions_of"].startswith("out-")

        status, tables = await get(port, "/table/")
        assert status == 200 and {t["name"]: t["help"] for t in tables} == TABLE_HELP
        assert (await get(port, "/els/keys/nope/"))[0] == 404
        assert (await get(port, "/els/keys/windows/", {"limit": "0"}))[0] == 400


async def check_a_worker_that_does_not_answer(workers: list[Worker], datas: list[dict], want: dict) -> None:
    """SIGKILL one worker: the other names its partitions as not answering, then takes them over."""
    survivor, victim = workers
    victim_url = datas[1]["served_by"]
    lost = sorted(p for p, url in owners(datas[0]).items() if url == victim_url)
    victim.kill()
    victim.expected_dead = True
    status, d = await get(survivor.web_port, "/els/status.json")
    assert status == 200
    down = {p["partition"]: p for p in d["partitions"] if not p["answered"]}
    assert sorted(down) == lost and all(p["owner"] == victim_url and p["error"] for p in down.values()), d["partitions"]
    assert [w["answered"] for w in d["workers"] if w["url"] == victim_url] == [False]
    assert d["totals"]["events"] < sum(e for e, _f in want.values())
    status, value = await get(survivor.web_port, f"/els/table/windows/{lost[0]}|clock/")
    assert status == 503 and lost[0] in [p["partition"] for p in value["not_answering"]], value
    shot = ARTIFACTS / "status-page-cluster-one-down.png"
    shot.unlink(missing_ok=True)
    run_chromium(f"http://127.0.0.1:{survivor.web_port}/els/status/", f"--screenshot={shot}",
                 "--window-size=1280,1000", "--hide-scrollbars")
    assert shot.exists()

    async def taken_over():
        _s, d = await get(survivor.web_port, "/els/status.json")
        return d if d and len(owners(d)) == PARTITIONS and counted(d) == want else None
    d = await wait_for("the survivor owning every partition with every event", taken_over, [survivor])
    assert set(owners(d).values()) == {d["served_by"]}
