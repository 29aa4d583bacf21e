"""Grouping alerts into incidents along the dependency graph, and the incident lifecycle.

A firing alert joins an open incident when its node is connected to one of the incident's nodes in the
dependency graph (one depends on the other, directly or transitively) or is the same node: a fault
spreads from a dependency to its dependants, so their alerts belong together. When an alert connects
several open incidents they merge into the oldest. An incident resolves once none of its alerts has been
pending or firing for ``resolve_after_ms``; until then, related alerts still join it (so a flapping
symptom does not open a second incident). Every change re-ranks the root cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import networkx as nx

from topology.graph import Topology
from topology.rca import Candidate, Evidence, rank_root_causes

from .model import Alert

SEVERITY_ORDER = ("info", "warning", "critical")

ACTIVE_STATUSES = ("open", "acknowledged")
"""An acknowledged incident is still active: alerts keep joining it and it resolves like an open one."""

# A threshold-rule alert has no detector score; for ranking, a firing rule counts as a clear departure,
# the score an anomaly alert reaches at twice its threshold of 5.
RULE_ALERT_SCORE = 10.0


@dataclass
class TimelineEntry:
    at_ms: int
    text: str


@dataclass
class Incident:
    """One fault: its alerts (by fingerprint), nodes, ranked root causes and impacted businesses.

    ``status``: ``open``, ``acknowledged``, ``resolved`` or ``merged``; times are ms since the epoch; ``version`` grows on each change.
    """

    id: str
    opened_at_ms: int
    alert_fingerprints: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    status: str = "open"
    resolved_at_ms: int | None = None
    severity: str = "warning"
    root_causes: list[Candidate] = field(default_factory=list)
    impacted_businesses: list[str] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    version: int = 0

    @property
    def title(self) -> str:
        cause = self.root_causes[0].node if self.root_causes else (self.nodes[0] if self.nodes else "?")
        return f"{cause}: {len(self.alert_fingerprints)} alerts on {len(self.nodes)} nodes"


class IncidentManager:
    """Owns every incident. Call :meth:`update` after each alert evaluation.

    :param topology: the dependency graph used for grouping, root cause and impact.
    :param resolve_after_ms: quiet time (no pending or firing alert) before an incident resolves.
    :param onset_tolerance_ms: passed to :func:`topology.rca.rank_root_causes`.
    """

    def __init__(self, topology: Topology, resolve_after_ms: int = 300_000, onset_tolerance_ms: int = 5_000):
        self.topology = topology
        self.resolve_after_ms = resolve_after_ms
        self.onset_tolerance_ms = onset_tolerance_ms
        self.incidents: dict[str, Incident] = {}
        self._closure = {n: nx.descendants(topology.graph, n) | nx.ancestors(topology.graph, n) | {n}
                         for n in topology.graph}
        # Dependencies before dependants: of several alerts firing together, the deepest opens the incident
        # and the others join it, instead of each opening one that is merged a moment later.
        self._dependency_order = {n: i for i, n in enumerate(reversed(list(nx.topological_sort(topology.graph))))}
        self._counter = 0

    def _related(self, node: str, incident: Incident) -> bool:
        related = self._closure.get(node, {node})
        return any(n in related for n in incident.nodes)

    def _new_id(self, now_ms: int) -> str:
        self._counter += 1
        day = datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime("%Y%m%d")
        return f"INC-{day}-{self._counter:04d}"

    def open_incidents(self) -> list[Incident]:
        """The active incidents (open or acknowledged)."""
        return [i for i in self.incidents.values() if i.status in ACTIVE_STATUSES]

    def acknowledge(self, incident_id: str, now_ms: int, by: str) -> Incident:
        """Mark an active incident acknowledged by ``by`` (a timeline entry says who and when).

        :raises KeyError: no such incident; :raises ValueError: it is not open.
        """
        incident = self._get(incident_id)
        if incident.status != "open":
            raise ValueError(f"{incident_id} is {incident.status}; only an open incident can be acknowledged")
        incident.status = "acknowledged"
        incident.timeline.append(TimelineEntry(now_ms, f"acknowledged by {by}"))
        incident.version += 1
        return incident

    def resolve(self, incident_id: str, now_ms: int, by: str) -> Incident:
        """Resolve an active incident by hand; alerts still firing afterwards open a new incident.

        :raises KeyError: no such incident; :raises ValueError: it is not active.
        """
        incident = self._get(incident_id)
        if incident.status not in ACTIVE_STATUSES:
            raise ValueError(f"{incident_id} is {incident.status}; only an active incident can be resolved")
        incident.status, incident.resolved_at_ms = "resolved", now_ms
        incident.timeline.append(TimelineEntry(now_ms, f"resolved by {by}"))
        incident.version += 1
        return incident

    def restore(self, incidents: list[Incident]) -> None:
        """Take back incidents saved before a restart (see :class:`alerting.lifecycle.AlertStateFile`); new
        incidents continue the numbering after the highest restored id."""
        self.incidents = {i.id: i for i in incidents}
        self._counter = max((int(i.id.rsplit("-", 1)[-1]) for i in incidents), default=0)

    def _get(self, incident_id: str) -> Incident:
        if incident_id not in self.incidents:
            raise KeyError(f"no incident {incident_id!r}")
        return self.incidents[incident_id]

    def incident_of(self, fingerprint: str) -> Incident | None:
        for incident in self.incidents.values():
            if fingerprint in incident.alert_fingerprints:
                return incident
        return None

    def update(self, now_ms: int, alerts: dict[str, Alert]) -> list[Incident]:
        """Group newly firing alerts, re-rank changed incidents, resolve quiet ones.

        :param alerts: every known alert by fingerprint (the tracker's ``alerts``).
        :returns: the incidents that changed (opened, grew, merged, re-ranked or resolved).
        """
        changed: dict[str, Incident] = {}
        for alert in sorted(alerts.values(), key=lambda a: (self._dependency_order.get(a.node, -1), a.active_at_ms)):
            if alert.state != "firing":
                continue
            # Already in an active incident (an incident resolved by hand no longer holds its alerts).
            if any(alert.fingerprint in i.alert_fingerprints for i in self.open_incidents()):
                continue
            targets = [i for i in self.open_incidents() if self._related(alert.node, i)]
            if not targets:
                incident = Incident(self._new_id(now_ms), now_ms)
                self.incidents[incident.id] = incident
                incident.timeline.append(TimelineEntry(now_ms, "incident opened"))
            else:
                incident = min(targets, key=lambda i: i.opened_at_ms)
                for other in targets:
                    if other is not incident:
                        self._merge(other, incident, now_ms)
                        changed[other.id] = other
            incident.alert_fingerprints.append(alert.fingerprint)
            if alert.node not in incident.nodes:
                incident.nodes.append(alert.node)
            incident.timeline.append(TimelineEntry(
                alert.fired_at_ms or now_ms, f"{alert.name} firing on {alert.node}: {alert.annotations.get('summary', '')}"
            ))
            changed[incident.id] = incident

        for incident in self.open_incidents():
            mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
            if any(a.state != "resolved" for a in mine):
                continue
            last_end = max((a.resolved_at_ms or now_ms for a in mine), default=now_ms)
            if now_ms - last_end >= self.resolve_after_ms:
                incident.status, incident.resolved_at_ms = "resolved", now_ms
                incident.timeline.append(TimelineEntry(now_ms, "incident resolved: every alert resolved"))
                changed[incident.id] = incident

        for incident in changed.values():
            if incident.status != "merged":
                self._rerank(incident, alerts)
            incident.version += 1
        return list(changed.values())

    def _merge(self, source: Incident, into: Incident, now_ms: int) -> None:
        into.alert_fingerprints += [fp for fp in source.alert_fingerprints if fp not in into.alert_fingerprints]
        into.nodes += [n for n in source.nodes if n not in into.nodes]
        into.timeline += source.timeline
        into.timeline.append(TimelineEntry(now_ms, f"merged {source.id} into this incident"))
        into.timeline.sort(key=lambda e: e.at_ms)
        source.status, source.resolved_at_ms = "merged", now_ms
        source.timeline.append(TimelineEntry(now_ms, f"merged into {into.id}"))

    def _rerank(self, incident: Incident, alerts: dict[str, Alert]) -> None:
        mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
        evidence = [
            Evidence(a.node, a.signal, f'job:{a.signal}{{job="{a.node}"}}', a.active_at_ms, a.baseline, a.observed,
                     a.max_score if not math.isnan(a.max_score) else RULE_ALERT_SCORE)
            for a in mine
        ]
        incident.root_causes = rank_root_causes(self.topology, evidence, self.onset_tolerance_ms)
        top = incident.root_causes[0].node if incident.root_causes else (incident.nodes[0] if incident.nodes else "")
        incident.impacted_businesses = self.topology.impacted_businesses(top)
        levels = [SEVERITY_ORDER.index(a.labels.get("severity", "warning"))
                  for a in mine if a.labels.get("severity", "warning") in SEVERITY_ORDER]
        incident.severity = SEVERITY_ORDER[max(levels, default=1)]
