"""Inhibition along the reference platform's dependency graph, and Alertmanager's label-equality rules."""

from __future__ import annotations

from alerting.inhibition import Inhibitor, InhibitRuleConfig
from alerting.model import Alert
from topology.graph import Topology

TOPOLOGY = Topology.load()


def alert(job: str, name: str = "LatencyHigh", state: str = "firing", **labels) -> Alert:
    return Alert({"alertname": name, "job": job, **labels}, {}, state, 0, 1.0)


def test_a_firing_dependency_inhibits_its_dependants_with_the_path_as_reason():
    postgres, user, gateway = alert("postgres", "PostgresLatencyHigh"), alert("user"), alert("gateway")
    found = Inhibitor(TOPOLOGY).inhibit([postgres, user, gateway])
    assert postgres.fingerprint not in found  # the root cause pages
    [by_postgres] = found[user.fingerprint]
    assert by_postgres.source == postgres.fingerprint
    assert by_postgres.reason == "postgres (a dependency of user, via user -> postgres) is firing PostgresLatencyHigh"
    # gateway -> user -> postgres: both inhibit it, the nearest first
    assert [i.source for i in found[gateway.fingerprint]] == [user.fingerprint, postgres.fingerprint]
    assert found[gateway.fingerprint][1].reason == \
        "postgres (a dependency of gateway, via gateway -> user -> postgres) is firing PostgresLatencyHigh"


def test_only_firing_alerts_on_dependencies_inhibit():
    pending = alert("postgres", state="pending")
    resolved = alert("redis", state="resolved")
    user = alert("user")
    assert Inhibitor(TOPOLOGY).inhibit([pending, resolved, user]) == {}
    # a dependant never inhibits its dependency, and unrelated infrastructure does not inhibit each other
    assert Inhibitor(TOPOLOGY).inhibit([alert("user"), alert("postgres")]).keys() == {alert("user").fingerprint}
    assert Inhibitor(TOPOLOGY).inhibit([alert("kafka"), alert("redis")]) == {}
    # nodes outside the graph take no part
    assert Inhibitor(TOPOLOGY).inhibit([alert("elsewhere"), alert("postgres")]) == {}


def test_label_equality_rules_like_alertmanagers():
    rule = InhibitRuleConfig(source_matchers=['severity="critical"'], target_matchers=['severity="warning"'],
                             equal=["cluster"])
    crit = alert("search", "Down", severity="critical", cluster="a")
    warn_a = alert("kafka", "Lag", severity="warning", cluster="a")
    warn_b = alert("redis", "Lag", severity="warning", cluster="b")
    found = Inhibitor(Topology.empty(), [rule]).inhibit([crit, warn_a, warn_b])
    assert list(found) == [warn_a.fingerprint]
    assert found[warn_a.fingerprint][0].reason == 'Down is firing on search with the same cluster="a" (inhibit_rules.0)'
    # a label missing on both sides counts as equal; an alert matching both sides does not inhibit itself
    both = InhibitRuleConfig(source_matchers=['job=~".+"'], target_matchers=['job=~".+"'], equal=["zone"])
    one, two = alert("a"), alert("b")
    found = Inhibitor(Topology.empty(), [both]).inhibit([one, two])
    assert [i.source for i in found[one.fingerprint]] == [two.fingerprint]
    assert [i.source for i in found[two.fingerprint]] == [one.fingerprint]
