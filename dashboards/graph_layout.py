"""Positions for the dependency graph on a wall screen: layered by kind (businesses on top, services in
the middle, infrastructure at the bottom), stable between refreshes, for 10 to 100+ nodes.

Services are layered by their dependency order (``networkx.topological_generations``: callers above
what they call). Layers wider than ``max_per_row`` wrap onto extra rows. Within a row, nodes are ordered
by the barycenter of their callers in the rows above (Sugiyama et al. 1981's crossing-reduction
heuristic), so edges mostly run down instead of across. In rows with more than a few nodes, every
other label goes above its node, which doubles the room each label has.

Coordinates fill a ``width`` x ``height`` box whose aspect matches the wall screen's graph panel
(about 2.6:1 to 2.9:1), so Cytoscape's ``fit`` zooms to about ``panel width / width`` and the label size in
layout units maps to a predictable size on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from topology.graph import Topology

WIDTH, HEIGHT = 2400.0, 650.0
STAGGER_FROM = 5
"""Rows with more nodes than this alternate their labels below and above."""


@dataclass(frozen=True)
class GraphLayout:
    """``positions`` ``{node: (x, y)}`` (y grows downwards), ``label_above`` (nodes whose label goes above
    them) and ``font_size`` (layout units) for labels that do not overlap their neighbours'."""

    positions: dict[str, tuple[float, float]]
    label_above: frozenset[str]
    font_size: float


def _rows(topology: Topology, max_per_row: int) -> list[list[str]]:
    g = topology.graph
    order = {n: i for i, n in enumerate(g.nodes)}
    services = g.subgraph(topology.nodes("service"))
    layers = [topology.nodes("business")]
    layers += [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(services)]
    layers.append(topology.nodes("infra"))
    rows = []
    for layer in filter(None, layers):
        per_row = math.ceil(len(layer) / math.ceil(len(layer) / max_per_row))
        rows += [layer[i:i + per_row] for i in range(0, len(layer), per_row)]
    return rows


def _order(rows: list[list[str]], graph: nx.DiGraph) -> list[list[str]]:
    """Barycenter ordering, top to bottom: each node goes under the mean slot of its callers above."""
    slot: dict[str, float] = {}
    ordered = []
    for row in rows:
        def key(n: str, row: list[str] = row) -> tuple[float, int]:
            above = [slot[p] for p in graph.predecessors(n) if p in slot]
            return (sum(above) / len(above) if above else math.inf, row.index(n))
        row = sorted(row, key=key) if slot else list(row)
        for i, n in enumerate(row):
            slot[n] = (i + 0.5) / len(row)
        ordered.append(row)
    return ordered


def layered_layout(topology: Topology, width: float = WIDTH, height: float = HEIGHT,
                   max_per_row: int | None = None) -> GraphLayout:
    """Lay out ``topology`` (see the module docstring). ``max_per_row`` defaults to 10 for small graphs,
    growing to 20 for 100+ nodes."""
    g = topology.graph
    if g.number_of_nodes() == 0:
        return GraphLayout({}, frozenset(), 40.0)
    if max_per_row is None:
        max_per_row = max(10, min(20, math.ceil(math.sqrt(g.number_of_nodes() * 3))))
    rows = _order(_rows(topology, max_per_row), g)
    gap = height / (len(rows) - 1) if len(rows) > 1 else 0.0
    positions, above, room = {}, set(), math.inf
    for r, row in enumerate(rows):
        stagger = len(row) > STAGGER_FROM
        for i, name in enumerate(row):
            positions[name] = ((i + 0.5) / len(row) * width, r * gap)
            if stagger and i % 2:
                above.add(name)
        chars = max(len(g.nodes[n].get("title", n)) for n in row)
        room = min(room, (2 if stagger else 1) * width / len(row) / chars)
    # DejaVu Sans averages about 0.6 em per character; keep a tenth of each label's room free.
    font = max(24.0, min(42.0, 0.9 * room / 0.6))
    return GraphLayout(positions, frozenset(above), round(font, 1))
