"""The scoring engine: one streaming detector per (job, signal), fed every evaluation.

Each signal has a policy (which direction is bad, the floors of the spread) because an error ratio of
0.001 -> 0.003 is noise while a request rate falling by half is not. The defaults below are one set
for every job; they are not tuned per service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .base import Score
from .robust_zscore import RobustZScore


@dataclass(frozen=True)
class SignalPolicy:
    """How one signal is scored: ``direction`` (up/down/both), spread floors ``min_scale`` (absolute,
    in the signal's unit) and ``min_relative_scale`` (fraction of the baseline)."""

    direction: str = "both"
    min_scale: float = 1e-9
    min_relative_scale: float = 0.0


DEFAULT_POLICIES: dict[str, SignalPolicy] = {
    # Traffic: only a drop is a symptom; surges are scored by capacity signals instead.
    "request_rate": SignalPolicy("down", min_scale=0.1, min_relative_scale=0.1),
    # One percentage point of spread at least: 5 points above baseline reaches score 5.
    "error_ratio": SignalPolicy("up", min_scale=0.01),
    # At least 10 ms and a quarter of the baseline: tail latency is noisy.
    "latency_p99_seconds": SignalPolicy("up", min_scale=0.01, min_relative_scale=0.25),
    "saturation_ratio": SignalPolicy("up", min_scale=0.05),
}


class ScoringEngine:
    """Scores ``{job: {signal: value}}`` snapshots with a :class:`RobustZScore` per (job, signal).

    :param window: baseline length in evaluations; :param min_points: evaluations before scoring.
    :param policies: per-signal policies; signals without one (e.g. ``up``) are not scored.
    """

    def __init__(self, window: int = 120, min_points: int = 20, policies: dict[str, SignalPolicy] | None = None,
                 exclude_above: float = 5.0):
        self.window, self.min_points, self.exclude_above = window, min_points, exclude_above
        self.policies = DEFAULT_POLICIES if policies is None else policies
        self._detectors: dict[tuple[str, str], RobustZScore] = {}
        self.latest: dict[tuple[str, str], Score] = {}

    def _detector(self, job: str, signal: str) -> RobustZScore:
        key = (job, signal)
        if key not in self._detectors:
            p = self.policies[signal]
            self._detectors[key] = RobustZScore(
                self.window, self.min_points, p.direction, p.min_scale, p.min_relative_scale, self.exclude_above
            )
        return self._detectors[key]

    def update(self, now_ms: int, signals: dict[str, dict[str, float]]) -> dict[tuple[str, str], Score]:
        """Score one snapshot; returns the new scores keyed by (job, signal)."""
        scores = {}
        for job, values in signals.items():
            for signal, value in values.items():
                if signal in self.policies and not math.isnan(value):
                    scores[(job, signal)] = self._detector(job, signal).update(now_ms, value)
        self.latest.update(scores)
        return scores
