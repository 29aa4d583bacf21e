"""Base class of every platform node: routing, worker pool, faults, metrics, HTTP client.

A subclass registers its routes in ``setup()`` with ``self.add_route(path,
handler, methods)``; a handler is ``async def h(request, ctx) -> Response``.
The wrapper around every handler (see ``_instrument``):

1. counts the request in flight, waits for a worker-pool slot (queue full or
   waited longer than ``queue_timeout`` -> 503);
2. applies the ``errors`` fault (answers 500 with probability ``error_ratio``);
3. runs the handler; ``ctx.work(median)`` sleeps a lognormal service time plus
   the ``latency`` / ``saturation`` extra delay (applied once per request; if the
   handler never calls ``work`` the extra is applied after it);
4. maps :class:`DownstreamError` to 502 (504 for timeouts) and
   :class:`BadRequest` to 400;
5. records ``http_requests_total`` / ``http_request_duration_seconds``.

``GET /metrics`` is served outside this wrapper (not counted, no slot, no faults).
Outgoing calls go through ``self.call(downstream, method, path, ...)`` which
records ``http_client_*`` metrics and raises ``DownstreamError`` on 5xx,
timeout or connection failure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any, Awaitable, Callable, Iterable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultEffects, FaultInjector
from .graph import CALL_GRAPH, INFRA
from .metrics import METRICS_CONTENT_TYPE, NodeMetrics
from .pool import PoolOverloaded, WorkerPool

log = logging.getLogger("sample_platform")

#: Per-call timeouts in seconds, shrinking with depth so the deepest failure surfaces first.
TIMEOUT_TO_INFRA = 1.0
TIMEOUT_SERVICE_TO_SERVICE = 1.5
TIMEOUT_FROM_GATEWAY = 2.0


class DownstreamError(Exception):
    """A required downstream call failed.

    ``downstream``: node name; ``reason``: ``timeout``, ``connect_error`` or the
    5xx status code string.  ``status`` is what the caller should answer (502/504).
    """

    def __init__(self, downstream: str, reason: str) -> None:
        super().__init__(f"{downstream}: {reason}")
        self.downstream = downstream
        self.reason = reason

    @property
    def status(self) -> int:
        return 504 if self.reason == "timeout" else 502


class BadRequest(Exception):
    """Client error; the wrapper answers 400 with the message."""


Handler = Callable[[Request, "RequestContext"], Awaitable[Response]]


class RequestContext:
    """Per-request helper handed to handlers; carries the fault effects snapshot."""

    __slots__ = ("node", "effects", "_extra")

    def __init__(self, node: "Node", effects: FaultEffects) -> None:
        self.node = node
        self.effects = effects
        self._extra = effects.extra_seconds

    async def work(self, median_seconds: float) -> float:
        """Sleep a lognormal service time around ``median_seconds`` plus any pending
        fault delay (first call only).  Returns the seconds slept."""
        seconds = self.node.service_time(median_seconds) + self._extra
        self._extra = 0.0
        await asyncio.sleep(seconds)
        return seconds

    async def finish(self) -> None:
        """Apply the fault delay if the handler never called ``work``."""
        if self._extra > 0:
            extra, self._extra = self._extra, 0.0
            await asyncio.sleep(extra)


class Node:
    """One node of the platform (one Starlette app, one registry, one worker pool).

    ``name``: node name from :data:`graph.NODES`; ``injector``: consulted on every
    request; ``urls``: node name -> base URL for outgoing calls; ``http``: shared
    ``httpx.AsyncClient`` for outgoing calls (None for nodes that call nobody);
    ``seed``: seeds this node's RNG.
    """

    pool_size = 64
    max_queue = 512
    #: Longest wait for a worker slot, seconds (about the callers' timeout); then 503.
    queue_timeout = 2.0

    def __init__(self, name: str, *, injector: FaultInjector, urls: dict[str, str],
                 http: httpx.AsyncClient | None = None, seed: int = 1) -> None:
        self.name = name
        self.injector = injector
        self.urls = urls
        self.http = http
        self.rng = random.Random(f"{seed}:{name}")
        self.pool = WorkerPool(self.pool_size, self.max_queue)
        self.metrics = NodeMetrics(self.pool)
        self.registry = self.metrics.registry
        self._routes: list[Route] = [Route("/metrics", self._metrics_endpoint, methods=["GET"])]
        self._tasks: list[asyncio.Task[Any]] = []
        self.active = 0  # requests being handled now (same as the in-flight gauge)
        self.setup()

    # -- to override ----------------------------------------------------------
    def setup(self) -> None:
        """Register routes and node-specific metrics (override)."""

    def record_outcome(self, route: str, status: int) -> None:
        """Called once per handled request with its final status (override for business metrics)."""

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        """Coroutine functions to run as background tasks while the node runs (override)."""
        return ()

    # -- lifecycle ------------------------------------------------------------
    def start_background(self) -> None:
        """Start the node's background tasks on the running loop."""
        for fn in self.background():
            self._tasks.append(asyncio.create_task(fn(), name=f"{self.name}-bg"))

    async def stop_background(self) -> None:
        """Cancel and await the node's background tasks."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def app(self) -> Starlette:
        """The node's ASGI app."""
        return Starlette(routes=list(self._routes))

    # -- helpers for subclasses ----------------------------------------------
    def add_route(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",)) -> None:
        """Serve ``handler`` at route template ``path`` for ``methods``, instrumented."""
        methods = tuple(methods)
        self._routes.append(Route(path, self._instrument(path, methods[0], handler), methods=list(methods)))

    def service_time(self, median_seconds: float, sigma: float = 0.45) -> float:
        """Lognormal service time in seconds with the given median, capped at 10x the median."""
        if median_seconds <= 0:
            return 0.0
        return min(self.rng.lognormvariate(math.log(median_seconds), sigma), 10 * median_seconds)

    def timeout_for(self, downstream: str) -> float:
        """Per-call timeout in seconds for calls from this node to ``downstream``."""
        if downstream in INFRA:
            return TIMEOUT_TO_INFRA
        return TIMEOUT_FROM_GATEWAY if self.name == "gateway" else TIMEOUT_SERVICE_TO_SERVICE

    async def call(self, downstream: str, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None) -> httpx.Response:
        """Call ``downstream`` over HTTP and return the response (status < 500).

        Raises DownstreamError on 5xx, timeout or transport error.  Raises
        ValueError if ``downstream`` is not in this node's call graph.
        """
        if downstream not in CALL_GRAPH[self.name] or self.http is None:
            raise ValueError(f"{self.name} does not call {downstream!r}; "
                             f"downstreams: {', '.join(CALL_GRAPH[self.name]) or '(none)'}")
        m = self.metrics
        t0 = time.perf_counter()
        if self.http.is_closed:  # platform shutting down
            raise DownstreamError(downstream, "connect_error")
        try:
            resp = await self.http.request(method, self.urls[downstream] + path, json=json,
                                           params=params, timeout=self.timeout_for(downstream))
        except httpx.TimeoutException:
            code = "timeout"
        except httpx.HTTPError:
            code = "connect_error"
        else:
            code = str(resp.status_code)
        m.client_duration.labels(downstream).observe(time.perf_counter() - t0)
        m.client_requests.labels(downstream, code).inc()
        if code in ("timeout", "connect_error") or code[0] == "5":
            raise DownstreamError(downstream, code)
        return resp

    async def best_effort(self, downstream: str, method: str, path: str, *,
                          json: Any = None) -> httpx.Response | None:
        """Like ``call`` but returns None instead of raising DownstreamError."""
        try:
            return await self.call(downstream, method, path, json=json)
        except DownstreamError:
            return None

    # -- internals ------------------------------------------------------------
    async def _metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    def _instrument(self, route: str, method: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        m = self.metrics
        duration = m.request_duration.labels(route, method)

        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            m.in_flight.inc()
            self.active += 1
            resp: Response
            try:
                resp = await self._handle(request, handler, route)
            finally:
                m.in_flight.dec()
                self.active -= 1
            duration.observe(time.perf_counter() - t0)
            m.requests.labels(route, method, str(resp.status_code)).inc()
            self.record_outcome(route, resp.status_code)
            return resp

        return endpoint

    async def _handle(self, request: Request, handler: Handler, route: str) -> Response:
        effects = self.injector.effects(self.name)
        try:
            await self.pool.acquire(self.queue_timeout)
        except PoolOverloaded as exc:
            return JSONResponse({"error": f"{self.name} overloaded: {exc}"}, status_code=503)
        try:
            if effects.error_ratio > 0 and self.rng.random() < effects.error_ratio:
                return JSONResponse({"error": f"{self.name}: injected failure"}, status_code=500)
            ctx = RequestContext(self, effects)
            try:
                resp = await handler(request, ctx)
            except DownstreamError as exc:
                resp = JSONResponse({"error": f"{self.name}: downstream {exc}"}, status_code=exc.status)
            except BadRequest as exc:
                resp = JSONResponse({"error": str(exc)}, status_code=400)
            except Exception:  # a bug must still produce a counted 500
                log.exception("%s: unhandled error on %s", self.name, route)
                resp = JSONResponse({"error": f"{self.name}: internal error"}, status_code=500)
            await ctx.finish()
            return resp
        finally:
            self.pool.release()


async def json_body(request: Request) -> dict[str, Any]:
    """Parse the request body as a JSON object; raises BadRequest otherwise."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("JSON body must be an object")
    return body


def int_field(data: Any, name: str) -> int:
    """``data[name]`` as int (data: dict or query params); raises BadRequest if missing/invalid."""
    value = data.get(name)
    try:
        if value is None or isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name!r} must be an integer, got {value!r}") from None
