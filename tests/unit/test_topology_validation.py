"""Topology files with mistakes: every error names the file, the node's key, what is wrong and the fix,
and all of a file's errors are reported at once (topology/validation.py)."""

from __future__ import annotations

import textwrap

import pytest

from opswatch.errors import ConfigError
from topology.graph import REFERENCE_PLATFORM, Topology


def load(tmp_path, text: str) -> Topology:
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent(text))
    return Topology.load(path)


@pytest.mark.parametrize("text, expected", [
    # unknown node referenced: a dangling edge, with the closest name suggested
    ("""
     nodes:
       shop: {kind: business, depends_on: [checkout]}
       checkout: {kind: service, depends_on: [postgress]}
       postgres: {kind: infra}
     """, ["nodes.checkout.depends_on: 'postgress' is not a node (a dangling edge checkout -> postgress)",
           "did you mean 'postgres'?"]),
    ("""
     nodes:
       shop: {kind: business, depends_on: [warehouse]}
     """, ["nodes.shop.depends_on: 'warehouse' is not a node", "add 'warehouse' under nodes: or remove it"]),
    # a node depending on itself
    ("""
     nodes:
       api: {kind: service, depends_on: [api]}
     """, ["nodes.api.depends_on: node 'api' depends on itself; remove 'api'"]),
    # layer rules
    ("""
     nodes:
       checkout: {kind: business, depends_on: [shop]}
       shop: {kind: business, depends_on: [api]}
       api: {kind: service}
     """, [("nodes.checkout.depends_on: business 'checkout' depends on business 'shop', but a business may only "
            "depend on service or infra; list the services of 'shop' that 'checkout' uses instead")]),
    ("""
     nodes:
       shop: {kind: business, depends_on: [api]}
       api: {kind: service, depends_on: [shop]}
     """, ["nodes.api.depends_on: service 'api' depends on business 'shop'", "depend on the services of 'shop'"]),
    ("""
     nodes:
       api: {kind: service, depends_on: [db]}
       db: {kind: infra, depends_on: [api]}
     """, ["nodes.db.depends_on: infra 'db' depends on service 'api', but an infra may only depend on infra",
           "make 'db' a service"]),
    # cycles, named by layer
    ("""
     nodes:
       db: {kind: infra, depends_on: [disk]}
       disk: {kind: infra, depends_on: [san]}
       san: {kind: infra, depends_on: [db]}
     """, ["nodes.db.depends_on: dependency cycle db -> disk -> san -> db among infra nodes"]),
    ("""
     nodes:
       a: {kind: service, depends_on: [b]}
       b: {kind: service, depends_on: [a]}
     """, ["dependency cycle a -> b -> a among service nodes", "remove the edge against the direction"]),
    # unknown keys and kinds
    ("""
     nodes:
       api: {kindd: service}
     """, ["key 'nodes.api.kindd' is not a known setting; did you mean 'kind'?"]),
    ("""
     nodes:
       api: {kind: database}
     """, ["key 'nodes.api.kind': Input should be 'business', 'service' or 'infra' (got 'database')"]),
    ("""
     nodse:
       api: {kind: service}
     """, ["key 'nodse' is not a known setting; did you mean 'nodes'?"]),
    ("""
     nodes:
       api: {kind: service, depends_on: db}
       db: {kind: infra}
     """, ["key 'nodes.api.depends_on': Input should be a valid list (got 'db')"]),
    ("""
     nodes:
       shop: {kind: business, router: true, depends_on: [api]}
       api: {kind: service}
     """, ["nodes.shop.router: router: true on a business; only a service can route"]),
])
def test_each_error_names_file_node_problem_and_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "topo.yaml") + ": "), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_every_error_of_a_file_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, """
            nodes:
              shop: {kind: business, depends_on: [apii, shop2]}
              shop2: {kind: business, depends_on: [api]}
              api: {kind: service, depends_on: [cache]}
              cache: {kind: infra, depends_on: [api]}
            """)
    lines = str(info.value).splitlines()
    assert len(lines) == 4, lines
    assert "'apii' is not a node" in lines[0] and "did you mean 'api'?" in lines[0]
    assert "business 'shop' depends on business 'shop2'" in lines[1]
    assert "infra 'cache' depends on service 'api'" in lines[2]
    assert "dependency cycle api -> cache -> api across infra and service" in lines[3]


def test_warnings_do_not_stop_loading(tmp_path):
    topology = load(tmp_path, """
        nodes:
          shop: {kind: business, depends_on: [api, api]}
          idle: {kind: business}
          api: {kind: service}
          batch: {kind: service, depends_on: [db]}
          db: {kind: infra}
        """)
    assert set(topology.nodes()) == {"shop", "idle", "api", "batch", "db"}
    warnings = "\n".join(topology.warnings)
    assert "nodes.shop.depends_on: 'api' is listed twice" in warnings
    assert "nodes.idle.depends_on: business 'idle' depends on nothing" in warnings
    assert "nodes.batch: no business depends on 'batch'" in warnings
    assert "nodes.db: no business depends on 'db'" in warnings
    assert len(topology.warnings) == 4


def test_reference_platform_is_clean():
    topology = Topology.load(REFERENCE_PLATFORM)
    assert topology.warnings == []
    assert len(topology.nodes()) == 31
