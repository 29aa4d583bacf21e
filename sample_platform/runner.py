"""Start/stop the whole platform in the current asyncio loop, and the CLI ``run`` command.

In-process API::

    async with Platform(rate=20, seed=1, faults_log="faults.jsonl") as p:
        p.urls            # {"gateway": "http://127.0.0.1:PORT", ..., "kafka": ...}
        p.control_url     # "http://127.0.0.1:PORT"
        p.injector        # FaultInjector (p.injector.inject("latency", "postgres", 60))
        p.traffic         # TrafficGenerator or None when rate == 0
        p.nodes           # {name: Node} (registry, pool, ...)
        p.ports_info()    # the ports-file document

``run(ports_file, faults_log, rate, seed)`` starts everything, writes the
ports file atomically once every server listens, and blocks until SIGINT or
SIGTERM; it returns exit code 0 after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from .control import control_app
from .faults import FaultInjector
from .graph import CALL_GRAPH, NODES
from .infra import Kafka, Postgres, Redis
from .node import Node
from .serve import HttpServer, bind_socket
from .services import FeedService, Gateway, GiftService, LiveService, MessageService, PostService, UserService
from .traffic import TrafficGenerator

log = logging.getLogger("sample_platform")

NODE_TYPES: dict[str, type[Node]] = {
    "gateway": Gateway, "user": UserService, "feed": FeedService, "post": PostService,
    "live": LiveService, "gift": GiftService, "message": MessageService,
    "postgres": Postgres, "redis": Redis, "kafka": Kafka,
}
RECONCILE_SECONDS = 0.2


class Platform:
    """All nodes, the control server and the traffic generator in the running loop.

    ``rate``: traffic in requests/s (0 disables the generator); ``seed``: RNG
    seed; ``faults_log``: JSONL ground-truth path or None; ``clock``: epoch-seconds
    callable for fault timestamps; ``host``: bind address.  Use as an async context
    manager or call ``await start()`` / ``await stop()``.
    """

    def __init__(self, *, rate: float = 20.0, seed: int = 1, faults_log: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time, host: str = "127.0.0.1") -> None:
        self.rate = rate
        self.seed = seed
        self.host = host
        self.injector = FaultInjector(faults_log, clock=clock)
        self.nodes: dict[str, Node] = {}
        self.urls: dict[str, str] = {}
        self.control_url = ""
        self.traffic: TrafficGenerator | None = None
        self._servers: list[HttpServer] = []
        self._clients: list[httpx.AsyncClient] = []
        self._reconciler: asyncio.Task[None] | None = None

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

    async def _start(self) -> None:
        socks = {name: bind_socket(self.host) for name in NODES}
        control_sock = bind_socket(self.host)
        self.urls = {name: f"http://{self.host}:{s.getsockname()[1]}" for name, s in socks.items()}
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=15.0)
        for name in NODES:
            http = None
            if CALL_GRAPH[name]:
                http = httpx.AsyncClient(limits=limits)
                self._clients.append(http)
            self.nodes[name] = NODE_TYPES[name](name, injector=self.injector, urls=self.urls,
                                                http=http, seed=self.seed)
        self._servers = [HttpServer(self.nodes[n].app(), socks[n]) for n in NODES]
        self._servers.append(HttpServer(control_app(self.injector, self._traffic_stats), control_sock))
        self.control_url = self._servers[-1].url
        await asyncio.gather(*(s.start() for s in self._servers))
        for node in self.nodes.values():
            node.start_background()
        self._reconciler = asyncio.create_task(self._reconcile(), name="fault-reconciler")
        if self.rate > 0:
            self.traffic = TrafficGenerator(self.urls["gateway"], self.rate, seed=self.seed)
            self.traffic.start()

    async def stop(self, drain_seconds: float = 3.0) -> None:
        """Stop traffic, let in-flight requests finish (up to ``drain_seconds``), then stop
        background tasks, clients and servers (in that order)."""
        if self.traffic is not None:
            await self.traffic.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while any(n.active for n in self.nodes.values()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        for node in self.nodes.values():
            await node.stop_background()
        for c in self._clients:
            await c.aclose()
        self._clients.clear()
        for s in self._servers:
            s.request_stop()
        await asyncio.gather(*(s.stop() for s in self._servers), return_exceptions=True)
        self._servers.clear()

    def ports_info(self) -> dict[str, Any]:
        """``{"control": url, "nodes": {name: url}, "pid": int}`` -- the ports-file document."""
        return {"control": self.control_url, "nodes": dict(self.urls), "pid": os.getpid()}

    def _traffic_stats(self) -> dict[str, Any]:
        if self.traffic is None:
            return {}
        return {**self.traffic.stats, "rate": self.traffic.rate, "in_flight": self.traffic.in_flight}

    async def _reconcile(self) -> None:
        """Apply saturation faults: hold ``size - usable_slots`` slots of each affected pool."""
        while True:
            for name, node in self.nodes.items():
                usable = self.injector.effects(name).usable_slots
                node.pool.reserve(0 if usable is None else node.pool.size - usable)
            await asyncio.sleep(RECONCILE_SECONDS)


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
                             rate: float = 20.0, seed: int = 1, exit_with_parent: bool = False) -> int:
    """Run the platform until SIGINT/SIGTERM (or, with ``exit_with_parent``, until the parent process
    exits); returns the process exit code (0)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(stop)) if exit_with_parent else None
    try:
        async with Platform(rate=rate, seed=seed, faults_log=faults_log) as p:
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


def run(ports_file: str | os.PathLike[str], faults_log: str | os.PathLike[str],
        rate: float = 20.0, seed: int = 1, exit_with_parent: bool = False) -> int:
    """Blocking entry point used by ``python -m sample_platform run``; returns the exit code."""
    return asyncio.run(serve_until_signal(ports_file, faults_log, rate, seed, exit_with_parent))
