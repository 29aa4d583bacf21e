"""The sample model shared by collectors and storage (Prometheus's data model).

A *series* is a metric name plus a set of labels; a *sample* is one (series, timestamp, value) point.
Timestamps are integer milliseconds since the Unix epoch (UTC); values are float64, NaN and ±Inf included.

One NaN is special: the *staleness marker* (:data:`STALE_NAN`, bits ``0x7ff0000000000002``), which a scrape
writes for a series that was in the previous scrape of its target and is not in this one, or whose
target failed or went away. Queries treat a series whose latest sample is the marker as absent, as
Prometheus does (https://prometheus.io/docs/prometheus/latest/querying/basics/#staleness); an ordinary
NaN from a page (``NaN``) is a value like any other.

A scrape whose series are those of the target's last scrape travels as columns
(:class:`ColumnBatch`: one float64 array of values for a shared :class:`SeriesRefs`), the rest as
:class:`Sample` lists; :class:`SampleBatch` holds one scrape's parts and reads as a list of samples.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np

_STALE_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack(">d", _STALE_BITS.to_bytes(8, "big"))[0]
"""Prometheus's staleness marker (``value.StaleNaN``): a NaN with the payload 2."""


def is_stale_nan(value: float) -> bool:
    """True when ``value`` is the staleness marker, by its bits (every NaN compares unequal, so ``==`` cannot)."""
    return value != value and struct.pack(">d", value) == struct.pack(">d", STALE_NAN)


class Sample(NamedTuple):
    """One point of one series.

    ``name``: metric name (``http_requests_total``); ``labels``: label name -> value, without ``__name__``;
    ``timestamp_ms``: milliseconds since the epoch, UTC; ``value``: float64.
    """

    name: str
    labels: Mapping[str, str]
    timestamp_ms: int
    value: float


def labels_key(labels: Mapping[str, str]) -> str:
    """Canonical text of a label set, sorted by name: ``{code="500",job="feed"}``.

    Values are escaped as in the Prometheus text format, so the key round-trips and never collides.
    """
    parts = []
    for name in sorted(labels):
        value = labels[name].replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{name}="{value}"')
    return "{" + ",".join(parts) + "}"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit hash of a label set (like Alertmanager's fingerprint)."""
    return hashlib.sha256(labels_key(labels).encode()).hexdigest()[:16]


class SeriesRefs:
    """The series of a :class:`ColumnBatch`, in column order: ``names[i]`` and ``labels[i]`` (two
    parallel tuples, so that making one costs no object per series).

    A store caches its own references to these series here (as Prometheus's scrape cache keeps each
    series' ``storage.SeriesRef``): ``refs`` (int64 array, one per series) is valid for the store whose
    token is ``owner``. Scrapes whose series are unchanged share one instance, so the store looks their
    series up once. Apart from that cache, an instance never changes.

    :raises ValueError: when ``names`` and ``labels`` differ in length.
    """

    __slots__ = ("labels", "names", "owner", "refs")

    def __init__(self, names: Sequence[str], labels: Sequence[Mapping[str, str]]):
        if len(names) != len(labels):
            raise ValueError(f"{len(names)} series names but {len(labels)} label sets")
        self.names, self.labels = tuple(names), tuple(labels)
        self.refs: np.ndarray | None = None
        self.owner: object | None = None

    @classmethod
    def of(cls, series: Sequence[tuple[str, Mapping[str, str]]]) -> SeriesRefs:
        """From ``(name, labels)`` pairs."""
        return cls(*zip(*series)) if series else cls((), ())

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        """``(name, labels)`` of each series."""
        return zip(self.names, self.labels)


@dataclass(frozen=True)
class ColumnBatch:
    """One scrape's samples of known series as columns: ``values[i]`` (float64) is the value of the
    series ``series.names[i]``, ``series.labels[i]`` at ``timestamp_ms`` (ms since the epoch). No Python
    object per sample."""

    series: SeriesRefs
    timestamp_ms: int
    values: np.ndarray

    def __post_init__(self) -> None:
        """:raises ValueError: when ``values`` is not one float64 per series.
        :raises TypeError: when ``timestamp_ms`` is not an integer."""
        if not isinstance(self.timestamp_ms, (int, np.integer)):
            raise TypeError(f"timestamp_ms must be an integer number of ms, not {self.timestamp_ms!r}")
        if self.values.dtype != np.float64 or self.values.shape != (len(self.series),):
            raise ValueError(f"values must be {len(self.series)} float64 (one per series), "
                             f"not {self.values.dtype} of shape {self.values.shape}")

    def __len__(self) -> int:
        return len(self.values)

    def samples(self) -> list[Sample]:
        """The batch as :class:`Sample` objects, in column order."""
        ts = self.timestamp_ms
        return [Sample(name, labels, ts, v) for name, labels, v in zip(self.series.names, self.series.labels,
                                                                       self.values.tolist())]


class SampleBatch(Sequence[Sample]):
    """The samples of one scrape as parts, in order: :class:`ColumnBatch` es and lists of samples. It reads
    as a sequence of :class:`Sample` (made on first access); stores that take columns
    (``append_columns``) get :attr:`parts` as they are."""

    __slots__ = ("_samples", "_size", "parts")

    def __init__(self, parts: Sequence[ColumnBatch | Sequence[Sample]]):
        self.parts = tuple(parts)
        self._size = sum(len(p) for p in self.parts)
        self._samples: list[Sample] | None = None

    def __len__(self) -> int:
        return self._size

    def samples(self) -> list[Sample]:
        """Every sample, in order."""
        if self._samples is None:
            self._samples = to_samples(self.parts)
        return self._samples

    def __getitem__(self, index):
        return self.samples()[index]

    def __iter__(self):
        return iter(self.samples())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SampleBatch, list, tuple)):
            return self.samples() == list(other)
        return NotImplemented

    __hash__ = None  # a sequence compared by value

    def __repr__(self) -> str:
        return f"SampleBatch({self.samples()!r})"


def to_samples(parts: Sequence[ColumnBatch | Sequence[Sample]]) -> list[Sample]:
    """The samples of ``parts`` (column batches and sample sequences), in order."""
    out: list[Sample] = []
    for part in parts:
        out.extend(part.samples() if isinstance(part, ColumnBatch) else part)
    return out
