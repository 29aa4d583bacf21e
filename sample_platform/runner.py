"""Start/stop the whole platform in the current asyncio loop, and the CLI ``run`` command.

In-process API::

    async with Platform(rate=20, seed=1, faults_log="faults.jsonl") as p:
        p.urls            # {"gateway": "http://127.0.0.1:PORT", ..., "objstore": ...}
        p.control_url     # "http://127.0.0.1:PORT"
        p.injector        # FaultInjector (p.injector.inject("latency", "postgres", 60))
        p.surges          # SurgeController (await p.surges.start("deploy", "feed", 30))
        p.clock           # SimClock (simulated time, --time-scale)
        p.traffic, p.im, p.audience   # traffic generators, or None when rate == 0
        p.nodes           # {name: Node}: the instance serving now (registry, pool, params, ...)
        p.ports_info()    # the ports-file document

Each node's port is served by a :class:`NodeHost` that forwards to the node's
current instance, so a deploy (:meth:`Platform.restart`) swaps in a new
instance -- fresh registry, next version, its own background tasks -- while
the old one finishes its requests: no request fails.

``run(ports_file, faults_log, rate, seed, ...)`` starts everything, writes the
ports file atomically once every server listens, and blocks until SIGINT or
SIGTERM; it returns exit code 0 after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import aiohttp

from .control import control_app
from .faults import FaultInjector, reference_topology
from .graph import CALL_GRAPH, CDN_EDGES, NODES
from .infra import Database, Kafka, ObjectStore, Redis
from .node import Node
from .params import PARAMS, next_version
from .serve import HttpServer, bind_socket
from .services import (CdnEdge, FeedService, Gateway, GiftService, InventoryService, LiveService, MediaService,
                       MessageService, NotificationService, OriginService, PaymentService, PostService,
                       RecommendService, SearchService, UserService)
from .shape import SimClock, multiplier
from .surges import SURGE_MODES, Surge, SurgeController, calendar
from .traffic import ImClients, LiveAudience, TrafficGenerator, offered_rps

log = logging.getLogger("sample_platform")

NODE_TYPES: dict[str, type[Node]] = {
    "gateway": Gateway, "user": UserService, "feed": FeedService, "recommend": RecommendService,
    "post": PostService, "media": MediaService, "search": SearchService, "message": MessageService,
    "notification": NotificationService, "live": LiveService, "origin": OriginService,
    **{edge: CdnEdge for edge in CDN_EDGES},
    "gift": GiftService, "payment": PaymentService, "inventory": InventoryService,
    "postgres": Database, "giftdb-0": Database, "giftdb-1": Database, "redis": Redis, "kafka": Kafka,
    "objstore": ObjectStore,
}
RECONCILE_SECONDS = 0.2
CALENDAR_SECONDS = 1.0
#: A surge from the calendar lasts at least this long in real time, however compressed the time.
MIN_SURGE_REAL_SECONDS = 30.0
DRAIN_SECONDS = 3.0


class NodeHost:
    """The ASGI app of one node's port: forwards to the node's current instance."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self.node.app()(scope, receive, send)


class Platform:
    """All nodes, the control server and the traffic generators in the running loop.

    ``rate``: mean traffic in requests/s over a day (0 disables every generator);
    ``seed``: RNG seed; ``faults_log``: JSONL ground-truth path or None;
    ``clock``: epoch-seconds callable for ground-truth timestamps; ``host``: bind
    address; ``time_scale``: simulated time runs this many times faster;
    ``sim_start``: simulated epoch seconds at start (default: now); ``surges``:
    ``"none"`` or ``"calendar"`` (start the surges of :func:`surges.calendar`).
    Use as an async context manager or call ``await start()`` / ``await stop()``.
    """

    def __init__(self, *, rate: float = 20.0, seed: int = 1, faults_log: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time, host: str = "127.0.0.1", time_scale: float = 1.0,
                 sim_start: float | None = None, surges: str = "none") -> None:
        if surges not in SURGE_MODES:
            raise ValueError(f"surges must be one of {', '.join(SURGE_MODES)}, got {surges!r}")
        self.rate = rate
        self.seed = seed
        self.host = host
        self.surge_mode = surges
        self.clock = SimClock(time_scale, sim_start)
        self.injector = FaultInjector(faults_log, clock=clock)
        self.injector.listeners.append(lambda record: self._apply_faults())
        self.surges = SurgeController(self.injector.truth, clock=clock)
        self.surges.hooks = {"deploy": self._deploy, "marketing_push": self._campaign}
        self.nodes: dict[str, Node] = {}
        self.hosts: dict[str, NodeHost] = {}
        self.urls: dict[str, str] = {}
        self.control_url = ""
        self.traffic: TrafficGenerator | None = None
        self.im: ImClients | None = None
        self.audience: LiveAudience | None = None
        self._servers: list[HttpServer] = []
        self._clients: dict[str, aiohttp.ClientSession] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retired: list[Node] = []

    async def __aenter__(self) -> "Platform":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and start every server, then background tasks and traffic (call once).

        On failure everything already started is stopped and the error re-raised.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def _new_node(self, name: str, version: str | None = None) -> Node:
        params = PARAMS[name]
        if name == "gateway":
            params = replace(params, offered_rps=offered_rps(self.rate))
        if version is not None:
            params = replace(params, version=version)
        node = NODE_TYPES[name](name, params, injector=self.injector, urls=self.urls,
                                http=self._clients.get(name), seed=self.seed, clock=self.injector.clock)
        node.apply_faults()
        return node

    async def _start(self) -> None:
        # the fault records' expected impact needs the topology: loading it at the first injection
        # would stall every node for a fifth of a second just as the fault starts
        reference_topology()
        socks = {name: bind_socket(self.host) for name in NODES}
        control_sock = bind_socket(self.host)
        self.urls.update({name: f"http://{self.host}:{s.getsockname()[1]}" for name, s in socks.items()})
        for name in NODES:
            if CALL_GRAPH[name]:
                self._clients[name] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=15.0))
            self.nodes[name] = self._new_node(name)
            self.hosts[name] = NodeHost(self.nodes[name])
        self._servers = [HttpServer(self.hosts[n], socks[n], websockets=self.nodes[n].uses_websockets)
                         for n in NODES]
        self._servers.append(HttpServer(control_app(self.injector, self.surges, self.traffic_status), control_sock))
        self.control_url = self._servers[-1].url
        await asyncio.gather(*(s.start() for s in self._servers))
        for node in self.nodes.values():
            node.start_background()
        self._tasks.append(asyncio.create_task(self._reconcile(), name="fault-reconciler"))
        if self.surge_mode == "calendar":
            self._tasks.append(asyncio.create_task(self._calendar(), name="surge-calendar"))
        if self.rate > 0:
            self.audience = LiveAudience(self.urls["gateway"], self.urls["origin"],
                                         {e: self.urls[e] for e in CDN_EDGES}, seed=self.seed, clock=self.clock,
                                         surges=self.surges)
            self.traffic = TrafficGenerator(self.urls["gateway"], self.rate, seed=self.seed, clock=self.clock,
                                            surges=self.surges, audience=self.audience)
            self.im = ImClients(self.urls["message"].replace("http://", "ws://", 1) + "/ws", seed=self.seed,
                                clock=self.clock)
            self.audience.start()
            self.traffic.start()
            self.im.start()

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop traffic, let in-flight requests finish (up to ``drain_seconds``), then stop
        background tasks, clients and servers (in that order)."""
        for generator in (self.traffic, self.im, self.audience):
            if generator is not None:
                await generator.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while any(n.active for n in [*self.nodes.values(), *self._retired]) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for node in self.nodes.values():
            await node.stop_background()
            close = getattr(node, "close_connections", None)
            if close is not None:
                await close()
        for c in self._clients.values():
            await c.close()
        self._clients.clear()
        for s in self._servers:
            s.request_stop()
        await asyncio.gather(*(s.stop() for s in self._servers), return_exceptions=True)
        self._servers.clear()

    async def restart(self, name: str) -> tuple[str, str]:
        """Roll ``name`` to its next version cleanly; returns ``(from_version, to_version)``.

        The new instance serves new requests and runs the background work at once;
        the old one finishes its in-flight requests (up to ``DRAIN_SECONDS``), then
        closes its WebSockets (clients reconnect to the new one).
        """
        old = self.nodes[name]
        new = self._new_node(name, next_version(old.base_params.version))
        if hasattr(new, "cold_start"):
            new.cold_start = True  # e.g. an empty in-process cache
        self.nodes[name] = new
        self.hosts[name].node = new
        new.start_background()
        await old.stop_background()
        self._retired.append(old)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while old.active and loop.time() < deadline:
            await asyncio.sleep(0.02)
        close = getattr(old, "close_connections", None)
        if close is not None:
            await close()
        self._retired.remove(old)
        log.info("deployed %s %s -> %s", name, old.params.version, new.params.version)
        return old.params.version, new.params.version

    async def _deploy(self, surge: Surge) -> dict[str, Any]:
        old, new = await self.restart(surge.target)
        return {"from_version": old, "to_version": new}

    async def _campaign(self, surge: Surge) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
            async with client.post(self.urls["notification"] + "/campaigns", json={
                    "factor": surge.params["factor"], "duration_seconds": surge.end - surge.start}) as r:
                if r.status != 202:
                    raise RuntimeError(f"notification refused the campaign: HTTP {r.status} {(await r.text())[:200]}")
        return {}

    def ports_info(self) -> dict[str, Any]:
        """``{"control": url, "nodes": {name: url}, "pid": int}`` -- the ports-file document."""
        return {"control": self.control_url, "nodes": dict(self.urls), "pid": os.getpid()}

    def traffic_status(self) -> dict[str, Any]:
        """What ``GET /traffic`` answers (``{}`` when traffic is off)."""
        if self.traffic is None:
            return {}
        sim_now = self.clock.now()
        return {**self.traffic.stats, "rate": round(self.traffic.current_rate(), 3),
                "in_flight": self.traffic.in_flight, "multiplier": round(multiplier(sim_now, self.seed), 4),
                "sim_time": sim_now, "time_scale": self.clock.time_scale,
                "surges": [s.record() for s in self.surges.active()],
                "im": dict(self.im.stats) if self.im is not None else {},
                "live": dict(self.audience.stats) if self.audience is not None else {}}

    def _apply_faults(self) -> None:
        """Bring every node's parameters and held slots in line with the faults active now."""
        for node in self.nodes.values():
            node.apply_faults()

    async def _reconcile(self) -> None:
        """Apply the faults as they start and end (an injection applies its fault at once too)."""
        while True:
            self._apply_faults()
            await asyncio.sleep(RECONCILE_SECONDS)

    async def _calendar(self) -> None:
        """Start the calendar's surges as simulated time reaches them, from the simulated start on."""
        last = self.clock.sim0
        while True:
            await asyncio.sleep(CALENDAR_SECONDS)
            now = self.clock.now()
            for plan in calendar(last, now, self.seed):
                seconds = max(MIN_SURGE_REAL_SECONDS, self.clock.real_seconds(plan.seconds))
                try:
                    await self.surges.start(plan.kind, plan.target, seconds, plan.params)
                except Exception:  # one failed surge must not stop the calendar
                    log.exception("calendar surge %s on %s failed", plan.kind, plan.target)
            last = now


def write_ports_file(path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


async def _watch_parent(stop: asyncio.Event, interval_seconds: float = 1.0) -> None:
    """Set ``stop`` once the parent process is gone (we were re-parented), so a platform started by a
    process that was SIGKILLed does not run on forever."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(interval_seconds)
    log.warning("parent process %d is gone; stopping", parent)
    stop.set()


async def serve_until_signal(ports_file: str | os.PathLike[str], faults_log: str | os.PathLike[str],
                             exit_with_parent: bool = False, **platform: Any) -> int:
    """Run ``Platform(faults_log=faults_log, **platform)`` until SIGINT/SIGTERM (or, with
    ``exit_with_parent``, until the parent process exits); returns the process exit code (0)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(stop)) if exit_with_parent else None
    try:
        async with Platform(faults_log=faults_log, **platform) as p:
            # Everything built so far lives as long as the process: keep it out of the garbage collector's
            # full passes, which otherwise stall every node at once (tens of ms, about every 40 s).
            gc.freeze()
            write_ports_file(ports_file, p.ports_info())
            log.info("sample_platform ready: control %s, gateway %s (pid %d)",
                     p.control_url, p.urls["gateway"], os.getpid())
            await stop.wait()
            log.info("sample_platform stopping")
    finally:
        if watcher is not None:
            watcher.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0


def run(ports_file: str | os.PathLike[str], faults_log: str | os.PathLike[str], *,
        exit_with_parent: bool = False, **platform: Any) -> int:
    """Blocking entry point used by ``python -m sample_platform run``; ``platform`` are
    :class:`Platform` keyword arguments (rate, seed, time_scale, sim_start, surges).  Returns the exit code."""
    return asyncio.run(serve_until_signal(ports_file, faults_log, exit_with_parent, **platform))
