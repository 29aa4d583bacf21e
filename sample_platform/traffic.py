"""Open-loop traffic generator driving the gateway over HTTP.

Poisson arrivals at ``rate`` requests/s (seeded).  Each arrival picks an action
from ``MIX`` (feed 55 %, profile 10 %, message 12 %, live join 10 %, post 8 %,
gift 5 %) and a user uniformly from ``users`` ids.  Open loop: arrivals never
wait for earlier responses; at most ``max_in_flight`` requests are outstanding
and arrivals beyond that are dropped and counted in ``stats["dropped"]``.

``stats``: ``{"sent", "completed", "dropped", "by_code": {code: n}}`` where code
is the status code string, ``timeout`` or ``connect_error``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

#: action -> (share of traffic, HTTP method, gateway path)
MIX: dict[str, tuple[float, str, str]] = {
    "feed": (0.55, "GET", "/api/feed"),
    "profile": (0.10, "GET", "/api/profile"),
    "message": (0.12, "POST", "/api/message"),
    "live_join": (0.10, "POST", "/api/live/join"),
    "post": (0.08, "POST", "/api/post"),
    "gift": (0.05, "POST", "/api/gift"),
}


class TrafficGenerator:
    """Open-loop Poisson load on ``gateway_url``.

    ``rate``: requests/s (> 0); ``seed``: RNG seed; ``max_in_flight``: cap on
    outstanding requests; ``timeout``: per-request timeout in seconds;
    ``users`` / ``rooms``: id population sizes.
    """

    def __init__(self, gateway_url: str, rate: float = 20.0, *, seed: int = 1, max_in_flight: int = 500,
                 timeout: float = 3.0, users: int = 10_000, rooms: int = 40) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate!r}")
        self.gateway_url = gateway_url
        self.rate = float(rate)
        self.rng = random.Random(f"{seed}:traffic")
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.users = users
        self.rooms = rooms
        self._actions = list(MIX)
        self._weights = [MIX[a][0] for a in self._actions]
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.stats: dict[str, Any] = {"sent": 0, "completed": 0, "dropped": 0, "by_code": {}}

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._inflight)

    def start(self) -> None:
        """Begin generating load on the running loop."""
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=64,
                              keepalive_expiry=15.0)
        self._client = httpx.AsyncClient(limits=limits, timeout=self.timeout)
        self._task = asyncio.create_task(self._run(), name="traffic")

    async def stop(self) -> None:
        """Stop arrivals, cancel outstanding requests and close the client."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for t in list(self._inflight):
            t.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def request_for(self, action: str) -> tuple[str, str, dict[str, Any]]:
        """``(method, path, payload)`` for one request of ``action``; payload is query params or JSON body."""
        rng = self.rng
        uid = rng.randint(1, self.users)
        _, method, path = MIX[action]
        if action in ("feed", "profile"):
            return method, path, {"user_id": uid}
        if action == "message":
            return method, path, {"user_id": uid, "to_user": rng.randint(1, self.users), "text": "hi"}
        if action == "live_join":
            return method, path, {"user_id": uid, "room_id": rng.randint(1, self.rooms)}
        if action == "post":
            return method, path, {"user_id": uid, "text": "hello world"}
        return method, path, {"user_id": uid, "room_id": rng.randint(1, self.rooms),
                              "gift": rng.choice(["rose", "rocket", "crown"]), "amount": rng.randint(1, 100)}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.rng.expovariate(self.rate)
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell far behind (e.g. loop stalled): do not burst to catch up
                next_at = loop.time()
            action = self.rng.choices(self._actions, self._weights)[0]
            if len(self._inflight) >= self.max_in_flight:
                self.stats["dropped"] += 1
                continue
            method, path, payload = self.request_for(action)
            task = asyncio.create_task(self._send(method, path, payload))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, method: str, path: str, payload: dict[str, Any]) -> None:
        assert self._client is not None
        self.stats["sent"] += 1
        url = self.gateway_url + path
        try:
            if method == "GET":
                resp = await self._client.get(url, params=payload)
            else:
                resp = await self._client.post(url, json=payload)
            code = str(resp.status_code)
        except httpx.TimeoutException:
            code = "timeout"
        except httpx.HTTPError:
            code = "connect_error"
        self.stats["completed"] += 1
        by_code = self.stats["by_code"]
        by_code[code] = by_code.get(code, 0) + 1
