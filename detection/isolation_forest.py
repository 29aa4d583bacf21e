"""Isolation forest over window features, refitted on a bounded window.

Each point with ``width - 1`` predecessors gets a feature vector of the last ``width`` values: the value
itself and the ``width - 1`` differences between consecutive values (a lag embedding in level and increments:
where the series is, and the shape that led there; a jump is isolated by its increment even inside the
usual range of levels). Every ``every`` feature vectors a
scikit-learn ``IsolationForest`` (Liu, Ting & Zhou 2008, "Isolation Forest", ICDM) is fitted on the last
``size`` of them; a new point is scored by the forest fitted before it arrived, with the paper's anomaly
score ``s = 2^(-E[h(x)] / c(n))`` in ``(0, 1]`` (``-IsolationForest.score_samples``; about 0.5 for ordinary
points, towards 1 for isolated ones). The excess ``max(s - 0.5, 0)`` is calibrated to a record ratio
(:class:`detection.calibration.RecordRatio`). The forest has a fixed seed, so runs repeat exactly.

Bounded state: ``size`` feature vectors of ``width`` floats, the forest (``trees`` trees of at most
``max_samples`` leaves) and the calibration.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from .base import Score, StreamingDetector, timestamps_ms
from .calibration import RecordRatio


class IsolationForestDetector(StreamingDetector):
    """Streaming isolation-forest detector (see the module docstring).

    :param width: values per feature vector (>= 2). :param size: feature vectors kept for fitting (>= 16;
        the first fit waits for them). :param every: feature vectors between refits (>= 1).
    :param trees: trees per forest. :param max_samples: sub-sample size per tree. :param seed: forest seed.
    :param memory, growth, min_points, min_scale: the calibration (see :class:`RecordRatio`).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(
        self,
        width: int = 4,
        size: int = 2000,
        every: int = 1000,
        trees: int = 50,
        max_samples: int = 256,
        seed: int = 0,
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        if width < 2 or size < 16 or every < 1 or trees < 1 or max_samples < 2:
            raise ValueError(
                f"IsolationForestDetector(width={width}, size={size}, every={every}, trees={trees}, "
                f"max_samples={max_samples}): need width >= 2, size >= 16, every >= 1, trees >= 1, max_samples >= 2"
            )
        self.width, self.size, self.every = width, size, every
        self.trees, self.max_samples, self.seed = trees, max_samples, seed
        self.ratio = RecordRatio(memory, growth, min_points, min_scale)
        self.min_points = width + size + min_points
        self.reset()

    def reset(self) -> None:
        """Forget the values, the forest and the calibration."""
        self._values: deque[float] = deque(maxlen=self.width)
        self._train: deque[tuple[float, ...]] = deque(maxlen=self.size)
        self._since_fit = 0
        self.forest: IsolationForest | None = None
        self.ratio.reset()
        self.seen = 0
        self.baseline = self.scale = math.nan

    def _fit(self) -> None:
        self.forest = IsolationForest(
            n_estimators=self.trees, max_samples=min(self.max_samples, len(self._train)), random_state=self.seed
        ).fit(np.array(self._train))
        self._since_fit = 0

    def _steps(self, values: Sequence[float]) -> np.ndarray:
        """Score ``values`` in order exactly as one :meth:`step` each would, but with one forest call per
        run of points between refits; returns the calibrated scores, shape ``(len(values),)``."""
        out = np.full(len(values), math.nan)
        pending: list[int] = []
        features: list[tuple[float, ...]] = []

        def flush() -> None:
            if pending:
                isolation = -self.forest.score_samples(np.array(features))
                for i, s in zip(pending, isolation.tolist()):
                    out[i] = self.ratio.update(max(s - 0.5, 0.0))
                pending.clear()
                features.clear()

        for i, value in enumerate(values):
            if math.isnan(value):
                continue
            self.seen += 1
            self._values.append(value)
            if len(self._values) < self.width:
                continue
            window = self._values
            feature = (value, *(window[k + 1] - window[k] for k in range(self.width - 1)))
            if self.forest is not None:
                pending.append(i)
                features.append(feature)
            self._train.append(feature)
            self._since_fit += 1
            if len(self._train) == self.size and (self.forest is None or self._since_fit >= self.every):
                flush()
                self._fit()
        flush()
        if self._values:
            self.baseline, self.scale = float(np.median(self._values)), self.ratio.scale
        return out

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned) with the current forest, then learn it; the timestamp
        is not used."""
        return float(self._steps([value])[0])

    def scores(self, stamps_ms: Sequence[int], values: Sequence[float]) -> np.ndarray:
        """The calibrated scores of ``values`` in order, equal to one :meth:`update` per point (batched forest
        calls); shape ``(n,)``. The timestamps are not used."""
        return self._steps([float(v) for v in values])

    def score(self, series: pd.Series) -> pd.Series:
        """As :meth:`StreamingDetector.score`, with the forest called once per run between refits."""
        timestamps_ms(series)
        return pd.Series(self.scores([], series.to_numpy(dtype=float)), index=series.index, name="anomaly_score")

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the median of the last ``width`` values, the
        scale the isolation excess that maps to 1 (dimensionless)."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
