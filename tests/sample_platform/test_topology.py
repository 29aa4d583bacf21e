"""The topology YAML covers the whole platform: every node, and each node depends on exactly what it calls."""

from __future__ import annotations

import networkx as nx

from sample_platform.graph import CALL_GRAPH, CDN_EDGES, GIFT_SHARDS, INFRA, NODES, SERVICES
from topology.graph import REFERENCE_PLATFORM, Topology


def test_every_node_is_in_the_topology_with_its_calls_as_dependencies():
    topo = Topology.load(REFERENCE_PLATFORM)
    businesses = set(topo.nodes("business"))
    assert set(topo.nodes()) == set(NODES) | businesses
    assert set(topo.nodes("service")) == set(SERVICES) and set(topo.nodes("infra")) == set(INFRA)
    for node in NODES:
        assert set(topo.dependencies(node)) == set(CALL_GRAPH[node]), node
    assert topo.graph.nodes["gateway"]["router"] is True
    assert sum(1 for n in topo.nodes() if topo.graph.nodes[n]["router"]) == 1


def test_every_node_serves_some_business():
    topo = Topology.load(REFERENCE_PLATFORM)
    for business in topo.nodes("business"):
        deps = topo.dependencies(business)
        assert "gateway" in deps and len(deps) >= 2, business
    reachable = set().union(*(nx.descendants(topo.graph, b) for b in topo.nodes("business")))
    assert reachable == set(NODES)
    # a degrading CDN edge or a slow gift shard hurts exactly one business
    for node in (*CDN_EDGES, *GIFT_SHARDS):
        assert len(topo.impacted_businesses(node)) == 1, node
    assert topo.impacted_businesses("gift") == ["send_gift"]
    assert {"user_profile", "post_content", "send_gift"} <= set(topo.impacted_businesses("postgres"))
