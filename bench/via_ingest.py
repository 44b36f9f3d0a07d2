"""The processor_ingest bench's raw topic, written the production way: a running `els ingest` receives every
event as its own POST over many concurrent connections (Okta delivers one event per request, in parallel), so
the topic holds what production holds: small produce requests, each event its own record with ingest's key and
headers, not the large batches a bulk preload writes.

Debian's wrk sends them (`bench/via_ingest.lua`: each event of an NDJSON file once, then stop): a C client
leaves the two cores to ingest and the broker, where a Python client would take one of them.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.procs import spawn, stop, wait_ready
from common.topics import ensure_topics
from els.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
CONNECTIONS = 32


def _post_all(url: str, events_file: Path, secret: str, cap_s: int) -> dict:
    """wrk until every event of events_file got an answer (wrk would sleep out its whole -d: it is interrupted
    once the script says so); the answers counted by the script."""
    cmd = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{cap_s}s", "--timeout", "30s",
           "-s", str(ROOT / "bench" / "via_ingest.lua"), url + "/v1/events", "--", str(events_file), secret]
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in wrk.stdout:
        lines.append(line)
        if line.strip() == "all posts answered":
            wrk.send_signal(signal.SIGINT)
    if wrk.wait() != 0:
        raise RuntimeError("wrk failed: " + "".join(lines))
    out = "".join(lines)
    posts = re.search(r"posts answered (\d+) accepted (\d+)", out)
    if posts is None:
        raise RuntimeError("wrk gave no count of answers: " + out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"answered": int(posts.group(1)), "accepted": int(posts.group(2)),
            "socket_errors": errors.group(1).strip() if errors else ""}


async def write_through_ingest(bootstrap: str, topic: str, events: list[dict], partitions: int) -> dict:
    """POST every event to a fresh `els ingest` writing to topic; returns how many it accepted (written) and how
    fast, with wrk's counts."""
    if not Path(WRK).exists():
        raise RuntimeError(f"{WRK} not found: install Debian's wrk (apt-get install wrk)")
    await ensure_topics(bootstrap, [topic, topic + "-dl"], partitions)
    secret = "bench-" + uuid.uuid4().hex
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="bench-via-ingest-", suffix=".ndjson")
    events_file = Path(name)
    with open(fd, "wb") as f:
        f.write(b"\n".join(orjson.dumps(ev) for ev in events) + b"\n")
    ingest, log = spawn([sys.executable, "-m", "els.cli", "ingest"], {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_AUTH_TOKENS": secret, "ELS_INGEST_HOST": "127.0.0.1",
        "ELS_INGEST_PORT": str(port), "ELS_PARTITIONS": str(partitions), "ELS_RAW_TOPIC": topic,
        "ELS_DEADLETTER_TOPIC": topic + "-dl", "ELS_LOG_LEVEL": "WARNING"}, "ingest-writer")
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, ingest, "ingest-writer")
        t = time.monotonic()
        # a cap for when answers go missing (wrk timeouts): far above the slowest rate seen (~1,000/s)
        wrk = await asyncio.to_thread(_post_all, url, events_file, secret, 60 + len(events) // 200)
        seconds = time.monotonic() - t
    finally:
        stop(ingest, log)  # flushes what it accepted
        events_file.unlink(missing_ok=True)
    if wrk["accepted"] < len(events):
        print(f"WARNING: {len(events)} events posted, {wrk['accepted']} accepted ({wrk})", file=sys.stderr)
    # what ingest answered 202 for is in the raw topic (acks=all): the workers read that many records (the
    # embedded broker's end offsets undercount a topic written in small batches, so they are not used)
    return {"written": wrk["accepted"], "seconds": seconds, "connections": CONNECTIONS, **wrk}
