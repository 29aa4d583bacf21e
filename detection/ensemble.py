"""The record-ratio ensemble: range novelty, seasonal profile and level shift, reported at onset.

Three detectors look at each point from different sides, each calibrated to the same record-ratio scale
(:mod:`detection.calibration`: 1 = as extreme as anything of its kind the series has shown):

* :class:`~detection.range_novelty.RangeNovelty` — the value leaves the range of all values seen (spikes,
  dips, breaks to a new level);
* :class:`~detection.seasonal.SeasonalProfile` — neither the daily nor the weekly pattern explains the
  recent values (a missing daily peak, a holiday, a flat day);
* :class:`~detection.changepoint.LevelShift` — the recent mean left the longer-run mean (level shifts and
  ramps inside the old range).

Because the scales agree, the ensemble's calibrated score is simply the largest of the three, and
:class:`~detection.calibration.OnsetFilter` then reports it only at the onset of an event or when it grows
(``onset_half_life=0`` switches the filter off). Scores are in record-ratio units; on NAB v1.1 the
corpus-optimal threshold is 1.07 (see :data:`SUGGESTED_THRESHOLD`).

Defaults are one parameter set for every series, chosen as round numbers on NAB's corpus-wide score (no
per-file parameters, the detector never sees labels, never the file's length). Measured on NAB v1.1 with
``opswatch bench nab --detector ensemble --results-dir /tmp/nab-ensemble --jobs 1``: standard 73.97,
reward_low_FP_rate 67.28, reward_low_FN_rate 78.05 (Numenta HTM 70.1 / 63.2 / 74.3, ARTime 74.9 / 65.2 /
80.4). Without the onset filter 72.0 standard; without the range, seasonal or level-shift member 68.2, 66.1,
70.1; any single parameter scaled by 0.5 or 1.5 gives 71.5 to 74.0 (``python -m
detection.evaluation.sensitivity``).

Cost: O(1) per point (no window is re-scanned): two profile slots read and written, six exponentially
weighted means, two ring buffers, three record peaks, a two-block range and the onset level; about 380
floats of state per series, fixed whatever the series' length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import Score, StreamingDetector
from .calibration import OnsetFilter
from .changepoint import LevelShift
from .range_novelty import RangeNovelty
from .seasonal import SeasonalProfile

RECORD_LEVEL = 1.0
"""A member whose own score reaches this is listed in ``Score.detectors`` (it agreed)."""

SUGGESTED_THRESHOLD = 1.1
"""A round alerting threshold on this scale (thresholding stays in the rules): NAB's corpus-optimal threshold
for the default ensemble is 1.07; on Gaussian noise about 1 point in 1,000 reaches 1.1."""


class Ensemble(StreamingDetector):
    """Streaming ensemble of record-ratio detectors (see the module docstring).

    :param members: ``(name, detector)`` pairs; each detector offers ``step(timestamp_ms, value) -> float``
        and ``reset()`` and exposes ``baseline``/``scale`` after a step, as the three record-ratio detectors do. Default: range, seasonal
        and level shift with their defaults, sharing ``min_scale``.
    :param onset_half_life: half-life, points, of the onset filter; 0 reports the unfiltered score.
    :param min_scale: floor of every member's scale, in the value's unit (deviations smaller than this never
        reach 1): the per-series minimum-impact floor. Used only for the default members.
    :raises ValueError: for a negative onset half-life or no members.
    """

    def __init__(
        self,
        members: Sequence[tuple[str, StreamingDetector]] | None = None,
        onset_half_life: float = 50,
        min_scale: float = 0.0,
    ):
        if members is None:
            members = (
                ("range", RangeNovelty(min_scale=min_scale)),
                ("seasonal", SeasonalProfile(min_scale=min_scale)),
                ("level_shift", LevelShift(min_scale=min_scale)),
            )
        if not members:
            raise ValueError("Ensemble needs at least one member detector")
        if onset_half_life < 0:
            raise ValueError(f"Ensemble(onset_half_life={onset_half_life}): need >= 0 (0 = no onset filter)")
        self.members = tuple(members)
        self.min_points = max(getattr(d, "min_points", 1) for _, d in self.members)
        self.onset = OnsetFilter(onset_half_life) if onset_half_life > 0 else None
        self.reset()

    def reset(self) -> None:
        """Forget everything every member has learnt."""
        for _, detector in self.members:
            detector.reset()
        if self.onset is not None:
            self.onset.reset()
        self.seen = 0

    def update(self, timestamp_ms: int, value: float) -> Score:
        """Score one point with every member, then combine (see the module docstring). The baseline and
        scale are those of the member with the highest score; ``detectors`` names the members at or above
        the record level. A NaN value is skipped: score NaN, nothing learnt."""
        if math.isnan(value):
            return Score(timestamp_ms, value, math.nan, math.nan, math.nan)
        best, winner, agreed = -math.inf, self.members[0][1], []
        for name, detector in self.members:
            score = detector.step(timestamp_ms, value)
            if score >= RECORD_LEVEL:
                agreed.append(name)
            if score > best:  # NaN (a member still warming up) never wins
                best, winner = score, detector
        if best == -math.inf:
            best = math.nan
        self.seen += 1
        reported = self.onset.update(best) if self.onset is not None else best
        return Score(timestamp_ms, value, reported, winner.baseline, winner.scale, tuple(agreed))
