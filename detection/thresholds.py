"""Thresholds on calibrated scores: fixed, or adaptive by peaks over threshold (SPOT).

Calibration (:mod:`detection.calibration`, each detector's scale) makes scores comparable; a threshold turns
them into alarms. :class:`FixedThreshold` alarms at a fixed score. :class:`PeaksOverThreshold` is SPOT
(Siffer, Fouque, Termier & Largouet 2017, "Anomaly Detection in Streams with Extreme Value Theory", KDD,
Algorithms 1 and 2): the scores above a high empirical quantile ``t`` of a calibration run are modelled by a
generalised Pareto distribution (Pickands-Balkema-de Haan), and the threshold is the score exceeded with
probability ``q``:

    z_q = t + (sigma / gamma) * ((q * n / N_t)^(-gamma) - 1)        (gamma != 0; t - sigma * log(q n / N_t) at 0)

with ``n`` scores seen and ``N_t`` of them above ``t``. After calibration each score above ``z_q`` is an alarm
(and is not learnt); a score between ``t`` and ``z_q`` is a new peak and the distribution is refitted, so the
threshold follows the stream's own tail. The GPD is fitted by maximum likelihood with ``scipy.stats.genpareto``
(location 0); the paper uses Grimshaw's trick for the same estimate.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy.stats import genpareto


class FixedThreshold:
    """Alarm when a score reaches ``level`` (same unit as the score). NaN never alarms."""

    def __init__(self, level: float):
        if math.isnan(level):
            raise ValueError("FixedThreshold(level=nan): need a number")
        self.threshold = float(level)

    def update(self, score: float) -> bool:
        """True when ``score >= threshold``."""
        return score >= self.threshold


class PeaksOverThreshold:
    """Streaming SPOT threshold (see the module docstring).

    :param q: target alarm probability per score, in (0, 1 - level).
    :param level: quantile of the calibration scores taken as the initial threshold ``t``, in (0, 1).
    :param init_points: scores used for calibration (no alarms before; >= 10).
    :param max_peaks: peaks kept for the fit (bounded state; the oldest is dropped).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(self, q: float = 1e-4, level: float = 0.98, init_points: int = 1000, max_peaks: int = 1000):
        if not (0 < level < 1 and 0 < q < 1 - level and init_points >= 10 and max_peaks >= 3):
            raise ValueError(
                f"PeaksOverThreshold(q={q}, level={level}, init_points={init_points}, max_peaks={max_peaks}): "
                "need 0 < level < 1, 0 < q < 1 - level, init_points >= 10, max_peaks >= 3"
            )
        self.q, self.level, self.init_points, self.max_peaks = q, level, init_points, max_peaks
        self.reset()

    def reset(self) -> None:
        """Forget the calibration and the peaks."""
        self._init: list[float] = []
        self.peaks: deque[float] = deque(maxlen=self.max_peaks)
        self.t = self.threshold = math.nan
        self.gamma = self.sigma = math.nan
        self.n = self.n_peaks = 0

    def _refit(self) -> None:
        peaks = np.fromiter(self.peaks, dtype=float, count=len(self.peaks))
        if len(peaks) < 3 or np.ptp(peaks) == 0:  # too few or identical peaks: no tail to fit, use the largest
            self.gamma, self.sigma = 0.0, 0.0
            self.threshold = self.t + (float(peaks.max()) if len(peaks) else 0.0)
            return
        gamma, _, sigma = genpareto.fit(peaks, floc=0)
        self.gamma, self.sigma = float(gamma), float(sigma)
        ratio = self.q * self.n / self.n_peaks
        if abs(self.gamma) < 1e-9:
            self.threshold = self.t - self.sigma * math.log(ratio)
        else:
            self.threshold = self.t + self.sigma / self.gamma * (ratio ** (-self.gamma) - 1.0)

    def update(self, score: float) -> bool:
        """Learn or judge one score; True when it is an alarm (above the current ``threshold``). NaN scores
        are ignored (False); nothing alarms during calibration."""
        if math.isnan(score):
            return False
        if math.isnan(self.t):
            self._init.append(score)
            if len(self._init) >= self.init_points:
                init = np.asarray(self._init)
                self.t = float(np.quantile(init, self.level))
                above = init[init > self.t] - self.t
                self.peaks.extend(above.tolist())
                self.n, self.n_peaks = len(init), len(above)
                self._init = []
                self._refit()
            return False
        if score > self.threshold:
            return True
        self.n += 1
        if score > self.t:
            self.peaks.append(score - self.t)
            self.n_peaks += 1
            self._refit()
        return False
