"""The interface every time-series store implements (SQLite embedded, remote stores later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol

import pandas as pd

from collectors.samples import Sample

from .matchers import Matcher


@dataclass(frozen=True)
class TimeSeries:
    """One stored series over a range: ``name``, ``labels`` and ``values``, a float ``pd.Series`` with a
    UTC ``DatetimeIndex`` (millisecond resolution), sorted by time."""

    name: str
    labels: Mapping[str, str]
    values: pd.Series


class Store(Protocol):
    """A time-series store. Timestamps are integer milliseconds since the epoch."""

    def append(self, samples: Iterable[Sample]) -> int:
        """Store samples; returns how many were written. Raises StorageError on failure."""

    def select(
        self,
        name: str,
        matchers: Mapping[str, str] | list[Matcher] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[TimeSeries]:
        """Every series named ``name`` whose labels satisfy ``matchers``, with samples in
        ``[start_ms, end_ms]`` (both inclusive; ``None`` means unbounded). Series with no sample in the
        range are left out."""

    def close(self) -> None:
        """Release the store's resources."""
