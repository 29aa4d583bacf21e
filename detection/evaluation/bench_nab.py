"""Run a streaming detector over the NAB corpus and score it (``opswatch bench nab``).

For every series ``data_dir/<category>/<file>.csv`` (columns ``timestamp,value``) a fresh detector from
:data:`DETECTORS` sees the points one at a time, in file order, through its streaming ``update`` (no
look-ahead, never the labels). Its calibrated score is mapped to NAB's ``[0, 1]`` anomaly score by
:func:`to_anomaly_score`, and the rows are written in NAB's result layout::

    results_dir/<detector>/<category>/<detector>_<file>.csv     columns timestamp,value,anomaly_score,label

(``label`` is 1 inside a window of the windows file and 0 elsewhere, as in NAB's own result files; the
scorer ignores it). The written files are then scored with :func:`detection.evaluation.nab.score_corpus`
for every profile, which picks one threshold per profile for the whole corpus.

One parameter set serves the whole corpus: the detectors below are fixed, not tuned per file or on the
labels. ``ensemble`` is the default and is the detector the live pipeline runs by default
(:class:`detection.ensemble.Ensemble`; the pipeline's rules read its calibrated score, this runner its
onset-filtered one, see :mod:`detection.engine`). ``robust_zscore`` (:class:`detection.robust_zscore.RobustZScore`,
the live pipeline's ``detection.detector: robust_zscore``) runs with its live guards (``exclude_above=5``, default spread
floor) and ``direction="both"`` because NAB's anomalies go either way. Its window is one day of NAB's
5-minute data (288 points); scoring starts after 72 points (6 hours, a quarter of the window: fewer
points make the median/MAD too noisy), which is inside every file's probationary period (at least 168 rows
in NAB), so no scored row loses its score.

Measured on NAB v1.1 (58 files, 365,551 rows): ``robust_zscore`` scores 0.0 on all three profiles (the best
threshold is "never fire"); serial run about 23 s, ~94 % of it in ``RobustZScore._baseline`` (two
``np.median`` calls per point), ``--jobs 2`` about 12 s. Why 0: where more than half of a window holds one
value (tweet counts, quantised CPU, flat artificial days) the MAD is 0, the spread falls to its 1e-9 floor
and ordinary points score ~1e9; with ``exclude_above`` only values equal to the median are learnt from then
on, so the baseline stays frozen. About 28,000 false-positive rows score above z = 5e7, more than any
threshold can pay for with the 116 windows. As a check of the runner, a re-implementation of NAB's
windowedGaussian run through it matches the published per-point scores to 5e-13 and, with the scores
rounded to 12 significant digits as in the published files, scores the published 39.6 / 20.9 / 47.4.

``ensemble`` (:class:`detection.ensemble.Ensemble`, defaults only) is the record-ratio ensemble of range
novelty, seasonal profile and level shift, and its members run alone as ``range_novelty``,
``seasonal_profile`` and ``level_shift``. Measured with ``opswatch bench nab --detector ensemble --results-dir
/tmp/nab-ensemble --jobs 1``: standard 74.68, reward_low_FP_rate 68.71, reward_low_FN_rate 78.54 (threshold
0.176 on the anomaly score, record ratio 1.07; 0.173, 1.05 for low FN), 4 to 10 s for the 58 files; the
ablations and the +-50 % sensitivity of every parameter come from ``python -m detection.evaluation.sensitivity``.

The rest of the library runs with its defaults as ``stl``, ``holt_winters``, ``spectral_residual``,
``isolation_forest`` and ``cusum`` (none tuned on NAB). Measured on NAB v1.1 with ``opswatch bench nab --detector
NAME --results-dir /tmp/nab-lib --jobs 1`` (standard / reward_low_FP_rate / reward_low_FN_rate; user CPU
seconds of the whole run, on a shared 2-core machine):

=====================  ======  ======  ======  ========
detector               std     low FP  low FN  CPU s
=====================  ======  ======  ======  ========
ensemble               74.68   68.71   78.54   5.6-7.1
stl                    47.84   38.20   53.15   146
cusum                  34.93   12.34   47.30   3.6
holt_winters           31.68   27.71   35.25   97-115
isolation_forest       30.20   17.83   35.93   17
spectral_residual      17.31   12.53   21.00   24
=====================  ======  ======  ======  ========

Usage: ``python -m detection.evaluation.bench_nab --results-dir /tmp/nab-results [--detector NAME]
[--data-dir DIR] [--windows FILE] [--profiles FILE] [--jobs N]``. Prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from detection.base import Detector, Score
from detection.changepoint import LevelShift
from detection.cusum import Cusum
from detection.ensemble import Ensemble
from detection.evaluation.nab import Window, load_windows, score_corpus, window_indices
from detection.holt_winters import HoltWinters
from detection.isolation_forest import IsolationForestDetector
from detection.range_novelty import RangeNovelty
from detection.robust_zscore import RobustZScore
from detection.seasonal import SeasonalProfile
from detection.spectral_residual import SpectralResidual
from detection.stl import STLResidual

NAB_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab"
"""The shared NAB v1.1 corpus, next to the repository: ``<repo>/../shared/datasets/nab``."""

DEFAULT_DATA_DIR = NAB_ROOT / "data"
DEFAULT_WINDOWS = NAB_ROOT / "labels" / "combined_windows.json"
DEFAULT_PROFILES = NAB_ROOT / "config" / "profiles.json"

RESULT_COLUMNS = ("timestamp", "value", "anomaly_score", "label")
"""Columns of a written result file, in order (NAB's result layout)."""

SCORE_HALF = 5.0
"""Calibrated score (robust z units) mapped to anomaly score 0.5; 5 is the contract's "rare" level and the
live pipeline's ``exclude_above``."""


def to_anomaly_score(z: np.ndarray | Sequence[float]) -> np.ndarray:
    """Map calibrated scores (>= 0: robust z, record ratios) to NAB anomaly scores in ``[0, 1]``:
    ``z / (z + SCORE_HALF)``.

    Fixed and strictly increasing on ``[0, inf)``: 0 -> 0, 5 -> 0.5, 15 -> 0.75, inf -> 1, so NAB's threshold
    sweep sees the same ranking as a threshold on ``z`` (threshold ``t`` on the anomaly score is ``z >=
    5 t / (1 - t)``). Unlike ``1 - exp(-z / k)`` or a logistic, it does not round to 1.0 for the large scores a
    near-constant series produces (the spread floor is 1e-9), so those stay ordered. NaN (no baseline yet,
    or a NaN value) -> 0; negative scores (not produced by the calibrated detectors) clip to 0.
    """
    z = np.asarray(z, dtype=float)
    z = np.where(np.isnan(z), 0.0, np.maximum(z, 0.0))
    with np.errstate(invalid="ignore"):
        score = z / (z + SCORE_HALF)
    return np.where(np.isinf(z), 1.0, score)


class NullDetector:
    """The detector that never fires (calibrated score 0 everywhere): NAB's ``null``, normalised score 0."""

    def fit(self, series: pd.Series) -> "NullDetector":
        return self

    def score(self, series: pd.Series) -> pd.Series:
        return pd.Series(0.0, index=series.index, name="anomaly_score")

    def update(self, timestamp_ms: int, value: float) -> Score:
        return Score(timestamp_ms, value, 0.0, value, math.nan)


def _robust_zscore() -> RobustZScore:
    return RobustZScore(window=288, min_points=72, direction="both")


DETECTORS: dict[str, Callable[[], Detector]] = {
    "robust_zscore": _robust_zscore,
    "ensemble": Ensemble,
    "range_novelty": RangeNovelty,
    "seasonal_profile": SeasonalProfile,
    "level_shift": LevelShift,
    "stl": STLResidual,
    "holt_winters": HoltWinters,
    "spectral_residual": SpectralResidual,
    "isolation_forest": IsolationForestDetector,
    "cusum": Cusum,
    "null": NullDetector,
}
"""Registry: name -> factory of a fresh streaming detector, one parameter set for the whole corpus."""

DEFAULT_DETECTOR = "ensemble"


# --- one file ------------------------------------------------------------------------------------------


def read_series(path: str | Path) -> pd.DataFrame:
    """Read one NAB data file: ``timestamp`` kept as the file's text, ``value`` as float, in file order."""
    frame = pd.read_csv(path, dtype={"timestamp": str})
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; NAB data files have timestamp,value")
    frame["value"] = frame["value"].astype(float)
    return frame[["timestamp", "value"]]


def stream_scores(detector: Detector, timestamps_ms: Sequence[int], values: Sequence[float]) -> np.ndarray:
    """Feed the points one at a time, in order, to ``detector.update``; returns the NAB anomaly scores,
    shape ``(n,)``. Point ``i``'s score depends on points ``0..i`` only. A detector with a ``scores(stamps,
    values)`` method (one that batches its model calls, e.g. the isolation forest) is run through it instead;
    such a method gives exactly the point-by-point scores (tested with each detector)."""
    batched = getattr(detector, "scores", None)
    if batched is not None:
        return to_anomaly_score(batched(timestamps_ms, values))
    update = detector.update
    z = [update(t, v).score for t, v in zip(timestamps_ms, values)]
    return to_anomaly_score(z)


def labels_for(timestamps: pd.DatetimeIndex, windows: Sequence[Window]) -> np.ndarray:
    """1 for rows inside a window, else 0 (rows located as the scorer does, see ``nab.window_indices``)."""
    labels = np.zeros(len(timestamps), dtype=np.int64)
    for first, last in window_indices(timestamps, windows):
        labels[first : last + 1] = 1
    return labels


def run_file(
    detector_name: str,
    data_path: str | Path,
    windows: Sequence[Window],
    out_path: str | Path,
    factory: Callable[[], Detector] | None = None,
) -> int:
    """Score one data file with a fresh detector (from ``factory``, else ``DETECTORS[detector_name]``) and
    write its NAB result file; returns its row count."""
    frame = read_series(data_path)
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], format="ISO8601"))
    stamps_ms = stamps.as_unit("ms").asi8.tolist()  # naive NAB times taken as UTC
    detector = (factory or DETECTORS[detector_name])()
    scores = stream_scores(detector, stamps_ms, frame["value"].tolist())
    result = pd.DataFrame(
        {
            "timestamp": frame["timestamp"],
            "value": frame["value"],
            "anomaly_score": scores,
            "label": labels_for(stamps, windows),
        },
        columns=list(RESULT_COLUMNS),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out_path, index=False)
    return len(result)


def _run_file_args(args: tuple) -> int:
    return run_file(*args)


# --- the corpus ----------------------------------------------------------------------------------------


def corpus_files(data_dir: str | Path) -> dict[str, Path]:
    """``{"<category>/<file>.csv": path}`` for every ``data_dir/<category>/<file>.csv``, sorted by key."""
    return {f"{p.parent.name}/{p.name}": p for p in sorted(Path(data_dir).glob("*/*.csv"))}


def run_detector(
    detector_name: str,
    data_dir: str | Path,
    windows_path: str | Path | Mapping[str, Sequence[Window]],
    results_dir: str | Path,
    profiles_path: str | Path = DEFAULT_PROFILES,
    jobs: int = 1,
    factory: Callable[[], Detector] | None = None,
) -> dict:
    """Run ``detector_name`` over every file of ``data_dir``, write NAB result files and score them.

    ``windows_path``: NAB's ``combined_windows.json`` (or its parsed form); it must name exactly the files
    of ``data_dir``. ``jobs`` > 1 runs files in parallel processes (each file still streams in order through
    its own detector, so the scores do not change). ``factory`` (picklable when ``jobs`` > 1) makes the
    detectors instead of the registry, for variants such as the sensitivity runs; ``detector_name`` then
    only names the results.

    Returns ``{"detector", "files", "seconds", "scores": {profile: {"normalized", "threshold", "raw"}}}``:
    files scored, wall-clock seconds (detect, write and score) and NAB's scores per profile.

    :raises KeyError: unknown detector. :raises ValueError: data files and windows do not match.
    """
    if factory is None and detector_name not in DETECTORS:
        raise KeyError(f"unknown detector {detector_name!r}; known: {sorted(DETECTORS)}")
    started = time.perf_counter()
    windows = windows_path if isinstance(windows_path, Mapping) else load_windows(windows_path)
    files = corpus_files(data_dir)
    if not files:
        raise ValueError(f"no data files {Path(data_dir)}/<category>/<file>.csv")
    unlabelled, absent = sorted(set(files) - set(windows)), sorted(set(windows) - set(files))
    if unlabelled or absent:
        raise ValueError(
            f"data directory {data_dir} and windows file do not match: "
            f"{len(unlabelled)} data file(s) without windows {unlabelled[:5]}, "
            f"{len(absent)} windowed file(s) without data {absent[:5]}"
        )
    out_root = Path(results_dir) / detector_name
    tasks = [
        (detector_name, path, windows[key], out_root / path.parent.name / f"{detector_name}_{path.name}", factory)
        for key, path in files.items()
    ]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
            list(pool.map(_run_file_args, tasks))
    else:
        for task in tasks:
            run_file(*task)
    scores = score_corpus(results_dir, detector_name, windows, profiles_path)
    return {
        "detector": detector_name,
        "files": len(tasks),
        "seconds": round(time.perf_counter() - started, 3),
        "scores": {
            profile: {key: values[key] for key in ("normalized", "threshold", "raw")}
            for profile, values in scores.items()
        },
    }


# --- command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opswatch bench nab",
        description="Run a streaming detector over the NAB corpus, write NAB result files and score them.",
    )
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=sorted(DETECTORS),
                        help=f"detector to run (default {DEFAULT_DETECTOR})")
    parser.add_argument("--results-dir", type=Path, required=True,
                        help="where to write <detector>/<category>/<detector>_<file>.csv")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"NAB data: <category>/<file>.csv (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--windows", type=Path, default=DEFAULT_WINDOWS,
                        help=f"NAB combined_windows.json (default {DEFAULT_WINDOWS})")
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES,
                        help=f"NAB profiles.json (default {DEFAULT_PROFILES})")
    parser.add_argument("--jobs", type=int, default=1, help="files scored in parallel processes (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``opswatch bench nab``: prints the :func:`run_detector` result as JSON; returns 0, or
    2 when the corpus is missing or inconsistent."""
    args = build_parser().parse_args(argv)
    for path, flag, is_dir in (
        (args.data_dir, "--data-dir DIR", True),
        (args.windows, "--windows FILE", False),
        (args.profiles, "--profiles FILE", False),
    ):
        if not (path.is_dir() if is_dir else path.is_file()):
            print(
                f"opswatch bench nab: {path} not found; get the NAB v1.1 corpus and pass {flag} "
                "(flags: --data-dir DIR, --windows FILE, --profiles FILE)",
                file=sys.stderr,
            )
            return 2
    try:
        result = run_detector(args.detector, args.data_dir, args.windows, args.results_dir,
                              profiles_path=args.profiles, jobs=max(1, args.jobs))
    except ValueError as exc:
        print(f"opswatch bench nab: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
