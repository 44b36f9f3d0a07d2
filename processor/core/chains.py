"""The chain state machine: a root flow and every helper flow it called, from first start to last end.

Pure and small, because one record per open chain is rewritten to the changelog on every batch that touches it.
Events may arrive in any order and twice; helpers may end after their root (async calls); parents may never be
seen. A chain closes when its root has ended and every execution seen in it has ended and a quiet period passed
without news, or on a timeout; the closed record stays as a marker (to recognise late duplicates) for the
lateness period. The result never depends on the order in which a chain's events arrive.
"""

from __future__ import annotations

from enum import Enum

# An execution is a short list (the serialised form stays small): ids and names, start/end times, its outcome
# and, for a failure, the error.
FLOW_ID, FLOW_NAME, PARENT, PARENT_NAME, START, END, STATUS, ERR_TYPE, ERR_CODE, ERR_MSG = range(10)
_EXEC_LEN = 10
# when one execution has two different end events at the same time, the worse outcome wins (order-independent)
_RANK = {"completed": 0, "canceled": 1, "failed": 2}
GAP = "…"  # in a path: links between the root and an unseen parent that no event told us about


class Verdict(Enum):
    """What an event is to its chain (see `apply`)."""

    NEW = "new"
    DUPLICATE = "duplicate"  # its idempotency key was seen at an earlier offset: counted once
    REPLAYED = "replayed"    # seen at this very offset: applied before a crash, processed again
    LATE = "late"            # new, but the chain already closed (it stays closed)


class Chain:
    """One chain's state; `last_news_ms` and `closed_off` are the caller's bookkeeping."""

    __slots__ = ("root", "partition", "seen", "last_news_ms", "first_ms", "execs", "root_flow", "closed",
                 "closed_ms", "closed_off")

    def __init__(self, root: str, partition: int):
        self.root = root
        self.partition = partition
        self.seen: dict[str, int] = {}  # idempotency key -> first raw offset it was seen at
        self.last_news_ms = 0
        self.first_ms: int | None = None  # earliest event time of the chain
        self.execs: dict[str, list] = {}
        self.root_flow: list = [None, None]  # id, name (from the root's own events, or from helpers' root_flow_*)
        self.closed: dict | None = None
        self.closed_ms: int | None = None
        self.closed_off: int | None = None  # the raw offset (tick or event) whose processing closed the chain

    def to_dict(self) -> dict:
        """A readable form (the chain view; the stored form is processor/state/records.py's)."""
        return {"root": self.root, "p": self.partition, "seen": self.seen,
                "news": self.last_news_ms, "first": self.first_ms, "x": self.execs, "rf": self.root_flow,
                "closed": self.closed, "closed_ms": self.closed_ms, "closed_off": self.closed_off}

    @classmethod
    def from_dict(cls, d: dict) -> Chain:
        c = cls(d["root"], d["p"])
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

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        state = f"closed {self.closed['status']}" if self.closed else "open"
        return f"Chain({self.root} p{self.partition} {state}, {len(self.execs)} executions)"


def apply(chain: Chain, ev, offset: int, now_ms: int) -> Verdict:
    """Record one event and say what it was to the chain (Verdict); only NEW and LATE change the chain."""
    first = chain.seen.get(ev.idempotency_key)
    if first is not None:
        return Verdict.REPLAYED if first == offset else Verdict.DUPLICATE
    chain.seen[ev.idempotency_key] = offset
    _record(chain, ev)
    if chain.closed is not None:
        # kept (a late failure's log still gets its path) but the summary is final and this is no news
        return Verdict.LATE
    ts = ev.timestamp_ms
    chain.first_ms = ts if chain.first_ms is None else min(chain.first_ms, ts)
    chain.last_news_ms = max(chain.last_news_ms, now_ms)
    return Verdict.NEW


def _record(chain: Chain, ev) -> None:
    x = chain.execs.get(ev.execution_id)
    if x is None:
        x = chain.execs[ev.execution_id] = [None] * _EXEC_LEN
    if ev.flow_id:
        x[FLOW_ID] = ev.flow_id
    if ev.flow_name:
        x[FLOW_NAME] = ev.flow_name
    parent = ev.parent_execution_id
    if parent and parent != ev.execution_id:
        x[PARENT] = parent
        x[PARENT_NAME] = ev.parent_flow_name or x[PARENT_NAME]
    ts = ev.timestamp_ms
    outcome = ev.outcome
    if ev.event_type == "FLOW_START":
        x[START] = ts if x[START] is None else min(x[START], ts)
    elif outcome and (x[END] is None or ts > x[END] or (ts == x[END] and _RANK[outcome] > _RANK[x[STATUS]])):
        # the latest end wins; ties go to the worse outcome, so the arrival order never matters
        x[END] = ts
        x[STATUS] = outcome
        if outcome == "failed":
            x[ERR_TYPE], x[ERR_CODE], x[ERR_MSG] = ev.error_type, ev.error_code, ev.error_message
        else:
            x[ERR_TYPE] = x[ERR_CODE] = x[ERR_MSG] = None
    rf = chain.root_flow
    if ev.execution_id == chain.root:
        chain.root_flow = [ev.flow_id or rf[0], ev.flow_name or rf[1]]
    elif rf[0] is None or rf[1] is None:
        # helpers name the root until the root's own events arrive (they override: see above)
        root_x = chain.execs.get(chain.root)
        chain.root_flow = [rf[0] or (root_x and root_x[FLOW_ID]) or ev.root_flow_id,
                           rf[1] or (root_x and root_x[FLOW_NAME]) or ev.root_flow_name]


def close_due(chain: Chain, now_ms: int, quiet_ms: int, timeout_ms: int) -> str | None:
    """The status to close with now, or None while the chain must stay open."""
    if chain.closed is not None:
        return None
    return _due(chain.root, chain.execs, chain.last_news_ms, now_ms, quiet_ms, timeout_ms)


def due_ms(chain: Chain, quiet_ms: int, timeout_ms: int) -> int | None:
    """The earliest clock time at which close_due may close this chain (None: closed already). Ticks check
    only the chains that are due, instead of every open one."""
    if chain.closed is not None:
        return None
    return chain.last_news_ms + (quiet_ms if _ended(chain.root, chain.execs) else timeout_ms)


def _ended(root_id: str, execs: dict) -> bool:
    root = execs.get(root_id)
    return root is not None and root[STATUS] is not None and all(x[END] is not None for x in execs.values())


def _due(root_id: str, execs: dict, last_news_ms: int, now_ms: int, quiet_ms: int, timeout_ms: int) -> str | None:
    silent = now_ms - last_news_ms
    if silent >= quiet_ms and _ended(root_id, execs):
        # checked before the timeout: a chain that ended is never timed_out because the clock jumped
        return execs[root_id][STATUS]
    if silent >= timeout_ms:
        return "timed_out"
    return None


def _name(x: list, fallback: str) -> str:
    return x[FLOW_NAME] or x[FLOW_ID] or fallback


def _root_name(chain: Chain) -> str:
    x = chain.execs.get(chain.root)
    if x is not None and (x[FLOW_NAME] or x[FLOW_ID]):
        return _name(x, chain.root)
    return chain.root_flow[1] or chain.root_flow[0] or chain.root


def path_to(chain: Chain, execution_id: str) -> list[str]:
    """Flow names from the root down to this execution, following parent links.

    A parent never seen is named from its child's parent_flow_name (else its id). When the links stop short of
    the root (unseen parent, missing parent link, cycle), the path starts with the root's name and GAP."""
    names: list[str] = []
    cur = execution_id
    visited: set[str] = set()
    while True:
        if cur == chain.root:
            names.append(_root_name(chain))
            return names[::-1]
        x = chain.execs.get(cur)
        if x is None or cur in visited:
            if x is None:
                names.append(cur)
            break
        visited.add(cur)
        names.append(_name(x, cur))
        parent = x[PARENT]
        if parent is None:
            break
        if parent != chain.root and parent not in chain.execs:
            names.append(x[PARENT_NAME] or parent)
            break
        if parent == chain.root and chain.root not in chain.execs and x[PARENT_NAME]:
            names.append(x[PARENT_NAME])  # the root itself unseen: its child's event names it best
            return names[::-1]
        cur = parent
    names.append(GAP)
    names.append(_root_name(chain))
    return names[::-1]


def close(chain: Chain, status: str, now_ms: int) -> dict:
    """Close the chain and return its summary (also kept in chain.closed)."""
    execs = chain.execs
    starts = [x[START] for x in execs.values() if x[START] is not None]
    ends = [x[END] for x in execs.values() if x[END] is not None]
    start_ms = min(starts) if starts else chain.first_ms
    end_ms = max(ends) if ends else None
    failed = [(x[END], ex) for ex, x in execs.items() if x[STATUS] == "failed"]
    failing = error = path = None
    if failed:
        ex = min(failed)[1]  # the first failure by time (then by id, so the choice is stable)
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
