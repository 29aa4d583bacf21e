"""Call edges discovered from client-side call counters in a real SQLite store, compared with the declared
graph (topology/discovery.py)."""

from __future__ import annotations

import textwrap

import pytest

from collectors.samples import STALE_NAN, Sample
from sample_platform.graph import CALL_GRAPH
from storage.sqlite import SQLiteStore
from topology.discovery import CallMetric, compare, observed_calls, topology_report
from topology.graph import Topology

T0 = 1_800_000_000_000
S = 1000


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "opswatch.db")
    yield s
    s.close()


def calls(caller: str, callee: str, values: list[float], t0: int = T0, name: str = "http_client_requests_total",
          caller_label: str = "job", callee_label: str = "downstream", code: str = "200") -> list[Sample]:
    labels = {caller_label: caller, callee_label: callee, "instance": f"{caller}:80", "code": code}
    return [Sample(name, labels, t0 + i * 5 * S, v) for i, v in enumerate(values)]


def small_topology(tmp_path) -> Topology:
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent("""
        nodes:
          shop:     {kind: business, depends_on: [checkout]}
          checkout: {kind: service, depends_on: [payments, postgres]}
          payments: {kind: service, depends_on: [postgres]}
          postgres: {kind: infra}
        """))
    return Topology.load(path)


def test_the_reference_platform_calls_exactly_what_it_declares(store):
    samples = []
    for caller, callees in CALL_GRAPH.items():
        for callee in callees:
            samples += calls(caller, callee, [10, 20, 30])
    store.append(samples)
    report = topology_report(Topology.load(), store, T0 + 10 * S, 60 * S)
    assert report["undeclared_edges"] == [] and report["unobserved_edges"] == []
    call_edges = [e for e in report["edges"] if e["observed"] is not None]
    assert len(call_edges) == sum(len(c) for c in CALL_GRAPH.values()) and all(e["observed"] for e in call_edges)
    # a business's edges are journeys, not calls: never compared
    assert all(e["observed"] is None for e in report["edges"] if e["source"] == "send_gift")


def test_undeclared_and_unobserved_edges(store, tmp_path):
    store.append(calls("checkout", "postgres", [5, 9, 12])
                 + calls("checkout", "postgres", [1, 1, 1], code="500")
                 + calls("checkout", "cache", [0, 2, 3])          # a call the file does not declare
                 + calls("mailer", "postgres", [7, 7, 7]))         # a caller the file does not know
    report = topology_report(small_topology(tmp_path), store, T0 + 10 * S, 60 * S)
    assert report["undeclared_edges"] == [
        {"source": "checkout", "target": "cache", "calls": 3.0, "unknown_nodes": ["cache"]},
        {"source": "mailer", "target": "postgres", "calls": 0.0, "unknown_nodes": ["mailer"]},
    ]
    assert report["unobserved_edges"] == [
        {"source": "checkout", "target": "payments", "caller_reports_calls": True},
        {"source": "payments", "target": "postgres", "caller_reports_calls": False},  # payments exports nothing
    ]
    edges = {(e["source"], e["target"]): e for e in report["edges"]}
    assert edges[("checkout", "postgres")] == {"source": "checkout", "target": "postgres", "declared": True,
                                               "observed": True, "calls": 7.0}
    assert edges[("shop", "checkout")]["observed"] is None
    assert report["window"] == {"start": T0 + 10 * S - 60 * S, "end": T0 + 10 * S}


def test_only_the_window_counts_and_zero_counters_are_not_calls(store, tmp_path):
    store.append(calls("checkout", "payments", [3, 4], t0=T0 - 3600 * S)  # an hour ago
                 + calls("payments", "postgres", [0, 0, 0]))              # registered, never called
    observed = observed_calls(store, T0 - 60 * S, T0 + 60 * S)
    assert observed == {}
    assert observed_calls(store, T0 - 7200 * S, T0 + 60 * S) == {("checkout", "payments"): 1.0}


def test_counter_resets_and_staleness_markers(store):
    store.append(calls("checkout", "payments", [100, 110, 4, 9, STALE_NAN]))  # a restart after 110
    assert observed_calls(store, T0, T0 + 60 * S) == {("checkout", "payments"): 10 + 4 + 5}


def test_metric_and_labels_are_configurable(store, tmp_path):
    store.append(calls("checkout", "payments", [1, 2], name="istio_requests_total",
                       caller_label="source_workload", callee_label="destination_workload"))
    istio = CallMetric("istio_requests_total", "source_workload", "destination_workload")
    report = topology_report(small_topology(tmp_path), store, T0 + 10 * S, 60 * S, istio)
    assert {(e["source"], e["target"]) for e in report["unobserved_edges"]} == {
        ("checkout", "postgres"), ("payments", "postgres")}
    assert report["call_metric"] == {"metric": "istio_requests_total", "caller_label": "source_workload",
                                     "callee_label": "destination_workload"}
    assert observed_calls(store, T0, T0 + 60 * S) == {}  # the default metric is not there


def test_compare_lists_nodes_with_their_impact(tmp_path):
    report = compare(small_topology(tmp_path), {})
    nodes = {n["id"]: n for n in report["nodes"]}
    assert nodes["postgres"] == {"id": "postgres", "kind": "infra", "title": "postgres", "router": False,
                                 "impacted_businesses": ["shop"]}
