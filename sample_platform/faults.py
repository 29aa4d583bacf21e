"""Fault injector with ground truth.  Importing starts nothing.

The catalogue (twelve kinds, their targets and params) is :mod:`.fault_kinds`;
``FAULT_KINDS``, ``ParamSpec`` and ``valid_targets`` are re-exported here.

``FaultInjector(log_path=None, clock=time.time)``::

    inj = FaultInjector("faults.jsonl")
    rec = inj.inject("latency", "postgres", 60, {"latency_seconds": 0.5})
    # rec == {"id": "9f1c...", "kind": "latency", "target": "postgres",
    #         "start": "2026-11-22T10:00:00.123Z", "end": "2026-11-22T10:01:00.123Z",
    #         "params": {"latency_seconds": 0.5}, "fault": true,
    #         "expected_impact": ["user_profile", "post_content", ...]}
    inj.effects("postgres")           # -> FaultEffects(latency_seconds=0.5, ...)
    inj.params_for("postgres", base)  # -> base, or base with the active faults' overrides

Every injection is appended to the ground-truth log ``inj.truth`` (a
:class:`~sample_platform.groundtruth.GroundTruth`: one JSON line in
``log_path`` if given, and in memory), which legitimate surges share;
``records()`` lists the faults only.  Fault records carry ``"fault": true``
and ``expected_impact``: the businesses of the reference topology
(``topology/reference_platform.yaml``) that depend on the faulty node, by
:meth:`topology.graph.Topology.impacted_businesses` (for a partition, on the
caller).  ``params`` in the record always holds the full, defaulted parameter
set.  A fault is active while ``start <= clock() < end``.  Invalid kind,
target, duration or params raise ``ValueError`` naming the bad value and
listing the valid ones.  ``listeners`` are called with each new record, so a
platform can apply parameter overrides at once rather than at its next poll.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable

from .fault_kinds import FAULT_KINDS, Fault, ParamSpec, fault_kind, impact_node, valid_targets
from .groundtruth import GroundTruth, rfc3339
from .params import NodeParams

__all__ = ["FAULT_KINDS", "MAX_DURATION_SECONDS", "NO_EFFECTS", "Fault", "FaultEffects", "FaultInjector",
           "ParamSpec", "expected_impact", "fault_record", "reference_topology", "valid_targets"]

MAX_DURATION_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class FaultEffects:
    """What the active faults on one node mean for an operation right now.

    ``latency_seconds``: extra delay per operation (``latency``, ``timeout_cascade``);
    ``error_ratio``: probability of failing it (``errors``); ``usable_slots``: worker
    slots left usable, None = all (``cpu_saturation``, ``connection_pool_exhaustion``);
    ``hold_seconds``: extra time each operation holds its slot (``cpu_saturation``).
    """

    latency_seconds: float = 0.0
    error_ratio: float = 0.0
    usable_slots: int | None = None
    hold_seconds: float = 0.0

    @property
    def extra_seconds(self) -> float:
        """Total extra in-slot delay for one operation (latency + saturation hold), seconds."""
        return self.latency_seconds + self.hold_seconds


NO_EFFECTS = FaultEffects()


def _fewest(slots: int | None, other: int) -> int:
    return other if slots is None else min(slots, other)


@functools.cache
def reference_topology() -> Any:
    """The reference platform's :class:`topology.graph.Topology`, loaded once (imported on first use:
    importing this module stays light)."""
    from topology.graph import REFERENCE_PLATFORM, Topology

    return Topology.load(REFERENCE_PLATFORM)


def expected_impact(kind: str, target: str) -> list[str]:
    """Businesses of the reference topology a fault of ``kind`` on ``target`` is expected to hurt,
    in the topology file's order (``Topology.impacted_businesses`` of the faulty node)."""
    return reference_topology().impacted_businesses(impact_node(kind, target))


def fault_record(fault: Fault) -> dict[str, Any]:
    """Ground-truth record ``{"id", "kind", "target", "start", "end", "params", "fault": true,
    "expected_impact"}`` (RFC 3339 times)."""
    return {"id": fault.id, "kind": fault.kind, "target": fault.target, "start": rfc3339(fault.start),
            "end": rfc3339(fault.end), "params": dict(fault.params), "fault": True,
            "expected_impact": expected_impact(fault.kind, fault.target)}


class FaultInjector:
    """Holds active faults, answers per-node effects and parameters, and records ground truth.

    ``log_path``: JSONL file to append one record per injection (parent dirs are
    created), or None; the log is ``truth`` (a :class:`GroundTruth`), shared
    with legitimate surges.  ``clock``: callable returning epoch seconds (default
    ``time.time``).  Safe to call from several threads.
    """

    def __init__(self, log_path: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.truth = GroundTruth(log_path)
        self.clock = clock
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._records: list[dict[str, Any]] = []

    def inject(self, kind: str, target: str, duration_seconds: float,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Activate a fault now for ``duration_seconds`` and return its ground-truth record.

        ``params`` overrides the kind's defaults (see ``FAULT_KINDS[kind].params``).
        Raises ValueError for an unknown kind/target/param, a duration that is not a
        number in (0, 86400], or a param value out of range; nothing is recorded then.
        """
        spec = fault_kind(kind)
        if not isinstance(target, str) or target not in spec.targets:
            raise ValueError(f"unknown fault target {target!r} for kind {kind!r}; "
                             f"valid targets: {', '.join(spec.targets)}")
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
        record = fault_record(fault)
        with self._lock:
            self._faults.append(fault)
            self._records.append(record)
        self.truth.append(record)
        for listener in self.listeners:
            listener(record)
        return dict(record)

    def records(self) -> list[dict[str, Any]]:
        """The fault records injected so far, oldest first (``truth.records()`` has the surges too)."""
        with self._lock:
            return [dict(r) for r in self._records]

    def active(self, target: str | None = None, kind: str | None = None) -> list[Fault]:
        """Faults active now (``start <= clock() < end``), optionally filtered by target/kind."""
        now = self.clock()
        with self._lock:
            return [f for f in self._faults
                    if f.start <= now < f.end
                    and (target is None or f.target == target)
                    and (kind is None or f.kind == kind)]

    def effects(self, target: str) -> FaultEffects:
        """Combined effect of the faults active on node ``target`` now.

        Overlapping faults combine by the strongest: max latency, max error ratio,
        min usable slots, max hold.
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
            if f.kind in ("latency", "timeout_cascade"):
                latency = max(latency, p["latency_seconds"])
            elif f.kind == "errors":
                error = max(error, p["error_ratio"])
            elif f.kind == "cpu_saturation":
                usable = _fewest(usable, int(p["usable_slots"]))
                hold = max(hold, p["hold_seconds"])
            elif f.kind == "connection_pool_exhaustion":
                usable = _fewest(usable, int(p["free_connections"]))
        return FaultEffects(latency, error, usable, hold)

    def params_for(self, node: str, base: NodeParams) -> NodeParams:
        """``base`` with the overrides of the faults active on ``node`` now, applied oldest first
        (``base`` itself, the same object, when none applies)."""
        if not self._faults:
            return base
        params = base
        for f in self.active():
            spec = FAULT_KINDS[f.kind]
            if node in spec.nodes(f.target):
                assert spec.overrides is not None
                params = replace(params, **spec.overrides(node, params, f))
        return params
