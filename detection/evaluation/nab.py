"""The Numenta Anomaly Benchmark (NAB v1.1) scorer, written from the published rules.

Sources: A. Lavin and S. Ahmad, "Evaluating Real-time Anomaly Detection Algorithms – the Numenta Anomaly
Benchmark", IEEE ICMLA 2015 (arXiv:1510.03336), and the scoring description of NAB v1.1
(github.com/numenta/NAB, ``nab/sweeper.py``). The rules, as NAB applies them:

* **Probation.** The first ``min(floor(0.15 * n_rows), 0.15 * 5000)`` rows of a file (so at most 750 rows;
  the cap matters for the files longer than 5,000 rows) are the probationary period: every row in it, in
  or out of a window, is ignored. A window is only scored if at least one of its rows is past probation.
* **Detection.** A row is a detection when ``anomaly_score >= threshold``.
* **True positive.** For a window spanning rows ``[L, R]`` (width ``W = R - L + 1``) the position of row
  ``i`` is ``-(R - i + 1) / W`` — in ``[-1, -1/W]``, never 0: the first row of the window is -1 and the last
  is ``-1/W``. The row earns ``tpWeight * S(position) / S(-1)``, so a detection at the first row earns
  exactly ``tpWeight``. Only the best (which is the earliest, since ``S`` decreases) detection of a window
  counts; a window without detection costs ``-fnWeight``.
* **False positive.** A detection outside every window after a window ending at row ``R`` of width ``W``
  is at ``(i - R) / (W - 1)`` (note ``W - 1``, not ``W``) and costs ``fpWeight * S(that)``, which is
  negative: about 0 just after the window, ``-fpWeight`` far from it. A detection with no preceding window
  costs the full ``-fpWeight``. Every false positive counts, not only the first.
* ``S(x) = 2 / (1 + exp(5x)) - 1`` (the scaled sigmoid), with ``S(x) = -1`` exactly for ``x > 3``. (Later
  NAB code clamps at ``x >= 3``; the published v1.1 scores were computed with ``> 3``: an FP exactly 3 window
  widths after a window costs ``0.99999939 * fpWeight``, and windowedGaussian's published raw scores need it.)
* **Corpus.** One threshold per profile for the whole corpus, the one maximising the summed raw score
  (ties go to the highest threshold). Normalised score ``100 * (raw - null) / (perfect - null)``, where
  ``null`` is the raw score of a detector that never fires (``-fnWeight`` per window) and ``perfect`` that of
  a detector firing exactly at each window's first row (``tpWeight`` per window).
* ``tnWeight`` is carried in the profiles but NAB never uses it.

Window boundaries are located in file order (see :func:`window_indices`): NAB requires them to be exact
timestamps of the file; on such windows — all of NAB's — this is the same, and bounds between rows snap
inwards. Scores that are NaN never count as detections.

Units: row indices and widths are rows (not seconds); scores are NAB points (unitless).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROBATION_FRACTION = 0.15
"""Fraction of a file's rows in its probationary period (NAB's ``probationPercent``)."""

PROBATION_MAX_ROWS = int(PROBATION_FRACTION * 5000)
"""Cap on the probationary period, in rows: NAB's ``probationPercent * 5000`` = 750."""

SIGMOID_STEEPNESS = 5.0
"""The ``5`` in ``S(x) = 2 / (1 + exp(5x)) - 1``."""

Window = tuple[pd.Timestamp, pd.Timestamp]
"""An anomaly window: (first timestamp, last timestamp), both inclusive."""


@dataclass(frozen=True)
class Profile:
    """A NAB application profile (cost matrix). Weights are positive; NAB applies the signs itself."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0  # present in NAB's profiles.json, unused by the score

    @classmethod
    def from_cost_matrix(cls, name: str, matrix: Mapping[str, float]) -> Profile:
        """Build from a NAB ``CostMatrix`` mapping (``tpWeight``, ``fpWeight``, ``fnWeight``, ``tnWeight``)."""
        return cls(
            name=name,
            tp_weight=float(matrix["tpWeight"]),
            fp_weight=float(matrix["fpWeight"]),
            fn_weight=float(matrix["fnWeight"]),
            tn_weight=float(matrix.get("tnWeight", 1.0)),
        )


# --- loading -----------------------------------------------------------------------------------------


def load_windows(path: str | Path) -> dict[str, list[Window]]:
    """Read NAB's ``labels/combined_windows.json``.

    Returns ``{"<category>/<file>.csv": [(start, end), ...]}`` with ``pd.Timestamp`` bounds (naive, as in the
    file), each list sorted by start. Files without anomalies map to ``[]``.
    """
    raw = json.loads(Path(path).read_text())
    windows: dict[str, list[Window]] = {}
    for name, pairs in raw.items():
        parsed = [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in pairs]
        windows[name] = sorted(parsed)
    return windows


def load_profiles(path: str | Path) -> dict[str, Profile]:
    """Read NAB's ``config/profiles.json``: ``{name: {"CostMatrix": {...}}}`` -> ``{name: Profile}``."""
    raw = json.loads(Path(path).read_text())
    return {name: Profile.from_cost_matrix(name, spec["CostMatrix"]) for name, spec in raw.items()}


def read_result_file(path: str | Path) -> pd.DataFrame:
    """Read one NAB result CSV (``timestamp,value,anomaly_score[,label]``).

    Returns a frame with ``timestamp`` (datetime64) and ``anomaly_score`` (float), plus ``value`` when present;
    a ``label`` column is dropped (scoring uses the windows, never the detector's file).
    """
    frame = pd.read_csv(path, usecols=lambda col: col in ("timestamp", "value", "anomaly_score"))
    missing = {"timestamp", "anomaly_score"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    frame["anomaly_score"] = frame["anomaly_score"].astype(float)
    return frame


def load_results(results_dir: str | Path, detector: str) -> dict[str, pd.DataFrame]:
    """Read every result file of ``detector`` from a directory in NAB layout.

    Layout: ``results_dir/<detector>/<category>/<detector>_<file>.csv``. Returns
    ``{"<category>/<file>.csv": frame}`` (keys as in ``combined_windows.json``; frames as from
    :func:`read_result_file`). NAB's per-profile summary files (``results_dir/<detector>/*.csv``) are skipped.
    """
    root = Path(results_dir) / detector
    if not root.is_dir():
        raise FileNotFoundError(f"no results for detector {detector!r}: {root} is not a directory")
    prefix = f"{detector}_"
    results: dict[str, pd.DataFrame] = {}
    for path in sorted(root.glob("*/*.csv")):
        if not path.name.startswith(prefix):
            continue
        key = f"{path.parent.name}/{path.name[len(prefix):]}"
        results[key] = read_result_file(path)
    return results


# --- per-row weights -----------------------------------------------------------------------------------


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid ``S(x) = 2 / (1 + exp(5x)) - 1``, and exactly -1 for ``x > 3``.

    ``x`` is a relative position (unitless): ``S(-1) = 0.98661``, ``S(0) = 0``, ``S(1) = -0.98661``.
    Vectorised; returns an array of ``x``'s shape.
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(SIGMOID_STEEPNESS * x)) - 1.0
    return np.where(x > 3.0, -1.0, value)


MAX_TP = float(scaled_sigmoid(-1.0))
"""``S(-1)``: the unweighted reward of a detection at a window's first row; TP rewards are divided by it."""


def probationary_length(n_rows: int) -> int:
    """Rows in the probationary period of a file of ``n_rows`` rows: ``min(floor(0.15 n), 750)``."""
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS))


def _as_ns(stamp: pd.Timestamp, tz) -> int:
    """``stamp`` as int64 nanoseconds on the clock of an index with timezone ``tz`` (None: naive)."""
    stamp = pd.Timestamp(stamp)
    if tz is not None and stamp.tzinfo is None:
        stamp = stamp.tz_localize(tz)
    elif tz is None and stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.as_unit("ns").value)


def window_indices(
    timestamps: Sequence | pd.Series | pd.DatetimeIndex, windows: Sequence[Window]
) -> list[tuple[int, int]]:
    """Row ranges of ``windows`` (sorted by start) in a file: ``[(first_row, last_row), ...]``, inclusive, 0-based.

    Rows are scanned in file order, as NAB does: a window's first row is the first row after the previous
    window whose timestamp is at or after the window's start; its last row is the row stamped exactly with the
    window's end, or the row before the first one stamped later. With windows whose bounds are timestamps of the
    file (all of NAB's) this is NAB's exact matching; it also copes with a clock that steps back (NAB's
    ``machine_temperature_system_failure.csv`` repeats an hour). Raises ``ValueError`` for a window with no rows
    or an end before its start.
    """
    index = pd.DatetimeIndex(timestamps)
    stamps = index.as_unit("ns").asi8
    bounds: list[tuple[int, int]] = []
    next_row = 0
    for start, end in windows:
        start_ns, end_ns = _as_ns(start, index.tz), _as_ns(end, index.tz)
        if end_ns < start_ns:
            raise ValueError(f"window {start} .. {end} ends before it starts")
        at_or_after_start = np.flatnonzero(stamps[next_row:] >= start_ns)
        if len(at_or_after_start) == 0:
            raise ValueError(f"window {start} .. {end} contains no rows")
        first = next_row + int(at_or_after_start[0])
        at_or_after_end = np.flatnonzero(stamps[first:] >= end_ns)
        if len(at_or_after_end) == 0:
            last = len(stamps) - 1
        else:
            last = first + int(at_or_after_end[0])
            if stamps[last] != end_ns:
                last -= 1
        if last < first:
            raise ValueError(f"window {start} .. {end} contains no rows")
        bounds.append((first, last))
        next_row = last + 1
    return bounds


@dataclass(frozen=True)
class PreparedFile:
    """One file's rows, with every row's NAB weight precomputed (independent of profile and threshold).

    All arrays have shape ``(n_rows,)``:

    * ``scores`` — the detector's anomaly scores (float; NaN never detects);
    * ``window`` — index of the window the row is in, ``-1`` outside every window;
    * ``unit`` — in a window, the TP reward per unit ``tpWeight`` (``S(position) / S(-1)``, in ``(0, 1]``);
      outside, the FP cost per unit ``fpWeight`` (``S(distance)``, in ``[-1, 0)``);
    * ``scorable`` — False in the probationary period.

    ``bounds`` holds the windows' ``(first_row, last_row)``.
    """

    scores: np.ndarray
    window: np.ndarray
    unit: np.ndarray
    scorable: np.ndarray
    bounds: tuple[tuple[int, int], ...]

    @property
    def scorable_windows(self) -> np.ndarray:
        """Indices of the windows that have at least one row past probation (only those are scored)."""
        return np.unique(self.window[self.scorable & (self.window >= 0)])


def prepare_file(
    timestamps: Sequence | pd.Series | pd.DatetimeIndex,
    scores: Sequence[float] | np.ndarray | pd.Series,
    windows: Sequence[Window],
) -> PreparedFile:
    """Precompute NAB's per-row weights for one file (see :class:`PreparedFile`)."""
    scores = np.asarray(scores, dtype=float)
    n_rows = len(scores)
    if len(timestamps) != n_rows:
        raise ValueError(f"{len(timestamps)} timestamps but {n_rows} scores")
    bounds = window_indices(timestamps, windows)
    rows = np.arange(n_rows)

    window = np.full(n_rows, -1, dtype=np.int64)
    unit = np.empty(n_rows, dtype=float)
    for k, (first, last) in enumerate(bounds):
        width = last - first + 1
        inside = rows[first : last + 1]
        window[first : last + 1] = k
        # NAB: position = -(R - i + 1) / W, so -1 at the first row and -1/W at the last.
        unit[first : last + 1] = scaled_sigmoid(-(last - inside + 1) / width) / MAX_TP

    outside = window < 0
    out_rows = rows[outside]
    ends = np.array([last for _, last in bounds], dtype=np.int64)
    widths = np.array([last - first + 1 for first, last in bounds], dtype=float)
    prev = np.searchsorted(ends, out_rows, side="left") - 1  # last window ending before the row
    cost = np.full(len(out_rows), -1.0)  # no preceding window: the full FP cost
    after = prev >= 0
    if after.any():
        # NAB divides by W - 1; a one-row window would divide by zero there, so we use 1 instead.
        denominator = np.maximum(widths[prev[after]] - 1.0, 1.0)
        cost[after] = scaled_sigmoid((out_rows[after] - ends[prev[after]]) / denominator)
    unit[outside] = cost

    scorable = rows >= probationary_length(n_rows)
    return PreparedFile(scores=scores, window=window, unit=unit, scorable=scorable, bounds=tuple(bounds))


# --- scoring at one threshold --------------------------------------------------------------------------


def score_prepared(prepared: PreparedFile, profile: Profile, threshold: float) -> float:
    """Raw NAB score of one prepared file at ``threshold`` (detection: ``score >= threshold``)."""
    detected = prepared.scorable & (prepared.scores >= threshold)
    fp_rows = detected & (prepared.window < 0)
    fp_score = profile.fp_weight * float(prepared.unit[fp_rows].sum())

    tp_rows = np.flatnonzero(detected & (prepared.window >= 0))
    hit_windows, first = np.unique(prepared.window[tp_rows], return_index=True)  # rows increase: first = earliest
    tp_score = profile.tp_weight * float(prepared.unit[tp_rows[first]].sum())
    missed = len(prepared.scorable_windows) - len(hit_windows)
    return tp_score + fp_score - profile.fn_weight * missed


def score_file(
    timestamps: Sequence | pd.Series | pd.DatetimeIndex,
    scores: Sequence[float] | np.ndarray | pd.Series,
    windows: Sequence[Window],
    profile: Profile,
    threshold: float,
) -> float:
    """Raw NAB score (points) of one file: ``timestamps`` and ``scores`` of shape ``(n_rows,)``, its windows,
    a profile and a detection threshold."""
    return score_prepared(prepare_file(timestamps, scores, windows), profile, threshold)


def null_score(files: Sequence[PreparedFile], profile: Profile) -> float:
    """Raw score of the detector that never fires: ``-fnWeight`` per scored window."""
    return -profile.fn_weight * sum(len(f.scorable_windows) for f in files)


def perfect_score(files: Sequence[PreparedFile], profile: Profile) -> float:
    """Raw score of the detector that fires exactly at each window's first scorable row, and nowhere else.

    That is ``tpWeight`` per window (NAB's ``perfect``) when no window reaches into probation.
    """
    total = 0.0
    for f in files:
        for k in f.scorable_windows:
            first_row = np.flatnonzero(f.scorable & (f.window == k))[0]
            total += profile.tp_weight * float(f.unit[first_row])
    return total


def normalize(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score ``100 * (raw - null) / (perfect - null)``: 0 = never fires, 100 = perfect."""
    return 100.0 * (raw - null) / (perfect - null)


# --- threshold optimisation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepEvents:
    """The changes in a corpus's raw score as the threshold falls, independent of the profile.

    Lowering the threshold to ``threshold[j]`` adds ``fp_weight * fp[j] + tp_weight * tp[j] + fn_weight * fn[j]``.
    An FP row contributes one event (``fp`` = its unit cost). In a window, only the rows whose score beats every
    earlier row of the window can become its first detection; each such "record" row adds the difference between
    its reward and that of the next record (``tp``), and the last record — the window's top score — also lifts
    the window's ``-fnWeight`` (``fn = 1``). All arrays have shape ``(n_events,)``, sorted by threshold,
    descending. ``n_windows`` counts the scored windows.
    """

    threshold: np.ndarray
    fp: np.ndarray
    tp: np.ndarray
    fn: np.ndarray
    n_windows: int


def _window_events(prepared: PreparedFile, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events (threshold, tp coefficient, fn coefficient) of window ``k`` of a file."""
    rows = np.flatnonzero(prepared.scorable & (prepared.window == k))
    scores = np.nan_to_num(prepared.scores[rows], nan=-np.inf)
    running_max = np.maximum.accumulate(scores)
    is_record = np.ones(len(rows), dtype=bool)
    is_record[1:] = scores[1:] > running_max[:-1]
    is_record &= np.isfinite(scores)
    records = rows[is_record]
    reward = prepared.unit[records]
    next_reward = np.append(reward[1:], 0.0)
    fn = np.zeros(len(records))
    if len(records):
        fn[-1] = 1.0
    return prepared.scores[records], reward - next_reward, fn


def build_sweep_events(files: Sequence[PreparedFile]) -> SweepEvents:
    """Collect the :class:`SweepEvents` of a corpus of prepared files."""
    thresholds, fps, tps, fns = [], [], [], []
    n_windows = 0
    for f in files:
        fp_rows = f.scorable & (f.window < 0) & np.isfinite(f.scores)
        thresholds.append(f.scores[fp_rows])
        fps.append(f.unit[fp_rows])
        tps.append(np.zeros(int(fp_rows.sum())))
        fns.append(np.zeros(int(fp_rows.sum())))
        for k in f.scorable_windows:
            threshold, tp, fn = _window_events(f, int(k))
            thresholds.append(threshold)
            fps.append(np.zeros(len(threshold)))
            tps.append(tp)
            fns.append(fn)
            n_windows += 1
    threshold, fp, tp, fn = (
        np.concatenate(parts) if parts else np.empty(0) for parts in (thresholds, fps, tps, fns)
    )
    order = np.argsort(-threshold, kind="stable")
    return SweepEvents(threshold=threshold[order], fp=fp[order], tp=tp[order], fn=fn[order], n_windows=n_windows)


def threshold_curve(events: SweepEvents, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Corpus raw score at every distinct threshold, exactly.

    Returns ``(thresholds, raw)``, both of shape ``(n_distinct_scores + 1,)``, thresholds descending. The first
    entry is a threshold above every score (``max(1.1, top score)`` nudged up; NAB starts at 1.1), where nothing
    fires and the raw score is the null score; entry ``j`` is the score with detection ``score >= thresholds[j]``.
    """
    base = -profile.fn_weight * events.n_windows
    delta = profile.fp_weight * events.fp + profile.tp_weight * events.tp + profile.fn_weight * events.fn
    running = base + np.cumsum(delta)
    t = events.threshold
    last_of_group = np.flatnonzero(np.append(t[1:] != t[:-1], True)) if len(t) else np.empty(0, dtype=int)
    top = max(1.1, float(np.nextafter(t[0], np.inf))) if len(t) else 1.1
    thresholds = np.concatenate([[top], t[last_of_group]])
    raw = np.concatenate([[base], running[last_of_group]])
    return thresholds, raw


def optimize_threshold(files: Sequence[PreparedFile] | SweepEvents, profile: Profile) -> tuple[float, float]:
    """The corpus-wide threshold maximising the total raw score, and that score: ``(threshold, raw)``.

    An exact sweep over every distinct score (as NAB v1.1's sweeper does; NAB's published thresholds.json
    holds values a local search found, which can be worse: numenta on reward_low_FP_rate scores 63.1 there
    against 63.2 at the best threshold). Ties go to the highest threshold, as in NAB.
    """
    events = files if isinstance(files, SweepEvents) else build_sweep_events(files)
    thresholds, raw = threshold_curve(events, profile)
    best = int(np.argmax(raw))
    return float(thresholds[best]), float(raw[best])


# --- the corpus ----------------------------------------------------------------------------------------


def prepare_corpus(
    results: Mapping[str, pd.DataFrame], windows: Mapping[str, Sequence[Window]]
) -> list[PreparedFile]:
    """Prepare every file named in ``windows`` from ``results`` (frames with ``timestamp`` and ``anomaly_score``).

    Raises ``KeyError`` naming the files that have windows but no result; results without windows are ignored.
    """
    missing = sorted(set(windows) - set(results))
    if missing:
        raise KeyError(f"no result file for {len(missing)} labelled file(s): {missing[:5]}")
    return [
        prepare_file(results[name]["timestamp"], results[name]["anomaly_score"], windows[name])
        for name in sorted(windows)
    ]


def score_corpus(
    results_dir: str | Path,
    detector: str,
    windows: Mapping[str, Sequence[Window]] | str | Path,
    profiles: Mapping[str, Profile] | str | Path,
) -> dict[str, dict[str, float]]:
    """Score a detector's results on a labelled corpus, NAB style, for every profile.

    ``results_dir`` is in NAB layout (see :func:`load_results`); ``windows`` as from :func:`load_windows` and
    ``profiles`` as from :func:`load_profiles` (or their JSON paths). Every file with windows (including files
    with an empty window list) is scored; a missing result file is an error.

    Returns ``{profile: {"threshold", "raw", "normalized", "null", "perfect"}}``: the optimised corpus-wide
    threshold, the summed raw score there, the normalised score (0..100 scale) and the two reference scores.
    """
    if not isinstance(windows, Mapping):
        windows = load_windows(windows)
    if not isinstance(profiles, Mapping):
        profiles = load_profiles(profiles)
    files = prepare_corpus(load_results(results_dir, detector), windows)
    events = build_sweep_events(files)
    scores: dict[str, dict[str, float]] = {}
    for name, profile in profiles.items():
        threshold, raw = optimize_threshold(events, profile)
        null, perfect = null_score(files, profile), perfect_score(files, profile)
        scores[name] = {
            "threshold": threshold,
            "raw": raw,
            "normalized": normalize(raw, null, perfect),
            "null": null,
            "perfect": perfect,
        }
    return scores
