"""The interface every time-series store implements: SQLite (embedded) and remote (remote-write + query API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Sequence

import pandas as pd

from collectors.samples import ColumnBatch, Sample, to_samples

from .matchers import Matcher


@dataclass(frozen=True)
class TimeSeries:
    """One stored series over a range: ``name``, ``labels`` and ``values``, a float ``pd.Series`` with a
    UTC ``DatetimeIndex`` (millisecond resolution), sorted by time.

    For a downsampled select (``step_ms`` given) ``values`` holds each bucket's average, stamped with the
    bucket's start, and ``rollup`` a ``pd.DataFrame`` on the same index with columns ``min``, ``max``,
    ``avg`` (float64) and ``count`` (int64, samples in the bucket); otherwise ``rollup`` is None.
    """

    name: str
    labels: Mapping[str, str]
    values: pd.Series
    rollup: pd.DataFrame | None = None


class Store(Protocol):
    """A time-series store. Timestamps are integer milliseconds since the epoch."""

    def append(self, samples: Iterable[Sample]) -> int:
        """Store samples; returns how many were written. Raises StorageError on failure."""

    def append_columns(self, parts: Sequence[ColumnBatch | Sequence[Sample]]) -> int:
        """Store column batches (:class:`~collectors.samples.ColumnBatch`) and lists of samples as one
        write, in order; returns how many samples were written. Raises StorageError on failure.

        This default hands them to :meth:`append` as samples; a store that takes columns as they are
        (:class:`storage.sqlite.SQLiteStore`) overrides it."""
        return self.append(to_samples(parts))

    def select(
        self,
        name: str,
        matchers: Mapping[str, str] | list[Matcher] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        step_ms: int | None = None,
    ) -> list[TimeSeries]:
        """Every series named ``name`` whose labels satisfy ``matchers``, with samples in
        ``[start_ms, end_ms]`` (both inclusive; ``None`` means unbounded). Series with no sample in the
        range are left out.

        With ``step_ms``, one point per bucket ``[k * step_ms, (k + 1) * step_ms)`` (epoch-aligned) whose
        start lies in ``[start_ms // step_ms * step_ms, end_ms]``, aggregating every sample of the bucket
        (see :mod:`storage.rollups`): long ranges at a coarse step are read from downsampled rollups."""

    def close(self) -> None:
        """Release the store's resources."""
