"""A/B runs of the processor in one bench run: BENCH_PROCESSORS lists variants, run in turn on the same topic.

    BENCH_PROCESSORS="base:cwd=/path/to/old/checkout,new,buf:STREAM_BUFFER_MAXSIZE=10000,uv:loop=uvloop"
    BENCH_REPEAT=3   # every variant (and the minimal Faust agent) this many times, interleaved: medians
                     # (the default: a single round's ratio moves by up to +-0.3 on a shared machine)

A variant is `name[:key=value...]`: `cwd` runs the worker from another checkout (its code first on
PYTHONPATH), `loop` runs it with `faust --loop <loop>`, any other key is an environment variable of the worker
(Faust reads STREAM_BUFFER_MAXSIZE, CYTHON_OPTIMIZATIONS and the like from the environment).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    loop: str | None = None

    def command(self, port: int) -> list[str]:
        if self.loop:
            return [sys.executable, "-m", "faust", "-A", "processor.app", "--loop", self.loop, "worker", "-l",
                    "warn", "--web-port", str(port)]
        return [sys.executable, "-m", "els.cli", "process"]

    def environ(self) -> dict[str, str]:
        env = dict(self.env)
        if self.cwd:
            env["PYTHONPATH"] = self.cwd + os.pathsep + os.environ.get("PYTHONPATH", "")
        return env


def variants() -> list[Variant]:
    spec = os.environ.get("BENCH_PROCESSORS", "").strip()
    if not spec:
        return [Variant("processor")]
    out = []
    for item in spec.split(","):
        name, *pairs = item.strip().split(":")
        v = Variant(name)
        for pair in pairs:
            k, _, val = pair.partition("=")
            if k == "cwd":
                v.cwd = val
            elif k == "loop":
                v.loop = val
            else:
                v.env[k] = val
        out.append(v)
    return out


def repeats() -> int:
    """Rounds of the processor scenarios: 3 by default, so `make bench` reports medians, not one draw."""
    return max(1, int(os.environ.get("BENCH_REPEAT", "3")))
