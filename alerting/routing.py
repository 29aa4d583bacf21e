"""The routing tree: which receiver gets an alert, and how its notifications are grouped and timed.

Configuration (key ``route``) and matching are Alertmanager's
(https://prometheus.io/docs/alerting/latest/configuration/#route)::

    route:
      receiver: oncall              # required at the root; children inherit what they do not set
      group_by: [incident]          # default: [incident]
      group_wait: 30s               # wait before a new group's first notification (default 30s)
      group_interval: 5m            # wait before notifying a group that changed (default 5m)
      repeat_interval: 4h           # wait before re-sending an unchanged group (default 4h)
      routes:
        - receiver: dba
          matchers: ['job=~"postgres|giftdb-.*"', 'severity="critical"']
          continue: true            # keep matching the following siblings too
        - receiver: team-live
          matchers: [job=~"live|cdn-.*"]

An alert enters at the root, which matches every alert. It descends into the first child whose matchers
all hold (recursively, the deepest match wins); with ``continue: true`` a matching child does not stop the
search, so the alert can reach several receivers. When no child matches, the node itself is the match.

**Grouping in OpsWatch.** Besides its own labels, every alert carries the label ``incident`` (the id of the
incident it joined along the dependency graph), and the default ``group_by`` is ``[incident]``: one
notification group per incident, so a fault spreading across services pages once. ``group_by`` on other
labels groups as Alertmanager does, across incidents (``[alertname, job]`` gives one group per rule and
job, whatever incident the alerts are in); ``[...]`` groups by all labels (one group per alert). When
incidents merge, their alerts move to the surviving incident's group.

Without a ``route`` in the configuration, every configured receiver gets every notification (one child
route per receiver with ``continue: true``), and with no receiver the log does (:func:`default_route_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from opswatch.durations import parse_duration
from storage.matchers import Matcher

from . import matchers as am
from .notify import LOG_RECEIVER

GROUP_WAIT_SECONDS, GROUP_INTERVAL_SECONDS, REPEAT_INTERVAL_SECONDS = 30.0, 300.0, 4 * 3600.0
"""Alertmanager's defaults."""

INCIDENT_LABEL = "incident"
DEFAULT_GROUP_BY = (INCIDENT_LABEL,)
ALL_LABELS = "..."

_Seconds = Annotated[float, BeforeValidator(parse_duration)]


class RouteConfig(BaseModel):
    """One node of the ``route`` tree, as written in the configuration (durations like ``30s``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: _Seconds | None = Field(None, ge=0)
    group_interval: _Seconds | None = Field(None, gt=0)
    repeat_interval: _Seconds | None = Field(None, gt=0)
    routes: list["RouteConfig"] = Field(default_factory=list)

    @field_validator("matchers")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        am.parse_matchers(v)
        return v

    @field_validator("group_by")
    @classmethod
    def _all_alone(cls, v: list[str] | None) -> list[str] | None:
        if v and ALL_LABELS in v and len(v) > 1:
            raise ValueError(f"'{ALL_LABELS}' (group by all labels) must be the only entry of group_by, got {v}")
        return v


def check_root(route: RouteConfig, receivers: set[str]) -> None:
    """Alertmanager's checks of a configured tree, with every receiver known.

    :raises ValueError: naming the key (``route.routes.1.receiver``) and the fix.
    """
    if route.receiver is None:
        raise ValueError("route.receiver: the root route needs a receiver (it gets the alerts no child route "
                         f"matches); known receivers: {', '.join(sorted(receivers))}")
    if route.matchers:
        raise ValueError("route.matchers: the root route matches every alert; move these matchers to a child "
                         "under route.routes")
    if route.continue_:
        raise ValueError("route.continue: the root route cannot continue; remove it")

    def visit(node: RouteConfig, key: str) -> None:
        if node.receiver is not None and node.receiver not in receivers:
            raise ValueError(f"{key}.receiver: {node.receiver!r} is not a receiver; add it under receivers: or use "
                             f"one of: {', '.join(sorted(receivers))}")
        for i, child in enumerate(node.routes):
            visit(child, f"{key}.routes.{i}")

    visit(route, "route")


@dataclass
class Route:
    """A node of the tree with every setting resolved (inherited from its parent when unset).

    ``group_by`` None means all labels; durations are in ms; ``key`` is Alertmanager's route key
    (``{}`` for the root, ``{}/{job="postgres"}`` for a child); ``path`` is where it is configured.
    """

    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    key: str
    path: str
    routes: list["Route"] = field(default_factory=list)

    def match(self, labels: Mapping[str, str]) -> list["Route"]:
        """The routes ``labels`` ends at: the deepest matching node of each branch taken (Alertmanager's
        ``Route.Match``). The root always yields at least itself."""
        if not am.matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found += matched
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name ``labels``' group on this route (those of ``group_by`` it has)."""
        if self.group_by is None:
            return dict(labels)
        return {n: labels[n] for n in self.group_by if n in labels}


def build_route(config: RouteConfig, parent: Route | None = None, path: str = "route") -> Route:
    """Resolve ``config`` (already checked by :func:`check_root`) into a :class:`Route` tree."""
    def ms(seconds: float | None, attr: str, default_seconds: float) -> int:
        if seconds is not None:
            return round(seconds * 1000)
        return getattr(parent, attr) if parent else round(default_seconds * 1000)

    if config.group_by is not None:
        group_by = None if config.group_by == [ALL_LABELS] else tuple(config.group_by)
    else:
        group_by = parent.group_by if parent else DEFAULT_GROUP_BY
    matchers = tuple(am.parse_matchers(config.matchers))
    key = "{}" if parent is None else f"{parent.key}/{{{','.join(am.format_matcher(m) for m in matchers)}}}"
    route = Route(
        receiver=config.receiver or (parent.receiver if parent else LOG_RECEIVER),
        matchers=matchers,
        continue_=config.continue_,
        group_by=group_by,
        group_wait_ms=ms(config.group_wait, "group_wait_ms", GROUP_WAIT_SECONDS),
        group_interval_ms=ms(config.group_interval, "group_interval_ms", GROUP_INTERVAL_SECONDS),
        repeat_interval_ms=ms(config.repeat_interval, "repeat_interval_ms", REPEAT_INTERVAL_SECONDS),
        key=key,
        path=path,
    )
    route.routes = [build_route(c, route, f"{path}.routes.{i}") for i, c in enumerate(config.routes)]
    return route


def default_route_config(receivers: list[str]) -> RouteConfig:
    """The tree used when the configuration has no ``route``: every configured receiver gets every
    notification (one child per receiver, ``continue: true``); with none configured, the log does."""
    return RouteConfig(receiver=receivers[0] if receivers else LOG_RECEIVER,
                       routes=[RouteConfig(receiver=r, continue_=True) for r in receivers])
