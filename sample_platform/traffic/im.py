"""IM clients: a pool of long-lived WebSocket connections to the message service.

The pool holds ``base_connections x shape.multiplier`` connections (checked
every ``SUPERVISE_SECONDS``); each client stays for an exponential session
(mean ``MEAN_SESSION_SECONDS``), then leaves and is replaced, so the online
count follows the day.  A connected client, every exponential think time
(mean ``MEAN_THINK_SECONDS``), picks a peer (another online client with
probability ``ONLINE_PEER_RATIO``, else any user, who is probably offline),
sends ``typing`` then, a moment later, a ``message``; when it receives a
message it answers a ``read`` receipt with probability ``READ_RATIO``.  A
connection closed by the server reconnects (a deploy closes with 1012, counted
in ``reconnects``, not ``errors``).

``stats``: ``{"connects", "reconnects", "messages", "acks", "errors", "received", "reads"}``.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ..shape import SimClock, multiplier

SUPERVISE_SECONDS = 2.0
MEAN_SESSION_SECONDS = 300.0
MEAN_THINK_SECONDS = 8.0
ONLINE_PEER_RATIO = 0.8
READ_RATIO = 0.7
RECONNECT_SECONDS = 1.0
CLOSE_SERVICE_RESTART = 1012


class ImClients:
    """The client pool (see the module docstring).  ``ws_url``: ``ws://host:port/ws``."""

    def __init__(self, ws_url: str, *, seed: int = 1, clock: SimClock | None = None, base_connections: int = 20,
                 users: int = 10_000) -> None:
        self.ws_url = ws_url
        self.seed = seed
        self.clock = clock or SimClock()
        self.base_connections = base_connections
        self.users = users
        self.rng = random.Random(f"{seed}:im")
        self.online: dict[int, ClientConnection] = {}
        self.clients: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._ids = 0
        self.stats: dict[str, int] = dict.fromkeys(
            ("connects", "reconnects", "messages", "acks", "errors", "received", "reads"), 0)

    def target(self) -> int:
        """Connections wanted now."""
        return max(2, round(self.base_connections * multiplier(self.clock.now(), self.seed)))

    def start(self) -> None:
        """Start the pool on the running loop."""
        self._supervisor = asyncio.create_task(self._supervise(), name="im-clients")

    async def stop(self) -> None:
        """Disconnect every client."""
        tasks = [t for t in (self._supervisor, *self.clients) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = None

    async def _supervise(self) -> None:
        while True:
            for _ in range(self.target() - len(self.clients)):
                uid = self.rng.randint(1, self.users)
                if uid in self.online:
                    continue
                task = asyncio.create_task(self._client(uid, self.rng.expovariate(1 / MEAN_SESSION_SECONDS)))
                self.clients.add(task)
                task.add_done_callback(self.clients.discard)
            await asyncio.sleep(SUPERVISE_SECONDS)

    async def _client(self, uid: int, session: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + session
        while loop.time() < until:
            try:
                async with connect(f"{self.ws_url}?user_id={uid}", open_timeout=5, close_timeout=1) as ws:
                    self.online[uid] = ws
                    self.stats["connects"] += 1
                    talker = asyncio.create_task(self._talk(ws, uid))
                    try:
                        await asyncio.wait_for(self._listen(ws), max(0.0, until - loop.time()))
                    except asyncio.TimeoutError:
                        return  # the session is over
                    finally:
                        talker.cancel()
                        await asyncio.gather(talker, return_exceptions=True)
                        if self.online.get(uid) is ws:
                            del self.online[uid]
            except (OSError, WebSocketException, asyncio.TimeoutError):
                self.stats["errors"] += 1
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, ws: ClientConnection) -> None:
        """Read frames until the server closes the connection."""
        try:
            await self._read(ws)
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != CLOSE_SERVICE_RESTART:
                raise
            self.stats["reconnects"] += 1

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            kind = frame.get("type")
            if kind == "ack":
                self.stats["acks"] += 1
            elif kind == "error":
                self.stats["errors"] += 1
            elif kind == "message":
                self.stats["received"] += 1
                if self.rng.random() < READ_RATIO:
                    await ws.send(json.dumps({"type": "read", "to": frame.get("from"), "id": frame.get("id")}))
                    self.stats["reads"] += 1

    async def _talk(self, ws: ClientConnection, uid: int) -> None:
        rng = self.rng
        while True:
            await asyncio.sleep(rng.expovariate(1 / MEAN_THINK_SECONDS))
            peers = [p for p in self.online if p != uid]
            to = rng.choice(peers) if peers and rng.random() < ONLINE_PEER_RATIO else rng.randint(1, self.users)
            await ws.send(json.dumps({"type": "typing", "to": to}))
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            self._ids += 1
            await ws.send(json.dumps({"type": "message", "id": f"{uid}-{self._ids}", "to": to, "text": "hello"}))
            self.stats["messages"] += 1
