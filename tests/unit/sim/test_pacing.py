"""The driver's pace: episode i starts at origin + i / rate, late ones at once."""

from __future__ import annotations

import pytest

from botify_sim.driver import DriveSummary, EpisodeResult, Pacer

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_episodes_start_on_the_schedule_and_late_ones_report_their_lag() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(100.0, 4.0, clock, clock.sleep)
    assert pacer.wait(0) == 0.0 and clock.now == 100.0
    assert pacer.wait(2) == 0.0 and clock.now == pytest.approx(100.5)
    clock.now = 101.3  # the previous session ran long: episode 4 was due at 101.0
    assert pacer.wait(4) == pytest.approx(0.3)
    assert clock.now == 101.3  # no sleep when late
    assert pacer.due(10) == pytest.approx(102.5)


def test_without_a_rate_nothing_waits() -> None:
    clock = FakeClock(5.0)
    pacer = Pacer(0.0, None, clock, clock.sleep)
    assert [pacer.wait(i) for i in range(100)] == [0.0] * 100 and clock.slept == []


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        Pacer(0.0, rate)


def summary(sessions: int, elapsed: float, rate: float | None, lag: float = 0.0) -> DriveSummary:
    """``sessions`` episodes, each starting ``lag`` s per episode later than the one before
    against the schedule (0: all on time)."""
    episodes = tuple(EpisodeResult(i, i, 1.0, 1, 2, None, lag * i) for i in range(sessions))
    return DriveSummary(sessions, 0, 1.0, 1.0, 2 * sessions, elapsed, episodes, rate)


def test_a_run_is_behind_when_its_sessions_start_slower_than_the_target() -> None:
    # 100 sessions at 10/s on time: the last starts at 9.9 s, and whatever the last session
    # lasts (here 2.1 s more) the run held its rate.
    on_time = summary(100, 12.0, 10.0)
    assert on_time.achieved_rate == pytest.approx(10.0) and not on_time.behind
    assert on_time.sessions_per_s == pytest.approx(100 / 12.0)
    # Each session 0.01 s later than the one before: the last starts at 9.9 + 0.99 s.
    late = summary(100, 12.0, 10.0, lag=0.01)
    assert late.achieved_rate == pytest.approx(99 / 10.89) and late.behind
    assert not summary(100, 12.0, 10.0, lag=0.001).behind  # 1 % slow: within the tolerance
    assert not summary(100, 12.0, None, lag=0.01).behind  # unpaced: nothing to fall behind
    assert summary(100, 12.0, None).achieved_rate == pytest.approx(100 / 12.0)
    assert summary(11, 1.0, None, lag=0.1).start_lag_quantile(1.0) == pytest.approx(1.0)
