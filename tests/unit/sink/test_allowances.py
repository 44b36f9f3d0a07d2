"""The org's month against its allowances: the projection rule, and days until the limit."""

from datetime import UTC, datetime

import pytest

from processor.core.bag import Bag
from processor.core.windows import DAY_MS
from processor.sink.allowances import Usage, usage_values

JUNE = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)  # a 30-day month
STEPS = Usage("steps", 2000)


def month(per_day: dict[int, int]) -> Bag:
    """An org bag with `per_day[d]` steps on June d (1-based)."""
    b = Bag()
    for d, n in per_day.items():
        b.count("steps", n)
        b.count("steps.day", n, day=str(JUNE // DAY_MS + d - 1))
    return b


def test_projection_is_month_to_date_plus_the_trailing_7_days_rate_over_the_days_left():
    b = month({**{d: 100 for d in range(1, 10)}, 10: 50})  # June 10 at noon: half its day's 100 so far
    now = JUNE + 9 * DAY_MS + DAY_MS // 2
    v = usage_values(b, STEPS, JUNE, now)
    # trailing: June 4..10 noon = 6.5 days, 650 steps -> 100 a day; 20.5 days left
    assert v["month_to_date"] == 950
    assert v["projected_month_end"] == pytest.approx(950 + 100 * 20.5)
    assert v["limit"] == 2000 and v["limit_utilization"] == pytest.approx(0.475)
    assert v["days_until_limit"] == pytest.approx(10.5)


def test_the_first_hour_of_a_month_projects_from_an_hour_at_least():
    b = month({1: 10})
    v = usage_values(b, STEPS, JUNE, JUNE + 60_000)  # one minute in
    assert v["projected_month_end"] == pytest.approx(10 + 10 * 24 * (30 - 1 / 1440))


def test_a_month_that_ended_projects_its_total_and_a_reached_limit_is_zero_days_away():
    b = month({d: 100 for d in range(1, 31)})
    v = usage_values(b, STEPS, JUNE, JUNE + 31 * DAY_MS)
    assert v["projected_month_end"] == 3000 and v["days_until_limit"] == 0


def test_no_use_in_the_trailing_days_gives_no_days_until_limit_and_no_limit_no_limit_values():
    b = month({1: 100})
    assert "days_until_limit" not in usage_values(b, STEPS, JUNE, JUNE + 20 * DAY_MS)
    v = usage_values(b, Usage("steps", None), JUNE, JUNE + 20 * DAY_MS)
    assert set(v) == {"month_to_date", "projected_month_end"}
