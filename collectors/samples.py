"""The sample model shared by collectors and storage (Prometheus's data model).

A *series* is a metric name plus a set of labels; a *sample* is one (series, timestamp, value) point.
Timestamps are integer milliseconds since the Unix epoch (UTC); values are float64, NaN and ±Inf included.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, NamedTuple


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
