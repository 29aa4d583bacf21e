"""Synthetic fault effects: what each kind of the fault catalogue does to the backfill's knobs.

:class:`Knobs` holds, per step of the backfill, everything the flow model (:mod:`.model`) reads that a
fault can change: per-node extra seconds, error ratios, slowdowns, usable worker slots, cache hit
ratios, consumer throughput, CDN throughput, partitioned calls, retries, leaked memory and canaries.
Each effect is a function ``effect(knobs, active, fault)`` keyed by the kind's name in :data:`EFFECTS`;
``active`` is the boolean mask of the steps inside the fault, ``fault`` has ``target``, ``start``
(epoch seconds) and the full ``params`` of the catalogue.  They mirror what the live platform does
for the same kind (``sample_platform/fault_kinds.py``); how the effect reaches the callers (latency,
errors, timeouts along the call graph) is the flow model's job, not theirs.  A kind of the catalogue
without an entry here is refused by :func:`effect_of` with a ValueError naming it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import numpy as np

from ..graph import CALL_GRAPH, CDN_EDGES, NODES
from ..params import PARAMS


class Knobs:
    """Per-step model inputs for the steps ``t`` (epoch seconds), each an array over the steps, starting
    at the parameters' values (:mod:`sample_platform.params`), per node unless named otherwise:
    ``l1_hit`` (user's in-process cache) and ``redis_hit`` hit ratios, ``cdn_hit`` and ``cdn_throughput``
    (bits/s) per edge, ``extra_seconds`` per operation, own ``error_ratio``, ``slowdown`` of the service
    times, ``usable_slots`` of the worker pool, ``consumer_cap`` (messages/s the node's consumer group
    processes), ``partition`` (share of (caller, downstream) calls lost), ``retries`` (per (caller,
    downstream): times a timed-out call is sent again), ``leaked_bytes``, and ``canary`` (node ->
    (share served by the next version, its error ratio))."""

    def __init__(self, t: np.ndarray) -> None:
        n = len(t)
        self.t = t
        self.l1_hit = np.full(n, PARAMS["user"].l1_hit_ratio)
        self.redis_hit = np.full(n, PARAMS["redis"].hit_ratio)
        self.cdn_hit = {e: np.full(n, PARAMS[e].hit_ratio) for e in CDN_EDGES}
        self.cdn_throughput = {e: np.full(n, PARAMS[e].throughput_bits_per_second) for e in CDN_EDGES}
        self.extra_seconds: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n))
        self.error_ratio: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n))
        self.leaked_bytes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n))
        self.slowdown: dict[str, np.ndarray] = defaultdict(lambda: np.ones(n))
        self.usable_slots = {node: np.full(n, float(PARAMS[node].pool_size)) for node in NODES}
        self.consumer_cap: dict[str, np.ndarray] = defaultdict(lambda: np.full(n, np.inf))
        self.partition: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(n))
        self.retries: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(n))
        self.canary: dict[str, tuple[np.ndarray, np.ndarray]] = {}


Effect = Callable[[Knobs, np.ndarray, Any], None]


def _latency(k: Knobs, on: np.ndarray, f: Any) -> None:
    """Every operation of the target takes ``latency_seconds`` longer."""
    k.extra_seconds[f.target][on] += f.params["latency_seconds"]


def _errors(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The target fails ``error_ratio`` of its operations (HTTP 500)."""
    k.error_ratio[f.target][on] = np.maximum(k.error_ratio[f.target][on], f.params["error_ratio"])


def _cpu_saturation(k: Knobs, on: np.ndarray, f: Any) -> None:
    """Stuck work leaves ``usable_slots`` worker slots, and each operation holds its slot
    ``hold_seconds`` longer: latency rises, utilization goes to 1, the excess is shed (503)."""
    slots = k.usable_slots[f.target]
    slots[on] = np.minimum(slots[on], f.params["usable_slots"])
    k.extra_seconds[f.target][on] += f.params.get("hold_seconds", 0.0)


def _memory_leak(k: Knobs, on: np.ndarray, f: Any) -> None:
    """Resident memory grows by ``leak_bytes_per_second`` from the fault's start (freed at its end), and
    each operation pauses ``gc_pause_seconds_per_gib`` per GiB leaked."""
    leaked = f.params["leak_bytes_per_second"] * np.clip(k.t - f.start, 0.0, None) * on
    k.leaked_bytes[f.target] += leaked
    k.extra_seconds[f.target] += f.params.get("gc_pause_seconds_per_gib", 0.0) * leaked / 2**30


def _slow_queries(k: Knobs, on: np.ndarray, f: Any) -> None:
    """Every query of the database takes ``slowdown`` times longer."""
    k.slowdown[f.target][on] *= f.params["slowdown"]


def _cache_outage(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The cache's hit ratio drops to ``hit_ratio`` (redis GETs, or the user service's L1)."""
    ratio = k.l1_hit if f.target == "user" else k.redis_hit
    ratio[on] = np.minimum(ratio[on], f.params["hit_ratio"])


def _consumer_lag(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The target's consumer group processes at most ``max_messages_per_second``."""
    cap = k.consumer_cap[f.target]
    cap[on] = np.minimum(cap[on], f.params["max_messages_per_second"])


def _cdn_degradation(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The CDN edge sends at ``throughput_bits_per_second``."""
    k.cdn_throughput[f.target][on] = f.params["throughput_bits_per_second"]


def _network_partition(k: Knobs, on: np.ndarray, f: Any) -> None:
    """``drop_ratio`` of CALLER's calls to DOWNSTREAM (target ``CALLER~DOWNSTREAM``) time out."""
    caller, _, downstream = f.target.partition("~")
    k.partition[caller, downstream][on] = np.maximum(k.partition[caller, downstream][on], f.params["drop_ratio"])


def _bad_deploy(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The next version serves ``rollout_ratio`` of the operations and fails ``error_ratio`` of them."""
    n = len(k.t)
    rollout, errors = k.canary.setdefault(f.target, (np.zeros(n), np.zeros(n)))
    rollout[on] = f.params["rollout_ratio"]
    errors[on] = f.params["error_ratio"]


def _connection_pool_exhaustion(k: Knobs, on: np.ndarray, f: Any) -> None:
    """Leaked connections leave ``free_connections`` slots; queries beyond them fail (503)."""
    slots = k.usable_slots[f.target]
    slots[on] = np.minimum(slots[on], f.params["free_connections"])


def _timeout_cascade(k: Knobs, on: np.ndarray, f: Any) -> None:
    """The target is ``latency_seconds`` slower and its callers retry a timed-out call ``retries`` times."""
    k.extra_seconds[f.target][on] += f.params["latency_seconds"]
    for caller in (n for n in NODES if f.target in CALL_GRAPH[n]):
        k.retries[caller, f.target][on] = f.params["retries"]


#: kind name -> effect; ``saturation`` is the first catalogue's name of ``cpu_saturation``.
EFFECTS: dict[str, Effect] = {
    "latency": _latency, "errors": _errors, "cpu_saturation": _cpu_saturation, "saturation": _cpu_saturation,
    "memory_leak": _memory_leak, "slow_queries": _slow_queries, "cache_outage": _cache_outage,
    "consumer_lag": _consumer_lag, "cdn_degradation": _cdn_degradation, "network_partition": _network_partition,
    "bad_deploy": _bad_deploy, "connection_pool_exhaustion": _connection_pool_exhaustion,
    "timeout_cascade": _timeout_cascade,
}


def effect_of(kind: str) -> Effect:
    """The effect of fault ``kind``; ValueError names it and the kinds the backfill models."""
    if kind not in EFFECTS:
        raise ValueError(f"the backfill has no model of fault kind {kind!r}; modelled: {', '.join(EFFECTS)}")
    return EFFECTS[kind]
