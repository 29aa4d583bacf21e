"""With ``exclude_above`` set, the live engine scores an anomaly's points without learning them: a past fault does
not blind it to the next one, a stable permanent shift is still re-baselined, and an undone step leaves the state
as if never taken. Off by default for the ensemble (its NAB cost), on through ``detection.exclude_above``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detection.engine import ENSEMBLE_EXCLUDE_ABOVE, ScoringEngine, SeriesScorer, calibrated_ensemble
from detection.ensemble import SUGGESTED_THRESHOLD
from detection.explain import KEEP_OUT_AT_MOST
from detection.vectorised import VectorRobustZScore
from opswatch.config import ConfigError, load_config
from opswatch.pipeline import scoring_engine

T0_MS = 1_714_953_600_000
STEP_MS = 5_000
KEY = ("giftdb", "latency_p99_seconds")
EXCLUDE = SUGGESTED_THRESHOLD  # the rules' threshold: every alerting point is kept out


def feed(engine: ScoringEngine, values: np.ndarray) -> np.ndarray:
    """The reported scores of ``values`` fed one per evaluation to ``KEY``."""
    out = []
    for i, v in enumerate(values):
        out.append(engine.update(T0_MS + i * STEP_MS, {KEY[0]: {KEY[1]: float(v)}})[KEY].score)
    return np.array(out)


def latency(n: int = 600, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(0.012 + rng.normal(0, 0.01, n))


def same_fault_twice() -> np.ndarray:
    values = latency()
    values[400:412] = 2.0  # a CPU saturation: p99 at 2 s for a minute
    values[460:472] = 0.3  # four minutes later, slow queries: 25x the usual p99
    return values


@pytest.mark.parametrize("exclude_above", [EXCLUDE, 30.0])  # 30: fault-sized points only (README's sweep)
def test_a_past_fault_does_not_hide_a_smaller_one_on_the_same_series(exclude_above):
    values = same_fault_twice()
    kept_out = feed(ScoringEngine(exclude_above=exclude_above), values)
    learnt = feed(ScoringEngine(exclude_above=math.inf), values)
    assert kept_out[400] >= SUGGESTED_THRESHOLD and learnt[400] >= SUGGESTED_THRESHOLD
    assert np.nanmax(kept_out[460:472]) >= SUGGESTED_THRESHOLD  # the second fault is seen
    assert np.nanmax(learnt[460:472]) < SUGGESTED_THRESHOLD  # learnt, the first one's 2 s hides it
    quiet = np.r_[0:400, 412:460, 472:600]
    assert not (np.nan_to_num(kept_out[quiet]) >= SUGGESTED_THRESHOLD).any()


def test_exclusion_is_off_by_default_and_opted_into_by_configuration(tmp_path):
    assert ENSEMBLE_EXCLUDE_ABOVE == math.inf and ScoringEngine().exclude_above == math.inf
    assert ScoringEngine(detector="robust_zscore").exclude_above == 5.0  # its own guard, as before
    assert np.nanmax(feed(ScoringEngine(), same_fault_twice())[460:472]) < SUGGESTED_THRESHOLD  # learnt: hidden
    configured = {None: math.inf, 30: 30.0}
    for value, expected in configured.items():
        config = load_config(None, data_dir=str(tmp_path / f"data{value}"), detection={"exclude_above": value})
        assert scoring_engine(config).exclude_above == expected
    with pytest.raises(ConfigError, match="exclude_above"):
        load_config(None, data_dir=str(tmp_path), detection={"exclude_above": 0})


def test_a_stable_permanent_shift_is_still_rebaselined():
    values = latency()
    values[400:] = 0.3 + np.random.default_rng(1).normal(0, 0.005, 200)  # for good
    stuck = feed(ScoringEngine(exclude_above=EXCLUDE), values)
    kept_out = 400 + KEEP_OUT_AT_MOST
    assert (stuck[400:kept_out] >= SUGGESTED_THRESHOLD).all()  # not learnt, not re-baselined: scored as a fault
    assert not (stuck[kept_out + 20:] >= SUGGESTED_THRESHOLD).any()  # until learning resumes, bounding a lock-up
    engine = ScoringEngine(exclude_above=EXCLUDE, rebaseline_after=12)
    scores = feed(engine, values)
    assert scores[400] >= SUGGESTED_THRESHOLD
    assert engine.rebaselined[KEY] == T0_MS + 411 * STEP_MS  # 12 anomalous, unlearnt points confirmed it
    assert not (scores[412:] >= SUGGESTED_THRESHOLD).any()


def test_an_excursion_the_harmless_way_is_not_learnt_either():
    """A request-rate burst (only a fall pages) at the start of a new half-hour slot of the seasonal profile:
    learnt because the review zeroes it, it would set that slot, and the usual rate after it would score as a
    "drop" for good (each such point kept out in turn); kept out by its raw score, nothing follows it."""
    rng = np.random.default_rng(3)
    values = 20 + rng.normal(0, 1.5, 700)
    values[360:372] = 60 + rng.normal(0, 3, 12)  # point 360 = 30 min: a fresh daily-profile slot
    key = ("message", "request_rate")
    engine = ScoringEngine(exclude_above=EXCLUDE)
    scores = np.array([engine.update(T0_MS + i * STEP_MS, {key[0]: {key[1]: float(v)}})[key].score
                       for i, v in enumerate(values)])
    assert not (np.nan_to_num(scores) >= SUGGESTED_THRESHOLD).any()


def test_an_excluded_anomaly_leaves_the_state_as_if_never_seen():
    values = latency(200)
    values[150:155] = 1.5
    engine, twin = ScoringEngine(exclude_above=EXCLUDE), ScoringEngine(exclude_above=EXCLUDE)
    for i, v in enumerate(values):
        engine.update(T0_MS + i * STEP_MS, {KEY[0]: {KEY[1]: float(v)}})
        if not 150 <= i < 155:  # the twin never sees the anomaly
            twin.update(T0_MS + i * STEP_MS, {KEY[0]: {KEY[1]: float(v)}})
    for name, a in engine.scorer.detector.state.items():
        np.testing.assert_array_equal(a, twin.scorer.detector.state[name], err_msg=name)


@pytest.mark.parametrize("make", [calibrated_ensemble, lambda: VectorRobustZScore(window=30, min_points=5)])
def test_an_undone_step_equals_no_step_for_those_rows(make):
    """The cells saved before a step (not whole rows) are all it writes: checked against a scorer that skips
    the rows, over enough steps to wrap the level-shift and robust z-score rings and move the profile slots."""
    rng = np.random.default_rng(2)
    keys = [("job", f"s{i}") for i in range(40)]
    scorer, twin = SeriesScorer(make()), SeriesScorer(make())
    for s in (scorer, twin):  # the same rows in both: NaN values make the rows without teaching them
        s.update(T0_MS, keys, np.full(len(keys), np.nan))
    for step in range(400):
        t = T0_MS + step * 997_000  # about 17 minutes: every daily and weekly slot is visited
        values = rng.normal(0, 1, len(keys)).cumsum() + rng.normal(0, 1)
        values[rng.random(len(keys)) < 0.05] = np.nan
        keep = rng.random(len(keys)) > 0.3
        scorer.update(t, keys, values, lambda out, keep=keep: keep)
        twin.update(t, [k for k, kept in zip(keys, keep) if kept], values[keep])
        for name, a in scorer.detector.state.items():
            np.testing.assert_array_equal(a, twin.detector.state[name], err_msg=f"{name} at step {step}")
