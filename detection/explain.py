"""An explanation with every scored point, and the analyst's entry point :func:`explain`.

:class:`SeriesReview` turns a detector's raw :class:`~detection.base.Score` into the score that is reported,
for one series, in this order: the calendar (:mod:`detection.calendar`: ``suppress`` -> 0, ``expect`` -> 0 for
the planned deviation), the policy's harmful direction, sensitivity and minimum-impact floor
(:mod:`detection.policy`), and the floors learnt from feedback (:mod:`detection.feedback`). It also watches
for a confirmed level shift (:mod:`detection.rebaseline`). The live engine (:mod:`detection.engine`) and
:func:`explain` run the same review, so an analyst sees what the pipeline would have reported.

Every point gets an :class:`Explanation`: observed value, baseline, deviation (absolute, relative to the
baseline, and in robust sigmas: 1.4826 x MAD of the series' last :data:`~detection.rebaseline.REPLAY_POINTS`
points before it), the detectors of the ensemble that agreed (reached their record level), the raw and the
reported score, and why a raw score was zeroed (``reason``: ``suppressed``, ``expected``, ``direction``,
``below_floor``, ``feedback``; ``event``: the calendar event's id).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Detector, Score, timestamps_ms
from .calendar import Calendar, ExpectedEvent
from .ensemble import SUGGESTED_THRESHOLD, Ensemble
from .feedback import FeedbackLog, suppressed_by_floor
from .matching import labels_key
from .policy import SignalPolicy
from .rebaseline import LevelShiftConfirmation, Rebaseline, RecentValues

COLUMNS = ("value", "baseline", "score", "raw_score", "scale", "deviation", "relative_deviation",
           "deviation_sigmas", "detectors", "reason", "event", "anomalous")
"""Columns of :func:`explain`'s frame."""


@dataclass(frozen=True)
class Explanation:
    """One scored point, explained (value units unless stated; see the module docstring)."""

    timestamp_ms: int
    value: float
    baseline: float
    score: float
    raw_score: float
    scale: float
    deviation: float
    relative_deviation: float
    deviation_sigmas: float
    detectors: tuple[str, ...] = ()
    reason: str = ""
    event: str = ""

    def to_json(self) -> dict:
        """JSON-ready: NaN and infinities become null."""
        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {"timestamp_ms": self.timestamp_ms, "value": num(self.value), "baseline": num(self.baseline),
                "score": num(self.score), "raw_score": num(self.raw_score), "scale": num(self.scale),
                "deviation": num(self.deviation), "relative_deviation": num(self.relative_deviation),
                "deviation_sigmas": num(self.deviation_sigmas), "detectors": list(self.detectors),
                "reason": self.reason, "event": self.event}


class SeriesReview:
    """The review of one series' raw scores (see the module docstring).

    :param labels: the series' labels (what calendar events and feedback select on).
    :param policy: its resolved policy; :param rebaseline: when to re-baseline (None: never).
    """

    def __init__(self, labels: Mapping[str, str], policy: SignalPolicy, rebaseline: Rebaseline | None = None):
        self.labels, self.policy = dict(labels), policy
        self.confirmation = LevelShiftConfirmation(rebaseline)

    def events(self, timestamp_ms: int, active: Iterable[ExpectedEvent]) -> tuple[ExpectedEvent, ...]:
        """The events of ``active`` that cover this series at ``timestamp_ms``: while there is one, the
        detector must score the point without learning it."""
        return tuple(e for e in active if e.covers(timestamp_ms, self.labels))

    def review(self, raw: Score, events: Iterable[ExpectedEvent] = (), floors: tuple[float, float] = (0.0, 0.0),
               sigma: float = math.nan) -> Explanation:
        """The reported score of ``raw`` and its explanation; ``floors``: the series' feedback floors; ``sigma``:
        its robust sigma before this point (value units, see :class:`~detection.rebaseline.RecentValues`)."""
        deviation, baseline = raw.deviation, raw.baseline
        score, reason, event = raw.score, "", ""
        if not math.isnan(score):
            p = self.policy
            score = score * p.sensitivity
            zeroed = None
            for e in events:
                if e.mode == "suppress" or e.expects(deviation, baseline):
                    zeroed = "suppressed" if e.mode == "suppress" else "expected"
                    event = e.id
                    break
            if zeroed is None:
                if (p.direction == "up" and deviation < 0) or (p.direction == "down" and deviation > 0):
                    zeroed = "direction"
                elif abs(deviation) < p.impact_floor(baseline):
                    zeroed = "below_floor"
                elif suppressed_by_floor(deviation, floors):
                    zeroed = "feedback"
            if zeroed is not None:
                event = event if zeroed in ("suppressed", "expected") else ""
                reason = zeroed if score > 0 else ""
                score = 0.0
        sigmas = deviation / sigma if sigma > 0 else math.nan
        return Explanation(raw.timestamp_ms, raw.value, baseline, score, raw.score, raw.scale, deviation,
                           raw.relative_deviation, sigmas, raw.detectors, reason, event if reason else "")

    def learn(self, raw: Score) -> list[tuple[int, float]] | None:
        """Note a point the detector learnt; returns the points to restart the detector from when a level shift
        is confirmed now (see :mod:`detection.rebaseline`), else None."""
        return self.confirmation.update(raw)


def _restart(detector: Detector, points: list[tuple[int, float]]) -> Detector:
    stamps = pd.to_datetime([t for t, _ in points], unit="ms", utc=True)
    return detector.fit(pd.Series([v for _, v in points], index=stamps, dtype=float))


def explain(series: pd.Series, detector: Detector | None = None, *, labels: Mapping[str, str] | None = None,
            policy: SignalPolicy | None = None, calendar: Calendar | None = None, feedback: FeedbackLog | None = None,
            rebaseline: Rebaseline | None = None, threshold: float = SUGGESTED_THRESHOLD) -> pd.DataFrame:
    """Score ``series`` point by point (streaming, no look-ahead) and explain every point.

    :param series: values with a ``DatetimeIndex`` (naive times are taken as UTC).
    :param detector: a streaming detector, continued from its current state; default a fresh
        :class:`~detection.ensemble.Ensemble` (the library's default, as NAB scores it: reported at onset);
        pass ``Ensemble(onset_half_life=0)`` for the calibrated score the live pipeline's rules read
        (:mod:`detection.engine`).
    :param labels: the series' labels, for the calendar's and the feedback's matchers.
    :param policy: direction, sensitivity and floors (default: both directions, no floor).
    :param rebaseline: re-baseline after a confirmed level shift (the detector is restarted with ``fit``).
    :param threshold: ``anomalous`` is ``score >= threshold`` (the detector's scale: about 1.1 for the
        ensemble's record ratios, 5 for robust z).
    :returns: a frame on ``series``' index with the columns :data:`COLUMNS` (``detectors`` comma-separated).
    :raises ValueError: when the index is not a ``DatetimeIndex``.
    """
    stamps = timestamps_ms(series).tolist()
    detector = Ensemble() if detector is None else detector
    labels = dict(labels or {})
    review = SeriesReview(labels, policy or SignalPolicy(), rebaseline)
    floors = feedback.floors(labels) if feedback is not None else (0.0, 0.0)
    recent = RecentValues()
    row = recent.rows_for([labels_key(labels)])
    rows = []
    for t, v in zip(stamps, series.to_numpy(dtype=float).tolist()):
        events = review.events(t, calendar.active(t)) if calendar is not None else ()
        raw = (copy.deepcopy(detector) if events else detector).update(t, v)  # a copy scores without learning
        rows.append(review.review(raw, events, floors, float(recent.sigma(row)[0])))
        if not events and not math.isnan(v):
            recent.append(row, np.array([v]))
            if (points := review.learn(raw)) is not None:
                detector = _restart(detector, points)
    frame = pd.DataFrame(
        [(e.value, e.baseline, e.score, e.raw_score, e.scale, e.deviation, e.relative_deviation, e.deviation_sigmas,
          ",".join(e.detectors), e.reason, e.event) for e in rows],
        index=series.index, columns=list(COLUMNS[:-1]))
    frame["anomalous"] = frame["score"] >= threshold
    return frame
