"""The scoring engine: streaming detectors for many series at once, fed every evaluation, persisted.

:class:`SeriesScorer` maps series keys to rows of a vectorised detector (:mod:`detection.vectorised`): a key
seen for the first time gets a fresh row, :meth:`SeriesScorer.remove` and :meth:`SeriesScorer.drop_idle`
compact the arrays, and :meth:`SeriesScorer.save` / :meth:`SeriesScorer.restore` keep the state across
restarts (one ``.npz`` file written atomically: temporary file, fsync, rename).

:class:`ScoringEngine` is what the pipeline runs on its golden signals: one row per (job, signal), each signal
with a policy (which direction is bad, the floors of the spread and of the impact) because an error ratio of
0.001 -> 0.003 is noise while a request rate falling by half is not. The defaults
(:data:`detection.policy.DEFAULT_POLICIES`) are one set for every job, not tuned per service; per-series
overrides, the calendar of expected events, feedback floors and re-baselining act on the raw scores through
:class:`detection.explain.SeriesReview`.

The default detector is the one ``opswatch bench nab`` scores by default: the record-ratio
:class:`detection.ensemble.Ensemble` (range novelty, seasonal profile, level shift), vectorised as
:class:`detection.vectorised.VectorEnsemble`, with the same members and the same parameters; the policy's
``min_scale`` is its minimum-impact floor, as ``Ensemble(min_scale=...)`` has. The one difference is a
reporting step, chosen as follows. NAB's score counts only the first detection in a window and charges every
later one as a false positive, so the NAB-scored ensemble ends in an :class:`~detection.calibration.OnsetFilter`
that reports a score only at the onset of an event or when it grows. An alerting rule already has that step:
the alert lifecycle (a firing alert is not paged again, ``keep_firing_for`` holds it). So the engine reports
the ensemble's calibrated score before the onset filter (:func:`calibrated_ensemble`, equal to
``Ensemble(onset_half_life=0)``), ``anomaly(job:SIGNAL)`` in the rules reads it, and running the onset filter
over these scores gives exactly NAB's (tested). Rules read the calibrated rather than the onset-filtered score
because a rule may combine signals (``LatencyAnomaly`` needs p99 *and* p90): two onset-only scores would have to
cross in the same evaluation. A record ratio is high at a fault's onset and while the fault grows (the rate
window filling), then falls once the fault's level is the new record, so the default rules fire at once
(``for: 0s``) and ``keep_firing_for`` holds the alert; ``LatencyAnomaly`` takes p99 and p90 at a record within
one 30 s window, as p90 moves a few scrapes after p99 (alerting/default_rules.yaml).

``detection.detector: robust_zscore`` runs :class:`detection.vectorised.VectorRobustZScore` instead (robust z
units: rules need thresholds like 5, not 1.1).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np

from .base import Score
from .calendar import Calendar
from .ensemble import SUGGESTED_THRESHOLD
from .explain import Explanation, SeriesReview
from .feedback import FeedbackLog
from .policy import DEFAULT_POLICIES, PolicyOverride, SignalPolicy, resolve_policy
from .rebaseline import Rebaseline, RecentValues
from .vectorised import DIRECTION_CODES, Scores, VectorDetector, VectorEnsemble, VectorRobustZScore

__all__ = ["DEFAULT_POLICIES", "DETECTORS", "ScoringEngine", "SeriesScorer", "SignalPolicy"]


STATE_FORMAT = 1
"""Version of the state file layout written by :meth:`SeriesScorer.save`."""


def _as_key(item: object) -> Hashable:
    return tuple(_as_key(x) for x in item) if isinstance(item, list) else item


class SeriesScorer:
    """Keyed rows over one vectorised detector.

    :param detector: the vectorised detector holding the rows (e.g. :class:`VectorEnsemble`).
    :param params: per-row parameters of a new key, ``key -> {name: value}`` (the detector's ``add``
        parameters); default: the detector's defaults.
    Keys must be JSON values (strings, numbers, tuples of them) so that the state can be saved.
    """

    def __init__(self, detector: VectorDetector, params: Callable[[Hashable], dict] | None = None):
        self.detector, self.params = detector, params
        self.keys: list[Hashable] = []
        self.rows: dict[Hashable, int] = {}
        self.last_ms = np.zeros(0, dtype=np.int64)  # last update per row, ms
        self._order: tuple[tuple, np.ndarray] | None = None  # last key order and its rows: the common case

    def __len__(self) -> int:
        return len(self.keys)

    def _rows_for(self, keys: Sequence[Hashable]) -> np.ndarray:
        keys = tuple(keys)
        if self._order is not None and self._order[0] == keys:
            return self._order[1]
        new = [k for k in dict.fromkeys(keys) if k not in self.rows]
        if new:  # one append for all new rows: appending row by row would copy the arrays once per series
            per_key = [self.params(key) for key in new] if self.params else [{}] * len(new)
            self.detector.add(len(new), **{name: np.array([p[name] for p in per_key]) for name in per_key[0]})
            self.rows.update((key, len(self.keys) + i) for i, key in enumerate(new))
            self.keys.extend(new)
            self.last_ms = np.concatenate([self.last_ms, np.zeros(len(new), dtype=np.int64)])
        rows = np.fromiter((self.rows[k] for k in keys), dtype=np.int64, count=len(keys))
        if len(set(keys)) != len(keys):
            raise ValueError(f"SeriesScorer.update: duplicate keys in one update, e.g. {_first_duplicate(keys)!r}")
        self._order = (keys, rows)
        return rows

    def update(self, now_ms: int, keys: Sequence[Hashable], values: np.ndarray | Sequence[float],
               learn: np.ndarray | None = None) -> Scores:
        """Score one value per key at ``now_ms`` (shape ``(n,)``, aligned with ``keys``) and learn them; a new
        key gets a fresh row, a NaN value is neither scored nor learnt (score NaN). ``learn`` (bool, shape
        ``(n,)``; default all true): where false the value is scored but the row's state is left as it was.

        :raises ValueError: for duplicate keys or values of another length than keys.
        """
        values = np.asarray(values, dtype=float)
        if values.shape != (len(keys),):
            raise ValueError(f"SeriesScorer.update: {len(keys)} keys but values of shape {values.shape}")
        rows = self._rows_for(keys)
        self.last_ms[rows] = now_ms
        if learn is not None and not learn.all():
            frozen = rows[~learn]
            saved = {name: a[frozen].copy() for name, a in self.detector.state.items()}
            out = self.update(now_ms, keys, values)
            for name, a in saved.items():
                self.detector.state[name][frozen] = a
            return out
        valid = ~np.isnan(values)
        if valid.all():
            use = slice(None) if len(rows) == len(self.keys) and np.array_equal(rows, np.arange(len(rows))) else rows
            return self.detector.update(now_ms, values, use)
        out = self.detector.update(now_ms, values[valid], rows[valid])
        nan = np.full(len(values), np.nan)

        def spread(a: np.ndarray | None, fill) -> np.ndarray | None:
            if a is None:
                return None
            full = np.full(len(values), fill, dtype=a.dtype) if a.dtype.kind != "f" else nan.copy()
            full[valid] = a
            return full

        return Scores(spread(out.score, np.nan), spread(out.baseline, np.nan), spread(out.scale, np.nan),
                      spread(out.agreed, 0))

    def remove(self, keys: Sequence[Hashable]) -> None:
        """Forget the rows of ``keys`` (unknown keys are ignored) and compact the arrays."""
        gone = {k for k in keys if k in self.rows}
        if gone:
            self._keep(np.array([k not in gone for k in self.keys], dtype=bool))

    def drop_idle(self, now_ms: int, idle_ms: int) -> list[Hashable]:
        """Forget every row not updated for more than ``idle_ms`` before ``now_ms``; returns their keys."""
        idle = now_ms - self.last_ms > idle_ms
        dropped = [k for k, gone in zip(self.keys, idle.tolist()) if gone]
        if dropped:
            self._keep(~idle)
        return dropped

    def _keep(self, mask: np.ndarray) -> None:
        self.detector.keep(mask)
        self.keys = [k for k, kept in zip(self.keys, mask.tolist()) if kept]
        self.rows = {k: i for i, k in enumerate(self.keys)}
        self.last_ms = self.last_ms[mask]
        self._order = None

    def save(self, path: str | Path) -> None:
        """Write the keys and state to ``path`` (``.npz``) atomically: a reader sees the old file or the new
        one, never a torn one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        meta = {"format": STATE_FORMAT, "detector": type(self.detector).__name__, "keys": self.keys}
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), __last_ms__=self.last_ms,
                     **{f"state_{k}": a for k, a in self.detector.state.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def restore(self, path: str | Path) -> None:
        """Replace keys and state with those saved in ``path``.

        :raises ValueError: when the file is not a state file of this detector (names the file and why).
        :raises FileNotFoundError: when ``path`` does not exist.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
                state = {k[len("state_"):]: data[k] for k in data.files if k.startswith("state_")}
                last_ms = data["__last_ms__"]
        except (KeyError, OSError, json.JSONDecodeError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"detector state {path}: not a state file ({exc})") from exc
        if meta.get("format") != STATE_FORMAT or meta.get("detector") != type(self.detector).__name__:
            raise ValueError(
                f"detector state {path}: written for {meta.get('detector')!r} format {meta.get('format')}, "
                f"this engine runs {type(self.detector).__name__!r} format {STATE_FORMAT}"
            )
        keys = [_as_key(k) for k in meta["keys"]]
        try:
            self.detector.load(state)
        except ValueError as exc:
            raise ValueError(f"detector state {path}: {exc}") from exc
        if len(self.detector) != len(keys) or len(last_ms) != len(keys):
            raise ValueError(f"detector state {path}: {len(keys)} keys but {len(self.detector)} rows")
        self.keys, self.rows = keys, {k: i for i, k in enumerate(keys)}
        self.last_ms, self._order = np.asarray(last_ms, dtype=np.int64), None


def _first_duplicate(keys: Sequence[Hashable]) -> Hashable:
    seen = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return None


DETECTORS = ("ensemble", "robust_zscore")
"""Detectors the engine runs: the default record-ratio ``ensemble`` and ``robust_zscore``."""


def calibrated_ensemble() -> VectorEnsemble:
    """The NAB-scored ensemble (:class:`VectorEnsemble`: same members, same parameters) reporting its
    calibrated score at every point, as ``Ensemble(onset_half_life=0)`` does: the onset filter is NAB's
    reporting step, the alert lifecycle is the pipeline's (see the module docstring)."""
    detector = VectorEnsemble()
    detector.onset_decay = 0.0  # an onset level of 0: every calibrated score passes the filter
    return detector


class ScoringEngine:
    """Scores ``{job: {signal: value}}`` snapshots, one row per (job, signal), all rows in one vectorised step,
    then reviews each raw score (:class:`detection.explain.SeriesReview`: calendar, direction, sensitivity,
    floors, feedback, re-baselining) and keeps its :class:`~detection.explain.Explanation`.

    A series' labels are ``{"job": job, "signal": signal}``: what policy overrides, calendar events and
    feedback select on.

    :param window: robust z-score baseline length in evaluations; :param min_points: evaluations before scoring
        (both for ``robust_zscore`` only: the ensemble has its own warm-up).
    :param policies: per-signal policies; signals without one (e.g. ``up``) are not scored.
    :param exclude_above: robust z-score of points kept out of the baseline.
    :param detector: ``"ensemble"`` (the default: record-ratio units, the NAB-scored
        :class:`detection.ensemble.Ensemble` before its onset filter, see the module docstring; the policy's
        ``min_scale`` is the floor) or ``"robust_zscore"`` (robust z units, per-signal direction and spread
        floors). With either, a deviation in the harmless direction or below the impact floors scores 0.
    :param state_path: file the state is saved to by :meth:`save` and, when it exists, restored from now.
    :param overrides: per-series policy settings by label matchers (:mod:`detection.policy`).
    :param calendar: expected events (:mod:`detection.calendar`); :param feedback: verdicts and the floors
        they set (:mod:`detection.feedback`).
    :param rebaseline_after: evaluations of a stable level shift after which the series' detector restarts
        from the new level (:mod:`detection.rebaseline`); None: never.
    :param rebaseline_threshold: raw score that counts toward a shift; default ``exclude_above`` for the robust
        z-score, the ensemble's suggested threshold for the ensemble.
    :raises ValueError: for an unknown detector or an unusable state file (named).
    """

    def __init__(self, window: int = 120, min_points: int = 20, policies: dict[str, SignalPolicy] | None = None,
                 exclude_above: float = 5.0, detector: str = "ensemble", state_path: str | Path | None = None,
                 overrides: Sequence[PolicyOverride] = (), calendar: Calendar | None = None,
                 feedback: FeedbackLog | None = None, rebaseline_after: int | None = None,
                 rebaseline_threshold: float | None = None):
        if detector not in DETECTORS:
            raise ValueError(f"ScoringEngine(detector={detector!r}): must be one of {DETECTORS}")
        self.window, self.min_points, self.exclude_above = window, min_points, exclude_above
        self.policies = DEFAULT_POLICIES if policies is None else policies
        self.overrides, self.calendar, self.feedback = tuple(overrides), calendar, feedback
        default_threshold = SUGGESTED_THRESHOLD if detector == "ensemble" else exclude_above
        self.rebaseline = None if rebaseline_after is None else Rebaseline(
            rebaseline_after, default_threshold if rebaseline_threshold is None else rebaseline_threshold)
        self.detector = detector
        if detector == "ensemble":
            self.scorer = SeriesScorer(calibrated_ensemble(), lambda key: {"min_scale": self.policy(key).min_scale})
        else:
            self.scorer = SeriesScorer(VectorRobustZScore(window, min_points, exclude_above), self._zscore_params)
        self.state_path = Path(state_path) if state_path is not None else None
        if self.state_path is not None and self.state_path.exists():
            self.scorer.restore(self.state_path)
        self.latest: dict[tuple[str, str], Score] = {}
        self.explanations: dict[tuple[str, str], Explanation] = {}  # replaced whole: readers in other threads
        self.rebaselined: dict[tuple[str, str], int] = {}  # key -> ms of its last re-baselining
        self._reviews: dict[tuple[str, str], SeriesReview] = {}
        self.recent = RecentValues()  # the last learnt values of each series, for the explanations' robust sigma

    def policy(self, key: tuple[str, str]) -> SignalPolicy:
        """The resolved policy of the series (job, signal)."""
        return self.review(key).policy

    def review(self, key: tuple[str, str]) -> SeriesReview:
        """The review of the series (job, signal), made on first use."""
        found = self._reviews.get(key)
        if found is None:
            labels = {"job": key[0], "signal": key[1]}
            policy = resolve_policy(labels, self.policies[key[1]], self.overrides)
            found = self._reviews[key] = SeriesReview(labels, policy, self.rebaseline)
        return found

    def _zscore_params(self, key: tuple[str, str]) -> dict:
        p = self.policy(key)
        return {"direction": DIRECTION_CODES[p.direction], "min_scale": p.min_scale,
                "min_relative_scale": p.min_relative_scale}

    def update(self, now_ms: int, signals: dict[str, dict[str, float]]) -> dict[tuple[str, str], Score]:
        """Score one snapshot; returns the reported scores keyed by (job, signal) (NaN values are skipped), with
        the raw detector's baseline and scale; :attr:`explanations` holds the full explanations."""
        keys, values = [], []
        for job, by_signal in signals.items():
            for signal, value in by_signal.items():
                if signal in self.policies and not math.isnan(value):
                    keys.append((job, signal))
                    values.append(value)
        if not keys:
            return {}
        reviews = [self.review(key) for key in keys]
        active = self.calendar.active(now_ms) if self.calendar is not None else []
        events = [r.events(now_ms, active) for r in reviews] if active else [()] * len(keys)
        learn = np.array([not e for e in events], dtype=bool)
        out = self.scorer.update(now_ms, keys, values, learn)
        recent_rows = self.recent.rows_for(keys)
        sigma = self.recent.sigma(recent_rows)
        self.recent.append(recent_rows[learn], np.asarray(values)[learn])
        names = VectorEnsemble.MEMBERS
        scores, explanations = {}, {}
        raw_scores, baselines, spreads, sigmas = (a.tolist() for a in (out.score, out.baseline, out.scale, sigma))
        members = [()] * len(keys) if out.agreed is None else [
            tuple(n for b, n in enumerate(names) if bits >> b & 1) for bits in out.agreed.tolist()]
        for i, key in enumerate(keys):
            agreed = members[i]
            raw = Score(now_ms, values[i], raw_scores[i], baselines[i], spreads[i], agreed)
            floors = self.feedback.floors(reviews[i].labels) if self.feedback is not None else (0.0, 0.0)
            explanation = explanations[key] = reviews[i].review(raw, events[i], floors, sigmas[i])
            scores[key] = Score(now_ms, raw.value, explanation.score, raw.baseline, raw.scale, agreed)
            if learn[i] and (points := reviews[i].learn(raw)) is not None:
                self._restart(key, points)
        self.latest.update(scores)
        self.explanations = {**self.explanations, **explanations}
        return scores

    def _restart(self, key: tuple[str, str], points: list[tuple[int, float]]) -> None:
        """Re-baseline ``key``: a fresh row that learns ``points`` (the new level), oldest first."""
        self.scorer.remove([key])
        for t, v in points:
            self.scorer.update(t, [key], [v])
        self.rebaselined[key] = points[-1][0]

    def save(self, path: str | Path | None = None) -> None:
        """Persist the detector state atomically to ``path`` (default: ``state_path``).

        :raises ValueError: when neither is given.
        """
        target = path if path is not None else self.state_path
        if target is None:
            raise ValueError("ScoringEngine.save: no path given and no state_path configured")
        self.scorer.save(target)
