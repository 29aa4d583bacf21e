"""Unit tests for the traffic shape over simulated time (pure functions, injected clocks, no sleeping)."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone

import pytest

from sample_platform.shape import (DAY, NOISE_SIGMA, WEEKDAY_FACTORS, SimClock, diurnal, hour_of_day, multiplier,
                                   noise, weekday, weekly)

MONDAY = datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()  # a Monday, 00:00 UTC


def at(day: int, hour: float) -> float:
    return MONDAY + day * DAY + hour * 3600


def test_calendar_helpers():
    assert weekday(MONDAY) == pytest.approx(0.0)
    assert weekday(at(5, 12)) == pytest.approx(5.5)  # Saturday noon
    assert hour_of_day(at(3, 21.25)) == pytest.approx(21.25)


def test_diurnal_has_mean_one_a_night_trough_and_an_evening_peak():
    minutes = [diurnal(MONDAY + 60 * i) for i in range(1440)]
    assert statistics.fmean(minutes) == pytest.approx(1.0, abs=1e-3)
    trough_hour = min(range(24), key=lambda h: diurnal(at(0, h)))
    peak_hour = max(range(24), key=lambda h: diurnal(at(0, h)))
    assert 3 <= trough_hour <= 5 and 20 <= peak_hour <= 22
    assert diurnal(at(0, peak_hour)) / diurnal(at(0, trough_hour)) > 1.8
    assert diurnal(at(0, 12.5)) > diurnal(at(0, 10))  # the lunch bump
    # the same hour on another day gives the same factor: it depends on the time of day only
    assert diurnal(at(4, 7.3)) == pytest.approx(diurnal(at(0, 7.3)))


def test_diurnal_is_smooth():
    steps = [abs(diurnal(MONDAY + 60 * (i + 1)) - diurnal(MONDAY + 60 * i)) for i in range(1440)]
    assert max(steps) < 0.01  # no jumps between minutes, midnight included


def test_weekly_factors_at_midday_and_no_step_at_midnight():
    for day, factor in enumerate(WEEKDAY_FACTORS):
        assert weekly(at(day, 12)) == pytest.approx(factor)
    assert statistics.fmean(WEEKDAY_FACTORS) == pytest.approx(1.0)
    assert weekly(at(5, 12)) > weekly(at(1, 12))  # Saturday busier than Tuesday
    for day in range(7):  # continuous across every midnight
        assert weekly(at(day, 0) - 1) == pytest.approx(weekly(at(day, 0)), abs=1e-4)


def test_noise_is_deterministic_slow_and_mean_one():
    assert noise(MONDAY + 1234.5, 7) == noise(MONDAY + 1234.5, 7)
    assert noise(MONDAY + 1234.5, 7) != noise(MONDAY + 1234.5, 8)
    samples = [noise(MONDAY + 30 * i, 3) for i in range(100_000)]  # ~35 days
    logs = [math.log(x) for x in samples]
    assert statistics.fmean(samples) == pytest.approx(1.0, abs=0.01)
    assert statistics.pstdev(logs) == pytest.approx(NOISE_SIGMA, rel=0.15)
    # slow wander, no jitter: within 30 s it moves less than one standard deviation
    assert max(abs(b - a) for a, b in zip(samples, samples[1:])) < NOISE_SIGMA


def test_multiplier_is_the_product():
    t = at(5, 21)
    assert multiplier(t, 1) == pytest.approx(diurnal(t) * weekly(t) * noise(t, 1))
    week = [multiplier(MONDAY + 300 * i, 1) for i in range(7 * 288)]
    assert statistics.fmean(week) == pytest.approx(1.0, abs=0.03)
    assert 0.5 < min(week) and max(week) < 1.7


class FakeReal:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_sim_clock_compresses_time():
    real = FakeReal(1_000_000.0)
    clock = SimClock(1440, start=at(0, 0), real=real)
    assert clock.now() == pytest.approx(at(0, 0))
    real.t += 60  # a real minute is a simulated day
    assert clock.now() == pytest.approx(at(1, 0))
    assert clock.real_seconds(DAY) == pytest.approx(60)
    default = SimClock(real=real)
    real.t += 10
    assert default.now() == pytest.approx(real.t)  # scale 1 from the real time


@pytest.mark.parametrize("scale", [0, -1, math.inf, math.nan, "2", True])
def test_sim_clock_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="time_scale"):
        SimClock(scale)
