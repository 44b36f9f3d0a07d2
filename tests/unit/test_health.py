"""A loop that keeps failing makes the worker unhealthy, with the reason; an old or single failure does not."""

from processor.health import Health, Loop


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_three_failures_within_the_window_are_a_problem_until_the_window_passes():
    clock = Clock()
    health = Health(3, 120.0, clock)
    for t in (0, 10):
        clock.now = t
        health.failed(Loop.AGENT, AssertionError("Unrecognized partition"))
    assert not health.failing and health.problems() == []
    clock.now = 20
    health.failed(Loop.AGENT, AssertionError("Unrecognized partition"))
    assert health.failing
    assert health.problems() == ["the agent failed 3+ times in 120 s, last: AssertionError: Unrecognized partition"]
    clock.now = 121
    assert not health.failing


def test_failures_spread_out_are_no_problem_and_loops_are_apart():
    clock = Clock()
    health = Health(3, 120.0, clock)
    for t in (0, 100, 200, 300):
        clock.now = t
        health.failed(Loop.SINK, OSError("refused"))
    assert not health.failing
    health.failed(Loop.AGENT, ValueError("x"))
    assert not health.failing
