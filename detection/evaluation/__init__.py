"""Offline evaluation of anomaly detectors.

* :mod:`detection.evaluation.nab` — the Numenta Anomaly Benchmark (NAB v1.1) scorer: windows, profiles,
  per-file scoring, corpus-wide threshold optimisation and normalised scores.
* :mod:`detection.evaluation.metrics` — point-adjusted precision / recall / F1 and mean time to detect.
"""

from detection.evaluation.metrics import (
    detection_delays,
    mean_time_to_detect,
    point_adjust,
    point_adjusted_prf,
)
from detection.evaluation.nab import (
    Profile,
    load_profiles,
    load_results,
    load_windows,
    optimize_threshold,
    score_corpus,
    score_file,
)

__all__ = [
    "Profile",
    "detection_delays",
    "load_profiles",
    "load_results",
    "load_windows",
    "mean_time_to_detect",
    "optimize_threshold",
    "point_adjust",
    "point_adjusted_prf",
    "score_corpus",
    "score_file",
]
