"""Seasonal profile: the deviation from what this time of day and this time of week usually look like.

Two profiles are learnt from the timestamps (UTC): a daily one with ``daily_bins`` slots (48: half an hour
each) and a weekly one with ``weekly_bins`` slots (168: an hour each). Each slot holds an exponentially
weighted mean of the values that fell into it (``daily_alpha``, ``weekly_alpha`` per value; a slot starts at
its first value). A point's residual against each profile is smoothed over ``smoothing`` points (an
exponentially weighted mean of span ``smoothing``, so one noisy point does not count as a pattern change),
and the deviation is the *smaller* of the two absolute smoothed residuals: a point counts as unusual only
when neither the daily nor the weekly pattern explains it (a quiet Sunday is not unusual for the weekly
profile; a Monday holiday is unusual for both). A slot's first value only seeds it (residual 0), so the weekly
profile needs a week of data before it explains anything.

The deviation is calibrated to a record ratio (:class:`detection.calibration.RecordRatio`): 1 means as far
from the seasonal pattern as the series has ever been, within ``memory`` points.

Bounded state: ``daily_bins + weekly_bins`` floats plus a few scalars.
"""

from __future__ import annotations

import math

from .base import Score, StreamingDetector
from .calibration import RecordRatio

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


class SeasonalProfile(StreamingDetector):
    """Streaming daily + weekly profile detector (see the module docstring).

    :param daily_bins: slots per day (>= 1). :param weekly_bins: slots per week (>= 1).
    :param daily_alpha: learning rate of a daily slot, in (0, 1]. :param weekly_alpha: same, weekly.
    :param smoothing: span, in points, of the mean applied to the residuals (>= 1; 1 = none).
    :param memory: half-life of the calibration's remembered peak, points.
    :param growth: how much one point may raise that peak (see :class:`RecordRatio`).
    :param min_points: points before scores are produced. :param min_scale: calibration floor, value units.
    :raises ValueError: for bins < 1, a learning rate outside (0, 1] or smoothing < 1 (and see RecordRatio).
    """

    def __init__(
        self,
        daily_bins: int = 48,
        weekly_bins: int = 168,
        daily_alpha: float = 0.1,
        weekly_alpha: float = 0.3,
        smoothing: float = 5,
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        if daily_bins < 1 or weekly_bins < 1 or not (0 < daily_alpha <= 1 and 0 < weekly_alpha <= 1) or smoothing < 1:
            raise ValueError(
                f"SeasonalProfile(daily_bins={daily_bins}, weekly_bins={weekly_bins}, daily_alpha={daily_alpha}, "
                f"weekly_alpha={weekly_alpha}, smoothing={smoothing}): need bins >= 1, alphas in (0, 1], "
                "smoothing >= 1"
            )
        self.daily_bins, self.weekly_bins = int(daily_bins), int(weekly_bins)
        self.daily_alpha, self.weekly_alpha, self.smoothing = daily_alpha, weekly_alpha, smoothing
        self._beta = 2.0 / (smoothing + 1.0)
        self.min_points = min_points
        self.ratio = RecordRatio(memory, growth, min_points, min_scale)
        self.reset()

    def reset(self) -> None:
        """Forget both profiles and the calibration."""
        self.daily = [math.nan] * self.daily_bins
        self.weekly = [math.nan] * self.weekly_bins
        self._daily_residual = self._weekly_residual = 0.0
        self.ratio.reset()
        self.seen = 0
        self.baseline = self.scale = math.nan

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one point (NaN value: skipped, NaN returned) against the profiles, then learn it."""
        if math.isnan(value):
            return math.nan
        d_slot = (timestamp_ms % DAY_MS) * self.daily_bins // DAY_MS
        w_slot = (timestamp_ms % WEEK_MS) * self.weekly_bins // WEEK_MS
        daily, weekly = self.daily[d_slot], self.weekly[w_slot]
        beta = self._beta
        if math.isnan(daily):
            self.daily[d_slot] = value
            self._daily_residual -= beta * self._daily_residual
        else:
            self.daily[d_slot] = daily + self.daily_alpha * (value - daily)
            self._daily_residual += beta * (value - daily - self._daily_residual)
        if math.isnan(weekly):
            self.weekly[w_slot] = value
            self._weekly_residual -= beta * self._weekly_residual
        else:
            self.weekly[w_slot] = weekly + self.weekly_alpha * (value - weekly)
            self._weekly_residual += beta * (value - weekly - self._weekly_residual)
        d_dev, w_dev = abs(self._daily_residual), abs(self._weekly_residual)
        deviation = min(d_dev, w_dev)
        self.baseline = daily if d_dev <= w_dev else weekly
        if math.isnan(self.baseline):
            self.baseline = value
        self.scale = self.ratio.scale
        self.seen += 1
        return self.ratio.update(deviation)

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the profile value that explains the point
        best and the scale the deviation that scores 1."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
