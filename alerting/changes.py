"""Change events (deploys and configuration changes) and which of them preceded an incident.

A change that lands shortly before a fault is the first suspect of every postmortem, so each incident
lists the changes on its nodes, or on what those nodes depend on, in a window before its first anomaly.
The log is append-only JSON Lines (``data_dir/changes.jsonl``, one :meth:`ChangeEvent.to_api` object a
line), so changes survive a restart; an event sent twice with the same ``id`` is stored once.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import networkx as nx

from .model import parse_rfc3339, rfc3339

CHANGE_KINDS = ("deploy", "config")

PRECEDING_WINDOW_MS = 60 * 60_000
"""How long before an incident's first anomaly a change still counts as a candidate cause (1 h: a
deploy's effect usually shows within minutes, a configuration change's can take a cache expiry)."""


@dataclass(frozen=True)
class ChangeEvent:
    """One change: ``kind`` (``deploy`` or ``config``) of ``node`` (a topology node), to ``version``
    (may be empty for a configuration change), by ``author``, at ``at_ms`` (ms since the epoch);
    ``source`` says where it came from (``api``, ``reference_platform``)."""

    id: str
    kind: str
    node: str
    version: str
    description: str
    author: str
    at_ms: int
    source: str = "api"

    def to_api(self) -> dict:
        """JSON shape: the fields with ``at_ms`` replaced by ``time`` (RFC 3339 UTC)."""
        fields = asdict(self)
        fields["time"] = rfc3339(fields.pop("at_ms"))
        return fields

    @classmethod
    def from_api(cls, fields: dict) -> "ChangeEvent":
        """The inverse of :meth:`to_api`. :raises KeyError, ValueError: a field is missing or malformed."""
        fields = dict(fields)
        at_ms = parse_rfc3339(fields.pop("time"))
        return cls(**fields, at_ms=at_ms)


def new_change_id() -> str:
    return uuid.uuid4().hex[:16]


class ChangeLog:
    """Every change event, kept in memory and appended to ``path`` (None: memory only).

    :raises ValueError: at load, when a line of ``path`` is not a change event (naming the file and line).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._events: dict[str, ChangeEvent] = {}
        if self.path is not None and self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    event = ChangeEvent.from_api(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{self.path}:{number}: not a change event ({exc}); "
                                     f"fix or delete the line") from exc
                self._events[event.id] = event

    def add(self, event: ChangeEvent) -> tuple[ChangeEvent, bool]:
        """Record ``event`` unless one with its id exists; returns the stored event and whether it is new.

        :raises OSError: the log file cannot be written (the event is then not recorded).
        """
        with self._lock:
            if event.id in self._events:
                return self._events[event.id], False
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(json.dumps(event.to_api(), separators=(",", ":")) + "\n")
            self._events[event.id] = event
            return event, True

    def events(self, node: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> list[ChangeEvent]:
        """Changes (of ``node`` when given) with ``start_ms <= at_ms <= end_ms``, oldest first."""
        with self._lock:
            found = list(self._events.values())
        return sorted((e for e in found if (node is None or e.node == node)
                       and (start_ms is None or e.at_ms >= start_ms) and (end_ms is None or e.at_ms <= end_ms)),
                      key=lambda e: (e.at_ms, e.id))

    def preceding(self, graph: nx.DiGraph, nodes: list[str], onset_ms: int,
                  window_ms: int = PRECEDING_WINDOW_MS) -> list[dict]:
        """Changes in ``[onset_ms - window_ms, onset_ms]`` on ``nodes`` or their dependencies (transitively,
        edges of ``graph`` point from a node to what it depends on), newest first.

        :returns: ``ChangeEvent.to_api()`` dicts plus ``seconds_before_onset`` and ``relation`` (why it is
            listed: the node itself, or whose dependency it is).
        """
        related: dict[str, str] = {}
        for node in nodes:
            related.setdefault(node, f"on {node}, a node of this incident")
        for node in nodes:
            for dep in sorted(nx.descendants(graph, node)) if node in graph else ():
                related.setdefault(dep, f"on {dep}, a dependency of {node}")
        out = []
        for event in self.events(start_ms=onset_ms - window_ms, end_ms=onset_ms):
            if event.node in related:
                out.append({**event.to_api(), "seconds_before_onset": (onset_ms - event.at_ms) / 1000,
                            "relation": related[event.node]})
        return sorted(out, key=lambda c: c["seconds_before_onset"])
