"""The chain state machine: a root flow and every helper flow it called, from first start to last end.

Pure and small, because one record per open chain is rewritten to the changelog on every batch that touches it.
Events may arrive in any order and twice; helpers may end after their root (async calls); parents may never be
seen. A chain closes when its root has ended and every execution seen in it has ended, after a quiet period
without news, or on a timeout; the closed record stays as a marker (for late duplicates) until `expired`.
"""

from __future__ import annotations

# execution record fields (a list keeps the serialised form short)
FLOW_ID, FLOW_NAME, PARENT, PARENT_NAME, START, END, STATUS, DURATION, ERR_TYPE, ERR_CODE, ERR_MSG = range(11)


class Chain:
    __slots__ = ("root", "partition", "off", "seen", "last_news_ms", "first_ms", "execs", "root_flow", "closed",
                 "closed_ms", "closed_off")

    def __init__(self, root: str, partition: int):
        self.root = root
        self.partition = partition
        self.off = -1
        self.seen: dict[str, int] = {}
        self.last_news_ms = 0
        self.first_ms: int | None = None
        self.execs: dict[str, list] = {}
        self.root_flow: list = [None, None]  # id, name (from the root's own events, or from helpers' root_flow_*)
        self.closed: dict | None = None
        self.closed_ms: int | None = None
        self.closed_off: int | None = None  # the raw offset (tick or event) whose processing closed the chain

    def to_dict(self) -> dict:
        return {"root": self.root, "p": self.partition, "off": self.off, "seen": self.seen,
                "news": self.last_news_ms, "first": self.first_ms, "x": self.execs, "rf": self.root_flow,
                "closed": self.closed, "closed_ms": self.closed_ms, "closed_off": self.closed_off}

    @classmethod
    def from_dict(cls, d: dict) -> Chain:
        c = cls(d["root"], d["p"])
        c.off = d["off"]
        c.seen = dict(d["seen"])
        c.last_news_ms = d["news"]
        c.first_ms = d["first"]
        c.execs = {k: list(v) for k, v in d["x"].items()}
        c.root_flow = list(d["rf"])
        c.closed = d["closed"]
        c.closed_ms = d["closed_ms"]
        c.closed_off = d.get("closed_off")
        return c

    def __eq__(self, other) -> bool:
        return isinstance(other, Chain) and self.to_dict() == other.to_dict()


def new_chain(root: str, partition: int) -> Chain:
    return Chain(root, partition)


def apply(chain: Chain, ev, offset: int, now_ms: int) -> str:
    """Record one event: "new", "duplicate" (key seen at an earlier offset), "replayed" (seen at this very
    offset: applied before a crash), or "late" (new, but the chain already closed; it stays closed)."""
    first = chain.seen.get(ev.idempotency_key)
    if first is not None:
        return "replayed" if first == offset else "duplicate"
    chain.seen[ev.idempotency_key] = offset
    if chain.closed is not None:
        return "late"
    x = chain.execs.get(ev.execution_id)
    if x is None:
        x = chain.execs[ev.execution_id] = [None] * 11
    if ev.flow_id:
        x[FLOW_ID] = ev.flow_id
    if ev.flow_name:
        x[FLOW_NAME] = ev.flow_name
    if ev.parent_execution_id and ev.parent_execution_id != ev.execution_id:
        x[PARENT] = ev.parent_execution_id
        x[PARENT_NAME] = ev.parent_flow_name or x[PARENT_NAME]
    ts = ev.timestamp_ms
    if ev.event_type == "FLOW_START":
        x[START] = ts if x[START] is None else min(x[START], ts)
    elif ev.outcome:
        x[END] = ts
        x[STATUS] = ev.outcome
        x[DURATION] = ev.duration_ms
        if ev.outcome == "failed":
            x[ERR_TYPE], x[ERR_CODE], x[ERR_MSG] = ev.error_type, ev.error_code, ev.error_message
    if ev.execution_id == chain.root:
        chain.root_flow = [ev.flow_id or chain.root_flow[0], ev.flow_name or chain.root_flow[1]]
    elif chain.root_flow[0] is None or chain.root_flow[1] is None:
        chain.root_flow = [chain.root_flow[0] or ev.root_flow_id, chain.root_flow[1] or ev.root_flow_name]
    chain.first_ms = ts if chain.first_ms is None else min(chain.first_ms, ts)
    chain.last_news_ms = max(chain.last_news_ms, now_ms)
    return "new"


def close_due(chain: Chain, now_ms: int, quiet_ms: int, timeout_ms: int) -> str | None:
    """The status to close with now, or None while the chain must stay open."""
    if chain.closed is not None:
        return None
    silent = now_ms - chain.last_news_ms
    if silent >= timeout_ms:
        return "timed_out"
    root = chain.execs.get(chain.root)
    if root is None or root[STATUS] is None or silent < quiet_ms:
        return None
    if any(x[END] is None for x in chain.execs.values()):
        return None
    return root[STATUS]


def _name(x: list, fallback: str) -> str:
    return x[FLOW_NAME] or x[FLOW_ID] or fallback


def path_to(chain: Chain, execution_id: str) -> list[str]:
    """Flow names from the root down to this execution; unseen parents are named from their child's event."""
    names: list[str] = []
    cur: str | None = execution_id
    visited: set[str] = set()
    while cur is not None and cur not in visited:
        visited.add(cur)
        x = chain.execs.get(cur)
        if x is None:
            names.append(cur)
            break
        names.append(_name(x, cur))
        parent = x[PARENT]
        if parent is None or cur == chain.root:
            break
        if parent not in chain.execs:
            names.append(x[PARENT_NAME] or parent)
            if parent != chain.root:
                names.append("…")
                names.append(chain.root_flow[1] or chain.root_flow[0] or chain.root)
            break
        cur = parent
    return list(reversed(names))


def close(chain: Chain, status: str, now_ms: int) -> dict:
    """Close the chain and return its summary."""
    execs = chain.execs
    starts = [x[START] for x in execs.values() if x[START] is not None]
    ends = [x[END] for x in execs.values() if x[END] is not None]
    start_ms = min(starts) if starts else chain.first_ms
    end_ms = max(ends) if ends else None
    failed = sorted(((x[END], ex) for ex, x in execs.items() if x[STATUS] == "failed"), key=lambda t: (t[0], t[1]))
    failing = error = path = None
    if failed:
        ex = failed[0][1]
        x = execs[ex]
        failing = {"flow_name": x[FLOW_NAME], "flow_id": x[FLOW_ID], "execution_id": ex}
        error = {"type": x[ERR_TYPE], "code": x[ERR_CODE], "message": x[ERR_MSG]}
        path = path_to(chain, ex)
    summary = {
        "root_execution_id": chain.root,
        "root_flow_id": chain.root_flow[0],
        "root_flow_name": chain.root_flow[1],
        "status": status,
        "had_failures": bool(failed),
        "duration_ms": (end_ms - start_ms) if end_ms is not None and start_ms is not None else None,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "executions": len(execs),
        "helper_flows": sorted({_name(x, ex) for ex, x in execs.items() if ex != chain.root}),
        "failing_flow": failing,
        "error": error,
        "path": path,
    }
    chain.closed = summary
    chain.closed_ms = now_ms
    return summary


def expired(chain: Chain, now_ms: int, lateness_ms: int) -> bool:
    return chain.closed is not None and chain.closed_ms is not None and chain.closed_ms + lateness_ms <= now_ms
