"""Two-sided CUSUM: accumulated standardised drift away from the running mean (Page 1954).

Values are standardised against a running mean and standard deviation as they were before the point
arrived (exponentially weighted with span ``span`` points; equal weights while fewer points have been seen), ``z_t = (x_t - mean) / max(std, min_scale)``; the upper and
lower cumulative sums are

    S+_t = max(0, S+_{t-1} + z_t - k)        S-_t = max(0, S-_{t-1} - z_t - k)

(Page 1954, "Continuous Inspection Schemes", *Biometrika* 41; Montgomery, *Introduction to Statistical Quality
Control*, §9.1): ``k`` (in standard deviations) is half the smallest shift worth detecting, and a sum reaching
the decision interval ``h`` signals a change. The calibrated score is ``max(S+, S-) / h`` (*decision-interval*
units: 1 = Page's alarm). After an alarm both sums restart at 0 and the mean restarts at the mean of the points
since the alarming sum last left 0 (Page's estimate of the change point), so a confirmed level shift becomes
the new baseline instead of firing for weeks.

Bounded state: ten numbers.
"""

from __future__ import annotations

import math

from .base import Score, StreamingDetector


class Cusum(StreamingDetector):
    """Streaming two-sided CUSUM (see the module docstring).

    :param k: allowance, standard deviations (>= 0). :param h: decision interval, standard deviations (> 0).
    :param span: span, points, of the running mean and variance (>= 2).
    :param min_points: points before scores are produced (>= 2). :param min_scale: floor of the standard
        deviation, value units (>= 0); with 0 a series that never varied scores NaN.
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(self, k: float = 0.5, h: float = 5.0, span: float = 1000, min_points: int = 50, min_scale: float = 0.0):
        if k < 0 or h <= 0 or span < 2 or min_points < 2 or min_scale < 0:
            raise ValueError(
                f"Cusum(k={k}, h={h}, span={span}, min_points={min_points}, min_scale={min_scale}): "
                "need k >= 0, h > 0, span >= 2, min_points >= 2, min_scale >= 0"
            )
        self.k, self.h, self.min_points, self.min_scale = k, h, min_points, min_scale
        self._alpha = 2.0 / (span + 1.0)
        self.reset()

    def reset(self) -> None:
        """Forget the mean, variance and sums."""
        self.mean = self.variance = 0.0
        self.upper = self.lower = 0.0
        self._weight_count = 0  # points in the running mean, for its equal-weight start
        self._up = [0, 0.0]  # points and their sum since the upper sum last was 0
        self._down = [0, 0.0]
        self.seen = 0
        self.baseline = self.scale = math.nan

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned), then learn it; the timestamp is not used."""
        if math.isnan(value):
            return math.nan
        self.baseline = self.mean if self.seen else value
        self.scale = max(math.sqrt(self.variance), self.min_scale)
        score = math.nan
        if self.seen >= self.min_points and self.scale > 0:
            z = (value - self.mean) / self.scale
            self.upper = max(0.0, self.upper + z - self.k)
            self.lower = max(0.0, self.lower - z - self.k)
            for total, run in ((self.upper, self._up), (self.lower, self._down)):
                run[:] = [run[0] + 1, run[1] + value] if total > 0 else [0, 0.0]
            score = max(self.upper, self.lower) / self.h
        alpha = max(self._alpha, 1.0 / (self._weight_count + 1))
        delta = value - self.mean
        self.mean += alpha * delta
        self.variance = (1 - alpha) * (self.variance + alpha * delta * delta)
        self._weight_count += 1
        if score >= 1.0:  # alarm: the level since the change point is the baseline from now on
            count, total = self._up if self.upper >= self.lower else self._down
            self.mean, self._weight_count = total / count, count
            self.upper = self.lower = 0.0
            self._up, self._down = [0, 0.0], [0, 0.0]
        self.seen += 1
        return score

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the running mean, the scale the standard
        deviation used."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
