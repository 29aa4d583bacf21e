"""The live pipeline's default detector is the NAB-scored ensemble: same members and parameters, the rules on
its record-ratio scale, the onset filter as NAB's reporting step; ``robust_zscore`` stays selectable."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml

from alerting.rules import DEFAULT_RULES
from detection.engine import ScoringEngine
from detection.ensemble import SUGGESTED_THRESHOLD, Ensemble
from detection.evaluation.bench_nab import DEFAULT_DETECTOR, DETECTORS
from detection.vectorised import VectorEnsemble, VectorRobustZScore
from opswatch.config import DetectionConfig, load_config
from opswatch.pipeline import DETECTOR_STATE_FILE, scoring_engine

T0_MS = 1_714_953_600_000
STEP_MS = 5_000


def test_the_engine_runs_the_nab_scored_ensemble_and_nab_sees_its_onset_filtered_score():
    rng = np.random.default_rng(3)
    values = 0.2 + rng.normal(0, 0.01, 600)
    values[300:340] += 0.3  # a step, then back
    values[500] = 0.9  # a spike
    engine = ScoringEngine()  # the default learns every point: keeping anomalies out is an opt-in live review
    key = ("api", "saturation_ratio")
    live = []
    for i, v in enumerate(values):
        engine.update(T0_MS + i * STEP_MS, {"api": {"saturation_ratio": float(v)}})
        live.append(engine.explanations[key])  # the detector's score (raw_score) and the reviewed one (score)
    floor = engine.policy(key).min_scale
    unfiltered, nab = Ensemble(onset_half_life=0, min_scale=floor), Ensemble(min_scale=floor)
    raw = np.array([unfiltered.update(T0_MS + i * STEP_MS, float(v)).score for i, v in enumerate(values)])
    np.testing.assert_array_equal([e.raw_score for e in live], raw)
    onset = copy.deepcopy(Ensemble().onset)  # NAB's reporting step, fresh, over the live engine's scores
    reported = [onset.update(float(s)) for s in raw]
    expected = [nab.update(T0_MS + i * STEP_MS, float(v)).score for i, v in enumerate(values)]
    np.testing.assert_array_equal(reported, expected)
    # the live score is on the rules' scale: the step and the spike cross it, at their first point
    assert live[300].score > SUGGESTED_THRESHOLD and live[500].score > SUGGESTED_THRESHOLD
    assert isinstance(DETECTORS[DEFAULT_DETECTOR](), Ensemble)


def test_ensemble_is_the_default_everywhere_and_robust_zscore_stays_selectable(tmp_path):
    assert DetectionConfig().detector == DEFAULT_DETECTOR == "ensemble"
    assert ScoringEngine().detector == "ensemble"
    config = load_config(None, data_dir=str(tmp_path), detection={"detector": "robust_zscore", "window": 30})
    engine = scoring_engine(config)
    assert engine.detector == "robust_zscore" and isinstance(engine.scorer.detector, VectorRobustZScore)
    for t in range(40):
        engine.update(T0_MS + t * STEP_MS, {"api": {"error_ratio": 0.01}})
    engine.save()
    # the state of another detector is kept aside and the default engine starts afresh
    fresh = scoring_engine(load_config(None, data_dir=str(tmp_path)))
    assert isinstance(fresh.scorer.detector, VectorEnsemble) and len(fresh.scorer) == 0
    assert (tmp_path / (DETECTOR_STATE_FILE + ".unusable")).exists()
    with pytest.raises(ValueError, match="detector"):
        load_config(None, data_dir=str(tmp_path), detection={"detector": "stl"})


def test_default_anomaly_rules_use_the_ensemble_threshold_and_fire_at_once():
    rules = [r for g in yaml.safe_load(DEFAULT_RULES.read_text())["groups"] for r in g["rules"]
             if "anomaly" in r.get("expr", "")]
    assert {r["alert"] for r in rules} >= {"ErrorRatioAnomaly", "LatencyAnomaly", "TrafficDropAnomaly"}
    for rule in rules:
        thresholds = [float(part.split()[0]) for part in rule["expr"].split(">")[1:]]
        assert thresholds and set(thresholds) == {SUGGESTED_THRESHOLD}, rule["alert"]
        # a record ratio is high at a fault's onset, not all along it: fire at once, hold the alert a while
        assert rule["for"] == "0s", rule["alert"]
        assert rule.get("keep_firing_for") or "max_over_time" in rule["expr"], rule["alert"]


def test_warm_noise_stays_quiet_and_a_step_is_scored_at_its_first_point():
    rng = np.random.default_rng(5)
    engine = ScoringEngine()
    signals = ("error_ratio", "latency_p99_seconds", "latency_p90_seconds", "saturation_ratio", "request_rate")
    level = {"error_ratio": 0.002, "latency_p99_seconds": 0.2, "latency_p90_seconds": 0.08,
             "saturation_ratio": 0.3, "request_rate": 20.0}
    noise = {s: level[s] * 0.05 for s in signals}
    crossed = []
    for i in range(400):
        snap = {"api": {s: max(0.0, level[s] + rng.normal(0, noise[s])) for s in signals}}
        scores = engine.update(T0_MS + i * STEP_MS, snap)
        crossed += [(i, k[1]) for k, s in scores.items() if not math.isnan(s.score) and s.score > SUGGESTED_THRESHOLD]
    assert crossed == []  # 5 % noise never clears the impact floors, records or not
    step = {"api": {"error_ratio": 0.05, "latency_p99_seconds": 0.6, "latency_p90_seconds": 0.3,
                    "saturation_ratio": 0.9, "request_rate": 8.0}}
    scores = engine.update(T0_MS + 400 * STEP_MS, step)
    assert all(scores[("api", s)].score > SUGGESTED_THRESHOLD for s in signals), scores
