"""Per-series scoring policy: which direction is bad, spread floors, sensitivity and minimum-impact floors.

Every scored series starts from its signal's :class:`SignalPolicy` (:data:`DEFAULT_POLICIES` for the golden
signals) and then takes the settings of each :class:`PolicyOverride` whose label matchers (Prometheus
semantics, :class:`storage.matchers.Matcher`) select it, in order: a later override wins for the settings it
names, and settings it leaves out are inherited. So ``signal="latency_p99_seconds"`` can lower the sensitivity of
every latency and ``job="gift"`` can then raise one job's floor.

Sensitivity multiplies the calibrated score (2 = twice as sensitive against the same rule threshold, as
Grafana ML's and Datadog's anomaly "sensitivity"/"bounds" knobs do). A minimum-impact floor ignores a deviation
``|value - baseline|`` smaller than ``max(min_impact, min_relative_impact * |baseline|)`` (value units): a
latency 3 robust sigmas above a 2 ms baseline may be rare but is harmless.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from storage.matchers import Matcher

from .robust_zscore import DIRECTIONS


@dataclass(frozen=True)
class SignalPolicy:
    """How one series is scored.

    ``direction``: ``up``, ``down`` or ``both`` (a deviation the other way scores 0); ``min_scale`` (value
    units) and ``min_relative_scale`` (fraction of the baseline): floors of the detector's spread;
    ``sensitivity`` (> 0): factor on the calibrated score; ``min_impact`` (value units) and
    ``min_relative_impact`` (fraction of the baseline): deviations below both are ignored (score 0).

    :raises ValueError: for an unknown direction, a non-positive sensitivity or a negative floor.
    """

    direction: str = "both"
    min_scale: float = 1e-9
    min_relative_scale: float = 0.0
    sensitivity: float = 1.0
    min_impact: float = 0.0
    min_relative_impact: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r}: must be one of {DIRECTIONS}")
        if not self.sensitivity > 0:
            raise ValueError(f"sensitivity={self.sensitivity}: must be > 0 (1 = as calibrated)")
        for name in ("min_scale", "min_relative_scale", "min_impact", "min_relative_impact"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")

    def impact_floor(self, baseline: float) -> float:
        """The smallest deviation that counts at ``baseline``, value units."""
        return max(self.min_impact, self.min_relative_impact * abs(baseline))


DEFAULT_POLICIES: dict[str, SignalPolicy] = {
    # Traffic: only a drop is a symptom; surges are scored by capacity signals instead. A drop must halve the
    # rate (for the ensemble: below the lowest rate it has shown; robust z: 5 x the 10 % spread floor).
    "request_rate": SignalPolicy("down", min_scale=0.1, min_relative_scale=0.1, min_relative_impact=0.5),
    # One percentage point of spread at least (robust z: 5 points above baseline reaches score 5), and one
    # point of impact: a single 5xx among a window's requests is not an incident.
    "error_ratio": SignalPolicy("up", min_scale=0.01, min_impact=0.01),
    # Spread at least 10 ms and a quarter of the baseline, impact 10 ms and half of it: tail latency is noisy,
    # the machine's load moves it by tens of percent, and a latency fault multiplies it.
    "latency_p99_seconds": SignalPolicy("up", min_scale=0.01, min_relative_scale=0.25, min_impact=0.01,
                                        min_relative_impact=0.5),
    "latency_p90_seconds": SignalPolicy("up", min_scale=0.01, min_relative_scale=0.25, min_impact=0.01,
                                        min_relative_impact=0.5),
    # Five points of the worker pool.
    "saturation_ratio": SignalPolicy("up", min_scale=0.05, min_impact=0.05),
    # Only a drop is a symptom (a warmer cache is not). Spread at least 2 points, impact 5 points: a hit ratio
    # wobbles by 1-3 points with the key mix. The ensemble's floor applies to how far a value goes beyond the
    # lowest ratio seen, and a cache that fails descends in steps as the rate window slides over the failure
    # (at 1 s scrapes and a 30 s window, 2-5 points a step), so a floor of 10 points would never see it.
    "cache_hit_ratio": SignalPolicy("down", min_scale=0.02, min_impact=0.05),
    # Only a growing backlog is a symptom. A healthy consumer is a poll or two behind, and on a quiet topic a few
    # waiting messages already read as many seconds (5 messages at 0.4/s: 12 s). Spread at least 1 s and a tenth
    # of the baseline; impact 30 s and a quarter of the baseline beyond the highest seen: a backlog that drains
    # within half a minute is batching, one that keeps growing passes 30 s within a few scrapes.
    "consumer_lag_seconds": SignalPolicy("up", min_scale=1.0, min_relative_scale=0.1, min_impact=30.0,
                                         min_relative_impact=0.25),
}
"""The golden signals' policies: one set for every job, not tuned per service. The impact floors hold for
both detectors; with the ensemble the baseline of a new record is the edge of the range the series has shown,
so its floor is on how far a value goes beyond anything seen, not on how far it is from typical."""

SETTINGS = tuple(f.name for f in dataclasses.fields(SignalPolicy))


@dataclass(frozen=True)
class PolicyOverride:
    """Settings (names of :class:`SignalPolicy` fields) for the series selected by ``matchers``.

    :raises ValueError: for a setting :class:`SignalPolicy` does not have.
    """

    matchers: tuple[Matcher, ...]
    settings: Mapping[str, float | str]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"policy override: unknown setting(s) {unknown}; use {', '.join(SETTINGS)}")

    def selects(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def resolve_policy(labels: Mapping[str, str], base: SignalPolicy, overrides: Sequence[PolicyOverride]) -> SignalPolicy:
    """``base`` with the settings of every override selecting ``labels`` applied in order.

    :raises ValueError: when the result is not a valid policy (e.g. a sensitivity of 0).
    """
    for override in overrides:
        if override.selects(labels):
            base = dataclasses.replace(base, **override.settings)
    return base
