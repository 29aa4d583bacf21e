"""The business dependency graph: a YAML file loaded into a ``networkx.DiGraph``.

File format (see ``reference_platform.yaml``)::

    nodes:
      send_gift: {kind: business, title: Send gift, depends_on: [gateway, gift]}
      gateway:   {kind: service, router: true, depends_on: [gift]}
      gift:      {kind: service, depends_on: [postgres]}
      postgres:  {kind: infra}

Edges point from a node to what it depends on. Node attributes: ``kind`` (business/service/infra),
``title``, ``router``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opswatch.config_errors import describe_validation_error
from opswatch.errors import ConfigError

REFERENCE_PLATFORM = Path(__file__).with_name("reference_platform.yaml")

KINDS = ("business", "service", "infra")


class NodeSpec(BaseModel):
    """One node of the YAML file."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["business", "service", "infra"]
    title: str = ""
    router: bool = False
    depends_on: list[str] = Field(default_factory=list)


class TopologyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: dict[str, NodeSpec]


class Topology:
    """A validated dependency graph. ``graph`` is a ``networkx.DiGraph`` (node -> dependency)."""

    def __init__(self, graph: nx.DiGraph):
        self.graph = graph

    @classmethod
    def load(cls, path: str | Path = REFERENCE_PLATFORM) -> "Topology":
        """Load and validate a topology YAML file.

        :raises ConfigError: naming the file and the key when the file is unreadable, a key is unknown, a
            ``depends_on`` names a node that does not exist, or the graph has a cycle.
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read topology: {exc}") from exc
        try:
            spec = TopologyFile.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(path, exc, TopologyFile)) from exc
        graph = nx.DiGraph()
        for name, node in spec.nodes.items():
            graph.add_node(name, kind=node.kind, title=node.title or name, router=node.router)
        for name, node in spec.nodes.items():
            for dep in node.depends_on:
                if dep not in spec.nodes:
                    raise ConfigError(
                        f"{path}: nodes.{name}.depends_on names '{dep}', which is not a node; "
                        f"add it under nodes: or fix the name (known: {', '.join(sorted(spec.nodes))})"
                    )
                graph.add_edge(name, dep)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            loop = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
            raise ConfigError(f"{path}: dependency cycle {loop}; a node cannot depend on itself through others")
        return cls(graph)

    @classmethod
    def empty(cls) -> "Topology":
        """A graph with no nodes: every alert then groups only with alerts on the same job."""
        return cls(nx.DiGraph())

    def kind(self, node: str) -> str:
        return self.graph.nodes[node]["kind"]

    def nodes(self, kind: str | None = None) -> list[str]:
        """Node names (of one ``kind`` if given), in file order."""
        return [n for n, k in self.graph.nodes(data="kind") if kind is None or k == kind]

    def dependencies(self, node: str) -> list[str]:
        return list(self.graph.successors(node))

    def dependants(self, node: str) -> list[str]:
        return list(self.graph.predecessors(node))

    def impacted_businesses(self, node: str) -> list[str]:
        """Businesses that depend on ``node``, directly or through services, not following routers'
        edges (see the YAML file's header). A business impacts itself. Unknown nodes impact nothing."""
        if node not in self.graph:
            return []
        seen, stack = {node}, [node]
        while stack:
            current = stack.pop()
            for dependant in self.graph.predecessors(current):
                if dependant not in seen and not self.graph.nodes[dependant]["router"]:
                    seen.add(dependant)
                    stack.append(dependant)
        return [n for n in self.nodes("business") if n in seen]
