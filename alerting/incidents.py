"""Grouping alerts into incidents along the dependency graph, and the incident lifecycle.

A firing alert joins an open incident when its node is connected in the dependency graph (one depends on
the other, directly or transitively) to the node of one of the incident's alerts that is still pending or
firing: a fault spreads from a dependency to its dependants, so alerts on connected nodes that overlap in
time belong together. An alert on a node the incident already holds joins it even when that node's alerts
have resolved, so a flapping symptom does not open a second incident. Connection alone is not enough: in
a connected graph almost every node reaches every other through a shared caller (the gateway), so an
incident whose alerts have all resolved must not absorb a new fault elsewhere while it waits out
``resolve_after_ms``. When an alert connects several open incidents they merge into the oldest. An
incident resolves once none of its alerts has been pending or firing for ``resolve_after_ms``. Every change re-ranks the root cause and, with a change log,
lists the deploys and configuration changes that preceded the first anomaly.

People act on an incident through :meth:`IncidentManager.acknowledge`, :meth:`~IncidentManager.assign`,
:meth:`~IncidentManager.comment` and :meth:`~IncidentManager.resolve`; each adds a timeline entry saying
who did what and when (ms since the epoch, shown in UTC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import networkx as nx

from topology.graph import Topology
from topology.rca import Candidate, Evidence, rank_root_causes

from .changes import PRECEDING_WINDOW_MS, ChangeLog
from .model import Alert

SEVERITY_ORDER = ("info", "warning", "critical")

ACTIVE_STATUSES = ("open", "acknowledged")
"""An acknowledged incident is still active: alerts keep joining it and it resolves like an open one."""

# A threshold-rule alert has no detector score; for ranking, a firing rule counts as a clear departure,
# the score an anomaly alert reaches at twice its threshold of 5.
RULE_ALERT_SCORE = 10.0


TIMELINE_KINDS = ("opened", "alert", "page", "acknowledged", "assigned", "comment", "resolved", "merged", "note")


@dataclass
class TimelineEntry:
    """``at_ms``: ms since the epoch; ``kind``: one of :data:`TIMELINE_KINDS`; ``by``: the person who acted
    (None for OpsWatch's own entries)."""

    at_ms: int
    text: str
    kind: str = "note"
    by: str | None = None


@dataclass
class Incident:
    """One fault: its alerts (by fingerprint), nodes, ranked root causes and impacted businesses.

    ``status``: ``open``, ``acknowledged``, ``resolved`` or ``merged``; times are ms since the epoch; ``version`` grows on each change.
    ``first_anomaly_ms``/``first_alert_ms``: earliest ``activeAt``/``startsAt`` of its alerts; ``paged_at_ms``:
    its first notification; ``preceding_changes``: :meth:`alerting.changes.ChangeLog.preceding` of its nodes.
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
    first_anomaly_ms: int | None = None
    first_alert_ms: int | None = None
    paged_at_ms: int | None = None
    acknowledged_at_ms: int | None = None
    acknowledged_by: str | None = None
    assignee: str | None = None
    resolved_by: str | None = None
    preceding_changes: list[dict] = field(default_factory=list)

    @property
    def title(self) -> str:
        cause = self.root_causes[0].node if self.root_causes else (self.nodes[0] if self.nodes else "?")
        return f"{cause}: {len(self.alert_fingerprints)} alerts on {len(self.nodes)} nodes"


class IncidentManager:
    """Owns every incident. Call :meth:`update` after each alert evaluation.

    :param topology: the dependency graph used for grouping, root cause and impact.
    :param resolve_after_ms: quiet time (no pending or firing alert) before an incident resolves.
    :param onset_tolerance_ms: passed to :func:`topology.rca.rank_root_causes`.
    :param changes: deploys and configuration changes, listed in the incidents they preceded
        (within ``change_window_ms`` of the first anomaly).
    """

    def __init__(self, topology: Topology, resolve_after_ms: int = 300_000, onset_tolerance_ms: int = 5_000,
                 changes: ChangeLog | None = None, change_window_ms: int = PRECEDING_WINDOW_MS):
        self.topology = topology
        self.resolve_after_ms = resolve_after_ms
        self.onset_tolerance_ms = onset_tolerance_ms
        self.changes = changes
        self.change_window_ms = change_window_ms
        self.incidents: dict[str, Incident] = {}
        self._closure = {n: nx.descendants(topology.graph, n) | nx.ancestors(topology.graph, n) | {n}
                         for n in topology.graph}
        # Dependencies before dependants: of several alerts firing together, the deepest opens the incident
        # and the others join it, instead of each opening one that is merged a moment later.
        self._dependency_order = {n: i for i, n in enumerate(reversed(list(nx.topological_sort(topology.graph))))}
        self._counter = 0

    def _related(self, node: str, incident: Incident, alerts: dict[str, Alert]) -> bool:
        """Whether an alert on ``node`` joins ``incident``: the same node, or connected to the node of one of its
        alerts that is not resolved (see the module docstring)."""
        if node in incident.nodes:
            return True
        related = self._closure.get(node, {node})
        return any(a.node in related for fp in incident.alert_fingerprints
                   if (a := alerts.get(fp)) is not None and a.state != "resolved")

    def _new_id(self, now_ms: int) -> str:
        self._counter += 1
        day = datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime("%Y%m%d")
        return f"INC-{day}-{self._counter:04d}"

    def open_incidents(self) -> list[Incident]:
        """The active incidents (open or acknowledged)."""
        return [i for i in self.incidents.values() if i.status in ACTIVE_STATUSES]

    def acknowledge(self, incident_id: str, now_ms: int, by: str) -> Incident:
        """Mark an open incident acknowledged by ``by``.

        :raises KeyError: no such incident; :raises ValueError: it is not open, or ``by`` is empty.
        """
        incident = self._get(incident_id)
        by = _who(by)
        if incident.status != "open":
            raise ValueError(f"{incident_id} is {incident.status}; only an open incident can be acknowledged")
        incident.status, incident.acknowledged_at_ms, incident.acknowledged_by = "acknowledged", now_ms, by
        return self._log(incident, TimelineEntry(now_ms, f"acknowledged by {by}", "acknowledged", by))

    def assign(self, incident_id: str, now_ms: int, by: str, assignee: str) -> Incident:
        """Make ``assignee`` (a person) the owner of an incident, open or resolved (the postmortem's owner).

        :raises KeyError: no such incident; :raises ValueError: it was merged, or a name is empty.
        """
        incident = self._get(incident_id)
        by, assignee = _who(by), _who(assignee, "assignee")
        self._not_merged(incident)
        incident.assignee = assignee
        return self._log(incident, TimelineEntry(now_ms, f"assigned to {assignee} by {by}", "assigned", by))

    def comment(self, incident_id: str, now_ms: int, by: str, text: str) -> Incident:
        """Add ``by``'s comment to the timeline, open or resolved.

        :raises KeyError: no such incident; :raises ValueError: it was merged, or ``by``/``text`` is empty.
        """
        incident = self._get(incident_id)
        by = _who(by)
        if not text or not text.strip():
            raise ValueError("text: a comment needs some text")
        self._not_merged(incident)
        return self._log(incident, TimelineEntry(now_ms, f"{by}: {text.strip()}", "comment", by))

    def resolve(self, incident_id: str, now_ms: int, by: str) -> Incident:
        """Resolve an active incident by hand; alerts still firing afterwards open a new incident.

        :raises KeyError: no such incident; :raises ValueError: it is not active, or ``by`` is empty.
        """
        incident = self._get(incident_id)
        by = _who(by)
        if incident.status not in ACTIVE_STATUSES:
            raise ValueError(f"{incident_id} is {incident.status}; only an active incident can be resolved")
        incident.status, incident.resolved_at_ms, incident.resolved_by = "resolved", now_ms, by
        return self._log(incident, TimelineEntry(now_ms, f"resolved by {by}", "resolved", by))

    def record_page(self, incident: Incident, now_ms: int) -> bool:
        """Note the incident's first notification (its page); later ones change nothing. Returns whether
        this was the first."""
        if incident.paged_at_ms is not None:
            return False
        incident.paged_at_ms = now_ms
        self._log(incident, TimelineEntry(now_ms, "first notification (page) queued for the receivers", "page"))
        return True

    def attach_changes(self, incident: Incident) -> bool:
        """Re-list the changes that preceded ``incident`` (for a change that arrived after it opened).
        Returns whether the list changed (the root-cause reasons are then updated too)."""
        before = incident.preceding_changes
        self._list_changes(incident)
        if incident.preceding_changes == before:
            return False
        incident.version += 1
        return True

    @staticmethod
    def _log(incident: Incident, entry: TimelineEntry) -> Incident:
        incident.timeline.append(entry)
        incident.version += 1
        return incident

    @staticmethod
    def _not_merged(incident: Incident) -> None:
        if incident.status == "merged":
            merged_into = next((e.text.removeprefix("merged into ") for e in reversed(incident.timeline)
                                if e.kind == "merged"), "another incident")
            raise ValueError(f"{incident.id} was merged into {merged_into}; act on that one")

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
            targets = [i for i in self.open_incidents() if self._related(alert.node, i, alerts)]
            if not targets:
                incident = Incident(self._new_id(now_ms), now_ms)
                self.incidents[incident.id] = incident
                incident.timeline.append(TimelineEntry(now_ms, "incident opened", "opened"))
            else:
                incident = min(targets, key=lambda i: i.opened_at_ms)
                for other in targets:
                    if other is not incident:
                        self._merge(other, incident, now_ms)
                        changed[other.id] = other
            incident.alert_fingerprints.append(alert.fingerprint)
            if alert.node not in incident.nodes:
                incident.nodes.append(alert.node)
            incident.first_anomaly_ms = _earliest(incident.first_anomaly_ms, alert.active_at_ms)
            incident.first_alert_ms = _earliest(incident.first_alert_ms, alert.fired_at_ms or now_ms)
            incident.timeline.append(TimelineEntry(
                alert.fired_at_ms or now_ms, f"{alert.name} firing on {alert.node}: {alert.annotations.get('summary', '')}",
                "alert"))
            changed[incident.id] = incident

        for incident in self.open_incidents():
            mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
            if any(a.state != "resolved" for a in mine):
                continue
            last_end = max((a.resolved_at_ms or now_ms for a in mine), default=now_ms)
            if now_ms - last_end >= self.resolve_after_ms:
                incident.status, incident.resolved_at_ms = "resolved", now_ms
                incident.timeline.append(TimelineEntry(now_ms, "incident resolved: every alert resolved", "resolved"))
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
        into.timeline.append(TimelineEntry(now_ms, f"merged {source.id} into this incident", "merged"))
        into.timeline.sort(key=lambda e: e.at_ms)
        for name in ("first_anomaly_ms", "first_alert_ms", "paged_at_ms"):
            setattr(into, name, _earliest(getattr(into, name), getattr(source, name)))
        into.assignee = into.assignee or source.assignee
        source.status, source.resolved_at_ms = "merged", now_ms
        source.timeline.append(TimelineEntry(now_ms, f"merged into {into.id}", "merged"))

    def _rerank(self, incident: Incident, alerts: dict[str, Alert]) -> None:
        mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
        evidence = [
            Evidence(a.node, a.signal, f'job:{a.signal}{{job="{a.node}"}}', a.active_at_ms, a.baseline, a.observed,
                     a.max_score if not math.isnan(a.max_score) else RULE_ALERT_SCORE)
            for a in mine
        ]
        incident.root_causes = rank_root_causes(self.topology, evidence, self.onset_tolerance_ms)
        self._list_changes(incident)
        top = incident.root_causes[0].node if incident.root_causes else (incident.nodes[0] if incident.nodes else "")
        incident.impacted_businesses = self.topology.impacted_businesses(top)
        levels = [SEVERITY_ORDER.index(a.labels.get("severity", "warning"))
                  for a in mine if a.labels.get("severity", "warning") in SEVERITY_ORDER]
        incident.severity = SEVERITY_ORDER[max(levels, default=1)]

    def _list_changes(self, incident: Incident) -> None:
        """Fill ``preceding_changes`` and give each root-cause candidate that was changed a reason saying so."""
        if self.changes is None or incident.first_anomaly_ms is None:
            return
        incident.preceding_changes = self.changes.preceding(self.topology.graph, incident.nodes,
                                                            incident.first_anomaly_ms, self.change_window_ms)
        for candidate in incident.root_causes:
            candidate.reasons = [r for r in candidate.reasons if not r.startswith(CHANGE_REASON)]
            candidate.reasons += [
                f"{CHANGE_REASON} {c['kind']}{' to ' + c['version'] if c['version'] else ''} by {c['author']} "
                f"at {c['time']}, {c['seconds_before_onset']:.0f} s before the first anomaly: {c['description']}"
                for c in incident.preceding_changes if c["node"] == candidate.node]


CHANGE_REASON = "changed shortly before:"


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _who(name: str | None, field_name: str = "by") -> str:
    """A person's name for the timeline. :raises ValueError: empty (naming the field)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{field_name}: name the person (a non-empty string)")
    return name.strip()
