"""PromQL-style rate and histogram_quantile: storage/functions.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from storage.functions import histogram_quantile, rate

INF = math.inf
T0 = 1_700_000_000_000  # ms


def counter(points: list[tuple[float, float]]) -> pd.Series:
    """``[(seconds after T0, value), ...]`` -> a series with a UTC DatetimeIndex, as the store returns."""
    index = pd.to_datetime([T0 + int(s * 1000) for s, _ in points], unit="ms", utc=True)
    return pd.Series([v for _, v in points], index=index, dtype=float)


@pytest.mark.parametrize(
    "points, expected",
    [
        # steady: 0 -> 30 over 30 s
        ([(0, 0), (10, 10), (20, 20), (30, 30)], 1.0),
        # uneven steps: 100 -> 160 over 20 s
        ([(0, 100), (5, 110), (20, 160)], 3.0),
        # flat counter
        ([(0, 5), (15, 5), (30, 5)], 0.0),
        # reset to 0 in the middle: 10 + 0 (after reset) + 30 = 40 over 20 s
        ([(0, 0), (10, 10), (15, 0), (20, 30)], 2.0),
        # reset to a non-zero value: 50->60 (+10), 60->5 reset (+5), 5->25 (+20) = 35 over 10 s
        ([(0, 50), (2, 60), (4, 5), (10, 25)], 3.5),
        # two resets: 0->8 (+8), 8->2 (+2), 2->6 (+4), 6->1 (+1) = 15 over 4 s
        ([(0, 0), (1, 8), (2, 2), (3, 6), (4, 1)], 3.75),
        # sub-second spacing: +3 over 0.5 s
        ([(0, 1), (0.25, 2), (0.5, 4)], 6.0),
        # a NaN (scrape gap) is skipped: 10 -> 40 over 30 s
        ([(0, 10), (10, math.nan), (30, 40)], 1.0),
    ],
)
def test_rate(points, expected):
    assert rate(counter(points)) == pytest.approx(expected)


def test_rate_matches_prometheus_reset_test_data():
    # Prometheus's testcounter_reset_middle: 0+10x4 0+10x5 at 5 m steps, i.e. 0..40 then 0..50.
    # Increase = 40 + 0 + 50 = 90 over the 50 minutes between first and last sample (no extrapolation).
    values = [10.0 * k for k in range(5)] + [10.0 * k for k in range(6)]
    points = [(300 * i, v) for i, v in enumerate(values)]
    assert rate(counter(points)) == pytest.approx(90 / 3000)


@pytest.mark.parametrize(
    "points",
    [
        [],  # no sample
        [(0, 5)],  # one sample
        [(0, math.nan), (10, 5)],  # one sample once the NaN is dropped
        [(0, math.nan), (10, math.nan)],  # only NaN
    ],
)
def test_rate_is_nan_below_two_samples(points):
    assert math.isnan(rate(counter(points)))


# --- histogram_quantile ------------------------------------------------------------------------------

# 100 observations: 20 <= 0.1, 50 <= 0.25, 90 <= 0.5, 100 <= 1, none above
SIMPLE = {0.1: 20, 0.25: 50, 0.5: 90, 1.0: 100, INF: 100}


@pytest.mark.parametrize(
    "q, buckets, expected",
    [
        # rank 10 in the first bucket [0, 0.1] (20 obs): 0 + 0.1 * 10/20
        (0.1, SIMPLE, 0.05),
        # rank 20 is exactly the top of the first bucket
        (0.2, SIMPLE, 0.1),
        # rank 50: second bucket (0.1, 0.25], 30 obs, 30 of them below rank: 0.1 + 0.15 * 30/30
        (0.5, SIMPLE, 0.25),
        # rank 35: 0.1 + 0.15 * (35-20)/30 = 0.175
        (0.35, SIMPLE, 0.175),
        # rank 99: (0.5, 1], 10 obs: 0.5 + 0.5 * (99-90)/10 = 0.95
        (0.99, SIMPLE, 0.95),
        # q = 1: rank 100 reached in the 1.0 bucket: upper bound 1.0
        (1.0, SIMPLE, 1.0),
        # q = 0: rank 0 in the first bucket: its lower edge 0
        (0.0, SIMPLE, 0.0),
        # rank 99 falls in +Inf (only 90 finite obs): the last finite upper bound
        (0.99, {0.1: 50, 0.5: 90, INF: 100}, 0.5),
        # everything in +Inf: still the last finite upper bound
        (0.5, {0.1: 0, 0.5: 0, INF: 10}, 0.5),
        # rates, not counts: 0.5 req/s of 2 req/s below 0.2; rank 1.0: 0.2 + 0.3 * (1.0-0.5)/1.0 = 0.35
        (0.5, {0.2: 0.5, 0.5: 1.5, INF: 2.0}, 0.35),
        # buckets given out of order are sorted by le
        (0.1, {INF: 100, 1.0: 100, 0.1: 20, 0.5: 90, 0.25: 50}, 0.05),
        # non-monotonic counts (scrape skew) are repaired by a running maximum: {0.1: 10, 0.2: 10, 0.4: 20}
        # rank 15: (0.2, 0.4], 10 obs: 0.2 + 0.2 * 5/10 = 0.3
        (0.75, {0.1: 10, 0.2: 8, 0.4: 20, INF: 20}, 0.3),
        # an empty bucket before the rank: rank 15 skips (0.1, 0.2] and lands in (0.2, 0.4]
        (0.75, {0.1: 10, 0.2: 10, 0.4: 20, INF: 20}, 0.3),
    ],
)
def test_histogram_quantile_hand_computed(q, buckets, expected):
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize(
    "q, buckets",
    [
        (0.5, {}),  # no buckets at all
        (0.5, {0.1: 0, 0.5: 0, INF: 0}),  # no observations
        (0.5, {0.1: 3, 0.5: 7}),  # no +Inf bucket
        (0.5, {INF: 10}),  # only +Inf: no finite bound to answer with
        (0.5, {0.1: math.nan, INF: math.nan}),  # NaN counts (no rate yet)
        (math.nan, SIMPLE),  # NaN quantile
    ],
)
def test_histogram_quantile_nan(q, buckets):
    assert math.isnan(histogram_quantile(q, buckets))


# Prometheus promql tests (promql_test.go / promqltest/testdata/histograms.test), evaluated at 50m:
# testhistogram_bucket{start="positive"} 0+5x10, 0+7x10, 0+11x10, 0+12x10 for le 0.1, .2, 1e0, +Inf
POSITIVE = {0.1: 50, 0.2: 70, 1.0: 110, INF: 120}
# testhistogram_bucket{start="negative"} 0+1x10, 0+2x10, 0+2x10, 0+3x10 for le -.2, -0.1, 0.3, +Inf
NEGATIVE = {-0.2: 10, -0.1: 20, 0.3: 20, INF: 30}
# sum by (le) (request_duration_seconds_bucket) over job1/job2 x ins1/ins2:
# le=0.1: 10+20+30+40, le=0.2: 30+50+40+70, +Inf: 40+60+60+90
AGGREGATED = {0.1: 100, 0.2: 190, INF: 250}


@pytest.mark.parametrize(
    "q, buckets, expected",
    [
        (0, POSITIVE, 0),  # "Quantile value in lowest bucket, which is positive."
        (0, NEGATIVE, -0.2),  # "Quantile value in lowest bucket, which is negative."
        (1, POSITIVE, 1),  # "Quantile value in highest bucket."
        (1, NEGATIVE, 0.3),
        (0.2, POSITIVE, 0.048),  # "Finally some useful quantiles."
        (0.2, NEGATIVE, -0.2),
        (0.5, POSITIVE, 0.15),
        (0.5, NEGATIVE, -0.15),
        (0.8, POSITIVE, 0.72),
        (0.8, NEGATIVE, 0.3),
        (0.3, AGGREGATED, 0.075),  # "Aggregated histogram: Everything in one."
        (0.5, AGGREGATED, 0.1277777777777778),
        (0.3, {0.1: 10, 0.2: 30, INF: 40}, 0.11),  # by (le, job, instance): job1/ins1
        (0.5, {0.1: 20, 0.2: 50, INF: 60}, 0.1333333333333333),  # job1/ins2
        (0.5, {0.1: 30, 0.2: 40, INF: 60}, 0.1),  # job2/ins1: the rank equals the first bucket's count
        (0.3, {0.1: 40, 0.2: 70, INF: 90}, 0.0675),  # job2/ins2
    ],
)
def test_histogram_quantile_matches_prometheus_test_cases(q, buckets, expected):
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_is_scale_invariant():
    # the same histogram as counts and as per-second rates (counts / 300 s) gives the same quantile
    rates = {le: c / 300 for le, c in AGGREGATED.items()}
    assert histogram_quantile(0.5, rates) == pytest.approx(histogram_quantile(0.5, AGGREGATED))
