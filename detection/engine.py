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

With ``exclude_above`` set (``detection.exclude_above``; off by default for the ensemble,
:data:`ENSEMBLE_EXCLUDE_ABOVE`; 5 for the robust z-score, as :class:`~detection.robust_zscore.RobustZScore`
keeps its own), an anomaly's points are scored but not learnt: a point whose score (times the series'
sensitivity, in either direction: :meth:`SeriesReview.excluded`) reaches it leaves the series' detector state
as it was before the point. Learnt, a fault would widen the range and raise the remembered record deviations
for days (a 100,000-point range, ~6 days at 5 s), hiding any smaller fault of the same series: on a live run's
replay a database's p99 at 2.3 s from CPU saturation hid its slow queries at 25x the usual p99 four minutes
later (score 0.55; 295 with ``exclude_above`` 1.1-30, 80 with 100). The level-shift watch still sees the
kept-out points, so a stable permanent shift becomes the new baseline after ``rebaseline_after``; while the
level differs and before that, the points keep scoring as the fault they are. A series learns its first
:data:`~detection.explain.WARM_UP_POINTS` points whatever their score (young records are easily beaten), and
an episode is kept out for :data:`~detection.explain.KEEP_OUT_AT_MOST` points at most, so a detector that cannot
follow a series which moved on is not stuck. The price is on data that moves often, hence off by default:
NAB v1.1 through this review (onset filter after it, as ``opswatch bench nab`` reports; standard / low FP /
low FN) scores 29.15 / 8.41 / 41.06 at 1.1, 72.17 / 58.97 / 79.15 at 10, 73.42 / 64.04 / 78.55 at 30 and
74.16 / 68.22 / 78.18 at 100, against the detector's 74.68 / 68.71 / 78.54 (the full sweep is in the README).
The step is undone cheaply (:class:`StepUndo` saves the cells a step writes before it, then puts back the rows
whose score crossed). Like the calendar, the feedback floors and re-baselining, this exclusion is a live review
step: ``opswatch bench nab`` scores the detector without it, and the onset filter over the engine's scores equals
NAB's only with ``exclude_above=math.inf`` (tested that way).

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
from .seasonal import DAY_MS, WEEK_MS
from .vectorised import DIRECTION_CODES, Scores, VectorDetector, VectorEnsemble, VectorRobustZScore

ENSEMBLE_EXCLUDE_ABOVE = math.inf
"""The ensemble's default ``exclude_above``: off. No threshold both keeps a past fault from hiding the next one
and keeps NAB through the engine's review within a point of the detector's own 74.68 (standard) without losing
low-FN score (swept 1.1-100, README "Detection"); opt in with ``detection.exclude_above``."""

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

    def rows_of(self, keys: Sequence[Hashable]) -> np.ndarray:
        """The row numbers of ``keys``, new keys getting fresh rows.

        :raises ValueError: for duplicate keys.
        """
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
               learn: np.ndarray | Callable[[Scores], np.ndarray] | None = None) -> Scores:
        """Score one value per key at ``now_ms`` (shape ``(n,)``, aligned with ``keys``) and learn them; a new
        key gets a fresh row, a NaN value is neither scored nor learnt (score NaN). ``learn`` (bool, shape
        ``(n,)``, or a function of this step's :class:`Scores` returning one, so the decision can rest on the
        score of the same point; default all true): where false the value is scored but the row's state is
        left as it was before this update.

        :raises ValueError: for duplicate keys or values of another length than keys.
        """
        values = np.asarray(values, dtype=float)
        if values.shape != (len(keys),):
            raise ValueError(f"SeriesScorer.update: {len(keys)} keys but values of shape {values.shape}")
        rows = self.rows_of(keys)
        self.last_ms[rows] = now_ms
        if learn is None or (isinstance(learn, np.ndarray) and learn.all()):
            return self._step(now_ms, rows, values)
        before = StepUndo(self.detector, now_ms, rows)
        out = self._step(now_ms, rows, values)
        keep = np.asarray(learn(out) if callable(learn) else learn, dtype=bool)
        if not keep.all():
            before.restore(~keep)
        return out

    def _step(self, now_ms: int, rows: np.ndarray, values: np.ndarray) -> Scores:
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


class StepUndo:
    """What one step of ``detector`` is about to overwrite in ``rows`` (int array), to put back for some of them.

    A step writes each 1-D state array at its rows and each 2-D one (profiles, rings) at one column per row:
    :func:`written_columns`. Saving those cells rather than whole rows keeps an undoable step cheap: copying
    whole rows of 10,000 ensemble series takes about three times as long as the step itself. A 2-D array that
    :func:`written_columns` does not name is saved whole.
    """

    def __init__(self, detector: VectorDetector, now_ms: int, rows: np.ndarray):
        self.detector, self.rows = detector, rows
        columns = written_columns(detector, now_ms, rows)
        self.saved = {}
        for name, a in detector.state.items():
            col = columns.get(name) if a.ndim == 2 else None
            self.saved[name] = (col, a[rows].copy() if col is None else a[rows, col])

    def restore(self, mask: np.ndarray) -> None:
        """Put back the state of the rows where ``mask`` (bool, aligned with ``rows``) is true."""
        rows = self.rows[mask]
        for name, (col, saved) in self.saved.items():
            if col is None:
                self.detector.state[name][rows] = saved[mask]
            else:
                self.detector.state[name][rows, col[mask]] = saved[mask]


def learnt_points(detector: VectorDetector, rows: np.ndarray) -> np.ndarray:
    """Points each of ``rows`` has learnt (from its saved state, so the count survives a restart; the robust
    z-score's stops at its window)."""
    return detector.state["seen" if isinstance(detector, VectorEnsemble) else "count"][rows]


def written_columns(detector: VectorDetector, now_ms: int, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The column of each 2-D state array that the next step of ``detector`` at ``now_ms`` writes in each of
    ``rows`` (how :mod:`detection.vectorised` lays out its state; a test checks it against whole-row copies)."""
    st = detector.state
    if isinstance(detector, VectorRobustZScore):
        return {"history": st["next"][rows]}
    if not isinstance(detector, VectorEnsemble):
        return {}
    day, week = st["daily"].shape[1], st["weekly"].shape[1]
    columns = {"daily": np.full(len(rows), now_ms % DAY_MS * day // DAY_MS),
               "weekly": np.full(len(rows), now_ms % WEEK_MS * week // WEEK_MS)}
    seen = st["seen"][rows]  # the level-shift rings are written at seen mod their length
    columns.update((name, seen % a.shape[1]) for name, a in st.items() if name.startswith("level") and a.ndim == 2)
    return columns


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
    :param exclude_above: a point whose score times the series' sensitivity reaches this, in either direction,
        is scored but not learnt (:meth:`SeriesReview.excluded`): the series' detector state stays as it was
        before it, so a fault does not teach the baseline that faults are normal (see the module docstring);
        default :data:`ENSEMBLE_EXCLUDE_ABOVE` (``math.inf``: learn every point) for the ensemble, 5 for the
        robust z-score; the rules' threshold 1.1 keeps every alerting point out.
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
                 exclude_above: float | None = None, detector: str = "ensemble", state_path: str | Path | None = None,
                 overrides: Sequence[PolicyOverride] = (), calendar: Calendar | None = None,
                 feedback: FeedbackLog | None = None, rebaseline_after: int | None = None,
                 rebaseline_threshold: float | None = None):
        if detector not in DETECTORS:
            raise ValueError(f"ScoringEngine(detector={detector!r}): must be one of {DETECTORS}")
        if exclude_above is None:
            exclude_above = ENSEMBLE_EXCLUDE_ABOVE if detector == "ensemble" else 5.0
        self.window, self.min_points, self.exclude_above = window, min_points, exclude_above
        self.policies = DEFAULT_POLICIES if policies is None else policies
        self.overrides, self.calendar, self.feedback = tuple(overrides), calendar, feedback
        if rebaseline_threshold is None:
            rebaseline_threshold = SUGGESTED_THRESHOLD if detector == "ensemble" else exclude_above
        self.rebaseline = None if rebaseline_after is None else Rebaseline(rebaseline_after, rebaseline_threshold)
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
        outside = np.array([not e for e in events], dtype=bool)  # no expected event covers the series now
        recent_rows = self.recent.rows_for(keys)
        sigmas = self.recent.sigma(recent_rows).tolist()
        counts = learnt_points(self.scorer.detector, self.scorer.rows_of(keys)).tolist()
        names = VectorEnsemble.MEMBERS
        raws: list[Score] = []
        learnt = np.zeros(len(keys), dtype=bool)
        explanations: dict[tuple[str, str], Explanation] = {}

        def review(out: Scores) -> np.ndarray:
            """Review every point; learn those outside expected events and not excluded as anomalous."""
            raw_scores, baselines, spreads = out.score.tolist(), out.baseline.tolist(), out.scale.tolist()
            members = [()] * len(keys) if out.agreed is None else [
                tuple(n for b, n in enumerate(names) if bits >> b & 1) for bits in out.agreed.tolist()]
            for i, key in enumerate(keys):
                raw = Score(now_ms, values[i], raw_scores[i], baselines[i], spreads[i], members[i])
                floors = self.feedback.floors(reviews[i].labels) if self.feedback is not None else (0.0, 0.0)
                explanations[key] = reviews[i].review(raw, events[i], floors, sigmas[i])
                raws.append(raw)
                learnt[i] = outside[i] and not reviews[i].excluded(raw, self.exclude_above, counts[i])
            return learnt

        if self.exclude_above == math.inf:  # nothing to decide from the scores: no step to undo but events'
            review(self.scorer.update(now_ms, keys, values, outside))
        else:
            self.scorer.update(now_ms, keys, values, review)
        self.recent.append(recent_rows[learnt], np.asarray(values)[learnt])
        scores = {}
        for i, key in enumerate(keys):
            raw = raws[i]
            scores[key] = Score(now_ms, raw.value, explanations[key].score, raw.baseline, raw.scale, raw.detectors)
            # the level-shift watch sees excluded points too: a stable new level must still be confirmed
            if outside[i] and (points := reviews[i].note(raw)) is not None:
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
