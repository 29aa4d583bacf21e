"""Spectral residual: the saliency of the newest point in the log-amplitude spectrum of a sliding window.

After Ren et al. 2019, "Time-Series Anomaly Detection Service at Microsoft" (KDD), §4.1, applied to the last
``window`` points each time a point arrives:

1. the window is extended by ``extend_by`` estimated points (Eq. 5-6, see :func:`extend`), so the newest
   point is not at the edge of the transform;
2. ``A = |FFT(x)|``, ``L = log A``, ``R = L - mean_q(L)`` (``mean_q``: moving average of width ``q``),
   ``S = |IFFT(exp(R + i P))|`` with ``P`` the phase (the saliency map, Eq. 1-3);
3. the raw score is ``(S_n - mean(S over the z points before n)) / that mean`` (Eq. 4).

The positive raw score is calibrated to a record ratio (:class:`detection.calibration.RecordRatio`): 1 = as
salient as anything the series has shown. Cost: two FFTs of ``window + extend`` points per point. Bounded
state: ``window`` values and the calibration.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .base import Score, StreamingDetector
from .calibration import RecordRatio

EPSILON = 1e-8
"""Added to amplitudes before the log and to the local mean before dividing (the reference code's guard)."""


def saliency(values: np.ndarray, q: int = 3) -> np.ndarray:
    """The saliency map ``S`` of ``values`` (shape ``(n,)`` -> ``(n,)``), Ren et al. 2019 Eq. 1-3."""
    spectrum = np.fft.fft(values)
    amplitude = np.abs(spectrum)
    log_amplitude = np.log(amplitude + EPSILON)
    smoothed = np.convolve(log_amplitude, np.full(q, 1.0 / q), mode="same")
    residual = np.exp(log_amplitude - smoothed)
    return np.abs(np.fft.ifft(residual * spectrum / (amplitude + EPSILON)))


def extend(values: np.ndarray, lookback: int, count: int) -> np.ndarray:
    """``values`` followed by ``count`` copies of the estimated next point (Ren et al. 2019 Eq. 5-6):
    ``x_{n-m+1} + g * m`` with ``g`` the mean gradient from the point before the newest to the ``lookback``
    points before that, i.e. estimated without the newest point (as in the authors' reference code), so an
    anomalous newest point does not pull its own estimate. Needs ``len(values) >= lookback + 2``."""
    past = values[-lookback - 2 : -1]
    distances = np.arange(lookback, 0, -1)
    gradient_sum = float(np.sum((past[-1] - past[:-1]) / distances))
    return np.concatenate([values, np.full(count, past[1] + gradient_sum)])


class SpectralResidual(StreamingDetector):
    """Streaming spectral-residual detector (see the module docstring).

    :param window: points transformed per step (> ``z`` and > ``lookback``). :param q: width of the
        log-spectrum moving average (>= 1). :param z: points of the local saliency mean (>= 1).
    :param lookback: points of the gradient estimate (>= 1). :param extend_by: estimated points appended (>= 0).
    :param memory, growth, min_points, min_scale: the calibration (see :class:`RecordRatio`).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(
        self,
        window: int = 64,
        q: int = 3,
        z: int = 21,
        lookback: int = 5,
        extend_by: int = 5,
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        if q < 1 or z < 1 or lookback < 1 or extend_by < 0 or window <= max(z, lookback + 1):
            raise ValueError(
                f"SpectralResidual(window={window}, q={q}, z={z}, lookback={lookback}, extend_by={extend_by}): "
                "need q, z, lookback >= 1, extend_by >= 0, window > max(z, lookback + 1)"
            )
        self.window_size, self.q, self.z, self.lookback, self.extend_by = window, q, z, lookback, extend_by
        self.ratio = RecordRatio(memory, growth, min_points, min_scale)
        self.min_points = window + min_points
        self.reset()

    def reset(self) -> None:
        """Forget the window and the calibration."""
        self._values: deque[float] = deque(maxlen=self.window_size)
        self.ratio.reset()
        self.seen = 0
        self.baseline = self.scale = math.nan

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned) with the window ending at it; the timestamp is not used."""
        if math.isnan(value):
            return math.nan
        self._values.append(value)
        self.seen += 1
        if len(self._values) < self.window_size:
            return math.nan
        values = np.fromiter(self._values, dtype=float, count=self.window_size)
        s = saliency(extend(values, self.lookback, self.extend_by), self.q)
        n = self.window_size - 1
        local = float(np.mean(s[n - self.z : n]))
        raw = (float(s[n]) - local) / (local + EPSILON)
        self.baseline = float(np.median(values))
        self.scale = self.ratio.scale
        return self.ratio.update(max(raw, 0.0))

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the window median, the scale the raw saliency
        score that maps to 1 (dimensionless, not the value's unit)."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
