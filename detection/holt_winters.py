"""Holt-Winters baseline: additive exponential smoothing whose parameters are refitted on a bounded window.

Every ``every`` points statsmodels' ``ExponentialSmoothing`` (Holt 1957, Winters 1960; Hyndman &
Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., §8.3) is fitted on the last ``size`` points
with an additive season of one ``season_ms`` (a day) in points of the window's median spacing (no season when
the window holds fewer than two), no trend. Its smoothing parameters and final level and seasonal states are
then carried forward point by point with the model's own recursions, so every point is compared with the
one-step-ahead forecast made before it was seen:

    forecast_t = level + season[t - m]
    level     <- alpha * (y_t - season[t - m]) + (1 - alpha) * level
    season[t] <- gamma * (y_t - level_old)     + (1 - gamma) * season[t - m]

The absolute forecast error is calibrated to a record ratio (:class:`detection.calibration.RecordRatio`).
Bounded state: ``size`` points, one period of seasonal states, the level and the calibration.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from .base import Score, StreamingDetector
from .calibration import RecordRatio
from .refit import RefitWindow
from .seasonal import DAY_MS


class HoltWinters(StreamingDetector):
    """Streaming Holt-Winters forecast-error detector (see the module docstring).

    :param size: points in the fitting window (>= 10; the first fit waits for them).
    :param every: points between refits (>= 1). :param season_ms: the seasonal period, ms (> 0).
    :param memory, growth, min_points, min_scale: the calibration (see :class:`RecordRatio`).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(
        self,
        size: int = 2016,
        every: int = 2016,
        season_ms: int = DAY_MS,
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        if size < 10 or season_ms <= 0:
            raise ValueError(f"HoltWinters(size={size}, season_ms={season_ms}): need size >= 10, season_ms > 0")
        self.window = RefitWindow(size, every, size)
        self.season_ms = season_ms
        self.ratio = RecordRatio(memory, growth, min_points, min_scale)
        self.min_points = size + min_points
        self.reset()

    def reset(self) -> None:
        """Forget the window, the fitted model and the calibration."""
        self.window.reset()
        self.ratio.reset()
        self.alpha = self.gamma = 0.0
        self.level = math.nan
        self._season = np.zeros(1)  # seasonal states; _phase indexes the one of the next point
        self._phase = 0
        self.seen = 0
        self.baseline = self.scale = math.nan

    def _fit(self) -> None:
        values = self.window.array()
        period = self.window.points_per(self.season_ms)
        seasonal = period >= 2 and len(values) >= 2 * period + 10
        model = ExponentialSmoothing(
            values, trend=None, seasonal="add" if seasonal else None, seasonal_periods=period if seasonal else None,
            initialization_method="estimated",
        )
        with warnings.catch_warnings():  # a non-converged fit is still a usable forecaster
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = model.fit()
        self.alpha = float(fit.params["smoothing_level"])
        self.level = float(fit.level[-1])
        if seasonal:
            self.gamma = float(fit.params["smoothing_seasonal"])
            self._season = np.asarray(fit.season[-period:], dtype=float).copy()
        else:
            self.gamma, self._season = 0.0, np.zeros(1)
        self._phase = 0
        self.window.fitted_now()

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned) against the one-step forecast, then learn it."""
        if math.isnan(value):
            return math.nan
        score = math.nan
        if self.window.fitted:
            season = float(self._season[self._phase])
            self.baseline = self.level + season
            self.scale = self.ratio.scale
            score = self.ratio.update(abs(value - self.baseline))
            level = self.level
            self.level = self.alpha * (value - season) + (1 - self.alpha) * level
            self._season[self._phase] = self.gamma * (value - level) + (1 - self.gamma) * season
            self._phase = (self._phase + 1) % len(self._season)
        if self.window.append(timestamp_ms, value):
            self._fit()
        self.seen += 1
        return score

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the one-step forecast, the scale the error
        that scores 1."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
