"""Fault catalogue and injector with ground truth.  Importing starts nothing.

Catalogue
---------
``FAULT_KINDS: dict[str, FaultKind]`` -- ``latency``, ``errors``, ``saturation``;
every kind is valid on every node of :data:`sample_platform.graph.NODES`
(``valid_targets(kind) -> list[str]``).

- ``latency``: each request handled by the target takes ``latency_seconds``
  (default 0.25 s) longer, inside the handler (for postgres the delay is inside
  the timed query, so ``pg_query_duration_seconds`` shows it too).
- ``errors``: the target answers 500 with probability ``error_ratio`` (0..1,
  default 0.5).
- ``saturation``: the target's worker pool keeps only ``usable_slots`` (default
  2) free slots -- the others are held by stuck work -- and each request holds
  its slot ``hold_seconds`` (default 0.5 s) longer, so requests queue, latency
  rises and utilization goes to ~1.

Injector
--------
``FaultInjector(log_path=None, clock=time.time)``::

    inj = FaultInjector("faults.jsonl")
    rec = inj.inject("latency", "postgres", 60, {"latency_seconds": 0.5})
    # rec == {"id": "9f1c...", "kind": "latency", "target": "postgres",
    #         "start": "2026-11-22T10:00:00.123Z", "end": "2026-11-22T10:01:00.123Z",
    #         "params": {"latency_seconds": 0.5}, "fault": true}
    inj.effects("postgres")  # -> FaultEffects(latency_seconds=0.5, ...)

Every injection is appended to the ground-truth log ``inj.truth`` (a
:class:`~sample_platform.groundtruth.GroundTruth`: one JSON line in
``log_path`` if given, and in memory), which legitimate surges share;
``records()`` lists the faults only.  Fault records carry ``"fault": true``.
``params`` in the record always holds the full, defaulted parameter set.  A
fault is active while ``start <= clock() < end``.
Invalid kind, target, duration or params raise ``ValueError`` naming the bad
value and listing the valid ones.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .graph import NODES
from .groundtruth import GroundTruth, rfc3339

MAX_DURATION_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class ParamSpec:
    """One tunable of a fault kind: default value and inclusive bounds."""

    default: float
    low: float
    high: float
    integer: bool = False
    low_exclusive: bool = False

    def check(self, name: str, value: Any) -> float:
        """Return ``value`` as float/int, or raise ValueError naming ``name`` and the range."""
        ok_type = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            want = "an integer" if self.integer else "a number"
            raise ValueError(f"param {name!r} must be {want}, got {value!r}")
        v = int(value) if self.integer else float(value)
        too_low = v <= self.low if self.low_exclusive else v < self.low
        if not math.isfinite(v) or too_low or v > self.high:
            bracket = "(" if self.low_exclusive else "["
            raise ValueError(f"param {name!r}={value!r} out of range {bracket}{self.low:g}, {self.high:g}]")
        return v


@dataclass(frozen=True)
class FaultKind:
    """A fault kind: ``name``, one-line ``description``, and its ``params`` specs."""

    name: str
    description: str
    params: dict[str, ParamSpec] = field(default_factory=dict)

    def defaults(self) -> dict[str, float]:
        """Default parameter values, e.g. ``{"latency_seconds": 0.25}``."""
        return {k: s.default for k, s in self.params.items()}


FAULT_KINDS: dict[str, FaultKind] = {
    "latency": FaultKind(
        "latency",
        "every request handled by the target is delayed by latency_seconds (default 0.25 s)",
        {"latency_seconds": ParamSpec(0.25, 0.0, 30.0, low_exclusive=True)},
    ),
    "errors": FaultKind(
        "errors",
        "the target answers HTTP 500 with probability error_ratio (default 0.5)",
        {"error_ratio": ParamSpec(0.5, 0.0, 1.0)},
    ),
    "saturation": FaultKind(
        "saturation",
        "the target's worker pool shrinks to usable_slots (default 2) and each request "
        "holds its slot hold_seconds (default 0.5 s) longer, so requests queue",
        {
            "usable_slots": ParamSpec(2, 1, 1024, integer=True),
            "hold_seconds": ParamSpec(0.5, 0.0, 30.0),
        },
    ),
}


def valid_targets(kind: str) -> list[str]:
    """Node names the fault ``kind`` can be injected into (all nodes, for every kind).

    Raises ValueError for an unknown kind.
    """
    _check_kind(kind)
    return list(NODES)


@dataclass(frozen=True)
class Fault:
    """One injected fault; ``start``/``end`` are epoch seconds from the injector clock."""

    id: str
    kind: str
    target: str
    start: float
    end: float
    params: dict[str, float]

    def record(self) -> dict[str, Any]:
        """Ground-truth record ``{"id", "kind", "target", "start", "end", "params", "fault": true}``
        (RFC 3339 times)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "params": dict(self.params),
            "fault": True,
        }


@dataclass(frozen=True)
class FaultEffects:
    """What the active faults on one node mean for a request right now.

    ``latency_seconds``: extra delay per request; ``error_ratio``: probability of
    answering 500; ``usable_slots``: worker slots left usable (None = all);
    ``hold_seconds``: extra time each request holds its slot.
    """

    latency_seconds: float = 0.0
    error_ratio: float = 0.0
    usable_slots: int | None = None
    hold_seconds: float = 0.0

    @property
    def extra_seconds(self) -> float:
        """Total extra in-slot delay for one request (latency + saturation hold), seconds."""
        return self.latency_seconds + self.hold_seconds


NO_EFFECTS = FaultEffects()


def _check_kind(kind: Any) -> FaultKind:
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; valid kinds: {', '.join(sorted(FAULT_KINDS))}")
    return FAULT_KINDS[kind]


class FaultInjector:
    """Holds active faults, answers per-node effects, and records ground truth.

    ``log_path``: JSONL file to append one record per injection (parent dirs are
    created), or None; the log is ``truth`` (a :class:`GroundTruth`), shared
    with legitimate surges.  ``clock``: callable returning epoch seconds (default
    ``time.time``).  Safe to call from several threads.
    """

    def __init__(self, log_path: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.truth = GroundTruth(log_path)
        self.clock = clock
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, kind: str, target: str, duration_seconds: float,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Activate a fault now for ``duration_seconds`` and return its ground-truth record.

        ``params`` overrides the kind's defaults (see ``FAULT_KINDS[kind].params``).
        Raises ValueError for an unknown kind/target/param, a duration that is not a
        number in (0, 86400], or a param value out of range.
        """
        spec = _check_kind(kind)
        if not isinstance(target, str) or target not in NODES:
            raise ValueError(f"unknown fault target {target!r} for kind {kind!r}; "
                             f"valid targets: {', '.join(valid_targets(kind))}")
        if (isinstance(duration_seconds, bool) or not isinstance(duration_seconds, (int, float))
                or not math.isfinite(duration_seconds)
                or not 0 < duration_seconds <= MAX_DURATION_SECONDS):
            raise ValueError(f"duration_seconds must be a number in (0, {MAX_DURATION_SECONDS:g}], "
                             f"got {duration_seconds!r}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValueError(f"params must be an object, got {params!r}")
        merged = spec.defaults()
        for name, value in params.items():
            if name not in spec.params:
                raise ValueError(f"unknown param {name!r} for kind {kind!r}; "
                                 f"valid params: {', '.join(sorted(spec.params)) or '(none)'}")
            merged[name] = spec.params[name].check(name, value)
        # the record's millisecond precision, truncated: a fault must be active as soon as it is injected
        start = math.floor(float(self.clock()) * 1000.0) / 1000.0
        fault = Fault(uuid.uuid4().hex[:16], kind, target, start, start + float(duration_seconds), merged)
        record = fault.record()
        with self._lock:
            self._faults.append(fault)
        self.truth.append(record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """The fault records injected so far, oldest first (``truth.records()`` has the surges too)."""
        with self._lock:
            return [f.record() for f in self._faults]

    def active(self, target: str | None = None, kind: str | None = None) -> list[Fault]:
        """Faults active now (``start <= clock() < end``), optionally filtered by target/kind."""
        now = self.clock()
        with self._lock:
            return [f for f in self._faults
                    if f.start <= now < f.end
                    and (target is None or f.target == target)
                    and (kind is None or f.kind == kind)]

    def effects(self, target: str) -> FaultEffects:
        """Combined effect of the faults active on ``target`` now.

        Overlapping faults of one kind combine by the strongest: max latency,
        max error ratio, min usable slots, max hold.
        """
        if not self._faults:  # fast path, no lock needed for an empty list
            return NO_EFFECTS
        faults = self.active(target)
        if not faults:
            return NO_EFFECTS
        latency = error = hold = 0.0
        usable: int | None = None
        for f in faults:
            p = f.params
            if f.kind == "latency":
                latency = max(latency, p["latency_seconds"])
            elif f.kind == "errors":
                error = max(error, p["error_ratio"])
            elif f.kind == "saturation":
                slots = int(p["usable_slots"])
                usable = slots if usable is None else min(usable, slots)
                hold = max(hold, p["hold_seconds"])
        return FaultEffects(latency, error, usable, hold)
