"""Robust z-score over a rolling baseline (median and MAD), streaming.

The baseline is the median of the last ``window`` accepted points and the spread is the scaled median
absolute deviation (1.4826 * MAD, which equals the standard deviation for Gaussian noise; Rousseeuw &
Croux 1993). A rolling window follows slow trends and daily seasonality when it is short next to the
season. The score of a point is its deviation divided by the spread, in the chosen ``direction``.

Three guards make it usable on service metrics:

* the spread has floors, ``min_scale`` (absolute, in the value's unit) and ``min_relative_scale``
  (a fraction of the baseline), so a flat series (error ratio 0.000 for hours) does not turn every
  tiny blip into a huge score: a deviation must exceed ``threshold * floor`` to reach ``threshold``;
* points scoring at or above ``exclude_above`` do not enter the baseline, so a fault does not teach the
  detector that the fault is normal;
* nothing is scored before ``min_points`` points have been seen (the score is NaN until then).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd

from opswatch.errors import NotFittedError

from .base import Score

DIRECTIONS = ("up", "down", "both")


class RobustZScore:
    """Streaming robust z-score detector.

    :param window: number of recent points forming the baseline (bounded state: ``window`` floats).
    :param min_points: points needed before scores are produced.
    :param direction: ``"up"`` scores only increases, ``"down"`` only decreases, ``"both"`` either.
    :param min_scale: absolute floor of the spread, in the value's unit.
    :param min_relative_scale: floor of the spread as a fraction of ``|baseline|``.
    :param exclude_above: points scoring at or above this are kept out of the baseline.
    :raises ValueError: for a direction other than up/down/both, or a non-positive window.
    """

    def __init__(
        self,
        window: int = 120,
        min_points: int = 20,
        direction: str = "both",
        min_scale: float = 1e-9,
        min_relative_scale: float = 0.0,
        exclude_above: float = 5.0,
    ):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r}: must be one of {DIRECTIONS}")
        if window < 1 or min_points < 1 or min_points > window:
            raise ValueError(f"need 1 <= min_points ({min_points}) <= window ({window})")
        self.window, self.min_points, self.direction = window, min_points, direction
        self.min_scale, self.min_relative_scale, self.exclude_above = min_scale, min_relative_scale, exclude_above
        self._history: deque[float] = deque(maxlen=window)

    def _baseline(self) -> tuple[float, float]:
        values = np.fromiter(self._history, dtype=float)
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        return median, max(1.4826 * mad, self.min_scale, self.min_relative_scale * abs(median))

    def _directed(self, deviation: float) -> float:
        if self.direction == "up":
            return max(deviation, 0.0)
        if self.direction == "down":
            return max(-deviation, 0.0)
        return abs(deviation)

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point against the baseline so far, then learn from it. NaN values are skipped
        (scored NaN, not learned)."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        if len(self._history) < self.min_points:
            self._history.append(value)
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        baseline, scale = self._baseline()
        score = self._directed(value - baseline) / scale
        if score < self.exclude_above:
            self._history.append(value)
        return Score(timestamp_ms, value, score, baseline, scale)

    def fit(self, series: pd.Series) -> "RobustZScore":
        """Seed the baseline with the last ``window`` non-NaN values of ``series``; returns self."""
        self._history.clear()
        self._history.extend(series.dropna().to_numpy(dtype=float)[-self.window:])
        return self

    def score(self, series: pd.Series) -> pd.Series:
        """Score every point of ``series`` in order, streaming from the current baseline.

        :raises NotFittedError: when the baseline plus the series has fewer than ``min_points`` points.
        """
        if len(self._history) + series.notna().sum() < self.min_points:
            raise NotFittedError(f"RobustZScore needs {self.min_points} points, has {len(self._history)}")
        stamps = series.index.as_unit("ms").asi8 if isinstance(series.index, pd.DatetimeIndex) else range(len(series))
        scores = [self.update(int(t), float(v)).score for t, v in zip(stamps, series.to_numpy(dtype=float))]
        return pd.Series(scores, index=series.index, name="anomaly_score")
