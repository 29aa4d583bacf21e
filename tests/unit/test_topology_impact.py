"""Impact analysis: which businesses a fault on a node affects (Topology.impacted_businesses)."""

from __future__ import annotations

import textwrap

import pytest

from topology.graph import Topology

REFERENCE = Topology.load()
ALL_BUSINESSES = REFERENCE.nodes("business")


@pytest.mark.parametrize("node, businesses", [
    ("gift", ["send_gift"]),                                    # not every business behind the gateway
    ("giftdb-1", ["send_gift"]),                                # through payment and gift
    ("cdn-b", ["live_streaming"]),
    ("objstore", ["watch_feed", "post_content", "live_streaming"]),  # media (feed, post), origin (CDN edges)
    ("user", ["watch_feed", "user_profile", "messaging", "live_streaming", "send_gift"]),
    ("kafka", ["watch_feed", "post_content", "search_content", "messaging", "push_notifications", "send_gift"]),
    ("gateway", ALL_BUSINESSES),                                # the router itself fails: everything
    ("redis", ALL_BUSINESSES),
    ("send_gift", ["send_gift"]),                               # a business impacts itself
    ("no-such-node", []),
])
def test_reference_platform_impact(node, businesses):
    assert REFERENCE.impacted_businesses(node) == businesses


def test_impact_is_transitive_in_file_order_and_does_not_cross_routers(tmp_path):
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent("""
        nodes:
          browse:   {kind: business, depends_on: [edge, catalog]}
          checkout: {kind: business, depends_on: [edge, orders]}
          edge:     {kind: service, router: true, depends_on: [catalog, orders]}
          catalog:  {kind: service, depends_on: [cache]}
          orders:   {kind: service, depends_on: [db, cache]}
          cache:    {kind: infra}
          db:       {kind: infra}
        """))
    topology = Topology.load(path)
    assert topology.impacted_businesses("db") == ["checkout"]       # edge -> orders is not followed up
    assert topology.impacted_businesses("cache") == ["browse", "checkout"]
    assert topology.impacted_businesses("edge") == ["browse", "checkout"]
