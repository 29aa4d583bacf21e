"""The sample model shared by collectors and storage (Prometheus's data model).

A *series* is a metric name plus a set of labels; a *sample* is one (series, timestamp, value) point.
Timestamps are integer milliseconds since the Unix epoch (UTC); values are float64, NaN and ±Inf included.

One NaN is special: the *staleness marker* (:data:`STALE_NAN`, bits ``0x7ff0000000000002``), which a scrape
writes for a series that was in the previous scrape of its target and is not in this one, or whose
target failed or went away. Queries treat a series whose latest sample is the marker as absent, as
Prometheus does (https://prometheus.io/docs/prometheus/latest/querying/basics/#staleness); an ordinary
NaN from a page (``NaN``) is a value like any other.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Mapping, NamedTuple

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
