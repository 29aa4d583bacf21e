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

WARM_UP_POINTS = 50
"""Points a series learns, anomalous or not, before any is kept out of its detector's state: the ensemble's
record ratios score from their 50th point (``min_points``), and the range member alone, scoring from its 10th
against the few minutes seen so far, would otherwise keep a new series' ordinary swings out, and score them,
for good."""
KEEP_OUT_AT_MOST = 60
"""Consecutive anomalous points kept out of a detector's state at most (5 minutes at 5 s scrapes); later ones are
learnt again. A frozen detector cannot follow a series that moved on (a first daily cycle's new highs, a drift,
a new level too noisy to re-baseline) and would score it for good: NAB v1.1 through the engine's review
(``exclude_above`` 1.1) scored 8.08 standard without a cap, 29.15 with 60 points, 37.84 with 12 (74.68 learning
everything); 12 points would learn the end of a minute-long fault at 5 s scrapes, which the 30 s rate window
lengthens: on a live run's replay the slow queries after a CPU saturation then score 1.06, under the rules' 1.1,
whatever the threshold (1.1-100)."""

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
        self.kept_out = 0  # consecutive anomalous points so far

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

    def excluded(self, raw: Score, threshold: float, learnt: int) -> bool:
        """Whether the detector must score ``raw`` without learning it, the series having learnt ``learnt``
        points: past :data:`WARM_UP_POINTS`, when its score times the policy's sensitivity reaches ``threshold``,
        whichever the direction and however small the deviation, for at most :data:`KEEP_OUT_AT_MOST` points in
        a row. Direction and floors
        decide what is reported, not what is normal: a fault's points the review zeroes (a rate rising when
        only a fall is harmful, a small step past a range the fault already widened), if learnt, teach the
        baseline the fault, and the return to normal then scores as one, for good, since those points are in
        turn kept out (measured on a live run's replay: a timeout cascade's traffic burst, then an hour of a
        "traffic drop")."""
        anomalous = learnt >= WARM_UP_POINTS and raw.score * self.policy.sensitivity >= threshold
        self.kept_out = self.kept_out + 1 if anomalous else 0
        return anomalous and self.kept_out <= KEEP_OUT_AT_MOST

    def note(self, raw: Score) -> list[tuple[int, float]] | None:
        """Note a point outside expected events, learnt or kept out of the baseline as anomalous; returns the
        points to restart the detector from when a level shift is confirmed now (see
        :mod:`detection.rebaseline`), else None."""
        return self.confirmation.update(raw)


def _restart(detector: Detector, points: list[tuple[int, float]]) -> Detector:
    stamps = pd.to_datetime([t for t, _ in points], unit="ms", utc=True)
    return detector.fit(pd.Series([v for _, v in points], index=stamps, dtype=float))


def explain(series: pd.Series, detector: Detector | None = None, *, labels: Mapping[str, str] | None = None,
            policy: SignalPolicy | None = None, calendar: Calendar | None = None, feedback: FeedbackLog | None = None,
            rebaseline: Rebaseline | None = None, threshold: float = SUGGESTED_THRESHOLD,
            exclude_above: float = math.inf) -> pd.DataFrame:
    """Score ``series`` point by point (streaming, no look-ahead) and explain every point.

    :param series: values with a ``DatetimeIndex`` (naive times are taken as UTC).
    :param detector: a streaming detector, continued from its current state; default a fresh
        :class:`~detection.ensemble.Ensemble` (the library's default, as NAB scores it: reported at onset);
        pass ``Ensemble(onset_half_life=0)`` for the calibrated score the live pipeline's rules read
        (:mod:`detection.engine`).
    :param labels: the series' labels, for the calendar's and the feedback's matchers.
    :param policy: direction, sensitivity and floors (default: both directions, no floor).
    :param rebaseline: re-baseline after a confirmed level shift (the detector is restarted with ``fit``).
    :param exclude_above: a point scoring this is scored but not learnt (:meth:`SeriesReview.excluded`), as the
        live engine does with ``detection.exclude_above`` set; default: every point is learnt (the engine's
        default for the ensemble).
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
    rows, exclude = [], exclude_above < math.inf
    for t, v in zip(stamps, series.to_numpy(dtype=float).tolist()):
        events = review.events(t, calendar.active(t)) if calendar is not None else ()
        before = copy.deepcopy(detector) if events or exclude else None  # to score a point without learning it
        raw = detector.update(t, v)
        rows.append(review.review(raw, events, floors, float(recent.sigma(row)[0])))
        excluded = not events and review.excluded(raw, exclude_above, int(recent.count[row[0]]))  # as the engine
        if events or excluded:
            detector = before
        if not events and not math.isnan(v):
            if not excluded:
                recent.append(row, np.array([v]))
            if (points := review.note(raw)) is not None:
                detector = _restart(detector, points)
    frame = pd.DataFrame(
        [(e.value, e.baseline, e.score, e.raw_score, e.scale, e.deviation, e.relative_deviation, e.deviation_sigmas,
          ",".join(e.detectors), e.reason, e.event) for e in rows],
        index=series.index, columns=list(COLUMNS[:-1]))
    frame["anomalous"] = frame["score"] >= threshold
    return frame
