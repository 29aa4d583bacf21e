"""Run an ASGI app with uvicorn on a pre-bound 127.0.0.1 socket inside the current loop.

``bind_socket(host)`` binds port 0 (race-free port choice); ``HttpServer(app,
sock, websockets=False)`` serves it with ``await start()`` / ``await stop()``
(HTTP parsed by httptools, which costs a fraction of h11's CPU; WebSocket
upgrades only when ``websockets``, with the ``websockets`` library's sans-I/O
protocol).  uvicorn's signal handling and access log are disabled: the
platform owns SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Iterator

import uvicorn


def bind_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to ``host`` on a free port chosen by the kernel (not yet listening).

    The protocol is given explicitly (``IPPROTO_TCP``): asyncio only disables Nagle
    on accepted sockets whose ``proto`` says TCP, and with ``proto=0`` every
    response would wait ~40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass


class HttpServer:
    """One uvicorn server for ``app`` on the bound socket ``sock``.  ``url`` is its base URL."""

    def __init__(self, app: Any, sock: socket.socket, *, graceful_seconds: int = 1, websockets: bool = False) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app, http="httptools", ws="websockets-sansio" if websockets else "none", lifespan="off",
            access_log=False, log_config=None,
            log_level="warning", server_header=False, timeout_keep_alive=30,
            timeout_graceful_shutdown=graceful_seconds,
        )
        self.server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start serving and return once the socket is listening.  Raises RuntimeError on failure."""
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name=f"http {self.url}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                raise RuntimeError(f"server {self.url} failed to start: {exc!r}")
            if loop.time() > deadline:
                raise RuntimeError(f"server {self.url} did not start within {timeout} s")
            await asyncio.sleep(0.005)

    def request_stop(self) -> None:
        """Ask the server to stop accepting and finish (non-blocking)."""
        self.server.should_exit = True

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for it (forcing after ``timeout`` seconds)."""
        if self._task is None:
            self.sock.close()
            return
        self.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (asyncio.TimeoutError, Exception):
            self.server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None
