"""Base class of every platform node: routing, worker pool, faults, metrics, HTTP client.

A subclass registers its routes in ``setup()`` with ``self.add_route(path,
handler, methods)``; a handler is ``async def h(request, ctx) -> Response``.
Every unit of work -- an HTTP request, a WebSocket frame, a batch taken from
kafka -- runs through :meth:`Node.run_op`:

1. waits for a worker-pool slot (queue full or waited longer than the
   ``queue_timeout_seconds`` parameter -> :class:`PoolOverloaded`);
2. runs the work; ``ctx.work(median)`` sleeps a lognormal service time plus the
   fault delay (``latency``, ``cpu_saturation`` hold, and the garbage-collection
   pause of a ``memory_leak``; applied once; if the work never calls ``work``
   the extra is applied after it);
3. then fails with :class:`InjectedFailure` with probability ``max(error ratio
   of the serving version, errors fault ratio)``.  The failure is decided
   *after* the work, so the node's own downstream calls still happen: a failing
   node does not starve its dependencies of traffic.

Each operation is served by the deployed ``params.version``, or, while a
version is being rolled out (``params.canary_version``), by that one with
probability ``params.canary_ratio``; ``http_requests_total`` carries it as its
``version`` label.

HTTP requests map those outcomes to status codes (503 overloaded, 500 injected
failure or bug, 502/504 :class:`DownstreamError`, 400 :class:`BadRequest`, 499
when the caller disconnected before sending its body) and
record ``http_requests_total`` / ``http_request_duration_seconds``.
``GET /metrics`` is served outside (not counted, no slot, no faults).
Outgoing calls go through ``self.call(downstream, method, path, ...)`` (an
aiohttp client: a fraction of httpx's CPU per request, which matters with two
dozen nodes in one process) which records ``http_client_*`` metrics, returns a
:class:`Reply` and raises ``DownstreamError`` on 5xx, timeout or connection
failure.  A call to a downstream in ``params.partitioned`` is lost with that
probability (it waits out its timeout); a call that timed out is sent again
``params.timeout_retries[downstream]`` times.

Behaviour parameters live in ``node.params`` (see :mod:`.params`) and are read
on every use, so replacing them takes effect at once; ``node.base_params`` are
the node's own, which the platform overlays with the active faults' overrides
(:meth:`Node.apply_faults`).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import aiohttp
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .faults import FaultEffects, FaultInjector
from .graph import CALL_GRAPH, INFRA
from .metrics import METRICS_CONTENT_TYPE, NodeMetrics
from .params import NodeParams
from .pool import PoolOverloaded, WorkerPool

log = logging.getLogger("sample_platform")

#: Per-call timeouts in seconds, shrinking with depth so the deepest failure surfaces first.
TIMEOUT_TO_INFRA = 1.0
TIMEOUT_SERVICE_TO_SERVICE = 1.5
TIMEOUT_FROM_GATEWAY = 2.0
#: Status recorded when the caller went away mid-request (nginx's convention; the caller never sees it).
CLIENT_CLOSED_REQUEST = 499

T = TypeVar("T")


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
    """Client error; the HTTP wrapper answers 400 with the message."""


class InjectedFailure(Exception):
    """The node failed the work on purpose (``errors`` fault or the ``error_ratio`` parameter)."""


@dataclass(frozen=True)
class Reply:
    """A downstream's answer: ``status_code`` and the raw body ``content``."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


Handler = Callable[[Request, "RequestContext"], Awaitable[Response]]


class RequestContext:
    """Per-operation helper handed to handlers; carries the fault effects snapshot."""

    __slots__ = ("node", "effects", "_extra")

    def __init__(self, node: "Node", effects: FaultEffects, extra_seconds: float | None = None) -> None:
        self.node = node
        self.effects = effects
        self._extra = effects.extra_seconds if extra_seconds is None else extra_seconds

    async def work(self, median_seconds: float) -> float:
        """Sleep a lognormal service time around ``median_seconds`` plus any pending
        fault delay (first call only).  Returns the seconds slept."""
        seconds = self.node.service_time(median_seconds) + self._extra
        self._extra = 0.0
        await asyncio.sleep(seconds)
        return seconds

    async def work_on(self, operation: str) -> float:
        """``work`` with the median of ``operation`` from the node's ``service_seconds`` parameter."""
        return await self.work(self.node.params.median(operation))

    async def finish(self) -> None:
        """Apply the fault delay if the work never called ``work``."""
        if self._extra > 0:
            extra, self._extra = self._extra, 0.0
            await asyncio.sleep(extra)


class Node:
    """One node of the platform (one Starlette app, one registry, one worker pool).

    ``name``: node name from :data:`graph.NODES`; ``params``: its behaviour
    parameters; ``injector``: consulted on every operation; ``urls``: node name ->
    base URL for outgoing calls; ``http``: shared ``aiohttp.ClientSession`` for
    outgoing calls (None for nodes that call nobody); ``seed``: seeds this node's
    RNG; ``clock``: epoch seconds (start time, time-based business metrics).
    """

    def __init__(self, name: str, params: NodeParams, *, injector: FaultInjector, urls: dict[str, str],
                 http: aiohttp.ClientSession | None = None, seed: int = 1,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.base_params = params
        self.params = params
        self.injector = injector
        self.urls = urls
        self.http = http
        self.clock = clock
        self.started_at = clock()
        self.rng = random.Random(f"{seed}:{name}:{params.version}")
        self.pool = WorkerPool(params.pool_size, params.max_queue)
        self.metrics = NodeMetrics(self.pool, self.versions, self.started_at,
                                   lambda: self.params.resident_memory_bytes(self.clock()))
        self.registry = self.metrics.registry
        self._routes: list[BaseRoute] = [Route("/metrics", self._metrics_endpoint, methods=["GET"])]
        self._tasks: list[asyncio.Task[Any]] = []
        self._app: Starlette | None = None
        self.active = 0  # HTTP requests and WebSocket frames being handled now
        self.setup()

    # -- to override ----------------------------------------------------------
    def setup(self) -> None:
        """Register routes and node-specific metrics (override)."""

    def record_outcome(self, request: Request, route: str, status: int, seconds: float) -> None:
        """Called once per handled HTTP request with its final status and duration in seconds
        (override for business metrics; ``request.state`` carries what the handler stored)."""

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

    def apply_faults(self) -> None:
        """Set ``params`` to ``base_params`` overlaid with the overrides of the faults active on this
        node now (restoring ``base_params`` once none is), and hold the worker slots the active
        faults take."""
        params = self.injector.params_for(self.name, self.base_params)
        if params is not self.params and params != self.params:
            self.params = params
        usable = self.injector.effects(self.name).usable_slots
        self.pool.reserve(0 if usable is None else self.pool.size - usable)

    def versions(self) -> tuple[str, ...]:
        """The versions serving now: the deployed one, then one being rolled out."""
        p = self.params
        return (p.version,) if p.canary_version is None else (p.version, p.canary_version)

    def pick_version(self) -> str:
        """The version that serves the next operation (see ``params.canary_ratio``)."""
        p = self.params
        if p.canary_version is not None and self.rng.random() < p.canary_ratio:
            return p.canary_version
        return p.version

    @property
    def uses_websockets(self) -> bool:
        """Whether the node serves WebSocket routes (its server needs a WebSocket protocol)."""
        return any(isinstance(r, WebSocketRoute) for r in self._routes)

    def app(self) -> Starlette:
        """The node's ASGI app (built once)."""
        if self._app is None:
            self._app = Starlette(routes=list(self._routes))
        return self._app

    # -- helpers for subclasses ----------------------------------------------
    def add_route(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",)) -> None:
        """Serve ``handler`` at route template ``path`` for ``methods``, instrumented."""
        methods = tuple(methods)
        self._routes.append(Route(path, self._instrument(path, methods[0], handler), methods=list(methods)))

    def add_websocket_route(self, path: str, endpoint: Callable[[WebSocket], Awaitable[None]]) -> None:
        """Serve a WebSocket endpoint at ``path``; frames should be handled with :meth:`run_op`."""
        self._routes.append(WebSocketRoute(path, endpoint))

    def service_time(self, median_seconds: float) -> float:
        """Lognormal service time in seconds with the given median, capped at 10x the median."""
        if median_seconds <= 0:
            return 0.0
        sigma = self.params.service_sigma
        return min(self.rng.lognormvariate(math.log(median_seconds), sigma), 10 * median_seconds)

    def timeout_for(self, downstream: str) -> float:
        """Per-call timeout in seconds for calls from this node to ``downstream``."""
        if downstream in INFRA:
            return TIMEOUT_TO_INFRA
        return TIMEOUT_FROM_GATEWAY if self.name == "gateway" else TIMEOUT_SERVICE_TO_SERVICE

    async def call(self, downstream: str, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, timeout: float | None = None) -> Reply:
        """Call ``downstream`` over HTTP and return its reply (status < 500).

        ``timeout``: seconds, default :meth:`timeout_for`.  Raises DownstreamError on
        5xx, timeout or transport error.  Raises ValueError if ``downstream`` is not
        in this node's call graph.
        """
        if downstream not in CALL_GRAPH[self.name] or self.http is None:
            raise ValueError(f"{self.name} does not call {downstream!r}; "
                             f"downstreams: {', '.join(CALL_GRAPH[self.name]) or '(none)'}")
        seconds = timeout if timeout is not None else self.timeout_for(downstream)
        for _ in range(1 + self.params.timeout_retries.get(downstream, 0)):
            reply, code = await self._attempt(downstream, method, path, json, params, seconds)
            if code != "timeout":
                break
        if reply is None or code[0] == "5":
            raise DownstreamError(downstream, code)
        return reply

    async def _attempt(self, downstream: str, method: str, path: str, json: Any, params: dict[str, Any] | None,
                       seconds: float) -> tuple[Reply | None, str]:
        """One HTTP call, recorded in the client metrics: ``(reply or None, code)``."""
        assert self.http is not None
        if self.http.closed:  # platform shutting down
            raise DownstreamError(downstream, "connect_error")
        m = self.metrics
        t0 = time.perf_counter()
        reply = None
        drop = self.params.partitioned.get(downstream, 0.0)
        if drop > 0 and self.rng.random() < drop:  # lost on the network: nothing ever answers
            await asyncio.sleep(seconds)
            code = "timeout"
        else:
            try:
                async with self.http.request(method, self.urls[downstream] + path, json=json, params=params,
                                             timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
                    reply = Reply(resp.status, await resp.read())
                code = str(reply.status_code)
            except TimeoutError:
                code = "timeout"
            except aiohttp.ClientError:
                code = "connect_error"
        m.client_duration.labels(downstream).observe(time.perf_counter() - t0)
        m.client_requests.labels(downstream, code).inc()
        return reply, code

    async def best_effort(self, downstream: str, method: str, path: str, *, json: Any = None,
                          params: dict[str, Any] | None = None, timeout: float | None = None) -> Reply | None:
        """Like ``call`` but returns None instead of raising DownstreamError."""
        try:
            return await self.call(downstream, method, path, json=json, params=params, timeout=timeout)
        except DownstreamError:
            return None

    async def run_op(self, work: Callable[[RequestContext], Awaitable[T]], version: str | None = None) -> T:
        """Run ``work(ctx)`` in a worker slot under the node's fault effects and return its result.

        ``version``: the version serving it (default :meth:`pick_version`); its error
        ratio applies.  Raises PoolOverloaded (no slot in time), InjectedFailure
        (decided after the work), or whatever ``work`` raises.
        """
        if version is None:
            version = self.pick_version()
        effects = self.injector.effects(self.name)
        p = self.params
        await self.pool.acquire(p.queue_timeout_seconds)
        self.active += 1
        try:
            ctx = RequestContext(self, effects, effects.extra_seconds + p.gc_pause_seconds(self.clock()))
            try:
                result = await work(ctx)
            except asyncio.CancelledError:
                raise
            except BaseException:
                await ctx.finish()
                raise
            await ctx.finish()
            own = p.canary_error_ratio if version == p.canary_version else p.error_ratio
            ratio = max(own, effects.error_ratio)
            if ratio > 0 and self.rng.random() < ratio:
                raise InjectedFailure(f"{self.name}: injected failure")
            return result
        finally:
            self.active -= 1
            self.pool.release()

    # -- internals ------------------------------------------------------------
    async def _metrics_endpoint(self, request: Request) -> Response:
        return Response(await self.metrics.render_async(), media_type=METRICS_CONTENT_TYPE)

    def _instrument(self, route: str, method: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        m = self.metrics
        duration = m.request_duration.labels(route, method)

        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            version = self.pick_version()
            m.in_flight.inc()
            try:
                resp = await self._handle(request, handler, route, version)
            finally:
                m.in_flight.dec()
            seconds = time.perf_counter() - t0
            duration.observe(seconds)
            m.requests.labels(route, method, str(resp.status_code), version).inc()
            self.record_outcome(request, route, resp.status_code, seconds)
            return resp

        return endpoint

    async def _handle(self, request: Request, handler: Handler, route: str, version: str) -> Response:
        try:
            return await self.run_op(lambda ctx: handler(request, ctx), version)
        except PoolOverloaded as exc:
            return JSONResponse({"error": f"{self.name} overloaded: {exc or 'no worker slot'}"}, status_code=503)
        except InjectedFailure as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        except DownstreamError as exc:
            return JSONResponse({"error": f"{self.name}: downstream {exc}"}, status_code=exc.status)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ClientDisconnect:  # the caller gave up (timed out) before sending its whole body
            return JSONResponse({"error": "client closed the request"}, status_code=CLIENT_CLOSED_REQUEST)
        except Exception:  # a bug must still produce a counted 500
            log.exception("%s: unhandled error on %s", self.name, route)
            return JSONResponse({"error": f"{self.name}: internal error"}, status_code=500)


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
