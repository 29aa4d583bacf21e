"""Range novelty: a value outside every value the series has shown.

The remembered range ``[low, high]`` is the smallest and largest value of the last ``memory`` to
``2 * memory`` points: two blocks of ``memory`` points each keep their own min and max, the older block is
dropped when the newer one fills, so a one-off extreme stops masking the series after at most ``2 * memory``
points while values that keep returning to the edge (a CPU at 100 %, an error ratio at 0) keep it. A value
inside the range scores 0; a value outside scores

    1 + gain * excess / (high - low),      excess = how far outside the range it lies (value units)

so the calibrated score is on the record-ratio scale of :mod:`detection.calibration`: 1 at the edge of what
has been seen, 2 when the range is exceeded by ``1/gain`` of its width. This is the "spatial anomaly" check
Numenta added to its HTM detector for NAB (``numenta_detector.py``: a value beyond the min/max seen so far is
anomalous); here it is graded by the excess so larger breaks rank higher.
"""

from __future__ import annotations

import math

from .base import Score, StreamingDetector


class RangeNovelty(StreamingDetector):
    """Streaming range-novelty detector (see the module docstring).

    :param gain: score added per range width of excess (> 0).
    :param memory: block length, in points, of the remembered range (see the module docstring).
    :param min_points: values seen before scores are produced (NaN until then).
    :param min_scale: smallest range width used, in the value's unit, so a series that was nearly flat does
        not turn a change of one quantum into an enormous score. With 0, a perfectly flat history has no
        width yet and the point scores NaN (no baseline).
    :raises ValueError: for a non-positive gain or memory, or negative min_points/min_scale.
    """

    def __init__(self, gain: float = 10.0, memory: float = 100_000, min_points: int = 10, min_scale: float = 0.0):
        if gain <= 0 or memory <= 0 or min_points < 0 or min_scale < 0:
            raise ValueError(
                f"RangeNovelty(gain={gain}, memory={memory}, min_points={min_points}, min_scale={min_scale}): "
                "need gain > 0, memory > 0, min_points >= 0, min_scale >= 0"
            )
        self.gain, self.memory, self.min_points, self.min_scale = gain, memory, min_points, min_scale
        self.reset()

    def reset(self) -> None:
        """Forget the range."""
        self._old = (math.inf, -math.inf)  # (min, max) of the previous block
        self._new = (math.inf, -math.inf)  # (min, max) of the block being filled
        self._in_block = 0
        self.seen = 0
        self.baseline = self.scale = math.nan

    @property
    def low(self) -> float:
        """Smallest remembered value (inf before the first)."""
        return min(self._old[0], self._new[0])

    @property
    def high(self) -> float:
        """Largest remembered value (-inf before the first)."""
        return max(self._old[1], self._new[1])

    def step(self, timestamp_ms: int, value: float) -> float:
        """Score one value (NaN: skipped, NaN returned) against the range so far, then learn it; the
        timestamp is not used."""
        if math.isnan(value):
            return math.nan
        low, high = self.low, self.high
        if self.seen == 0:
            low = high = value
        width = max(high - low, self.min_scale)
        self.scale = width
        if value > high:
            self.baseline, excess = high, value - high
        elif value < low:
            self.baseline, excess = low, low - value
        else:
            self.baseline, excess = 0.5 * (low + high), 0.0
        if self.seen < self.min_points or width <= 0:
            score = math.nan
        else:
            score = 1.0 + self.gain * excess / width if excess > 0 else 0.0
        new_low, new_high = self._new
        self._new = (min(new_low, value), max(new_high, value))
        self._in_block += 1
        if self._in_block >= self.memory:
            self._old, self._new, self._in_block = self._new, (math.inf, -math.inf), 0
        self.seen += 1
        return score

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point (see :meth:`step`); the baseline is the range edge it broke (or the range middle)
        and the scale the range width."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        score = self.step(timestamp_ms, value)
        return Score(timestamp_ms, value, score, self.baseline, self.scale)
