"""Peers side by side on NAB: other libraries' detectors through the same runner and scorer as ours.

    python -m benchmarks.nab_peers [--json] [--peers NAME ...] [--ours NAME ...] [--results-dir DIR]
                                   [--data-dir DIR --windows FILE --profiles FILE]

Every detector, ours and the peers', goes through :func:`detection.evaluation.bench_nab.run_detector` (the
runner of ``opswatch bench nab``): the same 58 files, the same NAB result files, the same scorer, one
parameter set for the corpus, no labels. Ours run in streaming form (one point at a time). The peers have no
streaming form, so they run in batch per file, still without look-ahead: the model is fitted on the file's
probationary period only (NAB's first ``min(15 %, 750)`` rows, which the scorer ignores) and then scores every
point from the window of values ending at it.

Peers (``pip install -e '.[peers]'``):

* ``pyod_knn``, ``pyod_lof``, ``pyod_iforest`` -- PyOD's k-nearest-neighbour distance (Ramaswamy et al.
  2000), local outlier factor (Breunig et al. 2000) and isolation forest over window features (the last
  ``WIDTH`` values). Their raw outlier scores (``decision_function``) are divided by the largest score of
  the fitting windows, so 1 means as outlying as the most outlying probationary window, whatever the file's
  unit (the same idea as our record ratio); PyOD's own ``predict_proba`` saturates at 1 for every window
  outside the probationary range, which leaves NAB's threshold sweep nothing to rank (all three score 0). PyOD's ECOD and COPOD are left out: their ``decision_function`` re-estimates the
  distributions from the points being scored, i.e. it looks ahead within the file.
* ``adtk_persist``, ``adtk_levelshift`` -- ADTK's ``PersistAD`` and ``LevelShiftAD`` with their documented
  example parameters; their output is 0/1. A peer that fails to run (ADTK 0.6.2 raises on pandas 3) is
  reported with its error instead of scores.

Prints a table, or with ``--json`` ``{name: {"kind", "seconds", "standard", "reward_low_FP_rate",
"reward_low_FN_rate"} or {"error"}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detection.evaluation.bench_nab import DEFAULT_DATA_DIR, DEFAULT_PROFILES, DEFAULT_WINDOWS, DETECTORS, run_detector

WIDTH = 8
"""Values per window feature vector of the PyOD peers."""


def probation(n: int) -> int:
    """NAB's probationary period of a file of ``n`` rows (``nab.scorer``: ``min(floor(0.15 n), 750)``)."""
    return min(int(0.15 * n), 750)


class PyODPeer:
    """A PyOD detector over window features: fitted on the probationary rows, then scoring every window."""

    def __init__(self, make: Callable[[], object]):
        self.make = make

    def scores(self, stamps_ms: Sequence[int], values: Sequence[float]) -> np.ndarray:
        x = pd.Series(np.asarray(values, dtype=float)).interpolate(limit_direction="both").to_numpy()
        windows = np.lib.stride_tricks.sliding_window_view(x, WIDTH)  # row i ends at point i + WIDTH - 1
        fit_rows = max(probation(len(x)) - WIDTH + 1, 2 * WIDTH)
        model = self.make().fit(windows[:fit_rows])
        out = np.full(len(x), np.nan)
        top = float(np.max(model.decision_scores_))
        raw = model.decision_function(windows)
        out[WIDTH - 1 :] = raw / top if top > 0 else raw
        return out


class ADTKPeer:
    """An ADTK detector fitted on the probationary rows, detecting on the whole series (0/1 output)."""

    def __init__(self, make: Callable[[], object]):
        self.make = make

    def scores(self, stamps_ms: Sequence[int], values: Sequence[float]) -> np.ndarray:
        series = pd.Series(np.asarray(values, dtype=float), index=pd.to_datetime(np.asarray(stamps_ms), unit="ms"))
        detector = self.make()
        detector.fit(series.iloc[: probation(len(series))])
        return detector.detect(series).astype(float).to_numpy()


def _pyod(name: str) -> Callable[[], PyODPeer]:
    def factory() -> PyODPeer:
        from pyod.models.iforest import IForest
        from pyod.models.knn import KNN
        from pyod.models.lof import LOF

        makers = {"knn": KNN, "lof": LOF, "iforest": lambda: IForest(random_state=0)}
        return PyODPeer(makers[name])

    return factory


def _adtk(name: str) -> Callable[[], ADTKPeer]:
    def factory() -> ADTKPeer:
        from adtk.detector import LevelShiftAD, PersistAD

        makers = {"persist": lambda: PersistAD(c=3.0, side="both"),
                  "levelshift": lambda: LevelShiftAD(c=6.0, side="both", window=5)}
        return ADTKPeer(makers[name])

    return factory


PEERS: dict[str, Callable[[], object]] = {
    "pyod_knn": _pyod("knn"),
    "pyod_lof": _pyod("lof"),
    "pyod_iforest": _pyod("iforest"),
    "adtk_persist": _adtk("persist"),
    "adtk_levelshift": _adtk("levelshift"),
}


def run(names: Sequence[str], results_dir: str, kind: str, corpus: tuple = (DEFAULT_DATA_DIR, DEFAULT_WINDOWS,
        DEFAULT_PROFILES)) -> dict:
    """Run each detector (ours by registry name, peers from :data:`PEERS`) over ``corpus`` = (data dir, windows
    file, profiles file); returns ``{name: row}`` as printed by :func:`main`."""
    data_dir, windows, profiles = corpus
    out = {}
    for name in names:
        factory = PEERS.get(name)
        try:
            result = run_detector(name, data_dir, windows, results_dir, profiles, jobs=1, factory=factory)
        except Exception as exc:  # a peer that cannot run is reported, the others still are
            out[name] = {"kind": kind, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
            continue
        out[name] = {"kind": kind, "seconds": result["seconds"],
                     **{p: round(v["normalized"], 2) for p, v in result["scores"].items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nab_peers", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=sorted(PEERS))
    parser.add_argument("--ours", nargs="*", default=["ensemble"], choices=sorted(DETECTORS))
    parser.add_argument("--results-dir", help="keep the NAB result files here (default: a temporary directory)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="NAB-layout data directory")
    parser.add_argument("--windows", type=Path, default=DEFAULT_WINDOWS, help="combined_windows.json")
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES, help="NAB profiles.json")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"nab_peers: NAB corpus not found at {args.data_dir} (--data-dir DIR)", file=sys.stderr)
        return 2
    corpus = (args.data_dir, args.windows, args.profiles)
    with tempfile.TemporaryDirectory() as tmp:
        results_dir = args.results_dir or tmp
        table = {**run(args.ours, results_dir, "ours, streaming", corpus),
                 **run(args.peers, results_dir, "peer, batch", corpus)}
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(f"{'detector':18} {'kind':16} {'standard':>9} {'low FP':>8} {'low FN':>8} {'seconds':>8}")
        for name, row in table.items():
            if "error" in row:
                print(f"{name:18} {row['kind']:16} error: {row['error']}")
            else:
                print(f"{name:18} {row['kind']:16} {row['standard']:9.2f} {row['reward_low_FP_rate']:8.2f} "
                      f"{row['reward_low_FN_rate']:8.2f} {row['seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
