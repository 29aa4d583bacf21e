"""What the dashboards read, handed over by the application shell (``opswatch/server.py``).

The dashboards read the pipeline's latest snapshot, the time-series store (by metric name and labels,
through :class:`storage.base.Store`) and the topology. The only write is an incident action
(acknowledge/resolve), through ``incident_action``, which checks the caller's token.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from prometheus_client import CollectorRegistry, Histogram

from storage.base import Store
from topology.graph import Topology

from .kpis import KpiSpec, load_kpis


class IncidentAction(Protocol):
    def __call__(self, incident_id: str, action: str, by: str, token: str) -> dict:
        """Apply ``action`` (``acknowledge`` or ``resolve``) as ``by``; returns the incident's report.

        :raises PermissionError: token missing, wrong, or write actions disabled;
        :raises KeyError: no such incident; :raises ValueError: the action does not apply (already resolved).
        """


@dataclass
class Sources:
    """Inputs of every dashboard.

    :param snapshot: returns the latest pipeline snapshot (attributes ``evaluated_at_ms``, ``signals``,
        ``scores``, ``alerts``, ``incidents``, ``targets``; see ``opswatch.pipeline.Snapshot``).
    :param clock: seconds since the epoch (injected in tests).
    :param stale_after_seconds: data older than this is shown as stale.
    :param refresh_seconds: how often the wall screen refreshes.
    :param share_seconds: for how long wall screens showing the same view share one computation.
    :param registry: where the dashboards export their callback latency
        (``opswatch_dashboard_callback_duration_seconds{callback}``).
    """

    snapshot: Callable[[], Any]
    store: Store
    topology: Topology
    clock: Callable[[], float] = time.time
    stale_after_seconds: float = 30.0
    refresh_seconds: float = 2.0
    share_seconds: float = 1.0
    kpis: list[KpiSpec] = field(default_factory=load_kpis)
    incident_action: IncidentAction | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    title: str = "OpsWatch"

    def __post_init__(self) -> None:
        self.callback_seconds = Histogram(
            "opswatch_dashboard_callback_duration_seconds", "Time to compute one dashboard callback on the server.",
            ["callback"], registry=self.registry, buckets=(.005, .01, .025, .05, .1, .2, .3, .5, 1, 2.5, 5))

        # The dashboards' own threads: callbacks read the store off the event loop (which also scrapes
        # and serves the API) without queueing behind the pipeline's evaluations.
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="dashboards")

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the dashboards' threads, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
