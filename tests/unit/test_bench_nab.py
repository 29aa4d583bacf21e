"""The NAB runner: detection/evaluation/bench_nab.py.

A tiny corpus in NAB's layout is built in tmp_path: two categories, three files of 600 five-minute points of
seeded Gaussian noise, each with one injected anomaly (a spike, a temporary level shift up, a dip) inside a
labelled window, a windows file in NAB's format and the profiles of the shared NAB corpus
(../shared/datasets/nab/config/profiles.json next to the repository).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.evaluation import bench_nab
from detection.evaluation.bench_nab import DETECTORS, RESULT_COLUMNS, main, run_detector, to_anomaly_score
from opswatch.config import DetectionConfig

NAB_PROFILES = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "nab" / "config" / "profiles.json"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

N = 600
T0 = pd.Timestamp("2015-03-01 00:00:00")
WINDOW_STAMP = "%Y-%m-%d %H:%M:%S.%f"  # as in NAB's combined_windows.json

# file key -> (seed, anomaly rows [first, last), offset in noise sigmas, window rows [first, last] inclusive)
SPEC = {
    "artificialTiny/spike.csv": (1, (300, 301), 12.0, (270, 330)),
    "artificialTiny/shift.csv": (2, (420, 460), 8.0, (400, 470)),
    "realTiny/dip.csv": (3, (250, 255), -10.0, (225, 285)),
}


def stamps(n: int = N) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="5min")


def series(key: str) -> np.ndarray:
    seed, (first, last), offset, _ = SPEC[key]
    values = 50.0 + np.random.default_rng(seed).normal(0.0, 1.0, N)
    values[first:last] += offset
    return values


def write_corpus(root: Path, n_rows: int = N) -> tuple[Path, Path]:
    """Write the data files (first ``n_rows`` rows) and a windows file naming the windows inside them."""
    data_dir, windows = root / "data", {}
    for key in SPEC:
        path = data_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"timestamp": stamps().strftime("%Y-%m-%d %H:%M:%S"), "value": series(key)})
        frame.iloc[:n_rows].to_csv(path, index=False)
        first, last = SPEC[key][3]
        windows[key] = [[stamps()[first].strftime(WINDOW_STAMP), stamps()[last].strftime(WINDOW_STAMP)]]
        if last >= n_rows:
            windows[key] = []
    windows_path = root / "combined_windows.json"
    windows_path.write_text(json.dumps(windows, indent=4))
    return data_dir, windows_path


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    if not NAB_PROFILES.is_file():
        pytest.fail(f"NAB profiles not found at {NAB_PROFILES}: the shared NAB corpus must sit next to the repository")
    path = tmp_path_factory.mktemp("config") / "profiles.json"
    shutil.copy(NAB_PROFILES, path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, profiles):
    """The tiny corpus run once through ``main`` with ``robust_zscore`` (its warm-up is a fixed 72 points):
    (root, results_dir, printed JSON)."""
    root = tmp_path_factory.mktemp("nab")
    data_dir, windows = write_corpus(root)
    results = root / "results"
    capture = _run_main(["--results-dir", str(results), "--data-dir", str(data_dir), "--windows", str(windows),
                         "--profiles", str(profiles), "--detector", "robust_zscore"])
    return root, results, capture


def _run_main(argv: list[str]) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


def result_path(results: Path, key: str, detector: str = "robust_zscore") -> Path:
    category, name = key.split("/")
    return results / detector / category / f"{detector}_{name}"


def test_default_detector_is_the_live_default_and_null_is_registered(tmp_path, profiles):
    assert bench_nab.DEFAULT_DETECTOR == "ensemble" == DetectionConfig().detector
    data_dir, windows = write_corpus(tmp_path)
    printed = _run_main(["--results-dir", str(tmp_path / "results"), "--data-dir", str(data_dir),
                         "--windows", str(windows), "--profiles", str(profiles)])
    assert printed["detector"] == "ensemble" and printed["scores"]["standard"]["normalized"] > 50.0
    det = DETECTORS["robust_zscore"]()
    assert (det.window, det.min_points, det.direction) == (288, 72, "both")
    assert DETECTORS["null"]().update(0, 1.0).score == 0.0


def test_results_layout_and_columns_exactly(corpus):
    root, results, _ = corpus
    written = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert written == sorted(
        f"robust_zscore/{key.split('/')[0]}/robust_zscore_{key.split('/')[1]}" for key in SPEC
    )
    for key in SPEC:
        frame = pd.read_csv(result_path(results, key), dtype={"timestamp": str})
        source = pd.read_csv(root / "data" / key, dtype={"timestamp": str})
        assert tuple(frame.columns) == RESULT_COLUMNS == ("timestamp", "value", "anomaly_score", "label")
        assert frame["timestamp"].tolist() == source["timestamp"].tolist()  # same rows, same text, same order
        np.testing.assert_array_equal(frame["value"].to_numpy(), source["value"].to_numpy())


def test_anomaly_scores_are_in_unit_interval_and_zero_before_min_points(corpus):
    _, results, _ = corpus
    for key in SPEC:
        scores = pd.read_csv(result_path(results, key))["anomaly_score"].to_numpy()
        assert np.isfinite(scores).all()
        assert ((scores >= 0.0) & (scores <= 1.0)).all()
        assert (scores[:72] == 0.0).all()  # NaN before min_points maps to 0
        assert (scores[72:] > 0.0).any()


def test_label_column_matches_the_windows(corpus):
    root, results, _ = corpus
    windows = json.loads((root / "combined_windows.json").read_text())
    for key in SPEC:
        frame = pd.read_csv(result_path(results, key))
        ts = pd.to_datetime(frame["timestamp"])
        expected = np.zeros(len(frame), dtype=int)
        for start, end in windows[key]:
            expected[((ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))).to_numpy()] = 1
        first, last = SPEC[key][3]
        assert expected.sum() == last - first + 1
        np.testing.assert_array_equal(frame["label"].to_numpy(), expected)


def test_printed_json_has_the_three_profiles_and_beats_the_null_detector(corpus, profiles):
    root, _, printed = corpus
    assert printed["detector"] == "robust_zscore"
    assert printed["files"] == len(SPEC)
    assert printed["seconds"] >= 0
    assert set(printed["scores"]) == set(PROFILES)
    for profile in PROFILES:
        assert set(printed["scores"][profile]) == {"normalized", "threshold", "raw"}
        assert all(math.isfinite(v) for v in printed["scores"][profile].values())
    assert printed["scores"]["standard"]["normalized"] > 0.0
    # The injected anomalies are far above the noise: every window is caught, so the score is near perfect.
    assert printed["scores"]["standard"]["normalized"] > 50.0

    null = run_detector("null", root / "data", root / "combined_windows.json", root / "null-results", profiles)
    assert null["scores"]["standard"]["normalized"] == 0.0
    for profile in PROFILES:
        assert printed["scores"][profile]["normalized"] > null["scores"][profile]["normalized"]


def test_no_look_ahead_scores_of_a_prefix_do_not_depend_on_the_rest(tmp_path, profiles, corpus):
    _, full_results, _ = corpus
    k = 350
    data_dir, windows = write_corpus(tmp_path, n_rows=k)
    results = tmp_path / "results"
    _run_main(["--results-dir", str(results), "--data-dir", str(data_dir), "--windows", str(windows),
               "--profiles", str(profiles), "--detector", "robust_zscore"])
    for key in SPEC:
        prefix = pd.read_csv(result_path(results, key))
        full = pd.read_csv(result_path(full_results, key))
        assert len(prefix) == k
        np.testing.assert_array_equal(prefix["anomaly_score"].to_numpy(), full["anomaly_score"].to_numpy()[:k])


def test_parallel_jobs_write_the_same_files(tmp_path, profiles, corpus):
    root, full_results, printed = corpus
    result = run_detector("robust_zscore", root / "data", root / "combined_windows.json", tmp_path, profiles, jobs=2)
    for key in SPEC:
        assert result_path(tmp_path, key).read_text() == result_path(full_results, key).read_text()
    assert result["scores"] == printed["scores"]


def test_to_anomaly_score_is_fixed_monotone_and_bounded():
    z = np.array([math.nan, 0.0, 1.0, 5.0, 15.0, 1e9, math.inf])
    s = to_anomaly_score(z)
    np.testing.assert_allclose(s, [0.0, 0.0, 1 / 6, 0.5, 0.75, 1e9 / (1e9 + 5), 1.0])
    assert (np.diff(s[1:]) > 0).all()  # strictly increasing, and 1e9 stays below 1.0
    assert ((s >= 0) & (s <= 1)).all()


def test_missing_corpus_exits_2_naming_the_path_and_flags(tmp_path, capsys):
    missing = tmp_path / "no-such-nab" / "data"
    assert main(["--results-dir", str(tmp_path / "r"), "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--data-dir" in err and "--windows" in err
    assert not (tmp_path / "r").exists()


def test_windows_naming_files_without_data_exit_2(tmp_path, profiles, capsys):
    data_dir, windows = write_corpus(tmp_path)
    (data_dir / "realTiny" / "dip.csv").unlink()
    argv = ["--results-dir", str(tmp_path / "r"), "--data-dir", str(data_dir), "--windows", str(windows),
            "--profiles", str(profiles)]
    assert main(argv) == 2
    assert "realTiny/dip.csv" in capsys.readouterr().err


def test_ensemble_and_its_members_are_registered():
    from detection.ensemble import Ensemble

    assert isinstance(DETECTORS["ensemble"](), Ensemble)
    assert {"range_novelty", "seasonal_profile", "level_shift"} <= set(DETECTORS)


def test_ensemble_finds_the_injected_anomalies(tmp_path, profiles):
    data_dir, windows = write_corpus(tmp_path)
    result = run_detector("ensemble", data_dir, windows, tmp_path / "results", profiles)
    assert result["scores"]["standard"]["normalized"] > 80.0  # all three windows, no costly false alarm
    for key in SPEC:
        scores = pd.read_csv(result_path(tmp_path / "results", key, "ensemble"))["anomaly_score"].to_numpy()
        first, last = SPEC[key][1]
        assert scores[first] >= scores[: first].max()  # the anomaly's first point tops everything before it


def test_a_factory_replaces_the_registry_under_the_given_name(tmp_path, profiles):
    import functools

    from detection.ensemble import Ensemble

    data_dir, windows = write_corpus(tmp_path)
    by_name = run_detector("ensemble", data_dir, windows, tmp_path / "a", profiles)
    by_factory = run_detector("mine", data_dir, windows, tmp_path / "b", profiles, factory=functools.partial(Ensemble))
    assert by_factory["detector"] == "mine" and by_factory["scores"] == by_name["scores"]
    for key in SPEC:
        assert result_path(tmp_path / "b", key, "mine").read_bytes() == result_path(tmp_path / "a", key, "ensemble").read_bytes()


def test_sensitivity_variants_change_one_thing_each(tmp_path, profiles):
    from detection.evaluation import sensitivity

    default = sensitivity.build()
    assert [name for name, _ in default.members] == ["range", "seasonal", "level_shift"]
    assert [name for name, _ in sensitivity.build(drop=("range",)).members] == ["seasonal", "level_shift"]
    halved = sensitivity.build(**sensitivity.VARIANTS["calibration.memory x0.5"])
    assert dict(halved.members)["seasonal"].ratio.memory == 5000
    assert all(r.memory == 5000 for r in dict(halved.members)["level_shift"].ratios)
    assert dict(sensitivity.build(**sensitivity.VARIANTS["level_shift.spans x1.5"]).members)["level_shift"].spans == (
        (60, 1500), (150, 6000))
    assert sensitivity.build(**sensitivity.VARIANTS["no onset filter"]).onset is None
    with pytest.raises(KeyError, match="nope"):
        sensitivity.build(drop=("nope",))

    data_dir, windows = write_corpus(tmp_path)
    out = sensitivity.run(tmp_path / "r", ["default", "range only"], data_dir, windows, profiles)
    assert list(out) == ["default", "range only"]
    assert set(out["default"]) == {"change", "seconds", *PROFILES}
    assert out["default"]["standard"] == round(run_detector("ensemble", data_dir, windows, tmp_path / "e", profiles)[
        "scores"]["standard"]["normalized"], 2)
