"""Re-baselining after a confirmed level shift, so a permanent step is one detection, not weeks of them.

A detector that keeps anomalous points out of its baseline (the robust z-score does, so an outage does not
become normal) never learns a new level: a service whose latency stepped from 20 ms to 60 ms for good would
page forever. :class:`LevelShiftConfirmation` watches one series' raw scores and confirms a shift when

* the last ``after`` scored points all reached ``threshold`` with deviations of one sign, and
* the new level is distinct and stable: the robust spread (1.4826 x MAD) of the last points (up to
  :data:`REPLAY_POINTS`) is at most :data:`STABLE_FRACTION` of the shift (their median minus the baseline
  before the run), and the medians of their older and newer halves differ by no more than that spread (a
  ramp's halves differ by more than its spread, noise around a level by less).

It then hands back those last points; the caller restarts the detector's state for the series from them (the
new level), as Twitter's and Anodot's level-shift handling does. A ramp or a noisy excursion is not stable
and keeps being reported.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np

from .base import Score

REPLAY_POINTS = 32
"""Points of a run kept to seed the restarted detector; also the length of the explanation's robust sigma."""

STABLE_FRACTION = 0.5
"""The new level's robust spread must be at most this fraction of the shift."""


@dataclass(frozen=True)
class Rebaseline:
    """When to re-baseline: ``after`` consecutive points (>= 1) with a raw score >= ``threshold``.

    :raises ValueError: for ``after < 1`` or a non-positive threshold.
    """

    after: int
    threshold: float

    def __post_init__(self) -> None:
        if self.after < 1 or not self.threshold > 0:
            raise ValueError(f"Rebaseline(after={self.after}, threshold={self.threshold}): need after >= 1, threshold > 0")


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of ``values`` (NaN for fewer than 3)."""
    if len(values) < 3:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


class LevelShiftConfirmation:
    """One series' run of anomalous points (see the module docstring); nothing is kept outside a run."""

    def __init__(self, rule: Rebaseline | None):
        self.rule = rule
        self.points: deque[tuple[int, float]] = deque(maxlen=REPLAY_POINTS)  # the run's last points
        self.reset_run()

    def reset_run(self) -> None:
        self.run, self.sign, self.onset_baseline = 0, 0, math.nan
        self.points.clear()

    def update(self, raw: Score) -> list[tuple[int, float]] | None:
        """Note a learnt point and its raw score; returns the points to restart from when a shift is confirmed
        now (the run is then forgotten), else None."""
        if self.rule is None:
            return None
        sign = int(np.sign(raw.deviation)) if not math.isnan(raw.deviation) else 0
        if not raw.score >= self.rule.threshold or sign == 0 or (self.run and sign != self.sign):
            if self.run:
                self.reset_run()
            return None
        if self.run == 0:
            self.sign, self.onset_baseline = sign, raw.baseline
        self.run += 1
        self.points.append((raw.timestamp_ms, raw.value))
        if self.run < self.rule.after:
            return None
        level = np.array([v for _, v in self.points])
        shift = abs(float(np.median(level)) - self.onset_baseline)
        spread, half = robust_sigma(level), len(level) // 2
        drift = abs(float(np.median(level[half:]) - np.median(level[:half]))) if half else math.inf
        if not (spread <= STABLE_FRACTION * shift and drift <= spread):
            return None
        points = list(self.points)
        self.reset_run()
        return points


class RecentValues:
    """The last :data:`REPLAY_POINTS` learnt values of many series (one row per key), for their robust sigma,
    computed for all rows at once."""

    def __init__(self):
        self.rows: dict = {}
        self.values = np.full((0, REPLAY_POINTS), np.nan)
        self.count = np.zeros(0, dtype=np.int64)

    def rows_for(self, keys) -> np.ndarray:
        new = [k for k in dict.fromkeys(keys) if k not in self.rows]
        if new:
            start = len(self.rows)
            self.rows.update((k, start + i) for i, k in enumerate(new))
            self.values = np.vstack([self.values, np.full((len(new), REPLAY_POINTS), np.nan)])
            self.count = np.concatenate([self.count, np.zeros(len(new), dtype=np.int64)])
        return np.fromiter((self.rows[k] for k in keys), dtype=np.int64, count=len(keys))

    def sigma(self, rows: np.ndarray) -> np.ndarray:
        """1.4826 x MAD of each row's values, shape ``(len(rows),)``; NaN for rows with fewer than 3."""
        x = self.values[rows]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows still empty
            median_of = np.median if bool((self.count[rows] >= REPLAY_POINTS).all()) else np.nanmedian
            mad = median_of(np.abs(x - median_of(x, axis=1)[:, None]), axis=1)
        return np.where(self.count[rows] >= 3, 1.4826 * mad, np.nan)

    def append(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Add one value per row (rows distinct)."""
        slot = self.count[rows] % REPLAY_POINTS
        self.values[rows, slot] = values
        self.count[rows] += 1
