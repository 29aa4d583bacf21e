"""The business dependency graph: a YAML file loaded into a ``networkx.DiGraph``.

File format (see ``reference_platform.yaml``)::

    nodes:
      send_gift: {kind: business, title: Send gift, depends_on: [gateway, gift]}
      gateway:   {kind: service, router: true, depends_on: [gift]}
      gift:      {kind: service, depends_on: [postgres]}
      postgres:  {kind: infra}

Edges point from a node to what it depends on. Node attributes: ``kind`` (business/service/infra),
``title``, ``router``. Which kind may depend on which, and what else is checked: :mod:`topology.validation`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opswatch.config_errors import describe_validation_error
from opswatch.errors import ConfigError

from .validation import check_graph

log = logging.getLogger(__name__)

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

    def __init__(self, graph: nx.DiGraph, warnings: list[str] | None = None):
        self.graph = graph
        self.warnings = warnings or []  # what :meth:`load` found but loads anyway (see topology.validation)

    @classmethod
    def load(cls, path: str | Path = REFERENCE_PLATFORM) -> Topology:
        """Load and validate a topology YAML file.

        :raises ConfigError: one line per problem, each naming the file, the node's key, what is wrong and
            the fix: the file is unreadable, a key or kind is unknown, or the graph breaks a rule of
            :mod:`topology.validation` (unknown node, self-dependency, layer rule, cycle). Warnings are logged
            and kept in :attr:`warnings`.
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
        problems = check_graph({name: node.model_dump() for name, node in spec.nodes.items()})
        errors = [p.describe(str(path)) for p in problems if p.severity == "error"]
        if errors:
            raise ConfigError("\n".join(errors))
        graph = nx.DiGraph()
        for name, node in spec.nodes.items():
            graph.add_node(name, kind=node.kind, title=node.title or name, router=node.router)
        graph.add_edges_from((name, dep) for name, node in spec.nodes.items() for dep in node.depends_on)
        warnings = [p.describe(str(path)) for p in problems if p.severity == "warning"]
        for warning in warnings:
            log.warning("topology: %s", warning)
        return cls(graph, warnings)

    @classmethod
    def empty(cls) -> Topology:
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
