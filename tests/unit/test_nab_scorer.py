"""The NAB scorer and the point-adjusted metrics: detection/evaluation/nab.py, detection/evaluation/metrics.py.

Published numbers come from the NAB v1.1 data set in ../shared/datasets/nab (next to the repository). The
hand-made cases spell their expected scores out with ``tanh``: NAB's ``S(x) = 2 / (1 + exp(5x)) - 1`` is
``-tanh(2.5 x)``, so a TP at relative position ``-p`` earns ``tanh(2.5 p) / tanh(2.5)`` and an FP at distance
``d`` costs ``fpWeight * tanh(2.5 d)`` (``fpWeight`` in full for ``d > 3``).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.evaluation.metrics import (
    detection_delays,
    mean_time_to_detect,
    point_adjust,
    point_adjusted_prf,
)
from detection.evaluation.nab import (
    Profile,
    build_sweep_events,
    load_profiles,
    load_results,
    load_windows,
    normalize,
    null_score,
    optimize_threshold,
    perfect_score,
    prepare_corpus,
    prepare_file,
    probationary_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
    score_prepared,
    threshold_curve,
    window_indices,
)

NAB_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab"

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FN = Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
MAX_TP = math.tanh(2.5)  # S(-1)

T0 = pd.Timestamp("2024-05-01 00:00:00")
N = 100  # rows per hand-made file: probation is rows 0..14


def stamps(n: int = N) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="1min")


def window(first: int, last: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The window spanning rows first..last of :func:`stamps`."""
    return (T0 + pd.Timedelta(minutes=first), T0 + pd.Timedelta(minutes=last))


def detections_at(*rows: int, n: int = N) -> np.ndarray:
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def raw(rows: tuple[int, ...], windows, profile: Profile = STANDARD) -> float:
    return score_file(stamps(), detections_at(*rows), windows, profile, threshold=0.5)


ONE_WINDOW = [window(40, 49)]  # width 10


# --- the published scores ----------------------------------------------------------------------------------


def nab_root() -> Path:
    """The data set's root; a missing data set fails the calling test (it is never skipped)."""
    if not (NAB_ROOT / "labels" / "combined_windows.json").is_file():
        pytest.fail(
            f"NAB data set not found at {NAB_ROOT} (expected labels/, config/ and results/ there); "
            "these tests need it and must not be skipped",
            pytrace=False,
        )
    return NAB_ROOT


@functools.cache
def corpus_scores(detector: str) -> dict[str, dict[str, float]]:
    """``score_corpus`` of a detector's published results, computed once per test session."""
    root = nab_root()
    windows = load_windows(root / "labels" / "combined_windows.json")
    profiles = load_profiles(root / "config" / "profiles.json")
    return score_corpus(root / "results", detector, windows, profiles)


PUBLISHED = [
    ("numenta", "standard", 70.1),
    ("numenta", "reward_low_FP_rate", 63.2),  # final_results.json: 63.1, from a worse threshold (see below)
    ("numenta", "reward_low_FN_rate", 74.3),
    ("windowedGaussian", "standard", 39.6),
    ("windowedGaussian", "reward_low_FP_rate", 20.9),
    ("windowedGaussian", "reward_low_FN_rate", 47.4),
]


@pytest.mark.parametrize(("detector", "profile", "expected"), PUBLISHED)
def test_published_normalized_scores(detector, profile, expected):
    assert corpus_scores(detector)[profile]["normalized"] == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_thresholds_against_the_official_optimiser(detector):
    """Scoring at NAB's thresholds gives NAB's raw scores; our thresholds are never worse."""
    root = nab_root()
    official = json.loads((root / "config" / "thresholds.json").read_text())[detector]
    windows = load_windows(root / "labels" / "combined_windows.json")
    profiles = load_profiles(root / "config" / "profiles.json")
    files = prepare_corpus(load_results(root / "results", detector), windows)
    for name, profile in profiles.items():
        ours = corpus_scores(detector)[name]
        at_official = sum(score_prepared(f, profile, official[name]["threshold"]) for f in files)
        assert at_official == pytest.approx(official[name]["score"], abs=1e-6)
        assert ours["raw"] >= official[name]["score"] - 1e-9
        at_ours = sum(score_prepared(f, profile, ours["threshold"]) for f in files)
        assert at_ours == pytest.approx(ours["raw"], abs=1e-9)
        assert ours["null"] == -profile.fn_weight * 116 and ours["perfect"] == profile.tp_weight * 116


def test_nab_corpus_layout():
    root = nab_root()
    windows = load_windows(root / "labels" / "combined_windows.json")
    assert len(windows) == 58 and sum(map(len, windows.values())) == 116
    results = load_results(root / "results", "numenta")
    assert set(results) == set(windows)
    assert list(results["realKnownCause/nyc_taxi.csv"].columns) == ["timestamp", "value", "anomaly_score"]


# --- hand-made files -------------------------------------------------------------------------------------


def test_scaled_sigmoid_and_probation_length():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.5) == -1.0
    assert [probationary_length(n) for n in (100, 4999, 5000, 22695)] == [15, 749, 750, 750]


def test_window_rows_are_located_in_file_order():
    assert window_indices(stamps(), [window(40, 49), window(60, 79)]) == [(40, 49), (60, 79)]
    between = (T0 + pd.Timedelta(seconds=30), T0 + pd.Timedelta(minutes=5, seconds=30))
    assert window_indices(stamps(), [between]) == [(1, 5)]  # bounds between rows snap inwards


def test_detection_at_window_start_earns_tp_weight():
    assert raw((40,), ONE_WINDOW) == pytest.approx(1.0)


def test_detection_at_window_end():
    # position -(49 - 49 + 1) / 10 = -0.1: S(-0.1) / S(-1)
    assert raw((49,), ONE_WINDOW) == pytest.approx(math.tanh(0.25) / MAX_TP)
    assert raw((49,), ONE_WINDOW) == pytest.approx(0.248242, abs=1e-6)


def test_only_first_detection_in_a_window_counts():
    # row 42: position -(49 - 42 + 1) / 10 = -0.8; row 45 adds nothing
    expected = math.tanh(2.0) / MAX_TP
    assert raw((42, 45), ONE_WINDOW) == pytest.approx(expected)
    assert raw((42, 45, 46, 47), ONE_WINDOW) == pytest.approx(expected)


def test_missed_window_costs_fn_weight():
    assert raw((), ONE_WINDOW) == -1.0
    assert raw((), ONE_WINDOW, LOW_FN) == -2.0


def test_false_positive_right_after_a_window_is_cheap():
    # row 50: distance (50 - 49) / (10 - 1) = 1/9; the window itself is missed
    assert raw((50,), ONE_WINDOW) == pytest.approx(-1.0 - 0.11 * math.tanh(2.5 / 9))
    assert raw((50,), ONE_WINDOW) == pytest.approx(-1.029793, abs=1e-6)


def test_false_positive_far_from_a_window_costs_full_fp_weight():
    # row 90: distance 41/9 > 3
    assert raw((90,), ONE_WINDOW) == pytest.approx(-1.11)


def test_false_positive_before_any_window_costs_full_fp_weight():
    assert raw((20,), ONE_WINDOW) == pytest.approx(-1.11)
    assert raw((20, 25), ONE_WINDOW) == pytest.approx(-1.22)  # every FP counts


def test_false_positive_distance_uses_the_preceding_window():
    windows = [window(20, 29), window(60, 79)]  # widths 10 and 20
    # row 31: 2/9 after the first window; row 81: 2/19 after the second; both windows missed
    expected = -2.0 - 0.11 * (math.tanh(2.5 * 2 / 9) + math.tanh(2.5 * 2 / 19))
    assert raw((31, 81), windows) == pytest.approx(expected)


def test_detections_in_probation_are_ignored():
    assert raw((0, 5, 14), ONE_WINDOW) == -1.0  # rows 0..14 of 100
    assert raw((15,), ONE_WINDOW) == pytest.approx(-1.11)  # first scored row
    # a window reaching into probation: row 12 is ignored, row 15 is its first scorable row
    partly = [window(10, 19)]
    assert raw((12,), partly) == -1.0
    assert raw((12, 15), partly) == pytest.approx(math.tanh(2.5 * 0.5) / MAX_TP)


def test_no_window_file_only_counts_false_positives():
    assert raw((), []) == 0.0
    assert raw((30, 60), []) == pytest.approx(-0.22)


def test_null_and_perfect_detectors():
    windows = [window(20, 29), window(60, 79)]
    files = [prepare_file(stamps(), np.zeros(N), windows)]
    for profile in (STANDARD, LOW_FN):
        null, perfect = null_score(files, profile), perfect_score(files, profile)
        assert null == -2 * profile.fn_weight and perfect == 2 * profile.tp_weight
        assert raw((), windows, profile) == null
        assert raw((20, 60), windows, profile) == pytest.approx(perfect)
        assert normalize(null, null, perfect) == 0.0
        assert normalize(perfect, null, perfect) == pytest.approx(100.0)


def test_optimiser_finds_the_best_threshold_of_a_small_corpus():
    rng = np.random.default_rng(7)
    windows = [[window(30, 39), window(70, 84)], [], [window(50, 59)]]
    rows = [[*range(30, 40), *range(70, 85)], [], [*range(50, 60)]]
    files = []
    for w, inside in zip(windows, rows):
        scores = rng.random(N) * 0.8
        scores[inside] += 0.2  # windows score higher, so some thresholds beat the null detector
        files.append(prepare_file(stamps(), scores.round(2), w))
    events = build_sweep_events(files)
    for profile in (STANDARD, LOW_FN, Profile("low_fp", 1.0, 0.22, 1.0)):
        thresholds, curve = threshold_curve(events, profile)
        brute = [sum(score_prepared(f, profile, t) for f in files) for t in thresholds]
        np.testing.assert_allclose(curve, brute, atol=1e-12)
        assert curve[0] == null_score(files, profile)
        threshold, best = optimize_threshold(files, profile)
        candidates = [*np.unique(np.concatenate([f.scores for f in files])), 2.0]
        assert best == pytest.approx(max(sum(score_prepared(f, profile, t) for f in files) for t in candidates))
        assert best > null_score(files, profile)
        assert sum(score_prepared(f, profile, threshold) for f in files) == pytest.approx(best)


def test_optimiser_breaks_ties_towards_the_higher_threshold():
    scores = np.zeros(N)
    scores[40] = 0.9  # window start: +1
    scores[90] = 0.5  # an FP: lowering to 0.5 costs 0.11
    scores[45] = 0.7  # second detection in the window: 0.7 and 0.9 tie
    files = [prepare_file(stamps(), scores, ONE_WINDOW)]
    assert optimize_threshold(files, STANDARD) == (0.9, pytest.approx(1.0))


# --- point-adjusted metrics and time to detect -----------------------------------------------------------


LABELS = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])


def test_point_adjust_fills_detected_segments():
    predictions = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    assert point_adjust(LABELS, predictions).astype(int).tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 1]


def test_point_adjusted_f1():
    predictions = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    # adjusted: tp 3 (first segment), fp 1 (last point), fn 2 (second segment)
    result = point_adjusted_prf(LABELS, predictions)
    assert (result["tp"], result["fp"], result["fn"]) == (3, 1, 2)
    assert result["precision"] == pytest.approx(0.75)
    assert result["recall"] == pytest.approx(0.6)
    assert result["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    both = point_adjusted_prf(LABELS, np.array([0, 0, 0, 1, 0, 0, 1, 0, 0, 0]))
    assert both["precision"] == 1.0 and both["recall"] == 1.0 and both["f1"] == 1.0
    assert point_adjusted_prf(LABELS, np.zeros(10)) == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 5,
    }


def test_mean_time_to_detect():
    ts = stamps(12)
    windows = [window(2, 5), window(7, 9), window(10, 11)]
    detections = np.zeros(12, dtype=bool)
    detections[[1, 3, 4, 9]] = True  # row 1 precedes the first window and does not count
    assert detection_delays(ts, detections, windows) == [60.0, 120.0, None]
    assert mean_time_to_detect(ts, detections, windows) == pytest.approx(90.0)
    assert math.isnan(mean_time_to_detect(ts, np.zeros(12), windows))
