"""The detector contract (after PyOD's ``BaseDetector`` and Merlion's ``DetectorBase``).

* ``fit(series)`` learns a baseline from a ``pd.Series`` (UTC ``DatetimeIndex``) and returns ``self``.
* ``score(series)`` returns a ``pd.Series`` of anomaly scores on the same index; higher is more anomalous;
  scores are calibrated (each detector states its scale, below) so one threshold means the same rarity on
  every series. Thresholding is separate: an alert rule compares a score with its threshold.
* ``update(timestamp, value)`` is the streaming form: one point at a time, no look-ahead, bounded state;
  it returns a :class:`Score` with the explanation (baseline, deviation).

Each detector documents its calibrated scale: :class:`~detection.robust_zscore.RobustZScore` gives robust z
units; the record-ratio detectors (:mod:`detection.calibration`) give the deviation divided by the largest
deviation of the same kind the series has shown (1 = as extreme as anything remembered).
:class:`StreamingDetector` derives ``fit`` and ``score`` from ``update`` so batch and streaming agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from opswatch.errors import NotFittedError


@dataclass(frozen=True)
class Score:
    """One scored point.

    ``score``: calibrated anomaly score (NaN while there is no baseline yet); ``value``: the observed
    value; ``baseline``: what was expected; ``scale``: the spread used to calibrate (same unit as value);
    ``detectors``: for an ensemble, the names of the member detectors whose own score reached their
    record level at this point (which detectors agreed), else empty.
    """

    timestamp_ms: int
    value: float
    score: float
    baseline: float
    scale: float
    detectors: tuple[str, ...] = ()

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


def timestamps_ms(series: pd.Series) -> np.ndarray:
    """The index of ``series`` as int64 milliseconds since the epoch (naive timestamps are taken as UTC).

    :raises ValueError: when the index is not a ``DatetimeIndex``.
    """
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(
            f"series {series.name!r}: index is {type(series.index).__name__}, need a DatetimeIndex (UTC timestamps)"
        )
    return series.index.as_unit("ms").asi8


class StreamingDetector:
    """Base of the streaming detectors: ``fit`` and ``score`` replay ``update`` point by point.

    Subclasses implement ``reset()`` (forget everything) and ``update(timestamp_ms, value) -> Score``; the
    batch methods then give exactly the streaming scores, with no look-ahead by construction.
    """

    min_points = 1

    def reset(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def update(self, timestamp_ms: int, value: float) -> Score:  # pragma: no cover
        raise NotImplementedError

    def fit(self, series: pd.Series) -> "StreamingDetector":
        """Forget any state, then learn from every point of ``series`` in order; returns self.

        :raises ValueError: when the index is not a ``DatetimeIndex``.
        """
        self.reset()
        for t, v in zip(timestamps_ms(series).tolist(), series.to_numpy(dtype=float).tolist()):
            self.update(t, v)
        return self

    def score(self, series: pd.Series) -> pd.Series:
        """Score every point of ``series`` in order, continuing from the current state (``fit`` or earlier
        calls); returns the calibrated scores on the same index (NaN during warm-up).

        :raises ValueError: when the index is not a ``DatetimeIndex``.
        :raises NotFittedError: when state plus series hold fewer than ``min_points`` non-NaN points.
        """
        stamps = timestamps_ms(series)
        if getattr(self, "seen", 0) + int(series.notna().sum()) < self.min_points:
            raise NotFittedError(f"{type(self).__name__} needs {self.min_points} points, has {getattr(self, 'seen', 0)}")
        update = self.update
        scores = [update(t, v).score for t, v in zip(stamps.tolist(), series.to_numpy(dtype=float).tolist())]
        return pd.Series(scores, index=series.index, name="anomaly_score", dtype=float)
