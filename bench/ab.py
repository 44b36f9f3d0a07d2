"""A/B of ingest variants in one run: every variant is its own server process, wrk drives them in alternating
short rounds (the machine is shared: each comparison is between runs seconds apart), medians are reported.

    python -m bench.ab [--rounds N] [--seconds S] [--connections C] LABEL=SPEC LABEL=SPEC ...

SPEC is `bare`, `aiokafka` (bench/bare.py's two baselines), `ingest` (this tree), `ingest@REV` (a git
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

from bench.ingest import PARTITIONS, SECRET, _raw_records, _template, _wait_ready, _wrk
from bench.procs import spawn, stop
from els.broker import EmbeddedBroker, free_port
from els.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Variant:
    label: str
    kind: str                 # bare | aiokafka | ingest
    rev: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    uvloop: bool = False
    topic: str = ""
    port: int = 0
    runs: list[dict] = field(default_factory=list)


def parse(arg: str) -> Variant:
    label, _, spec = arg.partition("=")
    head, *mods = spec.split("+")
    kind, _, rev = head.partition("@")
    if kind not in ("bare", "aiokafka", "ingest"):
        raise SystemExit(f"unknown variant {head!r}: bare, aiokafka, ingest or ingest@REV")
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
    if v.kind == "aiokafka":
        cmd += ["--kafka", bootstrap, v.topic]
    if v.uvloop:
        cmd.append("--uvloop")
    if v.env.pop("headers", None) is not None:
        cmd.append("--headers")
    return spawn(cmd, v.env, f"ab-{v.label}")


async def run(variants: list[Variant], bootstrap: str, broker_pid: int | None, rounds: int, seconds: int,
              connections: int) -> dict:
    tmpl = Path(tempfile.mkstemp(prefix="bench-ab-", suffix=".json")[1])
    tmpl.write_text(_template())
    procs = {}
    try:
        for v in variants:
            procs[v.label] = start(v, bootstrap)
            if v.kind == "aiokafka":
                await ensure_topics(bootstrap, [v.topic], PARTITIONS)
        for v in variants:
            await _wait_ready(f"http://127.0.0.1:{v.port}", procs[v.label][0], f"ab-{v.label}")
        pids = lambda v: {"server": procs[v.label][0].pid, **({"broker": broker_pid} if broker_pid else {})}  # noqa: E731
        for v in variants:  # warm-up, not counted
            _wrk(f"http://127.0.0.1:{v.port}", tmpl, 2, connections, pids(v))
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]  # neither variant always runs first
            for v in order:
                v.runs.append(_wrk(f"http://127.0.0.1:{v.port}", tmpl, seconds, connections, pids(v)))
                print(f"round {r} {v.label}: {v.runs[-1]}", file=sys.stderr)
        checks = {}
        for v in variants:
            if v.kind != "bare":
                accepted = sum(x["requests"] - x["non_2xx"] for x in v.runs)
                checks[v.label] = (accepted, await _raw_records(bootstrap, v.topic))
    finally:
        for proc, log in procs.values():
            stop(proc, log)
        tmpl.unlink(missing_ok=True)
    return summarise(variants, checks, connections)


def summarise(variants: list[Variant], checks: dict, connections: int) -> dict:
    ref = variants[0]
    out = {"connections": connections, "rounds": len(ref.runs), "variants": {}}
    for v in variants:
        ratios = [x["rps"] / y["rps"] for x, y in zip(v.runs, ref.runs, strict=True)]
        out["variants"][v.label] = {
            "rps_median": round(statistics.median(x["rps"] for x in v.runs)),
            f"ratio_vs_{ref.label}_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "server_cpu_pct": round(statistics.median(x["server_cpu_pct"] for x in v.runs)),
            "server_cpu_us_per_request": round(statistics.median(x["server_cpu_us_per_request"] for x in v.runs), 1),
            "non_2xx": sum(x["non_2xx"] for x in v.runs),
        }
        if v.label in checks:
            out["variants"][v.label]["acked_202_vs_in_topic"] = list(checks[v.label])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()
    variants = [parse(a) for a in args.variants]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    (ROOT / "var").mkdir(exist_ok=True)
    if not bootstrap:
        broker = EmbeddedBroker(log_path=str(ROOT / "var" / "bench-ab-broker.log")).start()
        bootstrap = broker.bootstrap
    try:
        result = asyncio.run(run(variants, bootstrap, broker.proc.pid if broker else None, args.rounds,
                                 args.seconds, args.connections))
    finally:
        if broker:
            broker.stop()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
