"""Health states for the wall screen, from one pipeline snapshot and the topology.

States, worst first: ``critical`` (red), ``down`` (target not scraped), ``warning`` (amber), ``nodata``
(grey: no data or stale data, never shown as healthy), ``ok`` (green).

A business is ``critical`` while an active incident (open or acknowledged) impacts it, ``warning`` while
an alert is pending or firing on a node whose fault would impact it (:meth:`Topology.impacted_businesses`,
which does not follow routers' edges), ``nodata`` when the snapshot is stale or none of the nodes it
depends on has data, else ``ok``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import networkx as nx

from alerting.incidents import ACTIVE_STATUSES
from topology.graph import Topology


def active_incidents(snapshot: Any) -> list[dict]:
    """The snapshot's open and acknowledged incidents, newest first."""
    return sorted((i for i in snapshot.incidents if i["status"] in ACTIVE_STATUSES), key=lambda i: i["opened_at"], reverse=True)


def top_cause(incident: dict) -> str | None:
    return incident["root_causes"][0]["node"] if incident["root_causes"] else None


def node_health(snapshot: Any, stale: bool) -> dict[str, str]:
    """``{node: state}`` for every job in the snapshot (nodes without data are absent: ``nodata``)."""
    if stale:
        return {}
    health: dict[str, str] = {}
    for job, values in snapshot.signals.items():
        up = values.get("up", math.nan)
        health[job] = "down" if up == 0 else "nodata" if math.isnan(up) else "ok"
    for alert in snapshot.alerts:
        job = alert.get("node") or alert["labels"].get("job", "")  # external alerts map by other labels
        if alert["state"] == "firing":
            health[job] = "critical"
        elif alert["state"] == "pending" and health.get(job) in ("ok", "nodata", None):
            health[job] = "warning"
    return health


@dataclass(frozen=True)
class BusinessState:
    """One business tile: ``state``, a short ``note`` (why), and the incident behind a red tile."""

    name: str
    title: str
    state: str
    note: str
    incident: str | None = None


class HealthModel:
    """Precomputed reach of each node (which businesses its fault impacts) for one topology."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self.members: dict[str, set[str]] = defaultdict(set)  # business -> nodes whose fault impacts it
        for node in topology.graph.nodes:
            for business in topology.impacted_businesses(node):
                self.members[business].add(node)

    def businesses(self, snapshot: Any, stale: bool, only: str | None = None) -> list[BusinessState]:
        """Tiles in topology order (only ``only`` when given)."""
        health = node_health(snapshot, stale)
        incidents = active_incidents(snapshot)
        alerting: dict[str, list[dict]] = defaultdict(list)
        for alert in snapshot.alerts:
            if alert["state"] in ("pending", "firing"):
                alerting[alert.get("node") or alert["labels"].get("job", "")].append(alert)
        tiles = []
        for b in self.topology.nodes("business"):
            if only and b != only:
                continue
            title = self.topology.graph.nodes[b]["title"]
            members = self.members[b]
            hit = [i for i in incidents if b in i["impacted_businesses"]]
            warned = sorted(n for n in members if alerting.get(n))
            if stale:
                tiles.append(BusinessState(b, title, "nodata", "NO FRESH DATA"))
            elif hit:
                i = hit[-1]  # the oldest active incident that impacts it
                ack = " · ACK" if i["status"] == "acknowledged" else ""
                tiles.append(BusinessState(b, title, "critical", f"cause {top_cause(i) or '?'}{ack}", i["id"]))
            elif warned:
                tiles.append(BusinessState(b, title, "warning", f"{warned[0]}: {alerting[warned[0]][0]['labels'].get('alertname', 'alert')}"))
            elif not any(health.get(n, "nodata") != "nodata" for n in members):
                tiles.append(BusinessState(b, title, "nodata", "no data"))
            else:
                tiles.append(BusinessState(b, title, "ok", "healthy"))
        return tiles

    def scope(self, business: str | None) -> set[str] | None:
        """Nodes shown when the wall screen is filtered to ``business``: it and everything it depends on
        (through routers too, since they carry its traffic); None means every node."""
        if not business or business not in self.topology.graph:
            return None
        return {business} | nx.descendants(self.topology.graph, business)


def track_changes(previous: dict[str, list], states: dict[str, str], now_ms: int) -> dict[str, list]:
    """Track when each tile last changed state: ``{name: [state, changed_at_ms]}``. A tile seen for the
    first time has no change (changed_at 0); a tile flashes while ``now - changed_at < flash_ms``."""
    out = {}
    for name, state in states.items():
        before = previous.get(name)
        if before is None:
            out[name] = [state, 0]
        elif before[0] != state:
            out[name] = [state, now_ms]
        else:
            out[name] = before
    return out


def flashing(track: dict[str, list], now_ms: int, flash_ms: int) -> set[str]:
    return {name for name, (_, at) in track.items() if at and now_ms - at < flash_ms}
