"""Rendering merged windows into Datadog v2 series (plain dicts in MetricSeries.to_dict() shape), and log items
into what Datadog's logs intake takes: the pipeline's base tags (DD_TAGS, env, service) on both."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from common.config import Config
from processor.core.bag import ENDED, OUTCOMES, STEPS_N, Bag
from processor.core.sketch import quantiles
from processor.core.tags import cap, parse_dd_tags, split_key, tag_value
from processor.core.windows import month_start, window_start
from processor.engine.watch import SEEN
from processor.sink.allowances import usage_values, usages
from processor.sink.merge import MergedWindow

COUNT, GAUGE = 1, 3  # datadog_api_client.v2.model.metric_intake_type.MetricIntakeType values
# sketch name -> the gauges rendered from it (PRODUCT.md "Metrics")
SKETCH_GAUGES: dict[str, tuple[tuple[str, float | str], ...]] = {
    "duration": (("avg", "avg"), ("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", "max")),
    "chain.duration": (("avg", "avg"), ("p95", 0.95), ("max", "max")),
    "pipeline.delay_seconds": (("max", "max"), ("p95", 0.95)),
}
# labels every series of a group kind carries, with the fallback when no event said it
REQUIRED_LABELS = {"flow": ("flow_id", "flow_name"), "chain": ("root_flow_id", "root_flow_name")}


def base_tags(cfg: Config) -> list[str]:
    """DD_TAGS, then env:<DD_ENV> and service:<DD_SERVICE> unless DD_TAGS already says them."""
    tags = parse_dd_tags(cfg.dd_tags)
    if cfg.dd_env and not any(t.startswith("env:") for t in tags):
        tags.append(f"env:{tag_value(cfg.dd_env)}")
    if not any(t.startswith("service:") for t in tags):
        tags.append(f"service:{tag_value(cfg.dd_service)}")
    return tags


class Renderer:
    """Merged windows -> series, log items -> Datadog log items, with the pipeline's settings."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.base_tags = base_tags(cfg)

    def series(self, windows: Iterable[MergedWindow], now_ms: int) -> Iterator[dict]:
        """Every window's series, window by window as they are taken (the sender takes them a slice at a time,
        so a close-out's ~20,000 series are never all held); an org month is stamped with the current window
        (Datadog drops old points)."""
        cfg = self.cfg
        for merged in windows:
            ws = window_start(now_ms, cfg.els_window_seconds * 1000) if merged.is_org else merged.ws
            yield from render_series(merged.group, ws, cfg.els_window_seconds, merged.bag(),
                                     prefix=cfg.els_metric_prefix, base_tags=self.base_tags,
                                     monthly_step_limit=cfg.els_monthly_step_limit,
                                     monthly_event_limit=cfg.els_monthly_event_limit, month_ms=merged.ws,
                                     now_ms=now_ms)

    def log(self, item: dict) -> dict:
        """A log item with the service and the base tags (after the item's own ddtags)."""
        item = dict(item)
        item.setdefault("service", self.cfg.dd_service)
        tags = list(self.base_tags)
        if item.get("ddtags"):
            tags.insert(0, item["ddtags"])
        item["ddtags"] = ",".join(tags)
        return item


def _series(metric: str, mtype: int, ts: int, value: float, tags: list[str], interval: int | None) -> dict:
    s = {"metric": metric, "type": mtype, "points": [{"timestamp": ts, "value": float(value)}], "tags": tags}
    if interval is not None:
        s["interval"] = interval
    return s


def render_series(group: str, window_start_ms: int, window_seconds: int, bag: Bag, *,
                  prefix: str = "okta.workflows", base_tags: list[str] | tuple = (),
                  monthly_step_limit: int | None = None, monthly_event_limit: int | None = None,
                  month_ms: int | None = None, now_ms: int | None = None) -> list[dict]:
    """Datadog v2 series, as plain dicts in MetricSeries.to_dict() shape, for one group's merged bag.

    One point per series, stamped with the window start (seconds), so a re-send replaces the earlier value.
    Counts carry `interval` = window_seconds. Tags: the group's labels (flow groups always have flow_id and
    flow_name, chain groups root_flow_id and root_flow_name; "unknown" when no event said it), the counter's
    own tags, then base_tags (DD_TAGS, already parsed); every tag "key:value", values normalised, whole tag at
    most 200 characters. Percentiles are clamped to the exact [min, max] (the sketch's 1% may overshoot).

    The org group (`org:<org_name>`, one bag per calendar month starting at month_ms) renders the month's steps
    and ELS events against their allowances as of now_ms (processor/sink/allowances.py), tagged org; it is
    stamped with the window_start_ms passed in, so the caller passes the current window (Datadog drops points
    over an hour old), not the month. now_ms defaults to window_start_ms, month_ms to now_ms's month.
    """
    ts = window_start_ms // 1000
    base = [cap(t) for t in base_tags]
    kind, _, ident = group.partition(":")
    if kind == "org":
        tags = [cap(f"org:{tag_value(bag.labels.get('org') or ident)}"), *base]
        now = window_start_ms if now_ms is None else now_ms
        month = month_start(now) if month_ms is None else month_ms
        return [_series(f"{prefix}.{u.name}.{suffix}", GAUGE, ts, value, tags, None)
                for u in usages(monthly_step_limit, monthly_event_limit)
                for suffix, value in usage_values(bag, u, month, now).items()]

    labels = dict(bag.labels)
    for i, name in enumerate(REQUIRED_LABELS.get(kind, ())):
        labels.setdefault(name, ident if i == 0 and ident else "unknown")
    label_tags = [cap(f"{k}:{tag_value(v)}") for k, v in sorted(labels.items())]
    common = [*label_tags, *base]
    interval = int(window_seconds)
    out: list[dict] = []
    ended = dict.fromkeys(OUTCOMES, 0)
    for key in sorted(bag.counters):
        value = bag.counters[key]
        metric, tags = split_key(key)
        if metric == ENDED:
            outcome = tags[0].partition(":")[2] if tags else ""
            if outcome in ended:
                ended[outcome] += value
        elif not metric.startswith("_"):
            out.append(_series(f"{prefix}.{metric}", COUNT, ts, value, [*label_tags, *map(cap, tags), *base],
                               interval))
    done = sum(ended.values())
    if done > 0:
        out.append(_series(f"{prefix}.error_rate", GAUGE, ts, ended["failed"] / done, common, None))
    steps_n = bag.counters.get(STEPS_N, 0)
    if steps_n > 0:
        out.append(_series(f"{prefix}.steps.avg", GAUGE, ts, bag.counters.get("steps", 0) / steps_n, common,
                           None))
    return out + _sketch_series(bag, prefix, ts, common) + _maxima_series(bag, prefix, ts, window_seconds, common,
                                                                          now_ms)


def _maxima_series(bag: Bag, prefix: str, ts: int, window_seconds: int, tags: list[str],
                   now_ms: int | None) -> list[dict]:
    """The pipeline's gauges kept as maxima (processor/engine/watch.py, reports.py): the seconds from the latest
    event of each org to the window's end (pipeline.silence_seconds), each partition's backlog, and the days left
    on each ingest host's certificate."""
    out = []
    end_ms = (ts + int(window_seconds)) * 1000
    for key in sorted(bag.maxima):
        value = bag.maxima[key]
        metric, own = split_key(key)
        if metric == SEEN:
            out.append(_series(f"{prefix}.pipeline.silence_seconds", GAUGE, ts, max(0.0, (end_ms - value) / 1000),
                               [*map(cap, own), *tags], None))
        elif not metric.startswith("_"):
            out.append(_series(f"{prefix}.{metric}", GAUGE, ts, value, [*map(cap, own), *tags], None))
    return out


def _sketch_series(bag: Bag, prefix: str, ts: int, tags: list[str]) -> list[dict]:
    """The gauges of each duration sketch (SKETCH_GAUGES): avg and max exact, percentiles from the sketch."""
    out = []
    for name, gauges in SKETCH_GAUGES.items():
        sk = bag.sketches.get(name)
        if sk is None or not sk.count:
            continue
        qs = quantiles(sk, [q for _, q in gauges if isinstance(q, float)])
        for suffix, q in gauges:
            value = sk.sum / sk.count if q == "avg" else sk.max if q == "max" else qs[q]
            out.append(_series(f"{prefix}.{name}.{suffix}", GAUGE, ts, value, tags, None))
    return out
