"""The routing tree: which receiver gets an alert, and how its notifications are grouped and timed.

Configuration (key ``route``) and matching are Alertmanager's
(https://prometheus.io/docs/alerting/latest/configuration/#route)::

    route:
      receiver: oncall              # required at the root; children inherit what they do not set
      group_by: [incident]          # default: [incident]
      group_wait: 5s                # wait before a new group's first notification (default 5s)
      group_interval: 5m            # wait before notifying a group that changed (default 5m)
      repeat_interval: 4h           # wait before re-sending an unchanged group (default 4h)
      routes:
        - receiver: dba
          matchers: ['job=~"postgres|giftdb-.*"', 'severity="critical"']
          continue: true            # keep matching the following siblings too
        - receiver: team-live
          matchers: [job=~"live|cdn-.*"]
          mute_time_intervals: [live-rehearsal]   # names from the top-level time_intervals (below)
          active_time_intervals: [business-hours] # notify only inside these

    time_intervals:                 # top level, beside route:
      - name: business-hours
        time_intervals: [{weekdays: ["monday:friday"], times: [{start_time: "09:00", end_time: "17:00"}]}]

An alert enters at the root, which matches every alert. It descends into the first child whose matchers
all hold (recursively, the deepest match wins); with ``continue: true`` a matching child does not stop the
search, so the alert can reach several receivers. When no child matches, the node itself is the match.

**Grouping in OpsWatch.** Besides its own labels, every alert carries the label ``incident`` (the id of the
incident it joined along the dependency graph), and the default ``group_by`` is ``[incident]``: one
notification group per incident, so a fault spreading across services pages once. ``group_by`` on other
labels groups as Alertmanager does, across incidents (``[alertname, job]`` gives one group per rule and
job, whatever incident the alerts are in); ``[...]`` groups by all labels (one group per alert). When
incidents merge, their alerts move to the surviving incident's group.

**Time intervals** (Alertmanager's ``mute_time_intervals`` / ``active_time_intervals``, UTC; the windows are
:mod:`detection.time_intervals`): a route is muted while one of its mute intervals holds, or while none of
its active intervals does. A muted route sends nothing but otherwise acts normally (its groups keep their
timers, and matching still stops there without ``continue``); what was held back goes out at the group's first
flush after the mute ends. As in Alertmanager the root may have neither, and children do not inherit them.

Without a ``route`` in the configuration, every configured receiver gets every notification (one child
route per receiver with ``continue: true``), and with no receiver the log does (:func:`default_route_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from detection.time_intervals import TimeInterval, TimeIntervalSpec

from opswatch.durations import parse_duration
from storage.matchers import Matcher

from . import matchers as am
from .notify import LOG_RECEIVER

GROUP_WAIT_SECONDS, GROUP_INTERVAL_SECONDS, REPEAT_INTERVAL_SECONDS = 5.0, 300.0, 4 * 3600.0
"""Defaults: Alertmanager's, except ``group_wait`` (Alertmanager: 30 s). Alertmanager waits for the other alerts of
a fault to land in a label group before its first page; an OpsWatch incident gathers them along the dependency
graph and keeps growing after its page (changes go out every ``group_interval``), and of alerts that fire
together the deepest dependency opens it. The wait only has to cover one evaluation's burst: 5 s, one scrape at
the default interval, so a page lands within 20 s of a fault's start at 5 s scrapes (issue 6's goal) instead of
30 s later. Set ``group_wait: 30s`` for Alertmanager's timing."""

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
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
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


class NamedTimeInterval(BaseModel):
    """One entry of the top-level ``time_intervals``: a ``name`` routes refer to and its recurring windows."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    time_intervals: list[TimeIntervalSpec] = Field(min_length=1)

    def windows(self) -> tuple[TimeInterval, ...]:
        return tuple(TimeInterval.from_spec(spec) for spec in self.time_intervals)


def check_root(route: RouteConfig, receivers: set[str], time_intervals: set[str] = frozenset()) -> None:
    """Alertmanager's checks of a configured tree, with every receiver and time interval name known.

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
    for attr in ("mute_time_intervals", "active_time_intervals"):
        if getattr(route, attr):
            raise ValueError(f"route.{attr}: the root route cannot have time intervals; set them on a child "
                             "under route.routes")

    def visit(node: RouteConfig, key: str) -> None:
        for attr in ("mute_time_intervals", "active_time_intervals"):
            unknown = [n for n in getattr(node, attr) if n not in time_intervals]
            if unknown:
                raise ValueError(f"{key}.{attr}: {unknown[0]!r} is not a time interval; define it under the "
                                 f"top-level time_intervals (known: {', '.join(sorted(time_intervals)) or 'none'})")
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
    mute_intervals: dict[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    active_intervals: dict[str, tuple[TimeInterval, ...]] = field(default_factory=dict)

    def muted_by(self, now_ms: int) -> list[str]:
        """Names of the time intervals muting this route at ``now_ms``: its mute intervals that hold, or all its
        active intervals when none holds (Alertmanager's ``mutedBy``); empty when it may notify."""
        def holds(windows: tuple[TimeInterval, ...]) -> bool:
            return any(w.contains(now_ms) for w in windows)

        muted = [name for name, windows in self.mute_intervals.items() if holds(windows)]
        if self.active_intervals and not any(holds(w) for w in self.active_intervals.values()):
            muted += list(self.active_intervals)
        return muted

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


def build_route(config: RouteConfig, parent: Route | None = None, path: str = "route",
                time_intervals: Mapping[str, tuple[TimeInterval, ...]] | None = None) -> Route:
    """Resolve ``config`` (already checked by :func:`check_root`) into a :class:`Route` tree; ``time_intervals``
    maps the names routes refer to to their windows (:meth:`NamedTimeInterval.windows`)."""
    time_intervals = time_intervals or {}
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
        mute_intervals={n: time_intervals[n] for n in config.mute_time_intervals},
        active_intervals={n: time_intervals[n] for n in config.active_time_intervals},
    )
    route.routes = [build_route(c, route, f"{path}.routes.{i}", time_intervals) for i, c in enumerate(config.routes)]
    return route


def default_route_config(receivers: list[str]) -> RouteConfig:
    """The tree used when the configuration has no ``route``: every configured receiver gets every
    notification (one child per receiver, ``continue: true``); with none configured, the log does."""
    return RouteConfig(receiver=receivers[0] if receivers else LOG_RECEIVER,
                       routes=[RouteConfig(receiver=r, continue_=True) for r in receivers])
