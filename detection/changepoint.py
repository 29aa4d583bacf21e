"""Level shift: the recent mean has moved away from the longer-run mean.

For each pair ``(short, long)`` of spans (points) the detector keeps two exponentially weighted means of the
values, of span ``short`` and ``long`` (weight ``2 / (span + 1)`` per point), and compares the short mean now
with the long mean as it was ``short`` points ago, so the shift being measured has not yet leaked into the
reference:

    deviation_t = | mean_short(t) - mean_long(t - short) |

This is the two-window mean-change statistic behind CUSUM-style level-shift detection (Page 1954; Basseville &
Nikiforov, *Detection of Abrupt Changes*, 1993, ch. 2), in exponentially weighted form so the state is
O(1): two floats per pair plus a ring of ``short`` past long means. A step of height ``h`` moves the short mean
by ``h * 2 / (short + 1)`` on its first point, so a step that is large against the series' usual mean
wander is scored at once and a smaller one within a few points. Each pair's deviation is calibrated to a
record ratio (:class:`detection.calibration.RecordRatio`); the detector's score is the larger of the pairs'.
"""

from __future__ import annotations

import math
from collections import deque

from .base import Score, StreamingDetector
from .calibration import RecordRatio


class LevelShift(StreamingDetector):
    """Streaming multi-scale level-shift detector (see the module docstring).

    :param spans: ``(short, long)`` span pairs, points, each with ``1 <= short < long``.
    :param memory: half-life of each calibration's remembered peak, points.
    :param growth: how much one point may raise that peak (see :class:`RecordRatio`).
    :param min_points: points before scores are produced. :param min_scale: calibration floor, value units.
    :raises ValueError: for an empty ``spans`` or a pair not ``1 <= short < long`` (and see RecordRatio).
    """

    def __init__(
        self,
        spans: tuple[tuple[int, int], ...] = ((40, 1000), (100, 4000)),
        memory: float = 10_000,
        growth: float = 3.0,
        min_points: int = 50,
        min_scale: float = 0.0,
    ):
        spans = tuple((int(short), int(long)) for short, long in spans)
        if not spans or any(not 1 <= short < long for short, long in spans):
            raise ValueError(f"LevelShift(spans={spans}): need at least one (short, long) with 1 <= short < long")
        self.spans, self.min_points = spans, min_points
        self._alphas = [(2.0 / (short + 1.0), 2.0 / (long + 1.0)) for short, long in spans]
        self.ratios = [RecordRatio(memory, growth, min_points, min_scale) for _ in spans]
        self.reset()

    def reset(self) -> None:
        """Forget the means and the calibrations."""
        self._short = [0.0] * len(self.spans)
        self._long = [0.0] * len(self.spans)
        self._past_long = [deque(maxlen=short) for short, _ in self.spans]
        self._first = math.nan
        for ratio in self.ratios:
            ratio.reset()
        self.seen = 0
        self.baseline = self.scale = math.nan

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned), then learn it; the timestamp is not used."""
        if math.isnan(value):
            return math.nan
        if self.seen == 0:
            self._first = value
            self._short = [value] * len(self.spans)
            self._long = [value] * len(self.spans)
        best = -math.inf
        for i, (a_short, a_long) in enumerate(self._alphas):
            short = self._short[i] = self._short[i] + a_short * (value - self._short[i])
            long = self._long[i] = self._long[i] + a_long * (value - self._long[i])
            past = self._past_long[i]
            reference = past[0] if len(past) == past.maxlen else self._first  # the long mean `short` points ago
            past.append(long)
            ratio = self.ratios[i]
            scale = ratio.scale
            score = ratio.update(abs(short - reference))
            if score > best or i == 0:
                best, self.baseline, self.scale = score, reference, scale
        self.seen += 1
        return best

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the long mean the short mean is compared
        with and the scale the deviation that scores 1, both of the pair that scored highest."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
