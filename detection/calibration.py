"""Calibration of raw deviations to record ratios, and the onset filter that reports each event once.

A raw deviation (how far a point is from its baseline, in the value's unit) means nothing across series: 3
requests/s is nothing on a busy gateway and an outage on a quiet job. :class:`RecordRatio` divides it by the
largest deviation of the same kind the series has shown, remembered with exponential forgetting:

    ratio_t = d_t / max(peak_{t-1}, floor)        peak_t = max(peak_{t-1} * 2^(-1/memory), d_t)

so the calibrated score is in *record-ratio* units: below 1 the point is within what the series has done
before, 1 means as extreme as the most extreme deviation remembered, 2 twice that. For exchangeable data the
chance that a point sets a record among the last ``m`` is ``1/m`` (the classic record-time result, e.g.
Arnold, Balakrishnan & Nagaraja, *Records*, 1998), so ratio >= 1 is an event of tail probability of order
``1/memory`` per point, whatever the series' unit, level or tail shape. Three guards: the first ``settle``
deviations are neither scored nor remembered (they compare values with baselines seeded from a handful of
points), nothing is scored before ``min_points`` deviations have been seen, and one point can raise the
remembered peak by at most the factor ``growth``, so a single huge outlier does not blind the detector to the
next anomaly for ``memory`` points.

:class:`OnsetFilter` turns a calibrated score into an event score: it passes a score only when it is above
the level of the last passed score, which is held for ``hold`` points and then discounted by
``2^(-1/half_life)`` per point, and reports 0 otherwise. After an event's onset a record ratio falls (the new
deviation has become the remembered peak), so the event is reported at its start and again only if it grows
or recurs after its memory has faded. For any threshold this approximates "alert on the first crossing, then
stay quiet while nothing gets worse" — an alert's hold time, and what NAB's scoring rewards (only the first
detection in a window counts; every later one outside a window costs a false positive). The hold keeps an
event's own echoes quiet for a fixed time; the short decay after it lets the next event through soon.
"""

from __future__ import annotations

import math

class RecordRatio:
    """Streaming record-ratio calibration of one non-negative deviation stream.

    :param memory: half-life, in points, of the remembered peak deviation.
    :param growth: the factor by which one point may raise the remembered peak after warm-up (>= 1).
    :param min_points: deviations seen before ratios are produced (NaN until then); they seed the peak.
    :param settle: the first deviations that are ignored altogether (< ``min_points``).
    :param floor: smallest peak used as denominator, in the value's unit (a deviation below ``floor`` can
        never reach ratio 1). With 0, a series that has never deviated has no scale yet and scores NaN.
    :raises ValueError: for a non-positive memory, a growth below 1, negative floor, or not
        ``0 <= settle <= min_points``.
    """

    def __init__(
        self, memory: float = 10_000, growth: float = 3.0, min_points: int = 50, floor: float = 0.0, settle: int = 10
    ):
        if memory <= 0 or growth < 1 or floor < 0 or not 0 <= settle <= min_points:
            raise ValueError(
                f"RecordRatio(memory={memory}, growth={growth}, min_points={min_points}, floor={floor}, "
                f"settle={settle}): need memory > 0, growth >= 1, floor >= 0, 0 <= settle <= min_points"
            )
        self.memory, self.growth, self.min_points, self.floor, self.settle = memory, growth, min_points, floor, settle
        self._decay = 0.5 ** (1.0 / memory)
        self.reset()

    def reset(self) -> None:
        """Forget the peak and the warm-up count."""
        self.peak = 0.0
        self.seen = 0

    @property
    def scale(self) -> float:
        """The deviation that scores 1 right now (value units); 0 while there is none."""
        return max(self.peak, self.floor)

    def update(self, deviation: float) -> float:
        """Calibrate one deviation (>= 0, value units) against the peak so far, then remember it.

        Returns the record ratio, or NaN during warm-up. A NaN deviation returns NaN and changes nothing.
        """
        if math.isnan(deviation):
            return math.nan
        if self.seen < self.settle:
            self.seen += 1
            return math.nan
        warm = self.seen >= self.min_points
        scale = self.scale
        ratio = deviation / scale if warm and scale > 0 else math.nan
        peak = self.peak * self._decay
        if deviation > peak:
            peak = min(deviation, peak * self.growth) if warm and peak > 0 else deviation
        self.peak = peak
        self.seen += 1
        return ratio


ONSET_HALF_LIFE = 10
"""Points after which the onset filter's level counts half, once its hold is over (the ensemble's default)."""

ONSET_HOLD = 50
"""Points for which the onset filter holds the level of a reported score, so one event's echoes stay quiet
(the ensemble's default)."""


class OnsetFilter:
    """Report a calibrated score only at the onset (or growth) of an event.

    The output is the score when it exceeds ``level``, and 0 otherwise. ``level`` is the last score passed,
    held for ``hold`` points after it was passed and from then on discounted by ``2^(-1/half_life)`` per
    point. NaN passes through as NaN, counts as a point and leaves the level to decay. ``hold=0`` is a plain
    exponentially decaying level. The defaults are the ensemble's.

    :param half_life: points after which the level, once its hold is over, counts half (> 0).
    :param hold: points for which a passed score is remembered undiminished (>= 0).
    :raises ValueError: for a non-positive half-life or a negative hold.
    """

    def __init__(self, half_life: float = ONSET_HALF_LIFE, hold: int = ONSET_HOLD):
        if half_life <= 0 or hold < 0:
            raise ValueError(f"OnsetFilter(half_life={half_life}, hold={hold}): need half_life > 0, hold >= 0")
        self.half_life, self.hold = half_life, int(hold)
        self._decay = 0.5 ** (1.0 / half_life)
        self.reset()

    def reset(self) -> None:
        """Forget earlier scores."""
        self.level = 0.0
        self.age = 0  # points since the level was set, capped at hold + 1 (bounded state)

    def update(self, score: float) -> float:
        """Filter one score (see the class docstring)."""
        self.age = min(self.age + 1, self.hold + 1)
        level = self.level * self._decay if self.age > self.hold else self.level
        if math.isnan(score):
            self.level = level
            return math.nan
        if score > level:
            self.level, self.age = score, 0
            return score
        self.level = level
        return 0.0
