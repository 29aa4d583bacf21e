"""PromQL-style functions over stored samples: ``rate`` and ``histogram_quantile``.

They follow the Prometheus documentation (https://prometheus.io/docs/prometheus/latest/querying/functions/):
counter resets are detected by a decrease and add the post-reset value; ``histogram_quantile``
interpolates linearly inside the bucket that holds the rank, and answers the upper bound of the last
finite bucket when the rank falls in the ``+Inf`` bucket.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd


def rate(values: pd.Series) -> float:
    """Per-second increase of a counter over the samples given (a ``pd.Series`` with a UTC index).

    Unlike Prometheus's ``rate`` it does not extrapolate to the window edges: it divides the increase
    between the first and last sample by the time between them. NaN when fewer than two samples.
    """
    v = values.dropna()
    if len(v) < 2:
        return math.nan
    seconds = (v.index[-1] - v.index[0]).total_seconds()
    if seconds <= 0:
        return math.nan
    x = v.to_numpy(dtype=float)
    deltas = np.diff(x)
    increase = np.where(deltas >= 0, deltas, x[1:]).sum()  # a decrease is a reset: count from zero
    return float(increase / seconds)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """The ``q``-quantile (0..1) of a histogram given as cumulative counts (or rates) by upper bound ``le``.

    :param buckets: ``{le: cumulative count}``, ``math.inf`` included.
    :returns: the estimated quantile, in the unit of ``le`` (seconds for latency histograms); NaN when the
        histogram is empty or has no ``+Inf`` bucket, as Prometheus does.
    """
    if not buckets or math.inf not in buckets or not 0 <= q <= 1:
        return math.nan
    bounds = sorted(buckets)
    counts = np.maximum.accumulate([buckets[b] for b in bounds])  # repair non-monotonic buckets
    total = counts[-1]
    if total <= 0 or math.isnan(total):
        return math.nan
    rank = q * total
    i = int(np.searchsorted(counts, rank, side="left"))
    if i >= len(bounds) - 1:  # in the +Inf bucket
        return bounds[-2] if len(bounds) > 1 else math.nan
    upper = bounds[i]
    lower, below = (0.0, 0.0) if i == 0 else (bounds[i - 1], counts[i - 1])
    if i == 0 and upper <= 0:
        return upper
    in_bucket = counts[i] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket
