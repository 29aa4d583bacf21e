"""The record-ratio detectors: detection/calibration.py, range_novelty.py, seasonal.py, changepoint.py, ensemble.py.

Synthetic series with seeded noise: steps, spikes, ramps, flat and quantised series, daily seasonality; the
streaming form against the batch form; no look-ahead; bounded state; bad input.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from detection.base import Score
from detection.calibration import OnsetFilter, RecordRatio
from detection.changepoint import LevelShift
from detection.ensemble import SUGGESTED_THRESHOLD as ALERT
from detection.ensemble import Ensemble
from detection.range_novelty import RangeNovelty
from detection.seasonal import SeasonalProfile
from opswatch.errors import NotFittedError

T0 = pd.Timestamp("2024-05-06", tz="UTC")  # a Monday
FIVE_MIN = "5min"
SIGMA = 2.0


def series(values, freq: str = FIVE_MIN, start: pd.Timestamp = T0) -> pd.Series:
    values = np.asarray(values, dtype=float)
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq=freq))


def noise(n: int, seed: int = 0, level: float = 100.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(level, SIGMA, n)


def first_at_or_above(scores: pd.Series, level: float, start: int) -> int | None:
    hits = np.flatnonzero(scores.to_numpy()[start:] >= level)
    return int(hits[0]) + start if len(hits) else None


# --- RecordRatio and OnsetFilter ---------------------------------------------------------------------


def test_record_ratio_divides_by_the_remembered_peak():
    ratio = RecordRatio(memory=1e12, growth=10.0, min_points=3, settle=1)
    assert math.isnan(ratio.update(5.0))  # settling: ignored altogether
    assert math.isnan(ratio.update(2.0)) and math.isnan(ratio.update(4.0))  # warm-up: learnt, not scored
    assert ratio.update(2.0) == pytest.approx(0.5)  # half the peak of 4
    assert ratio.update(8.0) == pytest.approx(2.0)  # a new record, twice the peak
    assert ratio.update(8.0) == pytest.approx(1.0)  # now remembered
    assert math.isnan(ratio.update(math.nan)) and ratio.peak == pytest.approx(8.0)  # NaN changes nothing


def test_record_ratio_forgets_with_its_half_life_and_caps_growth():
    ratio = RecordRatio(memory=10, growth=2.0, min_points=1, settle=0)
    ratio.update(1.0)
    for _ in range(10):
        ratio.update(0.0)
    assert ratio.peak == pytest.approx(0.5)  # one half-life later
    ratio.update(100.0)  # an outlier raises the peak by at most x2 ...
    assert ratio.peak == pytest.approx(2 * 0.5 * 0.5 ** 0.1)
    assert ratio.update(3.0) > 1  # ... so the next large deviation is still a record


def test_record_ratio_floor_and_no_scale_yet():
    assert math.isnan(RecordRatio(min_points=0, settle=0).update(1.0))  # never deviated: no scale
    floored = RecordRatio(min_points=0, settle=0, floor=4.0)
    assert floored.update(1.0) == pytest.approx(0.25)  # below the floor never reaches 1


def test_onset_filter_mutes_a_falling_score_and_passes_growth():
    onset = OnsetFilter(half_life=10, hold=0)  # one point discounts by 2^(-1/10) = 0.933
    out = [onset.update(s) for s in [0.2, 3.0, 2.5, 2.0, 4.0, 3.0, 0.1]]
    assert out == [0.2, 3.0, 0.0, 0.0, 4.0, 0.0, 0.0]
    for _ in range(40):  # four half-lives: 4 -> 0.25
        onset.update(0.0)
    assert onset.update(3.0) == 3.0  # a new event after the old one faded
    assert math.isnan(onset.update(math.nan))


def test_onset_filter_holds_the_level_then_lets_it_decay():
    onset = OnsetFilter(half_life=1, hold=3)  # level held for 3 points, then halved every point
    out = [onset.update(s) for s in [2.0, 1.9, 1.9, 1.9, 1.9, 1.5]]
    assert out == [2.0, 0.0, 0.0, 0.0, 1.9, 0.0]  # the 4th point after 2.0 sees 1.0; 1.9 then holds
    assert onset.age == 1 and onset.level == 1.9
    for _ in range(100):
        onset.update(0.0)
    assert onset.age == 4  # capped at hold + 1: bounded state
    assert math.isnan(onset.update(math.nan)) and onset.update(0.5) == 0.5  # NaN counts as a point


def test_onset_hold_mutes_an_events_echoes_that_plain_decay_lets_through():
    """An echo 21 points after an event's onset is part of the event for the held filter."""
    echo = [3.0] + [0.0] * 20 + [2.9]
    plain = OnsetFilter(half_life=10, hold=0)
    held = OnsetFilter()  # the ensemble's: half-life 10, hold 50
    assert [plain.update(s) for s in echo][-1] == 2.9  # 3 * 2^(-21/10) = 0.7 < 2.9: reported again
    assert [held.update(s) for s in echo][-1] == 0.0
    assert [held.update(s) for s in [0.0] * 50 + [2.9]][-1] == 2.9  # a later event after the hold and decay


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: RecordRatio(memory=0), "memory=0"),
        (lambda: RecordRatio(growth=0.5), "growth=0.5"),
        (lambda: RecordRatio(min_points=5, settle=6), "settle=6"),
        (lambda: OnsetFilter(half_life=0), "half_life=0"),
        (lambda: OnsetFilter(hold=-1), "hold=-1"),
        (lambda: Ensemble(onset_hold=-1), "onset_hold=-1"),
        (lambda: RangeNovelty(gain=0), "gain=0"),
        (lambda: SeasonalProfile(daily_alpha=1.5), "daily_alpha=1.5"),
        (lambda: LevelShift(spans=((100, 50),)), "spans=((100, 50),)"),
        (lambda: LevelShift(spans=()), "spans=()"),
        (lambda: Ensemble(onset_half_life=-1), "onset_half_life=-1"),
        (lambda: Ensemble(members=()), "at least one member"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(make, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        make()


# --- RangeNovelty --------------------------------------------------------------------------------------


def test_range_novelty_scores_excess_over_the_range_in_widths():
    det = RangeNovelty(gain=10, min_points=2)
    det.fit(series([10.0, 20.0]))
    inside, above, below = det.update(0, 15.0), det.update(0, 21.0), det.update(0, 8.0)
    assert inside.score == 0.0
    assert above.score == pytest.approx(1 + 10 * 1 / 10) and above.baseline == 20.0 and above.scale == 10.0
    assert below.score == pytest.approx(1 + 10 * 2 / 11)  # the range is now [10, 21]


def test_range_novelty_flat_history_has_no_scale_unless_floored():
    flat = RangeNovelty(min_points=2).fit(series([5.0] * 20))
    assert math.isnan(flat.update(0, 6.0).score)
    floored = RangeNovelty(min_points=2, min_scale=1.0).fit(series([5.0] * 20))
    assert floored.update(0, 5.5).score == pytest.approx(1 + 10 * 0.5)


def test_range_novelty_forgets_old_extremes_after_two_blocks():
    det = RangeNovelty(memory=100, min_points=1)
    det.fit(series(np.r_[1000.0, noise(299)]))
    assert det.high < 200  # the 1000 fell out with its block
    det2 = RangeNovelty(memory=1000, min_points=1).fit(series(np.r_[1000.0, noise(299)]))
    assert det2.high == 1000.0


# --- SeasonalProfile -----------------------------------------------------------------------------------


def daily_wave(days: int, seed: int = 1) -> np.ndarray:
    """5-minute points: 50 + 30 sin(time of day) + N(0, 1)."""
    n = days * 288
    phase = 2 * np.pi * np.arange(n) / 288
    return 50 + 30 * np.sin(phase) + np.random.default_rng(seed).normal(0, 1, n)


def test_seasonal_profile_learns_the_daily_wave_and_flags_a_missing_peak():
    values = daily_wave(21)
    normal = SeasonalProfile().score(series(values))
    assert np.nanmax(normal.to_numpy()[14 * 288:]) < 1.5  # the third week: nothing new
    broken = values.copy()
    broken[15 * 288 + 40 : 15 * 288 + 110] = 50 + np.random.default_rng(2).normal(0, 1, 70)  # the peak is missing
    scores = SeasonalProfile().score(series(broken))
    hit = first_at_or_above(scores, 2.0, 15 * 288)
    assert hit is not None and 15 * 288 + 40 <= hit < 15 * 288 + 80


def test_seasonal_profile_baseline_is_the_profile_value():
    det = SeasonalProfile().fit(series(daily_wave(14)))
    noon = T0 + pd.Timedelta(days=14, hours=6)  # sin peak at a quarter day
    score = det.update(int(noon.value // 1_000_000), 80.0)
    assert score.baseline == pytest.approx(80.0, abs=2.0)


# --- LevelShift ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_shift_flags_a_step_inside_the_old_range(seed):
    values = noise(5000, seed)
    values[1000] += 30 * SIGMA  # an old spike makes the range wide: the step stays inside it
    values[4000:] += 6 * SIGMA
    scores = LevelShift().score(series(values))
    hit = first_at_or_above(scores, ALERT, 4000)
    assert hit is not None and hit < 4000 + 20
    assert (scores.iloc[3000:4000] < ALERT).all()


# --- Ensemble ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_noise_rarely_sets_records(seed):
    scores = Ensemble().score(series(noise(10_000, seed)))
    rate = float((scores.iloc[2000:] >= ALERT).mean())
    assert rate < 0.0015  # records get rarer as history grows; the onset filter mutes their echoes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_fault_fires_within_two_scrapes(seed):
    """A latency-like golden signal scraped every 15 s; a fault triples it."""
    rng = np.random.default_rng(seed)
    latency = 0.2 * np.exp(rng.normal(0, 0.1, 3000))
    latency[2500:] *= 3
    scores = Ensemble().score(series(latency, freq="15s"))
    hit = first_at_or_above(scores, ALERT, 2500)
    assert hit is not None and hit <= 2501
    # a young history still sets records now and then (about 1/t of the points): a handful in 2,000 scrapes
    assert (scores.iloc[500:2500] >= ALERT).sum() <= 10


def test_spike_is_reported_once_at_its_point():
    values = noise(3000, 3)
    values[2500] += 15 * SIGMA
    scores = Ensemble().score(series(values))
    assert scores.iloc[2500] >= ALERT
    assert (scores.iloc[2501:2550] < ALERT).all()  # the onset filter: no repeat for the same event


def test_ramp_is_caught_before_it_ends():
    values = noise(3000, 4)
    values[2500:2550] += np.linspace(0, 8 * SIGMA, 50)
    values[2550:] += 8 * SIGMA
    hit = first_at_or_above(Ensemble().score(series(values)), ALERT, 2500)
    assert hit is not None and hit < 2550


def test_quantised_series_repeating_its_usual_blips_stays_quiet_and_a_new_size_fires():
    values = np.zeros(4000)
    values[::97] = 1.0  # a quantised counter: usually 0, now and then exactly 1
    quiet = Ensemble().score(series(values))
    assert (quiet.iloc[500:] < ALERT).all()
    values[3500] = 5.0
    loud = Ensemble().score(series(values))
    assert loud.iloc[3500] >= ALERT


def test_flat_series_never_fires():
    scores = Ensemble().score(series([3.0] * 2000))
    assert not (scores >= ALERT).any()


def test_detectors_field_names_the_members_that_agreed():
    values = noise(3000, 5)
    values[2800:] += 20 * SIGMA
    det = Ensemble().fit(series(values[:2800]))
    first = det.update(0, float(values[2800]))
    assert isinstance(first, Score) and first.score >= 1
    assert "range" in first.detectors
    assert set(first.detectors) <= {"range", "seasonal", "level_shift"}
    assert first.baseline == pytest.approx(float(values[:2800].max()))  # the range edge it broke


# --- the streaming contract ----------------------------------------------------------------------------

DETECTORS = [Ensemble, RangeNovelty, SeasonalProfile, LevelShift]


def mixed(n: int = 6000) -> np.ndarray:
    values = daily_wave(n // 288 + 1)[:n]
    values[n // 2 :] += 20
    values[n // 3] += 100
    return values


@pytest.mark.parametrize("make", DETECTORS)
def test_streaming_equals_batch(make):
    s = series(mixed())
    batch = make().score(s).to_numpy()
    det = make()
    stream = [det.update(int(t.value // 1_000_000), float(v)).score for t, v in s.items()]
    np.testing.assert_array_equal(batch, np.array(stream))
    fitted = make().fit(s.iloc[:4000]).score(s.iloc[4000:]).to_numpy()
    np.testing.assert_array_equal(fitted, batch[4000:])


@pytest.mark.parametrize("make", DETECTORS)
def test_no_look_ahead(make):
    values = mixed()
    before = make().score(series(values)).to_numpy()[:3000]
    changed = values.copy()
    changed[3000:] = np.random.default_rng(9).normal(-500, 50, len(values) - 3000)
    after = make().score(series(changed)).to_numpy()[:3000]
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("make", DETECTORS)
def test_nan_values_are_skipped_without_learning(make):
    values = mixed(3000)
    s = series(values)
    holed = s.copy()
    holed.iloc[1500] = math.nan
    with_hole = make().score(holed)
    assert math.isnan(with_hole.iloc[1500])
    without = make().score(s.drop(s.index[1500]))
    np.testing.assert_array_equal(with_hole.drop(s.index[1500]).to_numpy(), without.to_numpy())


def test_state_is_bounded():
    det = Ensemble()
    s = series(mixed(20_000))
    det.fit(s.iloc[:5000])
    size_5k = len(pickle.dumps(det))
    det.score(s.iloc[5000:])
    assert len(pickle.dumps(det)) <= size_5k + 64  # the same containers, a few numbers changed


def test_non_datetime_index_is_a_clear_error():
    with pytest.raises(ValueError, match="DatetimeIndex"):
        Ensemble().score(pd.Series([1.0, 2.0, 3.0], name="cpu"))


def test_too_few_points_to_score_is_not_fitted():
    with pytest.raises(NotFittedError, match="Ensemble needs 50 points"):
        Ensemble().score(series([1.0] * 10))
