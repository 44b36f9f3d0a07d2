"""An org's month against its allowances: Workflows steps and ELS events, so far, projected, and against a limit.

The org bag of a calendar month (`org:<org_name>`, processor/core/contributions.py) counts the month's steps and
ELS events, in total and per UTC day. From them, at the time of sending:
- `<usage>.month_to_date`: the month's total;
- `<usage>.projected_month_end`: the total plus the trailing rate times the days left, where the trailing rate
  is what the last 7 days of this month (today included, today's part as far as it has gone) averaged per day.
  Early in a month the trailing span is shorter (from the 1st); it is never under an hour, so a first event
  does not project a month from a few seconds;
- with a monthly limit: `<usage>.limit` (the limit itself, so a monitor can divide the projection by it),
  `<usage>.limit_utilization` (month to date / limit) and `<usage>.days_until_limit`: the
  days, at the trailing rate, until the limit is reached (0 once it is; not sent while nothing was used in the
  trailing days).
Usages: `steps` (ELS_MONTHLY_STEP_LIMIT) and `events` (ELS_MONTHLY_EVENT_LIMIT: how many execution events an org
may stream depends on its agreement with Okta).
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.core.bag import Bag
from processor.core.tags import split_key
from processor.core.windows import DAY_MS, window_end

TRAILING_DAYS = 7
MIN_SPAN_DAYS = 1 / 24


@dataclass(frozen=True, slots=True)
class Usage:
    """One allowance: `name` is both its metric stem and the org bag's counter of the month's total;
    `<name>.day` counts it per UTC day (tag `day`: days since the epoch). `limit`: None for no limit."""

    name: str
    limit: int | None

    @property
    def per_day(self) -> str:
        return f"{self.name}.day"


def usages(step_limit: int | None, event_limit: int | None) -> tuple[Usage, Usage]:
    """The org's two allowances, as the sink and the status page both read them."""
    return Usage("steps", step_limit), Usage("events", event_limit)


def trailing_rate(bag: Bag, per_day: str, month_ms: int, now_ms: int) -> float:
    """Units per day over the trailing TRAILING_DAYS days of this month up to now_ms."""
    today = now_ms // DAY_MS
    first = max(month_ms // DAY_MS, today - (TRAILING_DAYS - 1))
    used = 0.0
    for key, value in bag.counters.items():
        metric, tags = split_key(key)
        if metric == per_day and tags:
            day = int(tags[0].partition(":")[2])
            if first <= day <= today:
                used += value
    span_days = max((now_ms - first * DAY_MS) / DAY_MS, MIN_SPAN_DAYS)
    return used / span_days


def usage_values(bag: Bag, usage: Usage, month_ms: int, now_ms: int) -> dict[str, float]:
    """{metric suffix: value} of one usage of the org month starting at month_ms, as of now_ms."""
    so_far = bag.counters.get(usage.name, 0)
    days_left = max(window_end(month_ms, 0, monthly=True) - max(now_ms, month_ms), 0) / DAY_MS
    rate = trailing_rate(bag, usage.per_day, month_ms, now_ms) if days_left else 0.0
    out = {"month_to_date": so_far, "projected_month_end": so_far + rate * days_left}
    if usage.limit:
        out["limit"] = usage.limit  # so a monitor can divide the projection by it
        out["limit_utilization"] = so_far / usage.limit
        if so_far >= usage.limit:
            out["days_until_limit"] = 0.0
        elif rate > 0:
            out["days_until_limit"] = (usage.limit - so_far) / rate
    return out
