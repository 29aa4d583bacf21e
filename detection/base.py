"""The detector contract (after PyOD's ``BaseDetector`` and Merlion's ``DetectorBase``).

* ``fit(series)`` learns a baseline from a ``pd.Series`` (UTC ``DatetimeIndex``) and returns ``self``.
* ``score(series)`` returns a ``pd.Series`` of anomaly scores on the same index; higher is more anomalous;
  scores are calibrated (robust z units: ~0 normal, >= 5 rare) so detectors are comparable. Thresholding
  is separate: an alert rule compares a score with its threshold.
* ``update(timestamp, value)`` is the streaming form: one point at a time, no look-ahead, bounded state;
  it returns a :class:`Score` with the explanation (baseline, deviation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import pandas as pd


@dataclass(frozen=True)
class Score:
    """One scored point.

    ``score``: calibrated anomaly score (NaN while there is no baseline yet); ``value``: the observed
    value; ``baseline``: what was expected; ``scale``: the spread used to calibrate (same unit as value).
    """

    timestamp_ms: int
    value: float
    score: float
    baseline: float
    scale: float

    @property
    def deviation(self) -> float:
        """``value - baseline``, in the unit of the value."""
        return self.value - self.baseline

    @property
    def relative_deviation(self) -> float:
        """``(value - baseline) / |baseline|``; NaN when the baseline is 0."""
        return self.deviation / abs(self.baseline) if self.baseline else math.nan


class Detector(Protocol):
    """What every detector offers; see the module docstring for the contract."""

    def fit(self, series: pd.Series) -> "Detector": ...

    def score(self, series: pd.Series) -> pd.Series: ...

    def update(self, timestamp_ms: int, value: float) -> Score: ...
