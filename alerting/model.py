"""Alerts: labels + annotations + state, as in Prometheus and Alertmanager.

States: ``pending`` (condition true, ``for`` not yet elapsed), ``firing``, ``resolved``. The fingerprint
is Alertmanager's: FNV-1a 64 over the sorted label names and values (``model.LabelSet.Fingerprint``), in hex. Times are ms since the epoch; the API shape uses RFC 3339 strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from typing import Mapping

_FNV_OFFSET, _FNV_PRIME, _SEPARATOR = 14695981039346656037, 1099511628211, 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's alert fingerprint of a label set: 16 hex digits (``prometheus/common`` model's
    ``labelSetToFingerprint``), so alerts from Prometheus or Alertmanager keep their identity here."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + bytes([_SEPARATOR]):
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rfc3339(ms: int | None) -> str | None:
    """``1732270000123`` -> ``"2024-11-22T10:06:40.123Z"``; None stays None."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_rfc3339(text: str) -> int:
    """The inverse of :func:`rfc3339`: ms since the epoch."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Alert:
    """One alert instance.

    ``node``: the topology node it is about (its ``job`` label); ``signal``: the golden signal it
    watches; ``value``: the latest value of the expression; ``baseline``/``observed``/``score``: the
    detector's explanation when one exists (NaN otherwise); ``max_score``: highest score while active;
    ``for_ms``/``keep_firing_for_ms``: its rule's durations; ``last_evaluated_ms``: when its rule last saw it
    (for the resolve timeout); ``keep_firing_since_ms``: when its condition stopped while ``keep_firing_for`` holds it.
    ``source``: ``rule`` (OpsWatch's rules), ``api`` (``POST /api/v2/alerts``) or ``webhook`` (an Alertmanager);
    an external alert's ``topology_node`` is the node its labels map to, its ``ends_at_ms`` when it resolves
    unless re-sent, and ``generator_url`` its sender's link (see :mod:`alerting.external`).
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    active_at_ms: int
    value: float
    signal: str = ""
    baseline: float = math.nan
    observed: float = math.nan
    score: float = math.nan
    max_score: float = math.nan
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    fingerprint: str = field(default="")
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    last_evaluated_ms: int | None = None
    keep_firing_since_ms: int | None = None
    source: str = "rule"
    topology_node: str = ""
    ends_at_ms: int | None = None
    generator_url: str = ""

    def __post_init__(self) -> None:
        self.fingerprint = self.fingerprint or fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def node(self) -> str:
        return self.topology_node or self.labels.get("job", "")

    def to_api(self) -> dict:
        """The shape of Alertmanager's API v2 ``GettableAlert`` plus OpsWatch's evidence fields."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "state": self.state,
            "activeAt": rfc3339(self.active_at_ms),
            "startsAt": rfc3339(self.fired_at_ms or self.active_at_ms),
            "endsAt": rfc3339(self.resolved_at_ms),
            "keepFiringSince": rfc3339(self.keep_firing_since_ms),
            "value": _num(self.value),
            "fingerprint": self.fingerprint,
            "node": self.node,
            "source": self.source,
            "generatorURL": self.generator_url,
            "evidence": {"signal": self.signal, "baseline": _num(self.baseline),
                         "observed": _num(self.observed), "score": _num(self.max_score)},
        }


def _num(x: float) -> float | None:
    """JSON has no NaN: NaN becomes null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
