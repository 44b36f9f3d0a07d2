"""The ingest endpoint against a real broker: what it answers, and what lands in Kafka."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from common.config import Config
from els.broker import free_port
from ingest.app import SERVER_OPTIONS, create_app
from tests.helpers.kafka import read_topic
from tests.helpers.paths import SAMPLES

pytestmark = pytest.mark.broker

TOKEN = "tok-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE_EVENTS = [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))]


def make_config(bootstrap: str, topics: dict, **overrides) -> Config:
    # ingest makes the processor's changelogs too: named after the app id its workers use (tests: per raw topic)
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_AUTH_TOKENS": f"old-secret-123,{TOKEN}",
           "ELS_PARTITIONS": "4", "ELS_ACK_TIMEOUT_SECONDS": "2",
           "ELS_APP_ID": "els-" + topics.get("ELS_RAW_TOPIC", "raw"), **topics}
    return Config.from_env(env, **overrides)


class Ingest:
    def __init__(self, cfg: Config, app=None):
        self.cfg = cfg
        self.server = TestServer(app or create_app(cfg), host="127.0.0.1", port=0)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self):
        await self.server.start_server(**SERVER_OPTIONS)
        self.url = str(self.server.make_url("/"))
        self.session = aiohttp.ClientSession(base_url=self.url, auto_decompress=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for the background Kafka connection
            async with self.session.get("/readyz") as r:
                if r.status == 200:
                    return self
            await asyncio.sleep(0.1)
        raise AssertionError("ingest never became ready")

    async def __aexit__(self, *exc):
        await self.session.close()
        await self.server.close()

    async def post(self, body, headers=None, auth=True):
        h = {**(AUTH if auth else {}), **(headers or {})}
        async with self.session.post("/v1/events", data=body, headers=h) as r:
            return r.status, await r.json(), r.headers


@pytest.fixture
async def ingest(kafka_bootstrap, topic_names):
    async with Ingest(make_config(kafka_bootstrap, topic_names)) as ing:
        yield ing


async def test_records_land_keyed_by_root_with_headers_and_unchanged_values(ingest, kafka_bootstrap):
    for ev in SAMPLE_EVENTS:
        status, body, _ = await ingest.post(orjson.dumps(ev))
        assert (status, body) == (202, {"accepted": 1, "rejected": 0})
    records = await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, expect=len(SAMPLE_EVENTS))
    assert len(records) == len(SAMPLE_EVENTS)
    by_ik = {json.loads(r.value)["idempotency_key"]: r for r in records}
    for ev in SAMPLE_EVENTS:
        rec = by_ik[ev["idempotency_key"]]
        assert json.loads(rec.value) == ev
        assert rec.key.decode() == (ev.get("root_execution_id") or ev["execution_id"])
        headers = dict(rec.headers)
        assert headers["idempotency_key"].decode() == ev["idempotency_key"]
        assert abs(int(headers["received_at"]) - time.time() * 1000) < 60_000
    # a chain's records share one partition
    helper = by_ik["23ac58e41d9b376f5fceb59881bd5c4"]
    helper_done = by_ik["a888ffb7e2d71d264fcce697a855fc8"]
    assert helper.partition == helper_done.partition


async def test_all_body_shapes(ingest, kafka_bootstrap):
    ev = SAMPLE_EVENTS[0]
    shapes = [
        (orjson.dumps(SAMPLE_EVENTS), {}, len(SAMPLE_EVENTS)),
        (b"\n".join(orjson.dumps(e) for e in SAMPLE_EVENTS), {"Content-Type": "application/x-ndjson"}, len(SAMPLE_EVENTS)),
        (gzip.compress(orjson.dumps(SAMPLE_EVENTS)), {"Content-Encoding": "gzip"}, len(SAMPLE_EVENTS)),
        (orjson.dumps({"event": json.dumps(ev)}), {}, 1),
        (orjson.dumps({"ddsource": "okta", "service": "wf", "message": ev}), {}, 1),
    ]
    total = 0
    for body, headers, n in shapes:
        status, answer, _ = await ingest.post(body, headers)
        assert (status, answer) == (202, {"accepted": n, "rejected": 0})
        total += n
    records = await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, expect=total)
    assert len(records) == total
    assert all(json.loads(r.value) in SAMPLE_EVENTS for r in records)


@pytest.mark.parametrize("body,headers,status", [
    (b"{not json", {}, 400),
    (b"", {}, 400),
    (b"[1,2]", {}, 400),
    (b'"text"', {}, 400),
    (b'{"event_type": "FLOW_START", "flow_id": "1"}', {}, 400),
    (b"\x1f\x8b\x08\x00broken", {"Content-Encoding": "gzip"}, 400),
    (b"{}", {"Content-Encoding": "br"}, 400),
], ids=["invalid-json", "empty", "non-object", "string", "no-execution-id", "corrupt-gzip", "bad-encoding"])
async def test_bad_bodies_are_refused_dead_lettered_and_server_keeps_serving(ingest, kafka_bootstrap, body, headers,
                                                                            status):
    got, answer, _ = await ingest.post(body, headers)
    assert got == status and answer["error"]
    dl = await read_topic(kafka_bootstrap, ingest.cfg.els_deadletter_topic, expect=1)
    assert len(dl) == 1
    assert dl[0].value == body
    h = dict(dl[0].headers)
    assert h["reason"].decode() == answer["error"] and h["stage"] == b"ingest"
    # still serving, and nothing reached the raw topic
    assert (await ingest.post(orjson.dumps(SAMPLE_EVENTS[0])))[0] == 202
    assert len(await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, expect=1)) == 1


async def test_partially_usable_body_accepts_the_good_and_dead_letters_the_rest(ingest, kafka_bootstrap):
    body = orjson.dumps([SAMPLE_EVENTS[0], {"event_type": "FLOW_START"}, SAMPLE_EVENTS[1]])
    status, answer, _ = await ingest.post(body)
    assert (status, answer) == (202, {"accepted": 2, "rejected": 1})
    dl = await read_topic(kafka_bootstrap, ingest.cfg.els_deadletter_topic, expect=1)
    assert json.loads(dl[0].value) == {"event_type": "FLOW_START"}
    assert b"execution_id" in dict(dl[0].headers)["reason"]


async def test_oversized_body_is_413_and_a_prefix_is_kept(kafka_bootstrap, topic_names):
    cfg = make_config(kafka_bootstrap, topic_names, els_max_body_bytes=2048)
    async with Ingest(cfg) as ing:
        big = orjson.dumps([SAMPLE_EVENTS[0]] * 20)
        assert len(big) > 2048
        status, answer, _ = await ing.post(big)
        assert status == 413 and "2048" in answer["error"]
        bomb = gzip.compress(orjson.dumps([SAMPLE_EVENTS[0]] * 20))
        assert len(bomb) < 2048
        status, _, _ = await ing.post(bomb, {"Content-Encoding": "gzip"})
        assert status == 413
        dl = await read_topic(kafka_bootstrap, cfg.els_deadletter_topic, expect=2)
        assert len(dl) == 2
        plain = [r for r in dl if "content_encoding" not in dict(r.headers)]
        assert len(plain) == 1 and big.startswith(plain[0].value)
        assert dict(plain[0].headers)["truncated"] == b"true"
        assert (await ing.post(orjson.dumps(SAMPLE_EVENTS[0])))[0] == 202


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN[:-1]},
                                     {"Authorization": TOKEN + "x"}, {"X-Other": TOKEN}])
async def test_wrong_secret_is_401_and_nothing_is_written(ingest, kafka_bootstrap, headers):
    status, answer, resp_headers = await ingest.post(orjson.dumps(SAMPLE_EVENTS[0]), headers, auth=False)
    assert status == 401 and TOKEN not in json.dumps(answer)
    assert await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, timeout=1.0) == []
    assert await read_topic(kafka_bootstrap, ingest.cfg.els_deadletter_topic, timeout=1.0) == []


async def test_rotation_accepts_every_configured_secret(ingest):
    for secret in ("old-secret-123", TOKEN):
        status, _, _ = await ingest.post(orjson.dumps(SAMPLE_EVENTS[0]), {"Authorization": secret}, auth=False)
        assert status == 202


async def test_health_endpoints(ingest):
    async with ingest.session.get("/healthz") as r:
        assert r.status == 200
    async with ingest.session.get("/readyz") as r:
        assert r.status == 200


async def test_topics_are_created_with_els_partitions(ingest, kafka_bootstrap):
    records = await read_topic(kafka_bootstrap, ingest.cfg.els_raw_topic, timeout=0.5)
    assert records == []
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        desc = await admin.describe_topics([ingest.cfg.els_raw_topic, ingest.cfg.els_deadletter_topic])
    finally:
        await admin.close()
    assert [len(d["partitions"]) for d in desc] == [4, 4]


# The broker outage (503 while down, recovery, every later 2xx in Kafka) is in test_reliability_ingest.py.


def _run_ingest(env: dict) -> subprocess.Popen:
    app_id = {"ELS_APP_ID": "els-" + env["ELS_RAW_TOPIC"]} if "ELS_RAW_TOPIC" in env else {}  # as make_config
    return subprocess.Popen([sys.executable, "-m", "els.cli", "ingest"], env={**os.environ, **app_id, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_refuses_to_start_without_a_secret(kafka_bootstrap):
    env = {k: v for k, v in os.environ.items() if k not in ("ELS_AUTH_TOKENS", "ELS_AUTH_DISABLED")}
    proc = subprocess.run([sys.executable, "-m", "els.cli", "ingest"], env={**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "ELS_AUTH_TOKENS" in proc.stderr


def test_cli_serves_the_readme_curl_example_and_shuts_down_gracefully(kafka_bootstrap, topic_names):
    """`els ingest` as a user runs it; SIGTERM flushes and exits 0; the secret never appears in its logs."""
    port = free_port()
    proc = _run_ingest({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ELS_AUTH_TOKENS": TOKEN,
                        "ELS_INGEST_HOST": "127.0.0.1", "ELS_INGEST_PORT": str(port), "ELS_PARTITIONS": "4",
                        **topic_names})
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                f"http://127.0.0.1:{port}/readyz"], capture_output=True, text=True)
            ready = r.stdout == "200"
            time.sleep(0.2)
        assert ready
        sample = SAMPLES / "doc-parent-flow-start.json"
        r = subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{port}/v1/events",
                            "-H", f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json",
                            "--data-binary", f"@{sample}"], capture_output=True, text=True, timeout=30)
        assert json.loads(r.stdout) == {"accepted": 1, "rejected": 0}
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{port}/v1/events",
                        "-H", f"Authorization: Bearer {TOKEN}x", "--data-binary", "{}"], capture_output=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert TOKEN not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    stats = [line for line in lines if line["msg"] == "ingest stats"]
    assert stats and stats[-1]["status_202"] == 1 and stats[-1]["status_401"] == 1
