"""Window aggregates ("bags"): mergeable counters and sketches, and their rendering into Datadog series.

A bag holds only what can be added (counters) or merged (sketches), so the bags of several partitions, or a
partition's re-sent bag, combine without double counting. Gauges (error rate, percentiles, averages) are derived
when rendering, from the merged bag. Counter keys are "<metric>|<k>:<v>,..." with tags sorted and normalised.
"""

from __future__ import annotations

import re
from functools import lru_cache

from processor.sketch import from_compact, new_sketch, quantile, to_compact

_BAD_TAG_CHARS = re.compile(r"[^\w\-:./]+")
_UNDERSCORES = re.compile(r"_{2,}")


def window_start(ts_ms: int, size_ms: int) -> int:
    """Tumbling windows aligned to multiples of the size since the epoch (floor, also for negative times)."""
    return ts_ms - ts_ms % size_ms


@lru_cache(maxsize=65536)
def tag_value(s) -> str:
    """A tag value as Datadog keeps it: lower case; letters, digits, '_', '-', ':', '.', '/' only, anything else
    becomes '_' (runs collapsed, trailing ones dropped); at most 200 characters; empty becomes "none"."""
    s = _UNDERSCORES.sub("_", _BAD_TAG_CHARS.sub("_", str(s).strip().lower())).strip("_")
    return s[:200] or "none"


def parse_dd_tags(s: str | None) -> list[str]:
    """DD_TAGS, agent style: "env:prod,team:iam" or "env:prod team:iam"."""
    out = []
    for item in re.split(r"[,\s]+", s or ""):
        if not item:
            continue
        k, sep, v = item.partition(":")
        out.append(f"{tag_value(k)}:{tag_value(v)}" if sep else tag_value(k))
    return out


@lru_cache(maxsize=65536)
def counter_key(metric: str, tags: tuple) -> str:
    return metric + "|" + ",".join(f"{k}:{tag_value(v)}" for k, v in sorted(tags))


def split_key(key: str) -> tuple[str, list[str]]:
    metric, _, tags = key.partition("|")
    return metric, (tags.split(",") if tags else [])


class Bag:
    __slots__ = ("counters", "sketches", "labels")

    def __init__(self):
        self.counters: dict[str, float] = {}
        self.sketches: dict = {}
        self.labels: dict[str, str] = {}

    def count(self, metric: str, n: float = 1, **tags) -> None:
        key = counter_key(metric, tuple(tags.items()))
        self.counters[key] = self.counters.get(key, 0) + n

    def sample(self, name: str, value: float) -> None:
        sk = self.sketches.get(name)
        if sk is None:
            sk = self.sketches[name] = new_sketch()
        sk.add(value)

    def merge(self, other: Bag) -> None:
        for k, v in other.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        for k, sk in other.sketches.items():
            mine = self.sketches.get(k)
            if mine is None:
                mine = self.sketches[k] = new_sketch()
            mine.merge(sk)
        self.labels.update(other.labels)

    def to_dict(self) -> dict:
        return {"c": self.counters, "s": {k: to_compact(v) for k, v in self.sketches.items()}, "l": self.labels}

    @classmethod
    def from_dict(cls, d: dict) -> Bag:
        b = cls()
        b.counters = dict(d.get("c") or {})
        b.sketches = {k: from_compact(v) for k, v in (d.get("s") or {}).items()}
        b.labels = dict(d.get("l") or {})
        return b

    def __eq__(self, other) -> bool:
        return isinstance(other, Bag) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Bag(labels={self.labels}, counters={len(self.counters)}, sketches={list(self.sketches)})"


def _flag(v) -> str:
    return "unknown" if v is None else ("true" if v else "false")


def add_event(bag: Bag, ev) -> None:
    """One event's contribution to its flow's bag."""
    if ev.flow_name:
        bag.labels["flow_name"] = ev.flow_name
    bag.labels["flow_id"] = ev.flow_id or "unknown"
    et = ev.event_type
    bag.count("events", event_type=et.lower())
    if et == "FLOW_FAIL":
        bag.count("failures", error_type=ev.error_type or "unknown", fatal=_flag(ev.fatal))
    if ev.outcome:
        bag.count("_ended", outcome=ev.outcome)
        if ev.duration_ms is not None:
            bag.sample("duration", ev.duration_ms)
        if ev.step_count is not None:
            bag.count("steps", ev.step_count)
            bag.count("_steps_n")
    elif et == "FLOW_RATE_LIMIT":
        bag.count("rate_limited", hostname=ev.hostname or "unknown", status_code=ev.status_code or "unknown")
    elif et == "FLOW_THROTTLE":
        bag.count("throttled", throttling_type=ev.throttling_type or "unknown",
                  throttling_level=ev.throttling_level or "unknown")


def add_chain(bag: Bag, summary: dict) -> None:
    """A closed chain's contribution to its root flow's chain bag."""
    bag.labels["root_flow_id"] = summary.get("root_flow_id") or "unknown"
    if summary.get("root_flow_name"):
        bag.labels["root_flow_name"] = summary["root_flow_name"]
    bag.count("chains", status=summary["status"], had_failures=_flag(bool(summary.get("had_failures"))))
    if summary.get("duration_ms") is not None:
        bag.sample("chain.duration", summary["duration_ms"])


def add_org_steps(bag: Bag, ev) -> None:
    """Steps an ended execution used, for the org's month-to-date bag."""
    bag.labels["org"] = ev.org_name
    bag.count("_steps_month", ev.step_count or 0)


def _point(metric: str, mtype: int, ts: int, value: float, tags: list[str], interval: int | None = None) -> dict:
    s = {"metric": metric, "type": mtype, "points": [{"timestamp": ts, "value": float(value)}], "tags": tags}
    if interval:
        s["interval"] = interval
    return s


COUNT, GAUGE = 1, 3


def render_series(group: str, window_start_ms: int, window_seconds: int, bag: Bag, *, prefix: str = "okta.workflows",
                  base_tags: list[str] | tuple = (), monthly_step_limit: int | None = None,
                  at_ms: int | None = None) -> list[dict]:
    """Datadog v2 series (MetricSeries.to_dict() shape) for one group's merged bag in one window.

    Every point carries the window start as its timestamp, so re-sending replaces (Datadog keeps the last value
    for the same series and timestamp). The org group's month-to-date gauge is stamped `at_ms` (the current
    window) instead, since its window is a calendar month."""
    ts = window_start_ms // 1000
    base = list(base_tags)
    if group.startswith("org:"):
        tags = [f"org:{tag_value(bag.labels.get('org') or group[4:])}", *base]
        steps = bag.counters.get(counter_key("_steps_month", ()), 0)
        stamp = (at_ms if at_ms is not None else window_start_ms) // 1000
        out = [_point(f"{prefix}.steps.month_to_date", GAUGE, stamp, steps, tags)]
        if monthly_step_limit:
            out.append(_point(f"{prefix}.steps.limit_utilization", GAUGE, stamp, steps / monthly_step_limit, tags))
        return out
    label_tags = [f"{k}:{tag_value(v)}" for k, v in sorted(bag.labels.items())]
    out = []
    ended: dict[str, float] = {}
    steps_n = 0.0
    for key, value in bag.counters.items():
        metric, tags = split_key(key)
        if metric == "_ended":
            ended[tags[0].split(":", 1)[1]] = value
        elif metric == "_steps_n":
            steps_n = value
        elif not metric.startswith("_"):
            out.append(_point(f"{prefix}.{metric}", COUNT, ts, value, [*label_tags, *tags, *base], window_seconds))
    common = [*label_tags, *base]
    done = sum(ended.values())
    if done:
        out.append(_point(f"{prefix}.error_rate", GAUGE, ts, ended.get("failed", 0) / done, common))
    if steps_n:
        steps = bag.counters.get(counter_key("steps", ()), 0)
        out.append(_point(f"{prefix}.steps.avg", GAUGE, ts, steps / steps_n, common))
    for name, quantiles in (("duration", ((".p50", 0.5), (".p95", 0.95), (".p99", 0.99))),
                            ("chain.duration", ((".p95", 0.95),))):
        sk = bag.sketches.get(name)
        if sk is None or not sk.count:
            continue
        out.append(_point(f"{prefix}.{name}.avg", GAUGE, ts, sk.sum / sk.count, common))
        out.append(_point(f"{prefix}.{name}.max", GAUGE, ts, sk._max, common))
        for suffix, q in quantiles:
            out.append(_point(f"{prefix}.{name}{suffix}", GAUGE, ts, quantile(sk, q), common))
    return out
