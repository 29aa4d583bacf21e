"""Legitimate surges: load and change that are not faults, recorded in the ground truth.

Kinds (``SURGE_KINDS``; the record's ``kind`` is ``"surge:" + name``):

- ``celebrity_live`` (target ``live``; params ``factor`` = 4, ``room_id`` = 1):
  a celebrity goes live in ``room_id``: live joins, playing viewers and gift
  orders are multiplied by ``factor``, aimed at that room.
- ``marketing_push`` (target ``notification``; ``factor`` = 5): a campaign
  multiplies the push notifications sent by ``factor`` (and brings users back
  into the app: feed reads rise by a quarter of the extra factor).
- ``deploy`` (target: a service of ``graph.DEPLOYABLE``): a clean rolling
  restart of one service to the next version.  The new instance takes the
  traffic while the old one finishes its requests; counters restart from 0, as
  in a real process; the record's params name ``from_version`` and ``to_version``.

Ground-truth record (same log as faults, see :mod:`.groundtruth`)::

    {"id": "c0ffee...", "kind": "surge:celebrity_live", "target": "live",
     "start": "2026-11-22T20:00:00.000Z", "end": "2026-11-22T21:30:00.000Z",
     "params": {"factor": 4.0, "room_id": 1}, "fault": false}

Surges start through :class:`SurgeController` (the control API ``POST
/surges``) or from the weekly :func:`calendar` (``--surges calendar``), a pure
function of simulated time and seed.  What a surge does to traffic is decided
by the traffic generators, which read ``SurgeController.active()``; what it
does to the platform (a campaign, a restart) is a hook the platform registers.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .faults import MAX_DURATION_SECONDS, ParamSpec
from .graph import DEPLOYABLE
from .groundtruth import GroundTruth, rfc3339
from .shape import DAY, weekday

PREFIX = "surge:"
#: How a platform starts surges by itself: never, or from the :func:`calendar`.
SURGE_MODES = ("none", "calendar")


@dataclass(frozen=True)
class SurgeKind:
    """A surge kind: ``name``, one-line ``description``, valid ``targets`` (the first is the
    default) and ``params`` specs."""

    name: str
    description: str
    targets: tuple[str, ...]
    params: dict[str, ParamSpec] = field(default_factory=dict)


SURGE_KINDS: dict[str, SurgeKind] = {
    "celebrity_live": SurgeKind(
        "celebrity_live", "a celebrity goes live: live joins, viewers and gift orders x factor (default 4)",
        ("live",), {"factor": ParamSpec(4.0, 1.0, 50.0), "room_id": ParamSpec(1, 1, 40, integer=True)}),
    "marketing_push": SurgeKind(
        "marketing_push", "a marketing campaign: push notifications sent x factor (default 5)",
        ("notification",), {"factor": ParamSpec(5.0, 1.0, 100.0)}),
    "deploy": SurgeKind(
        "deploy", "a clean rolling restart of one service to its next version", DEPLOYABLE),
}


@dataclass(frozen=True)
class Surge:
    """One surge; ``start``/``end`` are epoch seconds from the controller's clock."""

    id: str
    kind: str
    target: str
    start: float
    end: float
    params: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The ground-truth record (``"fault": false``, ``kind`` prefixed with ``surge:``)."""
        return {"id": self.id, "kind": PREFIX + self.kind, "target": self.target, "start": rfc3339(self.start),
                "end": rfc3339(self.end), "params": dict(self.params), "fault": False}


Hook = Callable[[Surge], Awaitable[dict[str, Any]]]


def surge_kind(kind: Any) -> SurgeKind:
    """The kind named ``kind`` (with or without the ``surge:`` prefix); ValueError lists the valid ones."""
    name = kind[len(PREFIX):] if isinstance(kind, str) and kind.startswith(PREFIX) else kind
    if not isinstance(name, str) or name not in SURGE_KINDS:
        raise ValueError(f"unknown surge kind {kind!r}; valid kinds: {', '.join(sorted(SURGE_KINDS))}")
    return SURGE_KINDS[name]


class SurgeController:
    """Starts surges, records them in ``truth`` and answers which are active.

    ``clock``: epoch seconds.  ``hooks``: kind name -> async callable run when a
    surge of that kind starts (before it is recorded); it returns params to add
    to the record, and an exception from it aborts the surge (nothing recorded).
    """

    def __init__(self, truth: GroundTruth, clock: Callable[[], float] = time.time) -> None:
        self.truth = truth
        self.clock = clock
        self.hooks: dict[str, Hook] = {}
        self._lock = threading.Lock()
        self._surges: list[Surge] = []

    def plan(self, kind: str, target: str | None, duration_seconds: float,
             params: dict[str, Any] | None = None) -> Surge:
        """Validate and build a surge starting now, without starting it.

        Raises ValueError for an unknown kind or target, a duration that is not a
        number in (0, 86400], or bad params.
        """
        spec = surge_kind(kind)
        target = spec.targets[0] if target is None else target
        if target not in spec.targets:
            raise ValueError(f"unknown target {target!r} for surge kind {spec.name!r}; "
                             f"valid targets: {', '.join(spec.targets)}")
        if (isinstance(duration_seconds, bool) or not isinstance(duration_seconds, (int, float))
                or not math.isfinite(duration_seconds) or not 0 < duration_seconds <= MAX_DURATION_SECONDS):
            raise ValueError(f"duration_seconds must be a number in (0, {MAX_DURATION_SECONDS:g}], "
                             f"got {duration_seconds!r}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValueError(f"params must be an object, got {params!r}")
        merged: dict[str, Any] = {k: s.default for k, s in spec.params.items()}
        for name, value in params.items():
            if name not in spec.params:
                raise ValueError(f"unknown param {name!r} for surge kind {spec.name!r}; "
                                 f"valid params: {', '.join(sorted(spec.params)) or '(none)'}")
            merged[name] = spec.params[name].check(name, value)
        start = math.floor(float(self.clock()) * 1000.0) / 1000.0  # active at once, millisecond precision
        return Surge(uuid.uuid4().hex[:16], spec.name, target, start, start + float(duration_seconds), merged)

    async def start(self, kind: str, target: str | None, duration_seconds: float,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a surge now (see :meth:`plan` for errors), run its hook, record it; returns the record."""
        surge = self.plan(kind, target, duration_seconds, params)
        hook = self.hooks.get(surge.kind)
        if hook is not None:
            extra = await hook(surge)
            if extra:
                surge = Surge(surge.id, surge.kind, surge.target, surge.start, surge.end, {**surge.params, **extra})
        with self._lock:
            self._surges.append(surge)
        record = surge.record()
        self.truth.append(record)
        return record

    def active(self, kind: str | None = None) -> list[Surge]:
        """Surges active now (``start <= clock() < end``), optionally of one kind (name without prefix)."""
        now = self.clock()
        with self._lock:
            return [s for s in self._surges if s.start <= now < s.end and (kind is None or s.kind == kind)]

    def factor(self, kind: str) -> float:
        """The largest ``factor`` param of the active surges of ``kind`` (1.0 when none)."""
        return max([float(s.params.get("factor", 1.0)) for s in self.active(kind)], default=1.0)


@dataclass(frozen=True)
class PlannedSurge:
    """A surge of the calendar: ``start`` and ``seconds`` are in simulated time."""

    kind: str
    target: str
    start: float
    seconds: float
    params: dict[str, Any]


def calendar(start: float, end: float, seed: int) -> list[PlannedSurge]:
    """The surges whose simulated start lies in ``[start, end)`` (epoch seconds, UTC), by start.

    Every day a marketing push at 12:30 (15 min, x5); a celebrity live at 20:00
    (90 min, x4; every Friday to Sunday, other days with probability 0.3); on
    Monday to Thursday a deploy at 10:00 and 15:00 (10 min) of a service drawn
    from ``DEPLOYABLE``.  The draws depend only on ``seed`` and the day.
    """
    plans: list[PlannedSurge] = []
    first_day = math.floor(start / DAY)
    for day in range(first_day, math.floor(end / DAY) + 1):
        midnight = day * DAY
        dow = math.floor(weekday(midnight + 1))
        rng = random.Random(f"{seed}:calendar:{day}")
        day_plans = [PlannedSurge("marketing_push", "notification", midnight + 12.5 * 3600, 15 * 60,
                                  {"factor": 5.0})]
        if dow >= 4 or rng.random() < 0.3:
            day_plans.append(PlannedSurge("celebrity_live", "live", midnight + 20 * 3600, 90 * 60,
                                          {"factor": 4.0, "room_id": 1}))
        if dow <= 3:
            for hour in (10, 15):
                day_plans.append(PlannedSurge("deploy", rng.choice(DEPLOYABLE), midnight + hour * 3600, 10 * 60, {}))
        plans += [p for p in day_plans if start <= p.start < end]
    return sorted(plans, key=lambda p: p.start)
