"""``GET /api/v1/topology``: the declared dependency graph beside the call edges seen in client-side metrics.

``?lookback=1h`` (a Prometheus duration; default ``topology_discovery.lookback``) sets the window in which an
edge counts as observed. The answer, in the API's envelope, is :func:`topology.discovery.topology_report`:
``nodes`` (with each node's ``impacted_businesses``), ``edges`` (``declared``/``observed``/``calls``),
``undeclared_edges``, ``unobserved_edges``, ``window`` and ``call_metric``. A bad ``lookback`` is a 400, a
store that cannot be read a 503.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from topology.discovery import CallMetric, topology_report

from .api_common import api_error
from .durations import parse_duration
from .errors import StorageError

if TYPE_CHECKING:
    from .pipeline import Pipeline


def topology_router(pipeline: Pipeline) -> APIRouter:
    """The topology route of ``pipeline`` (include with ``app.include_router``)."""
    router = APIRouter()
    discovery = pipeline.config.topology_discovery
    call_metric = CallMetric(discovery.metric, discovery.caller_label, discovery.callee_label)

    @router.get("/api/v1/topology")
    async def topology(lookback: str | None = None):
        try:
            seconds = parse_duration(lookback) if lookback is not None else discovery.lookback
        except ValueError as exc:
            return api_error(400, "bad_data", f"lookback: {exc}")
        if seconds <= 0:
            return api_error(400, "bad_data", f"lookback: {lookback!r} must be longer than 0s")
        now_ms = int(pipeline.clock() * 1000)
        try:
            report = await run_in_threadpool(topology_report, pipeline.topology, pipeline.store, now_ms,
                                             int(seconds * 1000), call_metric)
        except StorageError as exc:
            return api_error(503, "unavailable", f"the store cannot be read: {exc}")
        return {"status": "success", "data": report}

    return router
