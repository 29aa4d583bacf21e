"""STL baseline: the deviation from a seasonal-trend decomposition refitted on a bounded window.

Every ``every`` points the last ``size`` points are decomposed with statsmodels' STL (Cleveland, Cleveland,
McRae & Terpenning 1990, "STL: A Seasonal-Trend Decomposition Procedure Based on Loess", *Journal of Official
Statistics* 6(1); ``statsmodels.tsa.seasonal.STL``) with a period of one ``season_ms`` (a day) in points of the
window's median spacing, capped at half the window. Until the next fit, the baseline of the ``k``-th new point
is the last trend value plus the seasonal component one period earlier at the same phase (the seasonal-naive
forecast of the decomposition), so no point is ever compared with a fit that saw it.

The absolute deviation ``|value - baseline|`` is calibrated to a record ratio
(:class:`detection.calibration.RecordRatio`): 1 = as far from the STL baseline as the series has been.
Bounded state: ``size`` points, one period of seasonal values and the calibration. Nothing is scored before
the first fit (``size`` points).
"""

from __future__ import annotations

import math

import numpy as np
from statsmodels.tsa.seasonal import STL

from .base import Score, StreamingDetector
from .calibration import RecordRatio
from .refit import RefitWindow
from .seasonal import DAY_MS


class STLResidual(StreamingDetector):
    """Streaming STL-residual detector (see the module docstring).

    :param size: points in the fitting window (>= 4; the first fit waits for them).
    :param every: points between refits (>= 1). :param season_ms: the seasonal period, ms (> 0).
    :param robust: STL's robust (outlier-downweighting) fit; several times slower.
    :param memory, growth, min_points, min_scale: the calibration (see :class:`RecordRatio`).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(
        self,
        size: int = 864,
        every: int = 288,
        season_ms: int = DAY_MS,
        robust: bool = False,
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        if size < 4 or season_ms <= 0:
            raise ValueError(f"STLResidual(size={size}, season_ms={season_ms}): need size >= 4, season_ms > 0")
        self.window = RefitWindow(size, every, size)
        self.season_ms, self.robust = season_ms, robust
        self.ratio = RecordRatio(memory, growth, min_points, min_scale)
        self.min_points = size + min_points
        self.reset()

    def reset(self) -> None:
        """Forget the window, the fit and the calibration."""
        self.window.reset()
        self.ratio.reset()
        self._trend = math.nan
        self._season = np.zeros(1)  # the last period of seasonal values, oldest first
        self._ahead = 0  # points since the last fit
        self.seen = 0
        self.baseline = self.scale = math.nan

    def _fit(self) -> None:
        values = self.window.array()
        period = min(self.window.points_per(self.season_ms), len(values) // 2)
        if period >= 2:
            result = STL(values, period=period, robust=self.robust).fit()
            self._trend, self._season = float(result.trend[-1]), np.asarray(result.seasonal[-period:], dtype=float)
        else:  # less than two points per season: a level only
            self._trend, self._season = float(np.median(values)), np.zeros(1)
        self._ahead = 0
        self.window.fitted_now()

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned) against the last fit, then keep it (refitting when due)."""
        if math.isnan(value):
            return math.nan
        score = math.nan
        if self.window.fitted:
            self.baseline = self._trend + float(self._season[self._ahead % len(self._season)])
            self.scale = self.ratio.scale
            score = self.ratio.update(abs(value - self.baseline))
            self._ahead += 1
        if self.window.append(timestamp_ms, value):
            self._fit()
        self.seen += 1
        return score

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the STL forecast, the scale the deviation that
        scores 1."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
