"""Window aggregates ("bags"): mergeable counters and sketches, and their rendering into Datadog series.

Why bags: a window's value is spread over raw partitions and re-sent while the window is open. A bag holds only
what adds (counters) or merges (sketches), so the sink can merge the latest partial of every partition and send
the full value each time; Datadog keeps the last value per series and timestamp, so a re-send replaces. Gauges
(error rate, percentiles, averages) are derived from the merged bag when rendering, never stored.

Counter keys are "<metric>|<k>:<v>,<k>:<v>" (tags sorted by key, values already Datadog-normalised), or just
"<metric>" without tags; names starting with "_" are internal (inputs of gauges) and never rendered as such.
Labels are the group's identifying tags (flow_name, flow_id, ...), kept raw and normalised when rendering.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from ddsketch import DDSketch

from processor.sketch import from_compact, new_sketch, quantile, to_compact

COUNT, GAUGE = 1, 3  # datadog_api_client.v2.model.metric_intake_type.MetricIntakeType values
MAX_TAG_CHARS = 200
OUTCOMES = ("completed", "failed", "canceled")
# sketch name -> the gauges rendered from it (PRODUCT.md "Metrics")
SKETCH_GAUGES: dict[str, tuple[tuple[str, float | str], ...]] = {
    "duration": (("avg", "avg"), ("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", "max")),
    "chain.duration": (("avg", "avg"), ("p95", 0.95), ("max", "max")),
}
# labels every series of a group kind carries, with the fallback when no event said it
REQUIRED_LABELS = {"flow": ("flow_id", "flow_name"), "chain": ("root_flow_id", "root_flow_name")}

ENDED = "_ended"      # counter of ended executions, tag outcome; the error_rate's inputs
STEPS_N = "_steps_n"  # ended executions that reported a step_count; steps.avg = steps / _steps_n


# -- time -----------------------------------------------------------------------------------------------------
def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ts_ms: a multiple of size_ms since the epoch (floor, so negative
    times align down too: window_start(-1, 60_000) == -60_000)."""
    if size_ms <= 0:
        raise ValueError(f"window size must be positive, got {size_ms}")
    return ts_ms - ts_ms % size_ms


def month_start(ts_ms: int) -> int:
    """Start (ms) of the UTC calendar month holding ts_ms: the org step bags' window."""
    d = datetime.fromtimestamp(ts_ms // 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()) * 1000


# -- tags -----------------------------------------------------------------------------------------------------
_ASCII_BAD = re.compile(r"[^a-z0-9_\-:./]")
_UNDERSCORES = re.compile(r"__+")
_ALLOWED_ASCII = frozenset("0123456789_-:./")


@lru_cache(maxsize=16384)
def _normalise(s) -> str:
    s = str(s).lower()
    if s.isascii():
        s = _ASCII_BAD.sub("_", s)
    else:
        s = "".join(c if c.isalpha() or c in _ALLOWED_ASCII else "_" for c in s)
    s = _UNDERSCORES.sub("_", s).lstrip("_").rstrip("_:")
    if len(s) > MAX_TAG_CHARS:
        s = s[:MAX_TAG_CHARS].rstrip("_:")
    return s


def tag_value(s) -> str:
    """A tag value as Datadog keeps it, so what the pipeline sends is what users see and group by.

    Datadog's tag rules (docs "Getting Started with Tags" > "Define tags", and the agent's NormalizeTag): tags are
    lower-cased; they may contain Unicode letters, ASCII digits, '_', '-', ':', '.', '/'; any other character
    (space, comma, quote, emoji, ...) becomes '_'; runs of '_' collapse to one and trailing ones are dropped; a
    tag cannot end with ':'; a tag is at most 200 characters. Here, for a value: the same, plus leading '_'
    dropped and an empty result sent as "none" (an empty value would make the tag "key:", which Datadog does
    not keep). "2. Simple Helper flow " -> "2._simple_helper_flow". A fixed point:
    tag_value(tag_value(x)) == tag_value(x). The 200-character limit of the whole "key:value" tag is applied
    when rendering (see render_series).
    """
    return _normalise(s) or "none"


def _tag_key(s: str) -> str:
    """A tag key: normalised like a value, and starting with a letter (a tag's first character must be one)."""
    k = _normalise(s)
    i = 0
    while i < len(k) and not k[i].isalpha():
        i += 1
    return k[i:]


def _cap(tag: str) -> str:
    return tag if len(tag) <= MAX_TAG_CHARS else tag[:MAX_TAG_CHARS].rstrip("_:")


def parse_dd_tags(s: str | None) -> list[str]:
    """DD_TAGS, agent style: items separated by commas and/or whitespace ("env:prod,team:iam",
    "env:prod team:iam"); each "key:value" (split at the first ':') or a bare "key". Keys and values are
    normalised (tag_value; keys must start with a letter, leading other characters are dropped); an item whose
    key is empty is skipped, "key:" becomes "key"; duplicates are dropped, order kept."""
    out: list[str] = []
    for item in re.split(r"[,\s]+", s or ""):
        k, sep, v = item.partition(":")
        key = _tag_key(k)
        if not key:
            continue
        tag = _cap(f"{key}:{tag_value(v)}") if sep and v.strip() else key
        if tag not in out:
            out.append(tag)
    return out


_KEYS: dict[tuple, str] = {}
_KEYS_MAX = 100_000


def counter_key(metric: str, tags: tuple = ()) -> str:
    """"<metric>|<k>:<v>,..." for (metric, ((k, v), ...)), tags sorted by key, values normalised; cached."""
    ck = (metric, tags)
    key = _KEYS.get(ck)
    if key is None:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        key = (metric + "|" + ",".join(f"{k}:{tag_value(v)}" for k, v in sorted(tags, key=lambda t: t[0]))
               if tags else metric)
        _KEYS[ck] = key
    return key


def split_key(key: str) -> tuple[str, list[str]]:
    """"<metric>|<k>:<v>,..." -> (metric, ["k:v", ...])."""
    metric, _, tags = key.partition("|")
    return metric, (tags.split(",") if tags else [])


# -- bags -----------------------------------------------------------------------------------------------------
class Bag:
    """A mergeable window aggregate: counters add, sketches merge, labels are last-writer-wins registers.

    Labels: each tag keeps the value written with the latest event time (`at_ms`); equal times keep the greater
    value. So a bag's labels do not depend on the order in which events or partials arrive, and merge is
    commutative, associative and idempotent for them (a plain dict.update would let the merge order pick a
    renamed flow's name, and the same window could then be re-sent under another flow_name tag).
    """

    __slots__ = ("counters", "sketches", "labels", "label_ms")

    def __init__(self):
        self.counters: dict[str, float] = {}
        self.sketches: dict[str, DDSketch] = {}
        self.labels: dict[str, str] = {}
        self.label_ms: dict[str, int] = {}

    def count(self, metric: str, n: float = 1, **tags) -> None:
        key = counter_key(metric, tuple(tags.items())) if tags else metric
        c = self.counters
        c[key] = c.get(key, 0) + n

    def sample(self, sketch_name: str, value: float) -> None:
        sk = self.sketches.get(sketch_name)
        if sk is None:
            sk = self.sketches[sketch_name] = new_sketch()
        sk.add(value)

    def label(self, tag: str, value: str, at_ms: int = 0) -> None:
        """Set a label unless a later (event time) write already set it."""
        cur = self.label_ms.get(tag)
        if cur is None or at_ms > cur or (at_ms == cur and value > self.labels[tag]):
            self.labels[tag] = value
            self.label_ms[tag] = at_ms

    def merge(self, other: Bag) -> None:
        c = self.counters
        for k, v in other.counters.items():
            c[k] = c.get(k, 0) + v
        for k, sk in other.sketches.items():
            mine = self.sketches.get(k)
            if mine is None:
                mine = self.sketches[k] = new_sketch()  # merging into an empty sketch copies, never aliases
            mine.merge(sk)
        for tag, value in other.labels.items():
            self.label(tag, value, other.label_ms.get(tag, 0))

    def to_dict(self) -> dict:
        d: dict = {"c": self.counters}
        if self.sketches:
            d["s"] = {k: to_compact(v) for k, v in self.sketches.items()}
        if self.labels:
            d["l"] = self.labels
            if any(self.label_ms.values()):
                d["lt"] = self.label_ms
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Bag:
        b = cls()
        b.counters = dict(d.get("c") or {})
        b.sketches = {k: from_compact(v) for k, v in (d.get("s") or {}).items()}
        b.labels = dict(d.get("l") or {})
        lt = d.get("lt") or {}
        b.label_ms = {k: lt.get(k, 0) for k in b.labels}
        return b

    def __eq__(self, other) -> bool:
        if not isinstance(other, Bag):
            return NotImplemented
        return (self.counters == other.counters and self.labels == other.labels
                and self.label_ms == other.label_ms
                and {k: to_compact(v) for k, v in self.sketches.items()}
                == {k: to_compact(v) for k, v in other.sketches.items()})

    __hash__ = None

    def __repr__(self) -> str:
        return f"Bag(labels={self.labels}, counters={self.counters}, sketches={sorted(self.sketches)})"


# -- contributions (hot path: cached keys, no string building per event) --------------------------------------
def _flag(v) -> str:
    return "unknown" if v is None else ("true" if v else "false")


@lru_cache(maxsize=4096)
def _event_key(event_type: str) -> str:
    return counter_key("events", (("event_type", event_type.lower()),))


@lru_cache(maxsize=64)
def _ended_key(outcome: str) -> str:
    return counter_key(ENDED, (("outcome", outcome),))


def add_event(bag: Bag, ev) -> None:
    """One event's contribution to its flow's `flow:<flow_id>` bag (labels flow_id, flow_name)."""
    ts = ev.timestamp_ms
    bag.label("flow_id", ev.flow_id or "unknown", ts)
    if ev.flow_name:
        bag.label("flow_name", ev.flow_name, ts)
    c = bag.counters
    et = ev.event_type
    k = _event_key(et)
    c[k] = c.get(k, 0) + 1
    outcome = ev.outcome
    if outcome:
        k = _ended_key(outcome)
        c[k] = c.get(k, 0) + 1
        if ev.duration_ms is not None:
            bag.sample("duration", ev.duration_ms)
        if ev.step_count is not None:
            c["steps"] = c.get("steps", 0) + ev.step_count
            c[STEPS_N] = c.get(STEPS_N, 0) + 1
    if et == "FLOW_FAIL":
        k = counter_key("failures", (("error_type", ev.error_type or "unknown"), ("fatal", _flag(ev.fatal))))
        c[k] = c.get(k, 0) + 1
    elif et == "FLOW_RATE_LIMIT":
        k = counter_key("rate_limited", (("hostname", ev.hostname or "unknown"),
                                         ("status_code", ev.status_code or "unknown")))
        c[k] = c.get(k, 0) + 1
    elif et == "FLOW_THROTTLE":
        k = counter_key("throttled", (("throttling_type", ev.throttling_type or "unknown"),
                                      ("throttling_level", ev.throttling_level or "unknown")))
        c[k] = c.get(k, 0) + 1


def add_chain(bag: Bag, summary: dict) -> None:
    """A closed chain's contribution to its root flow's `chain:<root_flow_id>` bag, in the window of its end."""
    at = summary.get("end_ms") or summary.get("start_ms") or 0
    bag.label("root_flow_id", summary.get("root_flow_id") or "unknown", at)
    if summary.get("root_flow_name"):
        bag.label("root_flow_name", summary["root_flow_name"], at)
    bag.count("chains", status=summary.get("status") or "unknown",
              had_failures=_flag(bool(summary.get("had_failures"))))
    if summary.get("duration_ms") is not None:
        bag.sample("chain.duration", summary["duration_ms"])


def add_org_steps(bag: Bag, ev) -> None:
    """An ended execution's steps, into its `org:<org_name>` bag of the UTC calendar month (month_start)."""
    if not ev.outcome or ev.step_count is None:
        return
    if ev.org_name:
        bag.label("org", ev.org_name, ev.timestamp_ms)
    bag.count("steps", ev.step_count)


# -- rendering ------------------------------------------------------------------------------------------------
def _series(metric: str, mtype: int, ts: int, value: float, tags: list[str], interval: int | None) -> dict:
    s = {"metric": metric, "type": mtype, "points": [{"timestamp": ts, "value": float(value)}], "tags": tags}
    if interval is not None:
        s["interval"] = interval
    return s


def render_series(group: str, window_start_ms: int, window_seconds: int, bag: Bag, *,
                  prefix: str = "okta.workflows", base_tags: list[str] | tuple = (),
                  monthly_step_limit: int | None = None) -> list[dict]:
    """Datadog v2 series, as plain dicts in MetricSeries.to_dict() shape, for one group's merged bag.

    One point per series, stamped with the window start (seconds), so a re-send replaces the earlier value.
    Counts carry `interval` = window_seconds. Tags: the group's labels (flow groups always have flow_id and
    flow_name, chain groups root_flow_id and root_flow_name; "unknown" when no event said it), the counter's
    own tags, then base_tags (DD_TAGS, already parsed); every tag "key:value", values normalised, whole tag at
    most 200 characters. Percentiles are clamped to the exact [min, max] (the sketch's 1% may overshoot).

    The org group (`org:<org_name>`, one bag per calendar month) renders only steps.month_to_date and, when
    monthly_step_limit is set, steps.limit_utilization, tagged org; it is stamped with the window_start_ms
    passed in, so the caller passes the current window (Datadog drops points over an hour old), not the month.
    """
    ts = window_start_ms // 1000
    base = [_cap(t) for t in base_tags]
    kind, _, ident = group.partition(":")
    if kind == "org":
        tags = [_cap(f"org:{tag_value(bag.labels.get('org') or ident)}"), *base]
        steps = bag.counters.get("steps", 0)
        out = [_series(f"{prefix}.steps.month_to_date", GAUGE, ts, steps, tags, None)]
        if monthly_step_limit:
            out.append(_series(f"{prefix}.steps.limit_utilization", GAUGE, ts, steps / monthly_step_limit, tags,
                               None))
        return out

    labels = dict(bag.labels)
    for i, name in enumerate(REQUIRED_LABELS.get(kind, ())):
        labels.setdefault(name, ident if i == 0 and ident else "unknown")
    label_tags = [_cap(f"{k}:{tag_value(v)}") for k, v in sorted(labels.items())]
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
            out.append(_series(f"{prefix}.{metric}", COUNT, ts, value, [*label_tags, *map(_cap, tags), *base],
                               interval))
    done = sum(ended.values())
    if done > 0:
        out.append(_series(f"{prefix}.error_rate", GAUGE, ts, ended["failed"] / done, common, None))
    steps_n = bag.counters.get(STEPS_N, 0)
    if steps_n > 0:
        out.append(_series(f"{prefix}.steps.avg", GAUGE, ts, bag.counters.get("steps", 0) / steps_n, common,
                           None))
    for name, gauges in SKETCH_GAUGES.items():
        sk = bag.sketches.get(name)
        if sk is None or not sk.count:
            continue
        for suffix, q in gauges:
            value = sk.sum / sk.count if q == "avg" else sk._max if q == "max" else quantile(sk, q)
            out.append(_series(f"{prefix}.{name}.{suffix}", GAUGE, ts, value, common, None))
    return out
