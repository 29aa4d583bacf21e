"""Call edges discovered from client-side metrics, compared with the declared dependency graph.

Every caller counts its outgoing calls in a counter labelled with the callee; on the reference platform
that is ``http_client_requests_total{job=CALLER, downstream=CALLEE, code}`` (``sample_platform/metrics.py``).
Real systems name it otherwise (Istio's ``istio_requests_total{source_workload, destination_workload}``,
a gRPC client's ``grpc_client_handled_total{grpc_service}``...), so the metric and the two labels are
configuration (:class:`CallMetric`; ``topology_discovery`` in the OpsWatch configuration).

An edge CALLER -> CALLEE is **observed** when some series of the metric with those labels has a sample
above 0 in the look-back window (the counter has counted a call since the caller started). Declared call
edges are the edges of service and infra nodes; a business's edges are user journeys, not calls, and are
never compared. Observed edges are reported, not added to the graph used for grouping: a stray call
must not silently change which alerts become one incident; declare it in the topology file instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.base import Store

from .graph import Topology


@dataclass(frozen=True)
class CallMetric:
    """Which counter says who calls whom: ``metric`` (a counter of calls), ``caller_label`` (the
    caller's node name) and ``callee_label`` (the downstream's node name)."""

    metric: str = "http_client_requests_total"
    caller_label: str = "job"
    callee_label: str = "downstream"


def observed_calls(store: Store, start_ms: int, end_ms: int, call_metric: CallMetric = CallMetric()) -> dict[tuple[str, str], float]:
    """Call edges seen in ``[start_ms, end_ms]`` (ms since the epoch).

    :returns: ``(caller, callee) -> calls``: the counter's increase over the window summed over the
        edge's series (counter resets handled as ``rate`` does: a drop counts the new value), for every
        edge with a sample above 0. Series without either label are ignored.
    :raises StorageError: when the store cannot be read.
    """
    calls: dict[tuple[str, str], float] = {}
    for series in store.select(call_metric.metric, None, start_ms, end_ms):
        caller, callee = series.labels.get(call_metric.caller_label), series.labels.get(call_metric.callee_label)
        values = series.values.dropna()
        if not caller or not callee or values.empty or not (values > 0).any():
            continue
        diffs = values.diff().iloc[1:]
        increase = float(diffs.where(diffs >= 0, values.iloc[1:]).sum())
        calls[(caller, callee)] = calls.get((caller, callee), 0.0) + increase
    return calls


def declared_calls(topology: Topology) -> set[tuple[str, str]]:
    """The declared edges that should show up as calls: those of service and infra nodes."""
    return {(a, b) for a, b in topology.graph.edges if topology.kind(a) != "business"}


def compare(topology: Topology, observed: dict[tuple[str, str], float]) -> dict:
    """Declared and observed edges side by side.

    :returns: ``{"nodes": [{"id", "kind", "title", "router", "impacted_businesses"}],
        "edges": [{"source", "target", "declared", "observed", "calls"}],
        "undeclared_edges": [{"source", "target", "calls", "unknown_nodes"}],
        "unobserved_edges": [{"source", "target", "caller_reports_calls"}]}``: ``edges`` holds every
        declared edge (business edges with ``observed`` None: they are not calls) and every observed one;
        ``calls`` is the increase over the window (None when not observed); ``unknown_nodes`` names ends of
        an observed edge that are not in the topology; ``caller_reports_calls`` is False when the caller
        exports no call metric at all (it is not scraped or not instrumented, rather than not calling).
    """
    g = topology.graph
    declared = declared_calls(topology)
    callers = {a for a, _ in observed}
    edges = []
    for a, b in g.edges:
        call = (a, b) in declared
        edges.append({"source": a, "target": b, "declared": True, "observed": ((a, b) in observed) if call else None,
                      "calls": observed.get((a, b))})
    undeclared = sorted(e for e in observed if e not in g.edges)
    edges += [{"source": a, "target": b, "declared": False, "observed": True, "calls": observed[(a, b)]}
              for a, b in undeclared]
    return {
        "nodes": [{"id": n, "kind": g.nodes[n]["kind"], "title": g.nodes[n]["title"], "router": g.nodes[n]["router"],
                   "impacted_businesses": topology.impacted_businesses(n)} for n in g.nodes],
        "edges": edges,
        "undeclared_edges": [{"source": a, "target": b, "calls": observed[(a, b)],
                              "unknown_nodes": [n for n in (a, b) if n not in g]} for a, b in undeclared],
        "unobserved_edges": [{"source": a, "target": b, "caller_reports_calls": a in callers}
                             for a, b in sorted(declared - observed.keys())],
    }


def topology_report(topology: Topology, store: Store, now_ms: int, lookback_ms: int,
                    call_metric: CallMetric = CallMetric()) -> dict:
    """:func:`compare` over the calls of the last ``lookback_ms`` before ``now_ms``, plus the window
    (``"window": {"start", "end"}`` in ms) and ``"call_metric"`` used, for the API and the dashboards.

    :raises StorageError: when the store cannot be read.
    """
    report = compare(topology, observed_calls(store, now_ms - lookback_ms, now_ms, call_metric))
    report["window"] = {"start": now_ms - lookback_ms, "end": now_ms}
    report["call_metric"] = {"metric": call_metric.metric, "caller_label": call_metric.caller_label,
                             "callee_label": call_metric.callee_label}
    return report
