"""Open-loop HTTP traffic on the gateway, shaped over simulated time.

Poisson arrivals at ``rate x shape.multiplier(sim_now, seed) x surge factors``
requests/s (seeded).  Each arrival picks an action from ``MIX`` by its share
(times its surge factor) and a user uniformly from ``users`` ids.  Surge
reactions: during ``celebrity_live`` the ``live_join`` and ``gift`` shares are
multiplied by its factor and the extra requests go to its room; during
``marketing_push`` the ``feed`` share rises by a quarter of the extra factor
(users coming back from the push).  Open loop: arrivals never wait for earlier
responses; at most ``max_in_flight`` requests are outstanding and arrivals
beyond that are dropped and counted in ``stats["dropped"]``.  A successful live
join is handed to the :class:`~sample_platform.traffic.live.LiveAudience`,
which may play the stream.

``stats``: ``{"sent", "completed", "dropped", "by_code": {code: n}}`` where code
is the status code string, ``timeout`` or ``connect_error``.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING, Any

import aiohttp

from ..shape import SimClock, multiplier

if TYPE_CHECKING:
    from ..surges import SurgeController
    from .live import LiveAudience

#: action -> (share of traffic, HTTP method, gateway path)
MIX: dict[str, tuple[float, str, str]] = {
    "feed": (0.30, "GET", "/api/feed"),
    "profile": (0.08, "GET", "/api/profile"),
    "post": (0.03, "POST", "/api/post"),
    "like": (0.08, "POST", "/api/like"),
    "comment": (0.04, "POST", "/api/comment"),
    "media": (0.03, "POST", "/api/media"),
    "search": (0.08, "GET", "/api/search"),
    "message": (0.03, "POST", "/api/message"),
    "conversations": (0.04, "GET", "/api/conversations"),
    "notifications": (0.08, "GET", "/api/notifications"),
    "live_join": (0.11, "POST", "/api/live/join"),
    "gift": (0.10, "POST", "/api/gift"),
}

VOCABULARY = ("cat dog travel food music dance funny sunset beach city night cooking football game art "
              "coffee rain snow mountain river tech phone movie book fashion car train party love baby "
              "garden flower summer winter spring autumn morning workout yoga pizza sushi guitar piano").split()
GIFTS = ("rose", "heart", "rocket", "crown", "castle")


def offered_rps(rate: float) -> dict[str, float]:
    """Mean offered requests/s per gateway route at mean ``rate`` (for the gateway's rate limits)."""
    return {path: share * rate for share, _, path in MIX.values()}


class TrafficGenerator:
    """Open-loop Poisson load on ``gateway_url``.

    ``rate``: mean requests/s over a day (> 0); ``seed``: RNG seed; ``clock``:
    simulated time (default: real time); ``surges``: active surges to react to;
    ``audience``: live viewers to hand joins to; ``max_in_flight``: cap on
    outstanding requests; ``timeout``: per-request timeout in seconds;
    ``users`` / ``rooms``: id population sizes.
    """

    def __init__(self, gateway_url: str, rate: float = 20.0, *, seed: int = 1, clock: SimClock | None = None,
                 surges: "SurgeController | None" = None, audience: "LiveAudience | None" = None,
                 max_in_flight: int = 500, timeout: float = 3.0, users: int = 10_000, rooms: int = 40) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate!r}")
        self.gateway_url = gateway_url
        self.rate = float(rate)
        self.seed = seed
        self.clock = clock or SimClock()
        self.surges = surges
        self.audience = audience
        self.rng = random.Random(f"{seed}:traffic")
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.users = users
        self.rooms = rooms
        self._actions = list(MIX)
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None
        self.stats: dict[str, Any] = {"sent": 0, "completed": 0, "dropped": 0, "by_code": {}}

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._inflight)

    def _factor(self, kind: str) -> float:
        return self.surges.factor(kind) if self.surges is not None else 1.0

    def weights(self) -> dict[str, float]:
        """Each action's share of the mean rate now, surge factors applied (they may sum above 1)."""
        celebrity, push = self._factor("celebrity_live"), self._factor("marketing_push")
        w = {a: share for a, (share, _, _) in MIX.items()}
        w["live_join"] *= celebrity
        w["gift"] *= celebrity
        w["feed"] *= 1 + 0.25 * (push - 1)
        return w

    def current_rate(self) -> float:
        """Requests/s now: mean rate x traffic multiplier at simulated now x surge factors."""
        return self.rate * multiplier(self.clock.now(), self.seed) * sum(self.weights().values())

    def start(self) -> None:
        """Begin generating load on the running loop."""
        self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.max_in_flight),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout))
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
            await self._client.close()
            self._client = None

    def _room(self, action: str) -> int:
        """A live room: the celebrity's for the extra share of a celebrity surge, else a live one."""
        rng = self.rng
        if self.surges is not None:
            for s in self.surges.active("celebrity_live"):
                if rng.random() < 1 - 1 / float(s.params["factor"]):
                    return int(s.params["room_id"])
        live = self.audience.live_rooms() if self.audience is not None else []
        return rng.choice(live) if live else rng.randint(1, self.rooms)

    def request_for(self, action: str) -> tuple[str, str, dict[str, Any]]:
        """``(method, path, payload)`` for one request of ``action``; payload is query params or JSON body."""
        rng = self.rng
        uid = rng.randint(1, self.users)
        _, method, path = MIX[action]
        if action in ("feed", "profile", "conversations", "notifications"):
            return method, path, {"user_id": uid}
        if action == "search":
            return method, path, {"user_id": uid, "q": " ".join(rng.sample(VOCABULARY, rng.choice((1, 1, 2))))}
        if action == "post":
            return method, path, {"user_id": uid, "text": " ".join(rng.sample(VOCABULARY, 5))}
        if action in ("like", "comment"):
            post_id = f"{rng.randint(1, self.users)}-{rng.randint(0, 4)}"
            return method, path, {"user_id": uid, "post_id": post_id, "text": "nice"}
        if action == "media":
            return method, path, {"user_id": uid, "bytes": rng.choice((2e6, 8e6, 20e6))}
        if action == "message":
            return method, path, {"user_id": uid, "to_user": rng.randint(1, self.users), "text": "hi"}
        if action == "live_join":
            return method, path, {"user_id": uid, "room_id": self._room(action)}
        return method, path, {"user_id": uid, "room_id": self._room(action), "gift": rng.choice(GIFTS),
                              "amount": rng.randint(1, 100)}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            weights = self.weights()
            rate = self.rate * multiplier(self.clock.now(), self.seed) * sum(weights.values())
            next_at += self.rng.expovariate(rate)
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell far behind (e.g. loop stalled): do not burst to catch up
                next_at = loop.time()
            action = self.rng.choices(self._actions, [weights[a] for a in self._actions])[0]
            if len(self._inflight) >= self.max_in_flight:
                self.stats["dropped"] += 1
                continue
            method, path, payload = self.request_for(action)
            task = asyncio.create_task(self._send(action, method, path, payload))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, action: str, method: str, path: str, payload: dict[str, Any]) -> None:
        assert self._client is not None
        self.stats["sent"] += 1
        joined = None
        try:
            get = method == "GET"
            async with self._client.request(method, self.gateway_url + path, params=payload if get else None,
                                            json=None if get else payload) as resp:
                body = await resp.read()
                code = str(resp.status)
            if action == "live_join" and code == "200":
                joined = json.loads(body)
        except TimeoutError:
            code = "timeout"
        except aiohttp.ClientError:
            code = "connect_error"
        self.stats["completed"] += 1
        by_code = self.stats["by_code"]
        by_code[code] = by_code.get(code, 0) + 1
        if joined is not None and self.audience is not None:
            self.audience.on_join(payload["user_id"], int(joined["room_id"]), str(joined["cdn"]))
