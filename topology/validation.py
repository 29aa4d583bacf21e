"""Checks of a topology file's graph, reported all at once with the node, what is wrong and the fix.

The structure (keys, kinds, types) is checked by the pydantic models in :mod:`topology.graph`; this
module checks what only the whole graph shows. The layer rules:

=================  ==============================  ==================================================
a node of kind     may depend on                   why
=================  ==============================  ==================================================
``business``       ``service``, ``infra``          a business is a user journey through services; a
                                                   journey made of another journey lists its nodes
``service``        ``service``, ``infra``          a service never calls a user journey
``infra``          ``infra``                       databases, caches and queues do not call services
=================  ==============================  ==================================================

Edges therefore only go down (business -> service -> infra) or stay in a layer, so a cycle lies inside
one layer; a cycle is an error in every layer: grouping opens an incident at the deepest dependency first
and the wall screen draws services in dependency order, both of which need an acyclic graph (two services
that call each other declare the direction a user's request takes). ``router: true`` is for services only.

Errors: a ``depends_on`` naming no node (a dangling edge), a node depending on itself, a layer rule
broken, a cycle, a router that is not a service. Warnings (the graph still loads): a node listed twice
in one ``depends_on``, a node no business reaches (impact analysis maps it to no business), a business
with no dependencies.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import networkx as nx

ALLOWED_DEPENDENCIES = {"business": ("service", "infra"), "service": ("service", "infra"), "infra": ("infra",)}


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is ``error`` or ``warning``; ``key`` the dotted path in the file
    (``nodes.checkout.depends_on``); ``message`` says what is wrong and how to fix it."""

    severity: str
    key: str
    message: str

    def describe(self, source: str) -> str:
        return f"{source}: {self.key}: {self.message}"


def check_graph(nodes: dict[str, dict]) -> list[Problem]:
    """Every problem of a structurally valid topology.

    :param nodes: node name -> ``{"kind", "router", "depends_on"}`` as in the file (kinds already valid).
    :returns: errors and warnings, in file order (errors about cycles last).
    """
    problems: list[Problem] = []
    names = list(nodes)
    for name, spec in nodes.items():
        key = f"nodes.{name}.depends_on"
        kind = spec["kind"]
        seen: set[str] = set()
        for dep in spec["depends_on"]:
            if dep in seen:
                problems.append(Problem("warning", key, f"'{dep}' is listed twice; remove one"))
                continue
            seen.add(dep)
            if dep == name:
                problems.append(Problem("error", key, f"node '{name}' depends on itself; remove '{dep}'"))
            elif dep not in nodes:
                guess = difflib.get_close_matches(dep, names, n=1)
                fix = f"did you mean '{guess[0]}'?" if guess else f"add '{dep}' under nodes: or remove it"
                problems.append(Problem("error", key, f"'{dep}' is not a node (a dangling edge {name} -> {dep}); "
                                                      f"{fix} (known: {', '.join(sorted(names))})"))
            elif nodes[dep]["kind"] not in ALLOWED_DEPENDENCIES[kind]:
                problems.append(Problem("error", key, _layer_message(name, kind, dep, nodes[dep]["kind"])))
        if spec.get("router") and kind != "service":
            problems.append(Problem("error", f"nodes.{name}.router",
                                    f"router: true on a {kind}; only a service can route (remove it)"))
        if kind == "business" and not spec["depends_on"]:
            problems.append(Problem("warning", key, f"business '{name}' depends on nothing, so no fault "
                                                    f"impacts it; list the services its users go through"))
    problems += _cycles(nodes)
    problems += _unreached(nodes)
    return problems


def _layer_message(name: str, kind: str, dep: str, dep_kind: str) -> str:
    allowed = " or ".join(ALLOWED_DEPENDENCIES[kind])
    fixes = {
        ("business", "business"): f"list the services of '{dep}' that '{name}' uses instead",
        ("service", "business"): f"depend on the services of '{dep}' instead",
        ("infra", "service"): f"if '{name}' really calls '{dep}', make '{name}' a service",
        ("infra", "business"): f"if '{name}' really calls services, make it a service",
    }
    article = "an" if kind[0] in "aeiou" else "a"
    return (f"{kind} '{name}' depends on {dep_kind} '{dep}', but {article} {kind} may only depend on {allowed}; "
            f"{fixes[(kind, dep_kind)]}")


def _cycles(nodes: dict[str, dict]) -> list[Problem]:
    """One error per cycle of strongly connected nodes (self-dependencies are reported elsewhere)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((n, d) for n, spec in nodes.items() for d in spec["depends_on"] if d in nodes and d != n)
    order = {n: i for i, n in enumerate(nodes)}
    problems = []
    for component in sorted(nx.strongly_connected_components(graph), key=lambda c: min(order[n] for n in c)):
        if len(component) < 2:
            continue
        start = min(component, key=order.__getitem__)
        cycle = nx.find_cycle(graph.subgraph(component), source=start)
        loop = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
        kinds = sorted({nodes[n]["kind"] for n in component})
        layer = f"among {kinds[0]} nodes" if len(kinds) == 1 else f"across {' and '.join(kinds)}"
        problems.append(Problem("error", f"nodes.{start}.depends_on",
                                f"dependency cycle {loop} {layer}; a node cannot depend on itself through "
                                f"others: remove the edge against the direction a request takes"))
    return problems


def _unreached(nodes: dict[str, dict]) -> list[Problem]:
    businesses = [n for n, spec in nodes.items() if spec["kind"] == "business"]
    if not businesses:
        return []  # a graph of services only: impact analysis is not in use
    reached, stack = set(businesses), list(businesses)
    while stack:
        for dep in nodes[stack.pop()]["depends_on"]:
            if dep in nodes and dep not in reached:
                reached.add(dep)
                stack.append(dep)
    return [Problem("warning", f"nodes.{n}", f"no business depends on '{n}', directly or through others, so "
                                             f"its faults impact no business; add it to a business's depends_on "
                                             f"or to a service that calls it")
            for n in nodes if n not in reached]
