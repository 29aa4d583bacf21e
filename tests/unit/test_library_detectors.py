"""The rest of the detector library: STL, Holt-Winters, spectral residual, isolation forest, CUSUM, and the
fixed and peaks-over-threshold (SPOT) thresholds.

Synthetic series with seeded noise and a daily wave (5-minute points): each detector must rank an injected
spike or step above every ordinary point, score nothing during warm-up, give the same scores batch and
streaming, never look ahead, and reject bad parameters naming them.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from detection.cusum import Cusum
from detection.evaluation.bench_nab import DETECTORS
from detection.holt_winters import HoltWinters
from detection.isolation_forest import IsolationForestDetector
from detection.refit import RefitWindow
from detection.spectral_residual import SpectralResidual, extend
from detection.stl import STLResidual
from detection.thresholds import FixedThreshold, PeaksOverThreshold

T0 = pd.Timestamp("2024-05-06", tz="UTC")
DAY = 288  # 5-minute points per day
N = 1500
SPIKE, STEP = 1100, 1300


def wave(n: int = N, seed: int = 0) -> pd.Series:
    """A daily sine of amplitude 10 around 100 with unit Gaussian noise; spike +12 at SPIKE, step +8 from STEP."""
    rng = np.random.default_rng(seed)
    values = 100 + 10 * np.sin(np.arange(n) * 2 * np.pi / DAY) + rng.normal(0, 1, n)
    values[SPIKE] += 12
    values[STEP:] += 8
    return pd.Series(values, index=pd.date_range(T0, periods=n, freq="5min"))


# Small windows so the tests stay fast; the defaults are what bench nab runs.
FACTORIES = {
    "stl": lambda: STLResidual(size=2 * DAY, every=DAY // 2),
    "holt_winters": lambda: HoltWinters(size=3 * DAY, every=DAY),
    "spectral_residual": lambda: SpectralResidual(),
    "isolation_forest": lambda: IsolationForestDetector(size=500, every=200, trees=20),
    "cusum": lambda: Cusum(),
}


def test_isolation_forest_ranks_the_spike_in_its_top_percent():
    # A weak detector on one series (the forest picks one of four features per split), but the spike's
    # increment isolates it: it or the point after it is in the top 1 % of the scores before the step.
    scores = FACTORIES["isolation_forest"]().score(wave()).to_numpy()[:STEP]
    top = np.nanquantile(scores, 0.99)
    assert max(scores[SPIKE], scores[SPIKE + 1]) >= top


@pytest.mark.parametrize("name", ["stl", "holt_winters", "spectral_residual"])
def test_spike_outranks_every_ordinary_point(name):
    scores = FACTORIES[name]().score(wave())
    ordinary = scores.drop(scores.index[[SPIKE, SPIKE + 1, *range(STEP, N)]])
    assert scores.iloc[SPIKE] > np.nanmax(ordinary.to_numpy()), name


@pytest.mark.parametrize("name", ["stl", "holt_winters"])
def test_step_is_found_within_a_few_points(name):
    scores = FACTORIES[name]().score(wave()).to_numpy()
    before = np.nanmax(scores[SPIKE + 2 : STEP])  # the ordinary points since the spike set the scale
    assert np.nanmax(scores[STEP : STEP + 6]) > before, name


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_streaming_equals_batch_and_no_look_ahead(name):
    s = wave()
    batch = FACTORIES[name]().score(s).to_numpy()
    detector = FACTORIES[name]()
    streamed = np.array([detector.update(int(t), float(v)).score for t, v in zip(s.index.as_unit("ms").asi8, s)])
    np.testing.assert_array_equal(batch, streamed)
    prefix = FACTORIES[name]().score(s.iloc[:STEP]).to_numpy()
    np.testing.assert_array_equal(prefix, batch[:STEP])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_nothing_is_scored_before_the_first_fit(name):
    detector = FACTORIES[name]()
    scores = detector.score(wave())
    assert scores.iloc[:10].isna().all()
    assert scores.iloc[-100:].notna().all()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_nan_values_are_skipped(name):
    s = wave()
    holed = s.copy()
    holed.iloc[700] = math.nan
    a = FACTORIES[name]().score(holed).to_numpy()
    b = FACTORIES[name]().score(s.drop(s.index[700])).to_numpy()
    assert math.isnan(a[700])
    np.testing.assert_array_equal(np.delete(a, 700), b)


def test_isolation_forest_batched_calls_equal_one_call_per_point():
    s = wave()
    batched = IsolationForestDetector(size=300, every=100, trees=10).scores([], s.to_numpy()[:700])
    detector = IsolationForestDetector(size=300, every=100, trees=10)
    one_by_one = np.array([detector.step(0, v) for v in s.to_numpy()[:700]])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-12, equal_nan=True)


def test_state_is_bounded():
    long = wave(n=2 * N)
    stl, hw = STLResidual(size=2 * DAY, every=2 * DAY), HoltWinters(size=3 * DAY, every=3 * DAY)
    sr, forest = SpectralResidual(), IsolationForestDetector(size=200, every=400, trees=5)
    for d in (stl, hw, sr, forest):
        d.score(long)
    assert len(stl.window.values) == 2 * DAY and len(hw.window.values) == 3 * DAY
    assert len(hw._season) == DAY and len(stl._season) == DAY
    assert len(sr._values) == sr.window_size and len(forest._train) == 200


def test_spectral_residual_extension_uses_the_points_before_the_newest():
    values = np.array([0.0, 1, 2, 3, 4, 5, 6, 100])  # a line, then a jump at the newest point
    extended = extend(values, lookback=5, count=2)
    assert extended[-2:].tolist() == [7.0, 7.0]  # the line continued; the jump does not pull its estimate


def test_cusum_finds_a_one_sigma_step_then_restarts_at_the_new_level():
    # CUSUM has no season: white noise with a step of one standard deviation at point 1000.
    values = np.random.default_rng(3).normal(100, 1, 2000)
    values[1000:] += 1.0
    s = pd.Series(values, index=pd.date_range(T0, periods=2000, freq="5min"))
    scores = Cusum().score(s).to_numpy()
    alarms = np.flatnonzero(scores >= 1)
    # Two-sided k=0.5, h=5: in-control average run length ~465 points, ~10 points for a one-sigma shift.
    assert len(alarms[alarms < 1000]) <= 6
    first = int(alarms[alarms >= 1000][0])
    assert first - 1000 < 40
    assert len(alarms[(alarms > first) & (alarms < first + 500)]) <= 4  # re-baselined, not firing on and on


def test_refit_window_schedule():
    window = RefitWindow(size=4, every=2, min_fit=3)
    due = [window.append(i * 300_000, float(i)) for i in range(2)]
    assert due == [False, False] and window.append(600_000, 2.0)
    window.fitted_now()
    assert [window.append(i * 300_000, 0.0) for i in (3, 4)] == [False, True]
    assert len(window.values) == 4 and window.points_per(86_400_000) == 288


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: STLResidual(size=3), "size=3"),
        (lambda: HoltWinters(season_ms=0), "season_ms=0"),
        (lambda: SpectralResidual(window=10, z=21), "window=10"),
        (lambda: IsolationForestDetector(size=4), "size=4"),
        (lambda: Cusum(h=0), "h=0"),
        (lambda: PeaksOverThreshold(q=0.5, level=0.98), "q=0.5"),
        (lambda: RefitWindow(size=4, every=1, min_fit=5), "min_fit=5"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(make, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        make()


def test_all_library_detectors_are_registered_for_bench_nab():
    assert {"stl", "holt_winters", "spectral_residual", "isolation_forest", "cusum"} <= set(DETECTORS)


# --- thresholds ----------------------------------------------------------------------------------------


def test_fixed_threshold_is_inclusive_and_nan_never_alarms():
    threshold = FixedThreshold(1.1)
    assert threshold.update(1.1) and not threshold.update(1.0) and not threshold.update(math.nan)


def test_spot_threshold_matches_the_exponential_tail_quantile():
    # Exponential(1) scores: the GPD of the excesses has shape 0, so z_q = t + ln(N_t / (q n)) ~ ln(1 / q).
    rng = np.random.default_rng(0)
    spot = PeaksOverThreshold(q=1e-4, level=0.98, init_points=20_000, max_peaks=1000)
    for score in rng.exponential(1.0, 20_000):
        spot.update(score)
    assert spot.threshold == pytest.approx(math.log(1e4), rel=0.08)
    alarms = sum(spot.update(s) for s in rng.exponential(1.0, 10_000))
    assert alarms <= 6  # about q * 10,000 = 1 expected


def test_spot_adapts_to_the_stream_scale_and_alarms_on_outliers():
    rng = np.random.default_rng(1)
    narrow, wide = PeaksOverThreshold(q=1e-3, init_points=2000), PeaksOverThreshold(q=1e-3, init_points=2000)
    for a, b in zip(rng.normal(0, 1, 2000), rng.normal(0, 10, 2000)):
        narrow.update(abs(a))
        wide.update(abs(b))
    assert 5 < wide.threshold / narrow.threshold < 20
    assert narrow.update(50.0) and not wide.update(20.0)


def test_spot_learns_nothing_from_alarms_or_nan_and_is_silent_while_calibrating():
    spot = PeaksOverThreshold(q=1e-3, init_points=100)
    assert not any(spot.update(float(v)) for v in np.linspace(0, 1, 100))  # calibration: never alarms
    peaks, n = len(spot.peaks), spot.n
    assert spot.update(1e6) and not spot.update(math.nan)
    assert (len(spot.peaks), spot.n) == (peaks, n)
