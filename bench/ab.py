"""A/B of ingest variants in one run: every variant is its own server process, wrk drives them in alternating
short rounds (the machine is shared: each comparison is between runs seconds apart), medians are reported.

    python -m bench.ab [--rounds N] [--seconds S] [--connections C] LABEL=SPEC LABEL=SPEC ...

SPEC is `bare`, `aiokafka`, `confluent` (bench/bare.py's baselines: no work, aiokafka's produce, librdkafka's), `ingest` (this tree), `ingest@REV` (a git
revision, exported into var/ab/) or `ingest@DIR` (a copy of the tree, e.g. with one setting changed), followed by any number of `+uvloop`, `+headers=1` (baselines) or `+NAME=VALUE`
(environment of the server, e.g. `ingest+ELS_INGEST_UVLOOP=1`). The first variant is the reference of the
ratios. Each variant writes to its own raw topic; every 202 is checked against it.

    python -m bench.ab old=ingest@HEAD new=ingest bare=bare
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest import PARTITIONS, SECRET, _raw_records, _template, _wrk
from bench.procs import bench_broker, spawn, stop, wait_ready
from common.topics import ensure_topics
from els.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Variant:
    label: str
    kind: str                 # bare | aiokafka | confluent | ingest
    rev: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    uvloop: bool = False
    topic: str = ""
    port: int = 0
    runs: list[dict] = field(default_factory=list)  # every wrk run against it, for the topic check


def parse(arg: str) -> Variant:
    label, _, spec = arg.partition("=")
    head, *mods = spec.split("+")
    kind, _, rev = head.partition("@")
    if kind not in ("bare", "aiokafka", "confluent", "ingest"):
        raise SystemExit(f"unknown variant {head!r}: bare, aiokafka, confluent, ingest or ingest@REV")
    v = Variant(label, kind, rev or None)
    for mod in mods:
        if mod == "uvloop":
            v.uvloop = True
        else:
            k, _, val = mod.partition("=")
            v.env[k] = val
    return v


def _tree(rev: str) -> Path:
    """The source of a git revision, exported once into var/ab/<commit>."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    dest = ROOT / "var" / "ab" / sha[:12]
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def start(v: Variant, bootstrap: str):
    v.port = free_port()
    v.topic = f"ab-{v.label}-{uuid.uuid4().hex[:6]}"
    if v.kind == "ingest":
        cwd = (Path(v.rev) if Path(v.rev).is_dir() else _tree(v.rev)) if v.rev else ROOT
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ELS_AUTH_TOKENS": SECRET, "ELS_INGEST_HOST": "127.0.0.1",
               "ELS_INGEST_PORT": str(v.port), "ELS_PARTITIONS": str(PARTITIONS), "ELS_RAW_TOPIC": v.topic,
               "ELS_DEADLETTER_TOPIC": v.topic + "-dl", **v.env}
        log = open(ROOT / "var" / f"bench-ab-{v.label}.log", "wb")  # noqa: SIM115
        # run from the variant's tree: `-m` puts the working directory first on sys.path
        proc = subprocess.Popen([sys.executable, "-m", "els.cli", "ingest"], env={**os.environ, **env}, cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT)
        return proc, log
    cmd = [sys.executable, "-m", "bench.bare", str(v.port)]
    if v.kind in ("aiokafka", "confluent"):
        cmd += ["--kafka", bootstrap, v.topic] + (["--confluent"] if v.kind == "confluent" else [])
    if v.uvloop:
        cmd.append("--uvloop")
    if v.env.pop("headers", None) is not None:
        cmd.append("--headers")
    return spawn(cmd, v.env, f"ab-{v.label}")


class Servers:
    """The variants' server processes for one run (async context manager): start, wrk rounds, stop."""

    def __init__(self, variants: list[Variant], bootstrap: str, broker_pid: int | None):
        self.variants, self.bootstrap, self.broker_pid = variants, bootstrap, broker_pid
        self.procs: dict[str, tuple] = {}
        self.tmpl = Path(tempfile.mkstemp(prefix="bench-ab-", suffix=".json")[1])

    async def __aenter__(self) -> Servers:
        self.tmpl.write_text(_template())
        try:
            for v in self.variants:
                self.procs[v.label] = start(v, self.bootstrap)
                if v.kind in ("aiokafka", "confluent"):
                    await ensure_topics(self.bootstrap, [v.topic], PARTITIONS)
            for v in self.variants:
                await wait_ready(f"http://127.0.0.1:{v.port}", self.procs[v.label][0], f"ab-{v.label}")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        for proc, log in self.procs.values():
            stop(proc, log)
        self.tmpl.unlink(missing_ok=True)

    def wrk(self, v: Variant, seconds: int, connections: int) -> dict:
        pids = {"server": self.procs[v.label][0].pid, **({"broker": self.broker_pid} if self.broker_pid else {})}
        return _wrk(f"http://127.0.0.1:{v.port}", self.tmpl, seconds, connections, pids)

    def rounds(self, n: int, seconds: int, connections: int, variants: list[Variant] | None = None) -> dict:
        """n alternating rounds (one wrk run per variant each; the order reverses every round, so no variant
        always runs first): {label: [wrk result per round]}; every result also counts in the topic check."""
        variants = variants or self.variants
        out: dict[str, list[dict]] = {v.label: [] for v in variants}
        for r in range(n):
            for v in variants if r % 2 == 0 else variants[::-1]:
                result = self.wrk(v, seconds, connections)
                out[v.label].append(result)
                v.runs.append(result)
                print(f"round {r} c={connections} {v.label}: {result}", file=sys.stderr)
        return out

    async def topic_check(self, v: Variant, extra_accepted: int = 0) -> tuple[int, int]:
        """(requests wrk saw answered 2xx, records in the variant's raw topic): the second is never smaller."""
        accepted = sum(x["requests"] - x["non_2xx"] for x in v.runs) + extra_accepted
        return accepted, await _raw_records(self.bootstrap, v.topic)


def pair(runs: dict[str, list[dict]], a: str, b: str) -> dict:
    """a against b, round by round (runs seconds apart): the median ratio of requests/s, and of CPU per request."""
    rps = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]
    cpu = [x["server_cpu_us_per_request"] / y["server_cpu_us_per_request"]
           for x, y in zip(runs[a], runs[b], strict=True)]
    return {"rps_ratio": round(statistics.median(rps), 3), "rps_ratios": [round(r, 3) for r in rps],
            "cpu_per_request_ratio": round(statistics.median(cpu), 3)}


def figures(runs: list[dict]) -> dict:
    return {"rps_median": round(statistics.median(x["rps"] for x in runs)),
            "server_cpu_pct": round(statistics.median(x["server_cpu_pct"] for x in runs)),
            "server_cpu_us_per_request": round(statistics.median(x["server_cpu_us_per_request"] for x in runs), 1),
            "non_2xx": sum(x["non_2xx"] for x in runs)}


async def run(variants: list[Variant], bootstrap: str, broker_pid: int | None, rounds: int, seconds: int,
              connections: int) -> dict:
    async with Servers(variants, bootstrap, broker_pid) as servers:
        for v in variants:  # warm-up: not in the figures, but its 2xx answers are checked against the topic
            v.runs.append(servers.wrk(v, 2, connections))
        runs = servers.rounds(rounds, seconds, connections)
        checks = {v.label: await servers.topic_check(v) for v in variants if v.kind != "bare"}
    ref = variants[0].label
    out = {"connections": connections, "rounds": rounds, "variants": {}}
    for v in variants:
        out["variants"][v.label] = {**figures(runs[v.label]), f"vs_{ref}": pair(runs, v.label, ref)}
        if v.label in checks:
            out["variants"][v.label]["answered_2xx_vs_in_topic"] = list(checks[v.label])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()
    variants = [parse(a) for a in args.variants]
    with bench_broker("bench-ab-broker") as (bootstrap, broker_pid):
        result = asyncio.run(run(variants, bootstrap, broker_pid, args.rounds, args.seconds, args.connections))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
