"""Detection throughput: streaming updates per second per core of the vectorised engine, and NAB wall time.

    python -m benchmarks.detection_throughput [--json] [--series 10000] [--scrapes 200] [--repeats 5]
                                              [--detector ensemble] [--skip-nab]

1. ``--series`` series (random walks with noise, 15 s apart) are scored ``--scrapes`` times by
   :class:`detection.engine.SeriesScorer` over the vectorised detector the live engine runs
   (``ensemble``, the default: :func:`detection.engine.calibrated_ensemble`; or ``robust_zscore``), after
   ``--warmup`` scrapes so every series is past its warm-up. The CPU time of the scoring calls
   (``time.process_time``) gives ``updates_per_second_per_core`` = series x scrapes / CPU seconds; the median
   over ``--repeats`` runs is reported, with every run's value.
2. The NAB v1.1 corpus (``../shared/datasets/nab``) is scored by the same detector's streaming form through
   ``opswatch bench nab``'s runner (one process, results to a temporary directory); ``nab_wall_seconds`` is
   its wall time (detect, write and score), and its three normalised scores are printed too.

A benchmark, not a test: its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from detection.engine import SeriesScorer, calibrated_ensemble
from detection.evaluation.bench_nab import DEFAULT_DATA_DIR, DEFAULT_PROFILES, DEFAULT_WINDOWS, run_detector
from detection.vectorised import VectorRobustZScore

VECTORISED = {"ensemble": calibrated_ensemble, "robust_zscore": VectorRobustZScore}
"""The live engine's vectorised detectors (:class:`detection.engine.ScoringEngine`), by name."""
SCRAPE_MS = 15_000
T0_MS = 1_714_953_600_000


def measure(detector: str, series: int, scrapes: int, warmup: int, seed: int) -> float:
    """Updates per CPU second of one run: ``series`` keys scored ``scrapes`` times after ``warmup`` scrapes."""
    rng = np.random.default_rng(seed)
    keys = [("job", f"series_{i}") for i in range(series)]
    scorer = SeriesScorer(VECTORISED[detector]())
    level = 100 + rng.normal(0, 10, series)
    values = level + rng.normal(0, 1, (warmup + scrapes, series)).cumsum(axis=0) * 0.1
    for i in range(warmup):
        scorer.update(T0_MS + i * SCRAPE_MS, keys, values[i])
    started = time.process_time()
    for i in range(warmup, warmup + scrapes):
        scorer.update(T0_MS + i * SCRAPE_MS, keys, values[i])
    return series * scrapes / (time.process_time() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--detector", default="ensemble", choices=sorted(VECTORISED), help="default: ensemble")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=200, help="measured scrapes per run")
    parser.add_argument("--warmup", type=int, default=150, help="scrapes before measuring (past every warm-up, e.g. the 120-point robust z-score ring)")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is reported")
    parser.add_argument("--skip-nab", action="store_true", help="do not score the NAB corpus")
    args = parser.parse_args(argv)
    runs = [measure(args.detector, args.series, args.scrapes, args.warmup, seed) for seed in range(args.repeats)]
    result = {
        "detector": args.detector,
        "series": args.series,
        "scrapes": args.scrapes,
        "updates_per_second_per_core": round(statistics.median(runs)),
        "runs_updates_per_second_per_core": [round(r) for r in runs],
    }
    if not args.skip_nab:
        if not DEFAULT_DATA_DIR.is_dir():
            print(f"detection_throughput: NAB corpus not found at {DEFAULT_DATA_DIR} (use --skip-nab)", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as results:
            nab = run_detector(args.detector, DEFAULT_DATA_DIR, DEFAULT_WINDOWS, results, DEFAULT_PROFILES, jobs=1)
        result["nab_wall_seconds"] = nab["seconds"]
        result["nab_scores"] = {p: round(v["normalized"], 2) for p, v in nab["scores"].items()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:36} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
