"""Downsampling: per-series min/max/sum/count over fixed, epoch-aligned time buckets.

Buckets are ``[k * step, (k + 1) * step)`` in milliseconds since the epoch, stamped with their start, so
rollups of a fine step combine exactly into any coarser step that is a multiple of it (5 m buckets into
1 h ones, 1 h into 1 d). NaN samples are left out of every aggregate (``count`` counts the others); a
bucket whose samples are all NaN has ``count`` 0 and NaN ``min``/``max``/``avg``. This is what
Graphite/RRD-style rollups and VictoriaMetrics's downsampling keep; PromQL's ``*_over_time`` functions
differ only for NaN samples, which they propagate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ROLLUP_STEPS_MS = (300_000, 3_600_000)
"""The resolutions stored by the SQLite store: 5 minutes and 1 hour (ms)."""


class Buckets(NamedTuple):
    """Aggregates per (series, bucket), sorted by series id then bucket start; all arrays of equal length."""

    series_ids: np.ndarray  # int64
    starts_ms: np.ndarray  # int64, bucket start, ms since the epoch
    mins: np.ndarray  # float64
    maxs: np.ndarray  # float64
    sums: np.ndarray  # float64
    counts: np.ndarray  # int64, samples that were not NaN

    @property
    def avgs(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)


def from_samples(series_ids: np.ndarray, timestamps_ms: np.ndarray, values: np.ndarray, step_ms: int) -> Buckets:
    """Aggregate raw samples (any order) into ``step_ms`` buckets."""
    nan = np.isnan(values)
    return combine(Buckets(series_ids, timestamps_ms, np.where(nan, np.nan, values), np.where(nan, np.nan, values),
                           np.where(nan, 0.0, values), (~nan).astype(np.int64)), step_ms)


def combine(parts: Buckets, step_ms: int) -> Buckets:
    """Re-bucket partial aggregates (finer buckets, or raw samples as one-sample buckets) into ``step_ms``
    buckets: min of mins, max of maxs, sum of sums and of counts."""
    if len(parts.series_ids) == 0:
        return parts
    starts = parts.starts_ms // step_ms * step_ms
    order = np.lexsort((starts, parts.series_ids))
    sids, starts = parts.series_ids[order], starts[order]
    edges = np.flatnonzero((np.diff(sids) != 0) | (np.diff(starts) != 0)) + 1
    firsts = np.concatenate(([0], edges))
    return Buckets(
        sids[firsts], starts[firsts],
        np.fmin.reduceat(parts.mins[order], firsts),  # fmin/fmax skip NaN unless all are NaN
        np.fmax.reduceat(parts.maxs[order], firsts),
        np.add.reduceat(parts.sums[order], firsts),
        np.add.reduceat(parts.counts[order], firsts),
    )


def concat(parts: list[Buckets]) -> Buckets:
    """One :class:`Buckets` holding every row of ``parts`` (unsorted)."""
    if not parts:
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        return Buckets(empty_i, empty_i, empty_f, empty_f, empty_f, empty_i)
    return Buckets(*(np.concatenate(column) for column in zip(*parts)))
