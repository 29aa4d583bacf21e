"""Inhibition: firing alerts that mute the notifications of other firing alerts, each with its reason.

Two kinds, both evaluated on every pass over the firing alerts:

* **Along the dependency graph** (always on): a firing alert on node *d* (its ``job`` label) inhibits every
  firing alert on a node that depends on *d*, directly or transitively, because the dependant's symptom is
  explained by its dependency. The inhibited alert still fires and folds into the dependency's incident
  (see :mod:`alerting.incidents`); only its own page is withheld. The reason names the path, e.g.
  ``postgres (a dependency of user, via user -> postgres) is firing PostgresLatencyHigh``.
* **Alertmanager's label-equality ``inhibit_rules``**: a firing alert matching ``source_matchers`` inhibits
  a firing alert matching ``target_matchers`` when both have the same values of every label in ``equal``
  (a label missing on both counts as equal), as in
  https://prometheus.io/docs/alerting/latest/configuration/#inhibit_rule .

As in Alertmanager, an alert never inhibits itself, and an inhibiting alert does so even when it is
silenced itself (the fault is still there). Only ``firing`` alerts inhibit or are inhibited.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage.matchers import Matcher
from topology.graph import Topology

from . import matchers as am
from .model import Alert


class InhibitRuleConfig(BaseModel):
    """One entry of the configuration's ``inhibit_rules`` (Alertmanager's ``inhibit_rule``, matcher form)."""

    model_config = ConfigDict(extra="forbid")
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        am.parse_matchers(v)
        return v


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]
    index: int

    @classmethod
    def from_config(cls, config: InhibitRuleConfig, index: int) -> "InhibitRule":
        return cls(tuple(am.parse_matchers(config.source_matchers)), tuple(am.parse_matchers(config.target_matchers)),
                   tuple(config.equal), index)


@dataclass(frozen=True)
class Inhibition:
    """``source`` (a fingerprint) inhibits the alert this is recorded on, because of ``reason``."""

    source: str
    reason: str


class Inhibitor:
    """Computes which firing alerts are inhibited, by whom and why.

    :param topology: the dependency graph (edges point from a node to what it depends on).
    :param rules: label-equality rules from the configuration's ``inhibit_rules``.
    """

    def __init__(self, topology: Topology, rules: Iterable[InhibitRuleConfig] = ()):
        self.graph = topology.graph
        # the graph is fixed: each node's path to every node it depends on, computed once
        self._paths = {n: {d: p for d, p in nx.single_source_shortest_path(self.graph, n).items() if d != n}
                       for n in self.graph}
        self.rules = [InhibitRule.from_config(r, i) for i, r in enumerate(rules)]

    def inhibit(self, alerts: Iterable[Alert]) -> dict[str, list[Inhibition]]:
        """Fingerprint of each inhibited firing alert -> its inhibitions, the nearest dependency first.

        Alerts of other states are ignored; an alert missing from the result is not inhibited.
        """
        firing = [a for a in alerts if a.state == "firing"]
        by_node: dict[str, list[Alert]] = defaultdict(list)
        for alert in firing:
            by_node[alert.node].append(alert)
        along_graph = {node: self._along_graph(node, by_node) for node in by_node}  # the same for a node's alerts
        result: dict[str, list[Inhibition]] = {}
        for target in firing:
            result[target.fingerprint] = list(along_graph[target.node])
            for rule in self.rules:
                if not am.matches_all(rule.target, target.labels):
                    continue
                for source in firing:
                    if source.fingerprint != target.fingerprint and am.matches_all(rule.source, source.labels) and \
                            all(source.labels.get(n, "") == target.labels.get(n, "") for n in rule.equal):
                        same = ", ".join(f'{n}="{target.labels.get(n, "")}"' for n in rule.equal)
                        result[target.fingerprint].append(Inhibition(source.fingerprint, (
                            f"{source.name} is firing on {source.node or '?'}"
                            + (f" with the same {same}" if same else "") + f" (inhibit_rules.{rule.index})")))
        return {fp: found for fp, found in result.items() if found}

    def _along_graph(self, node: str, by_node: dict[str, list[Alert]]) -> list[Inhibition]:
        """What inhibits an alert on ``node``: the firing alerts on what it depends on, the nearest first."""
        paths = sorted((p for d, p in self._paths.get(node, {}).items() if d in by_node), key=lambda p: (len(p), p[-1]))
        return [Inhibition(source.fingerprint, f"{path[-1]} (a dependency of {node}, via {' -> '.join(path)}) "
                                               f"is firing {source.name}")
                for path in paths for source in by_node[path[-1]]]
