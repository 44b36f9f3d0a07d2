"""What the status page shows, computed from the windows table: per-flow health, sparkline series, pipeline counts.

Pure (no Faust, no HTTP). Two stages, because the page covers the whole cluster while each worker holds only its
own partitions' windows:
- `local_share`: one worker's part, its partitions' bags merged per (group, window), JSON-ready, so it can travel
  between workers (processor/web/cluster.py gathers them);
- `status_view`: the page's JSON from the merged shares: flows ordered failing first, error rates, percentiles and
  per-window series.
Bags merge exactly (counters add, sketches merge), so merging per worker and then across workers gives the same
values as merging every partition's record at once. Values come from the same rendering that produces the
Datadog series (processor/sink/render.py), never re-derived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from processor.core.bag import Bag
from processor.core.tags import split_key
from processor.core.windows import month_start
from processor.engine.reports import DEADLETTERS, REQUESTS, TLS_DAYS_LEFT
from processor.engine.watch import SEEN
from processor.sink.allowances import usage_values, usages
from processor.sink.render import render_series

MAX_WINDOWS = 30          # sparkline length: the newest windows held
RETRY_RECENT_MS = 60_000  # the sink counts as "retrying" while its retry counter rose within this long
# A flow is "failing" (red, listed first) when more than this share of its ended executions failed over the
# windows shown. Below it, a flow with failures is only amber: one failure in a busy flow is no incident.
FAILING_ERROR_RATE = 0.05


def _values(group: str, ws: int, window_seconds: int, bag: Bag, prefix: str) -> dict[str, float]:
    """{short metric name: value} of a bag as rendered for Datadog, counters summed over their tags."""
    out: dict[str, float] = {}
    cut = len(prefix) + 1
    for s in render_series(group, ws, window_seconds, bag, prefix=prefix):
        name = s["metric"][cut:]
        out[name] = out.get(name, 0) + s["points"][0]["value"]
    return out


def _partition(key: str, partitions: set[int] | None) -> int | None:
    """The raw partition of a windows-table key when it is one of `partitions` (None: any), else None."""
    head = key.split("|", 1)[0]
    if not head.isdigit() or (partitions is not None and int(head) not in partitions):
        return None
    return int(head)


def local_share(windows: Iterable[tuple[str, dict]], *, partitions: Iterable[int] | None, window_seconds: int,
                now_ms: int, max_windows: int = MAX_WINDOWS) -> dict:
    """One worker's part of the status: {"partitions", "groups", "pipeline", "clocks"}, JSON-ready.

    `windows` are the windows table's (key, record) items; only records of `partitions` count (None: all; a
    worker's table also holds standby copies of other partitions, which are not its to show). Flow bags are
    merged per (group, window start) and only the newest `max_windows` starts up to the wall clock `now_ms` are
    kept: a window that starts later (events stamped in the future) never hides the present, and the cluster's
    timeline ends at the newest start of any worker, so it never reaches further back than this.
    """
    owned = None if partitions is None else set(partitions)
    per: dict[tuple[str, int], Bag] = {}
    orgs: dict[str, Bag] = {}
    this_month = month_start(now_ms)
    pipeline = Bag()
    clocks: dict[str, dict] = {}
    for key, rec in windows:
        p = _partition(key, owned)
        if p is None or not isinstance(rec, dict):
            continue
        if key.endswith("|clock"):
            clocks[str(p)] = {"now_ms": rec.get("now") or None, "offset": rec.get("off", -1)}
            continue
        group = rec.get("group", "")
        if group == "pipeline":
            pipeline.merge(Bag.from_dict(rec.get("bag") or {}))
        elif group.startswith("org:") and rec.get("ws") == this_month:
            orgs.setdefault(group, Bag()).merge(Bag.from_dict(rec.get("bag") or {}))
        elif group.startswith("flow:") and isinstance(rec.get("ws"), int) and rec["ws"] <= now_ms:
            per.setdefault((group, rec["ws"]), Bag()).merge(Bag.from_dict(rec.get("bag") or {}))
    if per:
        newest = max(ws for _g, ws in per)
        oldest = newest - (max_windows - 1) * window_seconds * 1000
        per = {k: bag for k, bag in per.items() if k[1] >= oldest}
    return {"partitions": sorted(owned) if owned is not None else sorted(int(p) for p in clocks),
            "groups": [{"group": g, "ws": ws, "bag": bag.to_dict()} for (g, ws), bag in sorted(per.items())],
            "pipeline": pipeline.to_dict(), "clocks": clocks,
            "orgs": [{"group": g, "bag": bag.to_dict()} for g, bag in sorted(orgs.items())]}


@dataclass
class Held:
    """The windows held by the workers that answered, merged."""

    flows: dict[str, dict[int, Bag]] = field(default_factory=dict)  # group -> window start -> bag
    pipeline: Bag = field(default_factory=Bag)
    clocks: dict[str, dict] = field(default_factory=dict)  # raw partition -> {"now_ms", "offset"}
    orgs: dict[str, Bag] = field(default_factory=dict)     # org group -> this month's bag

    def merge(self, other: Held) -> None:
        for group, by_ws in other.flows.items():
            mine = self.flows.setdefault(group, {})
            for ws, bag in by_ws.items():
                mine.setdefault(ws, Bag()).merge(bag)
        self.pipeline.merge(other.pipeline)
        self.clocks.update(other.clocks)
        for group, bag in other.orgs.items():
            self.orgs.setdefault(group, Bag()).merge(bag)


def merge_shares(shares: Iterable[dict]) -> Held:
    """Merge `local_share` answers (of disjoint partitions) into one Held; raises on what is not a share."""
    held = Held()
    for share in shares:
        for g in share.get("groups") or ():
            if not (isinstance(g["group"], str) and isinstance(g["ws"], int)):
                raise ValueError(f"not a window: {g!r:.200}")
            by_ws = held.flows.setdefault(g["group"], {})
            by_ws.setdefault(g["ws"], Bag()).merge(Bag.from_dict(g["bag"]))
        held.pipeline.merge(Bag.from_dict(share.get("pipeline") or {}))
        held.clocks.update({str(p): dict(c) for p, c in (share.get("clocks") or {}).items()})
        for o in share.get("orgs") or ():
            if not isinstance(o["group"], str):
                raise ValueError(f"not an org month: {o!r:.200}")
            held.orgs.setdefault(o["group"], Bag()).merge(Bag.from_dict(o["bag"]))
    return held


def _timeline(held: Held, size_ms: int, max_windows: int) -> list[int]:
    starts = sorted({ws for by_ws in held.flows.values() for ws in by_ws})
    if not starts:
        return []
    last = starts[-1]
    first = max(starts[0], last - (max_windows - 1) * size_ms)
    return list(range(first, last + size_ms, size_ms))


def _flow(group: str, by_ws: dict[int, Bag], timeline: list[int], window_seconds: int, prefix: str) -> dict | None:
    """One flow's row: totals over the timeline's windows and the per-window series (None: nothing in them)."""
    total = Bag()
    series: dict[str, list] = {"events": [], "error_rate": [], "p95_ms": []}
    for ws in timeline:
        bag = by_ws.get(ws)
        v = _values(group, ws, window_seconds, bag, prefix) if bag is not None else {}
        series["events"].append(v.get("events", 0))
        series["error_rate"].append(v.get("error_rate"))
        series["p95_ms"].append(v.get("duration.p95"))
        if bag is not None:
            total.merge(bag)
    if not total.counters:
        return None  # only windows older than the timeline
    v = _values(group, timeline[0], window_seconds, total, prefix)
    flow_id = group.split(":", 1)[1]
    rate = v.get("error_rate")
    return {"flow_id": flow_id, "flow_name": (total.labels.get("flow_name") or flow_id).strip(),
            "events": v.get("events", 0), "failures": v.get("failures", 0), "steps": v.get("steps", 0),
            "error_rate": rate,
            "p95_ms": v.get("duration.p95"), "failing": rate is not None and rate > FAILING_ERROR_RATE,
            "last_window_ms": max(by_ws), "series": series}


def allowances(held: Held, now_ms: int, step_limit: int | None, event_limit: int | None) -> list[dict]:
    """Per org, this month's steps and ELS events against their allowances, as Datadog gets them."""
    month = month_start(now_ms)
    return [{"org": bag.labels.get("org") or group.split(":", 1)[1],
             **{u.name: usage_values(bag, u, month, now_ms) for u in usages(step_limit, event_limit)}}
            for group, bag in sorted(held.orgs.items())]


def health(held: Held, now_ms: int, pv: dict[str, float]) -> dict:
    """The pipeline watching itself, over the windows held: seconds since the latest ELS event, delay, ingest's
    requests by outcome, dead letters by stage, the certificate's days left (None: not known)."""
    bag = held.pipeline
    seen = [v for k, v in bag.maxima.items() if split_key(k)[0] == SEEN]
    by_stage = dict.fromkeys(("ingest", "processor", "sink"), 0.0)
    requests: dict[str, float] = {}
    for key, n in bag.counters.items():
        metric, tags = split_key(key)
        tag = dict(t.partition(":")[::2] for t in tags)
        if metric == DEADLETTERS and tag.get("stage") in by_stage:
            by_stage[tag["stage"]] += n
        elif metric == REQUESTS:
            requests[tag.get("outcome", "")] = requests.get(tag.get("outcome", ""), 0) + n
    tls = [v for k, v in bag.maxima.items() if split_key(k)[0] == TLS_DAYS_LEFT]
    return {"silence_s": max(0.0, (now_ms - max(seen)) / 1000) if seen else None,
            "delay_max_s": pv.get("pipeline.delay_seconds.max"), "delay_p95_s": pv.get("pipeline.delay_seconds.p95"),
            "ingest_requests": requests, "deadletters_by_stage": by_stage,
            "tls_days_left": min(tls) if tls else None}


def status_view(held: Held, *, window_seconds: int, prefix: str, now_ms: int, max_windows: int = MAX_WINDOWS,
                step_limit: int | None = None, event_limit: int | None = None) -> dict:
    """The page's JSON: flows ordered failing first (by error rate, then volume), then the others by volume."""
    timeline = _timeline(held, window_seconds * 1000, max_windows)
    flows = [f for group, by_ws in held.flows.items()
             if (f := _flow(group, by_ws, timeline, window_seconds, prefix)) is not None]
    flows.sort(key=lambda f: (not f["failing"], -(f["error_rate"] or 0) if f["failing"] else 0, -f["events"],
                              f["flow_name"], f["flow_id"]))
    pv = _values("pipeline", 0, window_seconds, held.pipeline, prefix)
    return {
        "generated_ms": now_ms,
        "window_seconds": window_seconds,
        "failing_above": FAILING_ERROR_RATE,
        "windows": timeline,
        "flows": flows,
        "totals": {"flows": len(flows), "failing": sum(f["failing"] for f in flows),
                   "with_failures": sum(f["failures"] > 0 for f in flows),
                   "events": sum(f["events"] for f in flows), "failures": sum(f["failures"] for f in flows)},
        "pipeline": {name: pv.get(f"pipeline.{name}", 0)
                     for name in ("events_in", "duplicates", "late_events", "future_events", "deadletters")},
        "health": health(held, now_ms, pv),
        "clocks": {p: held.clocks[p] for p in sorted(held.clocks, key=int)},
        "allowances": allowances(held, now_ms, step_limit, event_limit),
        "has_data": bool(flows),
    }


def status_data(windows: Iterable[tuple[str, dict]], *, window_seconds: int, prefix: str,
                partitions: Iterable[int] | None, now_ms: int, max_windows: int = MAX_WINDOWS) -> dict:
    """The page's JSON from one table's records (one worker, or a test): both stages at once."""
    share = local_share(windows, partitions=partitions, window_seconds=window_seconds, now_ms=now_ms,
                        max_windows=max_windows)
    return status_view(merge_shares([share]), window_seconds=window_seconds, prefix=prefix, now_ms=now_ms,
                       max_windows=max_windows)


class RecentRise:
    """When a monotonic counter last rose, from periodic samples (the sink counts retries but keeps no time)."""

    def __init__(self):
        self.value: float | None = None
        self.rose_ms: int | None = None

    def sample(self, value: float, now_ms: int) -> bool:
        """Record a sample; True while the counter rose within RETRY_RECENT_MS of now."""
        if self.value is not None and value > self.value:
            self.rose_ms = now_ms
        self.value = value
        return self.rose_ms is not None and now_ms - self.rose_ms < RETRY_RECENT_MS


SINK_COUNTERS = ("series_sent", "logs_sent", "series_deadlettered", "logs_deadlettered", "sink_retries",
                 "dropped_points", "dropped_logs")


def sink_state(stats: dict, dry_run: bool, retrying: bool) -> dict:
    """One worker's sink for the page: dry run, retrying or delivering, and its counters."""
    state = "dry run" if dry_run else "retrying" if retrying else "delivering"
    return {"state": state, **{k: stats.get(k, 0) for k in SINK_COUNTERS}}


def sinks_combined(sinks: list[dict]) -> dict:
    """The cluster's sink: counters summed; retrying if any worker's is, dry run only if every one is."""
    states = {s.get("state") for s in sinks}
    state = ("retrying" if "retrying" in states else "dry run" if states == {"dry run"}
             else "delivering" if states else "unknown")
    return {"state": state, **{k: sum(s.get(k, 0) for s in sinks) for k in SINK_COUNTERS}}
