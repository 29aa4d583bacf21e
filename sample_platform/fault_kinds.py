"""The fault catalogue: what each kind of fault does, where it may be injected, with which params.

Importing this module starts nothing.  ``FAULT_KINDS: dict[str, FaultKind]``
holds twelve kinds; ``valid_targets(kind) -> list[str]`` lists where each may
go.  A kind acts on the platform in one or both of two ways:

- **effects** (read by :meth:`sample_platform.node.Node.run_op` on every
  operation, see :class:`sample_platform.faults.FaultEffects`): an added delay,
  an error ratio, worker slots held by stuck work;
- **parameter overrides** (``FaultKind.overrides``): while the fault is active
  the platform replaces fields of the affected nodes' :mod:`.params` (the same
  numbers a node reads on every request) and restores the node's own
  parameters when it ends.  ``FaultKind.nodes(target)`` names the nodes
  whose parameters change.

The kinds (valid targets in brackets):

- ``latency`` (every node): each operation takes ``latency_seconds`` longer.
- ``errors`` (every node): operations fail (HTTP 500) with probability ``error_ratio``.
- ``cpu_saturation`` (every node): stuck work holds all but ``usable_slots``
  worker slots and each operation holds its slot ``hold_seconds`` longer.
- ``memory_leak`` (our processes, not the CDN edges):
  ``process_resident_memory_bytes`` grows by ``leak_bytes_per_second`` and each
  operation pauses ``gc_pause_seconds_per_gib`` per GiB leaked; the memory is
  freed when the fault ends (the process was restarted).
- ``slow_queries`` (databases): every query takes ``slowdown`` times longer
  (``pg_query_duration_seconds`` of that database only).
- ``cache_outage`` (``redis``, ``user``): the cache's hit ratio drops to
  ``hit_ratio`` (redis GETs, or the user service's in-process L1), so the reads
  fall through to postgres.
- ``consumer_lag`` (the services consuming kafka): the service's consumer group
  processes at most ``max_messages_per_second``: ``kafka_consumergroup_lag`` grows.
- ``cdn_degradation`` (CDN edges): the edge sends at
  ``throughput_bits_per_second``; stall ratio and first-frame time rise on that
  provider only.
- ``network_partition`` (``CALLER~DOWNSTREAM``, an edge of the call graph):
  ``drop_ratio`` of CALLER's calls to DOWNSTREAM are lost, so the caller waits
  out its timeout (``http_client_requests_total{code="timeout"}``); other
  callers of DOWNSTREAM are unaffected.
- ``bad_deploy`` (our services): the next version rolls out to
  ``rollout_ratio`` of the operations and fails ``error_ratio`` of them; the old
  version stays healthy (``http_requests_total{version}`` shows which).
- ``connection_pool_exhaustion`` (databases): leaked connections hold all but
  ``free_connections`` slots; a query waits at most ``pool_timeout_seconds``
  for one, then fails, so callers see HTTP 503.
- ``timeout_cascade`` (nodes that some node calls): the target is
  ``latency_seconds`` slower, past its callers' timeouts, and its callers retry
  each timed-out call ``retries`` times, so their own callers time out too.

A ``network_partition`` target is written ``CALLER~DOWNSTREAM`` (``~`` as in
"cut between"), e.g. ``live~user``: it must be an edge of
:data:`sample_platform.graph.CALL_GRAPH`.  Every param is a number with a
default and an inclusive range (:class:`ParamSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable

from .graph import CALL_GRAPH, CDN_EDGES, DATABASES, DEPLOYABLE, NODES
from .params import PARAMS, ConsumerParams, NodeParams, UserParams, next_version

#: Separates the caller and the downstream in a ``network_partition`` target.
PARTITION_SEPARATOR = "~"


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
class Fault:
    """One injected fault; ``start``/``end`` are epoch seconds from the injector's clock."""

    id: str
    kind: str
    target: str
    start: float
    end: float
    params: dict[str, float]


#: ``(node, its current params, fault) -> fields of NodeParams to replace`` while the fault is active.
Override = Callable[[str, NodeParams, Fault], dict[str, Any]]


@dataclass(frozen=True)
class FaultKind:
    """A fault kind: ``name``, one-line ``description``, ``params`` specs, valid ``targets``, and
    ``overrides`` (None when the kind acts through effects only) applied to ``nodes(target)``."""

    name: str
    description: str
    params: dict[str, ParamSpec]
    targets: tuple[str, ...]
    overrides: Override | None = None
    affected: Callable[[str], tuple[str, ...]] = field(default=lambda target: (target,))

    def defaults(self) -> dict[str, float]:
        """Default parameter values, e.g. ``{"latency_seconds": 0.25}``."""
        return {k: s.default for k, s in self.params.items()}

    def nodes(self, target: str) -> tuple[str, ...]:
        """Nodes whose parameters the fault overrides when injected into ``target``."""
        return self.affected(target) if self.overrides is not None else ()


def partition_target(caller: str, downstream: str) -> str:
    """The ``network_partition`` target for the calls ``caller`` -> ``downstream``."""
    return f"{caller}{PARTITION_SEPARATOR}{downstream}"


def split_partition(target: str) -> tuple[str, str]:
    """``"live~user"`` -> ``("live", "user")``; ValueError when ``target`` is not of that form."""
    caller, sep, downstream = target.partition(PARTITION_SEPARATOR)
    if not sep or not caller or not downstream:
        raise ValueError(f"network_partition target {target!r} must be written CALLER~DOWNSTREAM, e.g. live~user")
    return caller, downstream


def callers_of(node: str) -> tuple[str, ...]:
    """Nodes that call ``node`` over HTTP (in :data:`NODES` order)."""
    return tuple(n for n in NODES if node in CALL_GRAPH[n])


def impact_node(kind: str, target: str) -> str:
    """The topology node whose dependants the fault hurts: the caller of a partition, else the target."""
    return split_partition(target)[0] if kind == "network_partition" else target


def _memory_leak(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    return {"leak_bytes_per_second": f.params["leak_bytes_per_second"], "leak_started_at": f.start,
            "gc_pause_seconds_per_gib": f.params["gc_pause_seconds_per_gib"]}


def _slow_queries(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    factor = f.params["slowdown"]
    return {"service_seconds": MappingProxyType({op: s * factor for op, s in p.service_seconds.items()})}


def _cache_outage(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    field_name = "l1_hit_ratio" if isinstance(p, UserParams) else "hit_ratio"
    return {field_name: f.params["hit_ratio"]}


def _partition(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    _, downstream = split_partition(f.target)
    return {"partitioned": MappingProxyType({**p.partitioned, downstream: f.params["drop_ratio"]})}


def _bad_deploy(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    return {"canary_version": next_version(p.version), "canary_ratio": f.params["rollout_ratio"],
            "canary_error_ratio": f.params["error_ratio"]}


def _retry_timeouts(node: str, p: NodeParams, f: Fault) -> dict[str, Any]:
    return {"timeout_retries": MappingProxyType({**p.timeout_retries, f.target: int(f.params["retries"])})}


def _set(**fields: str) -> Override:
    """An override that sets each NodeParams field to the fault param of the given name."""
    return lambda node, p, f: {name: f.params[param] for name, param in fields.items()}


CONSUMERS: tuple[str, ...] = tuple(n for n in NODES if isinstance(PARAMS[n], ConsumerParams))
CACHES: tuple[str, ...] = ("redis", "user")
PARTITIONABLE: tuple[str, ...] = tuple(partition_target(a, b) for a in NODES for b in CALL_GRAPH[a])
CALLED: tuple[str, ...] = tuple(n for n in NODES if callers_of(n))
OUR_PROCESSES: tuple[str, ...] = tuple(n for n in NODES if n not in CDN_EDGES)

FAULT_KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("latency", "every operation of the target takes latency_seconds (default 0.25 s) longer",
              {"latency_seconds": ParamSpec(0.25, 0.0, 30.0, low_exclusive=True)}, NODES),
    FaultKind("errors", "the target answers HTTP 500 with probability error_ratio (default 0.5)",
              {"error_ratio": ParamSpec(0.5, 0.0, 1.0)}, NODES),
    FaultKind("cpu_saturation",
              "stuck work holds all but usable_slots (default 2) worker slots and each operation holds its "
              "slot hold_seconds (default 0.5 s) longer, so requests queue and utilization goes to 1",
              {"usable_slots": ParamSpec(2, 1, 1024, integer=True), "hold_seconds": ParamSpec(0.5, 0.0, 30.0)},
              NODES),
    FaultKind("memory_leak",
              "process_resident_memory_bytes grows by leak_bytes_per_second (default 2 MB/s) and each operation "
              "pauses gc_pause_seconds_per_gib (default 0.5 s) per GiB leaked; freed when the fault ends",
              {"leak_bytes_per_second": ParamSpec(2e6, 0.0, 1e10, low_exclusive=True),
               "gc_pause_seconds_per_gib": ParamSpec(0.5, 0.0, 60.0)},
              OUR_PROCESSES, _memory_leak),
    FaultKind("slow_queries", "every query on the database takes slowdown (default 25) times longer",
              {"slowdown": ParamSpec(25.0, 1.0, 10_000.0)}, DATABASES, _slow_queries),
    FaultKind("cache_outage",
              "the cache's hit ratio drops to hit_ratio (default 0): redis GETs, or the user service's "
              "in-process L1; the reads fall through to postgres",
              {"hit_ratio": ParamSpec(0.0, 0.0, 1.0)}, CACHES, _cache_outage),
    FaultKind("consumer_lag",
              "the service's kafka consumer group processes at most max_messages_per_second (default 0.2), "
              "so its kafka_consumergroup_lag grows",
              {"max_messages_per_second": ParamSpec(0.2, 0.0, 1e6, low_exclusive=True)},
              CONSUMERS, _set(max_messages_per_second="max_messages_per_second")),
    FaultKind("cdn_degradation",
              "the CDN edge sends at throughput_bits_per_second (default 400 kbit/s, below the lowest "
              "rendition): stall ratio and first-frame time rise on that provider only",
              {"throughput_bits_per_second": ParamSpec(4e5, 0.0, 1e11, low_exclusive=True)},
              CDN_EDGES, _set(throughput_bits_per_second="throughput_bits_per_second")),
    FaultKind("network_partition",
              "target CALLER~DOWNSTREAM: drop_ratio (default 1) of CALLER's calls to DOWNSTREAM are lost and "
              "time out; other callers of DOWNSTREAM are unaffected",
              {"drop_ratio": ParamSpec(1.0, 0.0, 1.0, low_exclusive=True)}, PARTITIONABLE, _partition,
              lambda target: (split_partition(target)[0],)),
    FaultKind("bad_deploy",
              "the next version rolls out to rollout_ratio (default 0.5) of the target's operations and fails "
              "error_ratio (default 0.5) of them; the old version stays healthy",
              {"rollout_ratio": ParamSpec(0.5, 0.0, 1.0, low_exclusive=True),
               "error_ratio": ParamSpec(0.5, 0.0, 1.0)}, DEPLOYABLE, _bad_deploy),
    FaultKind("connection_pool_exhaustion",
              "leaked connections hold all but free_connections (default 0) of the database's slots; a query "
              "waits at most pool_timeout_seconds (default 0.25 s) for one, then fails with HTTP 503",
              {"free_connections": ParamSpec(0, 0, 1024, integer=True),
               "pool_timeout_seconds": ParamSpec(0.25, 0.0, 30.0, low_exclusive=True)},
              DATABASES, _set(queue_timeout_seconds="pool_timeout_seconds")),
    FaultKind("timeout_cascade",
              "the target gets latency_seconds (default 3 s) slower, past its callers' timeouts, and its callers "
              "retry each timed-out call retries (default 2) times, so their callers time out too",
              {"latency_seconds": ParamSpec(3.0, 0.0, 30.0, low_exclusive=True),
               "retries": ParamSpec(2, 0, 5, integer=True)},
              CALLED, _retry_timeouts, callers_of),
)}


def fault_kind(kind: Any) -> FaultKind:
    """The kind named ``kind``; ValueError names it and lists the valid kinds."""
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; valid kinds: {', '.join(FAULT_KINDS)}")
    return FAULT_KINDS[kind]


def valid_targets(kind: str) -> list[str]:
    """Where the fault ``kind`` can be injected: node names, or ``CALLER~DOWNSTREAM`` edges for
    ``network_partition``.  Raises ValueError for an unknown kind."""
    return list(fault_kind(kind).targets)
