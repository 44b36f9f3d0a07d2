"""What the status page shows, computed from the windows table: per-flow health, sparkline series, pipeline counts.

Pure (no Faust): the web view passes the table's records and the partitions this worker owns, so the ordering
(failing flows first), error rates, percentiles and series are unit-tested without a worker. Values come from
the same bag merge and rendering that produce the Datadog series (processor/sink/render.py), never re-derived.
A worker holds only its own partitions' windows, so the page is one worker's share unless it owns them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from processor.core.bag import Bag
from processor.sink.render import render_series

MAX_WINDOWS = 30          # sparkline length: the newest windows held
RETRY_RECENT_MS = 60_000  # the sink counts as "retrying" while its retry counter rose within this long


def _values(group: str, ws: int, window_seconds: int, bag: Bag, prefix: str) -> dict[str, float]:
    """{short metric name: value} of a bag as rendered for Datadog, counters summed over their tags."""
    out: dict[str, float] = {}
    cut = len(prefix) + 1
    for s in render_series(group, ws, window_seconds, bag, prefix=prefix):
        name = s["metric"][cut:]
        out[name] = out.get(name, 0) + s["points"][0]["value"]
    return out


def _owned(key: str, partitions: set[int] | None) -> bool:
    head = key.split("|", 1)[0]
    return head.isdigit() and (partitions is None or int(head) in partitions)


def status_data(windows: Iterable[tuple[str, dict]], *, window_seconds: int, prefix: str,
                partitions: Iterable[int] | None, now_ms: int, max_windows: int = MAX_WINDOWS) -> dict:
    """The page's JSON: flows ordered failing first, their totals over the newest windows and per-window series.

    `windows` are the windows table's (key, record) items; only records of `partitions` count (None: all; a
    worker's table also holds standby copies of other partitions, which are not its to show). Flow totals merge
    the bags of the newest `max_windows` window starts held (a common timeline, empty windows are zero events).
    Ordering: flows with failures first, by error rate then volume; then the others by volume.
    """
    owned = None if partitions is None else set(partitions)
    size_ms = window_seconds * 1000
    per_flow: dict[str, dict[int, Bag]] = {}
    pipeline = Bag()
    clocks: dict[int, dict] = {}
    for key, rec in windows:
        if not isinstance(rec, dict) or not _owned(key, owned):
            continue
        p = int(key.split("|", 1)[0])
        if key.endswith("|clock"):
            clocks[p] = {"now_ms": rec.get("now") or None, "offset": rec.get("off", -1)}
            continue
        group = rec.get("group", "")
        if group == "pipeline":
            pipeline.merge(Bag.from_dict(rec.get("bag") or {}))
        elif group.startswith("flow:") and isinstance(rec.get("ws"), int):
            slot = per_flow.setdefault(group, {})
            slot.setdefault(rec["ws"], Bag()).merge(Bag.from_dict(rec.get("bag") or {}))

    starts = sorted({ws for by_ws in per_flow.values() for ws in by_ws})
    timeline: list[int] = []
    if starts:
        last = starts[-1]
        first = max(starts[0], last - (max_windows - 1) * size_ms)
        timeline = list(range(first, last + size_ms, size_ms))

    flows = []
    for group, by_ws in per_flow.items():
        total = Bag()
        series = {"events": [], "error_rate": [], "p95_ms": []}
        for ws in timeline:
            bag = by_ws.get(ws)
            v = _values(group, ws, window_seconds, bag, prefix) if bag is not None else {}
            series["events"].append(v.get("events", 0))
            series["error_rate"].append(v.get("error_rate"))
            series["p95_ms"].append(v.get("duration.p95"))
            if bag is not None:
                total.merge(bag)
        if not total.counters:
            continue  # only windows older than the timeline
        v = _values(group, timeline[0], window_seconds, total, prefix)
        flow_id = group.split(":", 1)[1]
        flows.append({
            "flow_id": flow_id,
            "flow_name": (total.labels.get("flow_name") or flow_id).strip(),
            "events": v.get("events", 0),
            "failures": v.get("failures", 0),
            "error_rate": v.get("error_rate"),
            "p95_ms": v.get("duration.p95"),
            "failing": v.get("failures", 0) > 0,
            "last_window_ms": max(by_ws),
            "series": series,
        })
    flows.sort(key=lambda f: (not f["failing"], -(f["error_rate"] or 0) if f["failing"] else 0, -f["events"],
                              f["flow_name"], f["flow_id"]))

    pv = _values("pipeline", 0, window_seconds, pipeline, prefix)
    return {
        "generated_ms": now_ms,
        "window_seconds": window_seconds,
        "partitions": sorted(owned) if owned is not None else sorted(clocks),
        "windows": timeline,
        "flows": flows,
        "totals": {"flows": len(flows), "failing": sum(f["failing"] for f in flows),
                   "events": sum(f["events"] for f in flows), "failures": sum(f["failures"] for f in flows)},
        "pipeline": {name: pv.get(f"pipeline.{name}", 0)
                     for name in ("events_in", "duplicates", "late_events", "deadletters")},
        "clocks": {str(p): clocks[p] for p in sorted(clocks)},
        "has_data": bool(flows),
    }


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


def sink_state(stats: dict, dry_run: bool, retrying: bool) -> dict:
    """The sink's state for the page: dry run, retrying or delivering, and its counters."""
    state = "dry run" if dry_run else "retrying" if retrying else "delivering"
    keys = ("series_sent", "logs_sent", "series_deadlettered", "logs_deadlettered", "sink_retries",
            "dropped_points", "dropped_logs")
    return {"state": state, **{k: stats.get(k, 0) for k in keys}}
