"""The robust z-score detector and the scoring engine: detection/robust_zscore.py, detection/engine.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from detection.base import Score
from detection.engine import DEFAULT_POLICIES, ScoringEngine, SignalPolicy
from detection.robust_zscore import RobustZScore
from opswatch.errors import NotFittedError

MAD_TO_SIGMA = 1.4826
SIGMA = 2.0
T0 = pd.Timestamp("2024-05-01", tz="UTC")


def series(values, start: pd.Timestamp = T0) -> pd.Series:
    values = np.asarray(values, dtype=float)
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1s"))


def noise(n: int = 1000, seed: int = 42) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, SIGMA, n)


# --- RobustZScore ------------------------------------------------------------------------------------


def test_no_score_before_min_points():
    scores = RobustZScore(window=50, min_points=10).score(series(noise(30)))
    assert scores.iloc[:10].isna().all()  # the first 10 points only build the baseline
    assert scores.iloc[10:].notna().all()


@pytest.mark.parametrize("seed", [0, 1, 42])  # three independent noise draws
def test_gaussian_noise_stays_below_threshold(seed):
    scores = RobustZScore().score(series(noise(2000, seed)))
    # quality floor: the 99th percentile of |z| on N(0,1) is ~2.6; it must stay well below 5
    assert np.nanpercentile(scores, 99) < 5
    assert np.nanmedian(scores) < 1.0  # typical points score around 0.67 (median of |z|)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_ten_sigma_step_scores_above_threshold(seed):
    values = noise(1000, seed)
    values[600:] += 10 * SIGMA
    scores = RobustZScore().score(series(values))
    assert scores.iloc[600] > 5  # the first point of the step
    assert (scores.iloc[600:650] > 5).all()  # and the step keeps scoring


@pytest.mark.parametrize(
    "direction, shift, anomalous",
    [
        ("both", +10, True),  # both: rises count
        ("both", -10, True),  # both: drops count
        ("up", +10, True),  # up: a rise counts
        ("up", -10, False),  # up: a drop scores 0
        ("down", -10, True),  # down: a drop counts
        ("down", +10, False),  # down: a rise scores 0
    ],
)
def test_direction(direction, shift, anomalous):
    values = noise(400)
    values[300] += shift * SIGMA
    scores = RobustZScore(direction=direction).score(series(values))
    if anomalous:
        assert scores.iloc[300] > 5
    else:
        assert scores.iloc[300] == 0.0


def test_direction_up_scores_drops_as_zero_everywhere():
    values = noise(400)
    values[200:] -= 10 * SIGMA
    scores = RobustZScore(direction="up").score(series(values))
    assert (scores.iloc[200:210] == 0.0).all()


@pytest.mark.parametrize(
    "history, value, kwargs, expected",
    [
        # flat zeros: MAD 0, the absolute floor 0.01 is the spread: 0.02 / 0.01
        ([0.0] * 30, 0.02, {"min_scale": 0.01}, 2.0),
        # same blip, higher floor: 0.02 / 0.04
        ([0.0] * 30, 0.02, {"min_scale": 0.04}, 0.5),
        # flat 100: relative floor 10% of |100| = 10: (130 - 100) / 10
        ([100.0] * 30, 130.0, {"min_relative_scale": 0.1}, 3.0),
        # the larger floor wins: max(1.0, 0.1 * 100 = 10) -> 30 / 10
        ([100.0] * 30, 130.0, {"min_scale": 1.0, "min_relative_scale": 0.1}, 3.0),
        # relative floor uses |baseline| for a negative baseline: 0.5 * |-4| = 2; |-1 - -4| / 2
        ([-4.0] * 30, -1.0, {"min_relative_scale": 0.5}, 1.5),
        # the floor only matters when the MAD is smaller: 1..5 has MAD 1 -> 1.4826 > 0.01;
        # 6 vs median 3
        ([1.0, 2.0, 3.0, 4.0, 5.0] * 6, 6.0, {"min_scale": 0.01}, 3 / MAD_TO_SIGMA),
    ],
)
def test_scale_floors(history, value, kwargs, expected):
    det = RobustZScore(window=len(history), min_points=len(history), **kwargs).fit(series(history))
    assert det.update(0, value).score == pytest.approx(expected)


def test_update_explains_the_score():
    # baseline 1..5: median 3, MAD median(|-2,-1,0,1,2|) = 1, scale 1.4826
    det = RobustZScore(window=5, min_points=5).fit(series([1, 2, 3, 4, 5]))
    s = det.update(1_700_000_000_000, 9.0)
    assert s == Score(1_700_000_000_000, 9.0, pytest.approx(6 / MAD_TO_SIGMA), 3.0, pytest.approx(MAD_TO_SIGMA))
    assert s.deviation == 6.0 and s.relative_deviation == 2.0


def test_points_at_or_above_exclude_above_do_not_enter_the_baseline():
    values = noise(300)
    values[200:] += 10 * SIGMA  # a fault lasting 100 points, longer than half the window
    kept_out = RobustZScore(window=120, exclude_above=5.0).score(series(values))
    learned = RobustZScore(window=120, exclude_above=math.inf).score(series(values))
    assert (kept_out.iloc[200:] > 5).all()  # the fault keeps scoring high to its end
    # control: when every point is learned, the median moves to the fault after ~60 points
    assert (learned.iloc[270:] < 5).all()


@pytest.mark.parametrize(
    "value, learned",
    [
        (5.0, False),  # scores exactly exclude_above (5.0): kept out
        (4.9, True),  # just below: learned
        (-5.0, False),  # direction both: a drop of 5 is kept out as well
    ],
)
def test_exclusion_threshold_is_inclusive(value, learned):
    # a one-point window on 0 with spread floor 1: the score is |value|, and the next point is compared
    # with whatever the window holds afterwards
    det = RobustZScore(window=1, min_points=1, min_scale=1.0, exclude_above=5.0).fit(series([0.0]))
    assert det.update(0, value).score == pytest.approx(abs(value))
    after = det.update(1, 0.0)
    assert after.baseline == (value if learned else 0.0)


def test_nan_points_are_neither_scored_nor_learned():
    det = RobustZScore(window=5, min_points=5).fit(series([1, 2, 3, 4, 5]))
    s = det.update(0, math.nan)
    assert math.isnan(s.score) and math.isnan(s.baseline)
    assert det.update(1, 9.0).score == pytest.approx(6 / MAD_TO_SIGMA)  # baseline unchanged


def test_fit_then_score_returns_series_on_same_index():
    train = series(noise(200))
    test = series([100.0, 100.0 + 10 * SIGMA, math.nan, 100.0], start=T0 + pd.Timedelta(seconds=200))
    det = RobustZScore(window=120, min_points=20).fit(train)
    scores = det.score(test)
    assert isinstance(scores, pd.Series) and scores.index.equals(test.index)
    assert scores.name == "anomaly_score"
    assert not math.isnan(scores.iloc[0])  # fitted: the first point is scored at once
    assert scores.iloc[0] < 1 and scores.iloc[1] > 5 and math.isnan(scores.iloc[2])


def test_fit_keeps_the_last_window_points():
    # window 5 of 0..99 is 95..99: median 97, MAD 1 -> (100 - 97) / 1.4826
    det = RobustZScore(window=5, min_points=5).fit(series(np.arange(100.0)))
    assert det.update(0, 100.0).score == pytest.approx(3 / MAD_TO_SIGMA)


def test_score_without_datetime_index_uses_positions():
    det = RobustZScore(window=5, min_points=5).fit(series([1, 2, 3, 4, 5]))
    scores = det.score(pd.Series([9.0]))
    assert scores.index.equals(pd.RangeIndex(1)) and scores.iloc[0] == pytest.approx(6 / MAD_TO_SIGMA)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"direction": "sideways"}, "sideways"),  # unknown direction
        ({"direction": "UP"}, "UP"),  # case matters
        ({"window": 0, "min_points": 1}, "window (0)"),  # window must be positive
        ({"window": 10, "min_points": 0}, "min_points (0)"),  # min_points must be positive
        ({"window": 10, "min_points": 11}, "min_points (11)"),  # cannot need more points than the window holds
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, named):
    with pytest.raises(ValueError) as info:
        RobustZScore(**kwargs)
    assert named in str(info.value)


def test_not_fitted_when_too_few_points():
    det = RobustZScore(window=50, min_points=20)
    with pytest.raises(NotFittedError) as info:
        det.score(series(noise(19)))
    assert "20" in str(info.value)
    with pytest.raises(NotFittedError):  # NaNs do not count as points
        det.score(series([1.0] * 15 + [math.nan] * 10))
    # a fitted baseline plus the series is enough
    det.fit(series(noise(15)))
    assert len(det.score(series(noise(5, seed=3)))) == 5


# --- ScoringEngine -----------------------------------------------------------------------------------


def snapshot(feed_rate: float, gift_rate: float, feed_err: float = 0.0) -> dict[str, dict[str, float]]:
    return {
        "feed": {"request_rate": feed_rate, "error_ratio": feed_err, "up": 1.0},
        "gift": {"request_rate": gift_rate, "error_ratio": 0.0, "up": 1.0},
    }


def test_engine_scores_only_signals_with_a_policy():
    engine = ScoringEngine(detector="robust_zscore", window=10, min_points=3)
    scores = engine.update(0, snapshot(10.0, 1000.0))
    assert set(scores) == {("feed", "request_rate"), ("feed", "error_ratio"),
                           ("gift", "request_rate"), ("gift", "error_ratio")}  # no ("*", "up")
    assert all(math.isnan(s.score) for s in scores.values())  # below min_points


def test_engine_keeps_one_baseline_per_job_and_signal():
    engine = ScoringEngine(detector="robust_zscore", window=10, min_points=3)
    for t in range(3):
        engine.update(t * 1000, snapshot(10.0, 1000.0))
    scores = engine.update(3000, snapshot(10.0, 1000.0))
    # each job is compared with its own history: 10 vs 10 and 1000 vs 1000
    assert scores[("feed", "request_rate")].score == 0.0 and scores[("feed", "request_rate")].baseline == 10.0
    assert scores[("gift", "request_rate")].score == 0.0 and scores[("gift", "request_rate")].baseline == 1000.0


def test_engine_applies_the_signal_policy():
    engine = ScoringEngine(detector="robust_zscore", window=10, min_points=3)
    for t in range(3):
        engine.update(t * 1000, snapshot(10.0, 1000.0))
    scores = engine.update(3000, snapshot(feed_rate=4.0, gift_rate=5000.0, feed_err=0.03))
    # request_rate: down, floor max(0.1, 0.1 * 10) = 1 -> a drop of 6 scores 6
    assert scores[("feed", "request_rate")].score == pytest.approx(6.0)
    # a surge is not a symptom of request_rate (direction down)
    assert scores[("gift", "request_rate")].score == 0.0
    # error_ratio: up, floor 0.01 -> 0.03 above a flat 0 scores 3
    assert scores[("feed", "error_ratio")].score == pytest.approx(3.0)


def test_engine_latest_holds_the_newest_score_per_key():
    engine = ScoringEngine(detector="robust_zscore", window=10, min_points=3)
    for t in range(4):
        engine.update(t * 1000, snapshot(10.0, 1000.0))
    engine.update(4000, {"feed": {"request_rate": 10.0, "error_ratio": math.nan}})  # only feed, error NaN
    assert engine.latest[("feed", "request_rate")].timestamp_ms == 4000
    assert engine.latest[("gift", "request_rate")].timestamp_ms == 3000  # gift absent: kept
    assert engine.latest[("feed", "error_ratio")].timestamp_ms == 3000  # NaN is not scored
    assert ("feed", "up") not in engine.latest


def test_engine_with_custom_policies():
    engine = ScoringEngine(detector="robust_zscore", window=5, min_points=2, policies={"up": SignalPolicy("down", min_scale=0.1)})
    for t in range(2):
        engine.update(t, {"feed": {"up": 1.0, "request_rate": 10.0}})
    scores = engine.update(2, {"feed": {"up": 0.0, "request_rate": 0.0}})
    assert set(scores) == {("feed", "up")}  # request_rate has no policy here
    assert scores[("feed", "up")].score == pytest.approx(10.0)  # (1 - 0) / 0.1


def test_default_policies_cover_the_rate_signals():
    up = ("error_ratio", "latency_p99_seconds", "latency_p90_seconds", "saturation_ratio", "consumer_lag_seconds")
    down = ("request_rate", "cache_hit_ratio")
    assert set(DEFAULT_POLICIES) == {*down, *up}
    assert {DEFAULT_POLICIES[s].direction for s in down} == {"down"}
    assert {DEFAULT_POLICIES[s].direction for s in up} == {"up"}
