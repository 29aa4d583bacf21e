"""PromQL's range and histogram functions over samples, with Prometheus's semantics (the one implementation
OpsWatch has: the PromQL engine in :mod:`storage.promql` and the golden signals both use it).

Source: the Prometheus documentation (https://prometheus.io/docs/prometheus/latest/querying/functions/) and
``promql/functions.go`` of Prometheus 2.42 (``extrapolatedRate``, ``instantValue``, ``bucketQuantile``; 2.42
bounds the extrapolation by the counter's zero point before applying the gap threshold, later versions after):

* ``rate``/``increase``/``delta`` extrapolate the change between the first and last sample of the window
  towards the window's edges, by at most half the average sample spacing (and for counters never below
  zero); a counter reset (a decrease) adds the value before the reset;
* ``irate`` is the per-second change between the last two samples;
* ``histogram_quantile`` interpolates linearly inside the bucket that holds the rank, answers the upper bound
  of the last finite bucket when the rank falls in the ``+Inf`` bucket, and repairs non-monotonic buckets.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd


def extrapolated_rate(ts_ms: np.ndarray, values: np.ndarray, range_start_ms: int, range_end_ms: int,
                      is_counter: bool, is_rate: bool) -> float:
    """Prometheus's ``extrapolatedRate``: ``rate`` (counter, per second), ``increase`` (counter) or ``delta``
    (gauge) over the samples of one window ``[range_start_ms, range_end_ms]``.

    :param ts_ms: sample times (int ms, ascending); :param values: their float values (stale markers removed).
    :returns: the value, or NaN when there are fewer than two samples (Prometheus then returns no sample).
    """
    if len(values) < 2:
        return math.nan
    first, last = float(values[0]), float(values[-1])
    result = last - first
    if is_counter:
        prev = np.concatenate(([0.0], values[:-1]))
        result += float(prev[values < prev].sum())  # each reset adds the value it dropped from
    first_t, last_t = int(ts_ms[0]), int(ts_ms[-1])
    duration_to_start = (first_t - range_start_ms) / 1000
    duration_to_end = (range_end_ms - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average_spacing = sampled / (len(values) - 1)
    if is_counter and result > 0 and first >= 0:
        # A counter cannot go below zero: do not extrapolate past the point where it would have been zero.
        duration_to_start = min(duration_to_start, sampled * (first / result))
    threshold = average_spacing * 1.1  # a gap wider than this means the series started or ended inside
    if duration_to_start >= threshold:
        duration_to_start = average_spacing / 2
    if duration_to_end >= threshold:
        duration_to_end = average_spacing / 2
    factor = (sampled + duration_to_start + duration_to_end) / sampled if sampled else math.nan
    if is_rate:
        factor /= (range_end_ms - range_start_ms) / 1000
    return result * factor


def instant_rate(ts_ms: np.ndarray, values: np.ndarray, is_rate: bool = True) -> float:
    """Prometheus's ``instantValue``: ``irate`` (``is_rate``) or ``idelta`` from the last two samples;
    for ``irate`` a decrease counts as a reset to zero. NaN with fewer than two samples."""
    if len(values) < 2:
        return math.nan
    previous, last = float(values[-2]), float(values[-1])
    result = last if is_rate and last < previous else last - previous
    interval_ms = int(ts_ms[-1]) - int(ts_ms[-2])
    if interval_ms == 0:
        return math.nan
    return result / (interval_ms / 1000) if is_rate else result


def rate(values: pd.Series) -> float:
    """Per-second increase of a counter over the samples given (a ``pd.Series`` with a UTC index), with the
    window taken as the span of the samples themselves, so nothing is extrapolated. NaN samples (scrape
    gaps) are skipped. NaN when fewer than two samples remain or they share one timestamp."""
    v = values.to_numpy(dtype=float)
    kept = ~np.isnan(v)  # numpy, not dropna(): this runs once per series per evaluation
    v, ts = v[kept], values.index.as_unit("ms").asi8[kept]
    if len(v) < 2:
        return math.nan
    if ts[-1] <= ts[0]:
        return math.nan
    return extrapolated_rate(ts, v, int(ts[0]), int(ts[-1]), True, True)


def histogram_quantile(q: float, buckets: Mapping[float, float] | Iterable[tuple[float, float]]) -> float:
    """The ``q``-quantile of a classic histogram given as cumulative counts (or rates) by upper bound ``le``.

    :param buckets: ``{le: cumulative count}`` or ``(le, count)`` pairs (pairs with the same ``le`` are
        summed, as Prometheus coalesces them); ``math.inf`` must be among the bounds.
    :returns: the estimated quantile, in the unit of ``le`` (seconds for latency histograms); ``-Inf`` for
        ``q < 0``, ``+Inf`` for ``q > 1``; NaN when ``q`` is NaN, the histogram is empty, has fewer than two
        buckets or no ``+Inf`` bucket — all as Prometheus.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    pairs = buckets.items() if isinstance(buckets, Mapping) else buckets
    coalesced: dict[float, float] = {}
    for le, count in pairs:
        coalesced[float(le)] = coalesced.get(float(le), 0.0) + float(count)
    bounds = sorted(coalesced)
    if not bounds or bounds[-1] != math.inf or len(bounds) < 2:
        return math.nan
    counts = np.fmax.accumulate([coalesced[b] for b in bounds])  # repair non-monotonic buckets
    total = counts[-1]
    if total == 0 or math.isnan(total):
        return math.nan
    rank = q * total
    i = int(np.searchsorted(counts[:-1], rank, side="left"))  # first bucket with count >= rank
    if i == len(bounds) - 1:  # in the +Inf bucket
        return bounds[-2]
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[i], counts[i]
    if i > 0:
        start, count, rank = bounds[i - 1], count - counts[i - 1], rank - counts[i - 1]
    return start + (end - start) * (rank / count)
