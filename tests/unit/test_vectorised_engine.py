"""The vectorised scoring engine: detection/vectorised.py and detection/engine.py.

Each row of the vectorised detectors must give exactly the scores of the per-series ``update`` of the scalar
detector; series come and go (rows added, compacted); the state survives a restart through a real file and
scores continue as if there had been none; bad state files are refused naming the file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detection.engine import DEFAULT_POLICIES, ScoringEngine, SeriesScorer
from detection.ensemble import Ensemble
from detection.robust_zscore import RobustZScore
from detection.vectorised import DIRECTION_CODES, VectorEnsemble, VectorRobustZScore

T0_MS = 1_714_953_600_000  # 2024-05-06 00:00 UTC, a Monday
STEP_MS = 300_000


def panel(points: int = 2500, series: int = 12, seed: int = 0) -> np.ndarray:
    """``(points, series)`` values: random walks plus a daily wave, quantised; steps, spikes, flat rows, NaN."""
    rng = np.random.default_rng(seed)
    x = 100 + rng.normal(0, 1, (points, series)).cumsum(axis=0) * 0.2
    x += 5 * np.sin(np.arange(points) * 2 * np.pi / 288)[:, None]
    x[points // 2 :, 0] += 30
    x[points // 3, 1] -= 60
    x[:, 2] = 7.0  # flat
    x = np.round(x, 1)
    x[rng.random((points, series)) < 0.01] = np.nan
    return x


def scalar_scores(make, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        detector = make(j)
        out[:, j] = [detector.update(T0_MS + i * STEP_MS, float(v)).score for i, v in enumerate(x[:, j])]
    return out


def vector_scores(scorer: SeriesScorer, x: np.ndarray, keys, start: int = 0) -> np.ndarray:
    return np.array([scorer.update(T0_MS + (start + i) * STEP_MS, keys, row).score for i, row in enumerate(x)])


def test_vector_ensemble_equals_the_scalar_ensemble_row_by_row():
    x = panel()
    floors = np.linspace(0.0, 1.0, x.shape[1])
    keys = list(range(x.shape[1]))
    scorer = SeriesScorer(VectorEnsemble(), lambda k: {"min_scale": floors[k]})
    np.testing.assert_array_equal(vector_scores(scorer, x, keys), scalar_scores(lambda j: Ensemble(min_scale=floors[j]), x))


def test_vector_ensemble_without_onset_filter_equals_the_unfiltered_scalar_ensemble():
    x = panel(points=1500, series=4)
    detector = VectorEnsemble()
    detector.onset_decay = 0.0  # how the live engine switches the filter off, hold included
    scorer = SeriesScorer(detector)
    expected = scalar_scores(lambda j: Ensemble(onset_half_life=0), x)
    np.testing.assert_array_equal(vector_scores(scorer, x, list(range(4))), expected)
    assert (expected[500:] > 0).sum() > (scalar_scores(lambda j: Ensemble(), x)[500:] > 0).sum()  # the filter mutes


def test_vector_ensemble_explains_like_the_scalar_ensemble():
    x = panel(points=1500, series=3)
    scorer = SeriesScorer(VectorEnsemble())
    reference = [Ensemble() for _ in range(3)]
    for i, row in enumerate(x):
        out = scorer.update(T0_MS + i * STEP_MS, [0, 1, 2], row)
        for j in range(3):
            if math.isnan(row[j]):
                continue
            expected = reference[j].update(T0_MS + i * STEP_MS, float(row[j]))
            assert (out.baseline[j], out.scale[j]) == pytest.approx((expected.baseline, expected.scale), nan_ok=True)
            names = tuple(n for b, n in enumerate(VectorEnsemble.MEMBERS) if out.agreed[j] >> b & 1)
            assert names == expected.detectors


def test_vector_robust_zscore_equals_the_scalar_detector_row_by_row():
    x = panel(points=800)
    directions = ["up", "down", "both"] * 4
    keys = list(range(x.shape[1]))
    scorer = SeriesScorer(VectorRobustZScore(window=60, min_points=10),
                          lambda k: {"direction": DIRECTION_CODES[directions[k]], "min_scale": 0.05 * k,
                                     "min_relative_scale": 0.01 * (k % 3)})
    expected = scalar_scores(lambda j: RobustZScore(60, 10, directions[j], 0.05 * j, 0.01 * (j % 3)), x)
    np.testing.assert_allclose(vector_scores(scorer, x, keys), expected, rtol=1e-12, equal_nan=True)


def test_new_series_get_a_row_and_removed_series_are_compacted():
    x = panel(points=1200, series=4)
    scorer = SeriesScorer(VectorEnsemble())
    got = {k: [] for k in "abcd"}
    for i, row in enumerate(x):
        keys = ["a", "b"] + (["c"] if i >= 300 else []) + (["d"] if i < 700 else [])  # c arrives, d leaves
        if i == 700:
            scorer.remove(["d"])
        values = [row[0], row[1]] + ([row[2]] if i >= 300 else []) + ([row[3]] if i < 700 else [])
        out = scorer.update(T0_MS + i * STEP_MS, keys, values)
        for k, s in zip(keys, out.score):
            got[k].append(s)
    assert scorer.keys == ["a", "b", "c"] and len(scorer.detector) == 3
    for k, column, first, last in (("a", 0, 0, 1200), ("c", 2, 300, 1200), ("d", 3, 0, 700)):
        ensemble = Ensemble()
        expected = [ensemble.update(T0_MS + i * STEP_MS, float(x[i, column])).score for i in range(first, last)]
        np.testing.assert_array_equal(got[k], expected)


def test_idle_series_are_dropped():
    scorer = SeriesScorer(VectorEnsemble())
    scorer.update(T0_MS, ["a", "b"], [1.0, 2.0])
    scorer.update(T0_MS + 10 * STEP_MS, ["a"], [1.0])
    assert scorer.drop_idle(T0_MS + 10 * STEP_MS, idle_ms=5 * STEP_MS) == ["b"]
    assert scorer.keys == ["a"] and len(scorer.detector) == 1


def test_state_survives_a_restart_and_scores_continue_as_without_one(tmp_path):
    x = panel(points=2000, series=6)
    keys = [("job", f"s{j}") for j in range(6)]
    uninterrupted = vector_scores(SeriesScorer(VectorEnsemble()), x, keys)
    path = tmp_path / "data" / "detector-state.npz"
    first = SeriesScorer(VectorEnsemble())
    before = vector_scores(first, x[:1200], keys)
    first.save(path)
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed into place
    second = SeriesScorer(VectorEnsemble())  # a new process would start from nothing ...
    second.restore(path)  # ... and read the file
    assert second.keys == keys
    after = vector_scores(second, x[1200:], keys, start=1200)
    np.testing.assert_array_equal(np.vstack([before, after]), uninterrupted)


def test_scoring_engine_restores_its_state_file_on_start(tmp_path):
    path = tmp_path / "detector-state.npz"
    snapshots = [{"api": {"error_ratio": 0.01 + 0.001 * (i % 7), "request_rate": 50.0 + i % 5}} for i in range(300)]
    snapshots[250]["api"]["error_ratio"] = 0.5
    for detector in ("robust_zscore", "ensemble"):
        whole = ScoringEngine(detector=detector)
        expected = [whole.update(T0_MS + i * STEP_MS, s) for i, s in enumerate(snapshots)]
        engine = ScoringEngine(detector=detector, state_path=path)
        got = [engine.update(T0_MS + i * STEP_MS, s) for i, s in enumerate(snapshots[:200])]
        engine.save()
        restarted = ScoringEngine(detector=detector, state_path=path)
        got += [restarted.update(T0_MS + i * STEP_MS, s) for i, s in enumerate(snapshots[200:], start=200)]
        assert [sorted(g) for g in got] == [sorted(e) for e in expected]
        fields = lambda results: np.array([[(s.score, s.baseline, s.scale) for _, s in sorted(r.items())] for r in results])  # noqa: E731
        np.testing.assert_array_equal(fields(got), fields(expected), err_msg=detector)
        assert got[250][("api", "error_ratio")].score > 5, detector
        path.unlink()


def test_scoring_engine_keeps_its_interface_and_policies():
    engine = ScoringEngine(window=30, min_points=5)
    for i in range(10):
        scores = engine.update(T0_MS + i * STEP_MS, {"api": {"error_ratio": 0.01, "up": 1.0, "latency_p99_seconds": math.nan}})
    assert set(scores) == {("api", "error_ratio")}  # no policy for "up"; NaN skipped
    assert engine.latest[("api", "error_ratio")].baseline == pytest.approx(0.01)
    drop = engine.update(T0_MS + 11 * STEP_MS, {"api": {"error_ratio": 0.0}})[("api", "error_ratio")]
    assert drop.score == 0.0  # error ratio: only up is bad
    assert set(DEFAULT_POLICIES) >= {"request_rate", "error_ratio", "latency_p99_seconds", "saturation_ratio"}


def test_ensemble_engine_scores_only_the_harmful_direction():
    engine = ScoringEngine(detector="ensemble")
    rng = np.random.default_rng(0)
    for i in range(600):
        engine.update(T0_MS + i * STEP_MS, {"api": {"request_rate": 100 + rng.normal(0, 1)}})
    surge = engine.update(T0_MS + 600 * STEP_MS, {"api": {"request_rate": 200.0}})[("api", "request_rate")]
    assert surge.score == 0.0 and surge.deviation > 0
    engine = ScoringEngine(detector="ensemble")
    for i in range(600):
        engine.update(T0_MS + i * STEP_MS, {"api": {"request_rate": 100 + rng.normal(0, 1)}})
    drop = engine.update(T0_MS + 600 * STEP_MS, {"api": {"request_rate": 20.0}})[("api", "request_rate")]
    assert drop.score > 2 and "range" in drop.detectors


def test_bad_state_files_are_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a state file")
    with pytest.raises(ValueError, match="garbage.npz"):
        SeriesScorer(VectorEnsemble()).restore(garbage)
    other = tmp_path / "zscore.npz"
    scorer = SeriesScorer(VectorRobustZScore())
    scorer.update(T0_MS, ["a"], [1.0])
    scorer.save(other)
    with pytest.raises(ValueError, match=r"zscore.npz.*VectorRobustZScore"):
        ScoringEngine(detector="ensemble", state_path=other)
    with pytest.raises(ValueError, match="detector='median'"):
        ScoringEngine(detector="median")


def test_bad_update_input_is_a_clear_error():
    scorer = SeriesScorer(VectorEnsemble())
    with pytest.raises(ValueError, match="2 keys but values of shape"):
        scorer.update(T0_MS, ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="duplicate keys.*'a'"):
        scorer.update(T0_MS, ["a", "a"], [1.0, 2.0])


# One scrape loop in a real child process: restore the state file if there is one, score points [start, stop)
# of a seeded panel, save, print the scores as JSON.
CHILD = """
import json, sys
import numpy as np
from detection.engine import ScoringEngine
path, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(7)
values = 50 + rng.normal(0, 1, (stop, 3)).cumsum(axis=0) * 0.1
values[900:, 0] += 20
engine = ScoringEngine(detector="ensemble", state_path=path)
out = []
for i in range(start, stop):
    snapshot = {"api": {"error_ratio": values[i, 0], "request_rate": values[i, 1], "saturation_ratio": values[i, 2]}}
    scores = engine.update(%d + i * %d, snapshot)
    out.append([scores[k].score for k in sorted(scores)])
engine.save()
print(json.dumps(out))
""" % (T0_MS, STEP_MS)


def test_a_restarted_process_continues_the_scores_of_an_uninterrupted_one(tmp_path, spawn):
    import json
    import subprocess
    import sys

    def run(path, start, stop) -> list:
        proc = spawn([sys.executable, "-c", CHILD, str(path), str(start), str(stop)], stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        return json.loads(out.replace("NaN", "null"))

    uninterrupted = run(tmp_path / "one.npz", 0, 1200)
    restarted = run(tmp_path / "two.npz", 0, 700) + run(tmp_path / "two.npz", 700, 1200)
    assert restarted == uninterrupted
    assert max(row[0] or 0 for row in uninterrupted[900:905]) > 1  # the error ratio's step fired
