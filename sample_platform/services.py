"""Application services: gateway, user, feed, post, live, gift, message.

Routes (route templates are the ``route`` label of ``http_requests_total``):

- gateway: ``GET /api/feed?user_id=``, ``GET /api/profile?user_id=``,
  ``POST /api/post``, ``POST /api/message``, ``POST /api/live/join``,
  ``POST /api/gift`` (JSON bodies with ``user_id`` etc.), proxied to the owning
  service; a 5xx/timeout/connection failure answers 502 (504 for timeouts).
- user: ``GET /users/{user_id}`` -- cache-aside: redis get, on miss postgres
  select then redis set.
- feed: ``GET /feed/{user_id}`` -- user profile, redis timeline, post listing.
- post: ``GET /posts?for_user=`` (cache-aside), ``POST /posts`` (postgres insert,
  kafka ``posts``, redis invalidation).
- message: ``POST /messages`` -- sender lookup, kafka ``messages``, redis unread counter.
- live: ``POST /rooms/{room_id}/join`` -- user lookup, redis room set.
- gift: ``POST /orders`` -- user lookup, postgres wallet update, kafka ``gifts``,
  redis leaderboard.

Redis is always best effort (a failure is a cache miss); other downstreams are
required.  Business metrics: gateway ``platform_online_users``, live
``live_viewers``, gift ``gift_orders_total{status}``, message
``messages_sent_total``, post ``posts_created_total``.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from typing import Any, Callable

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .graph import GATEWAY_ROUTES
from .node import BadRequest, Node, RequestContext, int_field, json_body


class RecentSet:
    """Distinct ids seen within the last ``window`` seconds (for online-user counts)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[int, float] = OrderedDict()

    def add(self, key: int) -> None:
        """Mark ``key`` as seen now."""
        self._seen[key] = self.clock()
        self._seen.move_to_end(key)

    def count(self) -> int:
        """Number of distinct keys seen within the window."""
        cutoff = self.clock() - self.window
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= cutoff:
                break
            self._seen.popitem(last=False)
        return len(self._seen)


class ExpiringCount:
    """Count of items that each expire at their own time (for live viewers)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._expiries: list[float] = []

    def add(self, lifetime: float) -> None:
        """Add one item living ``lifetime`` seconds."""
        heapq.heappush(self._expiries, self.clock() + lifetime)

    def count(self) -> int:
        """Items not yet expired."""
        now = self.clock()
        while self._expiries and self._expiries[0] <= now:
            heapq.heappop(self._expiries)
        return len(self._expiries)


class Service(Node):
    """Node with cache-aside helpers over redis and postgres."""

    async def cache_get(self, key: str, synthetic: Any) -> Any | None:
        """Redis GET: the cached value on a hit, None on a miss *or* any redis failure.

        The simulated redis decides hits by probability and may not hold a value;
        a hit without a value of ``synthetic``'s type yields ``synthetic``.
        """
        r = await self.best_effort("redis", "POST", "/command", json={"command": "get", "key": key})
        if r is None or r.status_code != 200:
            return None
        data = r.json()
        if not data.get("hit"):
            return None
        value = data.get("value")
        return value if isinstance(value, type(synthetic)) else synthetic

    async def cache_cmd(self, command: str, key: str, value: Any = None) -> None:
        """Best-effort redis write (set/del/incr/sadd/zincrby); failures are ignored."""
        await self.best_effort("redis", "POST", "/command", json={"command": command, "key": key, "value": value})

    async def query(self, operation: str, table: str, key: Any) -> dict[str, Any]:
        """Required postgres query; returns the JSON answer, raises DownstreamError."""
        r = await self.call("postgres", "POST", "/query", json={"operation": operation, "table": table, "key": key})
        return r.json()

    async def produce(self, topic: str, key: Any, value: Any) -> None:
        """Required kafka produce; raises DownstreamError."""
        await self.call("kafka", "POST", f"/produce/{topic}", json={"key": key, "value": value})

    async def get_user(self, user_id: int) -> dict[str, Any]:
        """Required user lookup via the user service; raises DownstreamError, BadRequest on 4xx."""
        r = await self.call("user", "GET", f"/users/{user_id}")
        if r.status_code != 200:
            raise BadRequest(f"user {user_id}: HTTP {r.status_code}")
        return r.json()["user"]


class Gateway(Service):
    """Public entry point; routes ``/api/*`` to the owning service."""

    queue_timeout = 3.0  # the traffic generator's timeout

    def setup(self) -> None:
        self.online = RecentSet(60.0)
        Gauge("platform_online_users", "Distinct users seen by the gateway in the last 60 s.",
              registry=self.registry).set_function(self.online.count)
        for path, downstream in GATEWAY_ROUTES.items():
            method = "GET" if path in ("/api/feed", "/api/profile") else "POST"
            self.add_route(path, self._proxy(path, downstream, method), (method,))

    def _proxy(self, path: str, downstream: str, method: str):
        async def handler(request: Request, ctx: RequestContext) -> Response:
            data: Any = request.query_params if method == "GET" else await json_body(request)
            uid = int_field(data, "user_id")
            self.online.add(uid)
            await ctx.work(0.0008)
            if path == "/api/feed":
                r = await self.call("feed", "GET", f"/feed/{uid}")
            elif path == "/api/profile":
                r = await self.call("user", "GET", f"/users/{uid}")
            elif path == "/api/live/join":
                room = int_field(data, "room_id")
                r = await self.call("live", "POST", f"/rooms/{room}/join", json={"user_id": uid})
            else:
                internal = {"post": "/posts", "message": "/messages", "gift": "/orders"}[downstream]
                r = await self.call(downstream, "POST", internal, json=dict(data))
            return Response(r.content, status_code=r.status_code, media_type="application/json")

        return handler


class UserService(Service):
    """Profiles with cache-aside over redis/postgres."""

    def setup(self) -> None:
        self.add_route("/users/{user_id}", self.get_profile)

    async def get_profile(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work(0.0015)
        key = f"user:{uid}"
        user = await self.cache_get(key, {"id": uid, "name": f"user{uid}"})
        if user is None:
            rows = (await self.query("select", "users", uid))["rows"]
            user = rows[0] if rows else {"id": uid}
            await self.cache_cmd("set", key, user)
        return JSONResponse({"user": user})


class FeedService(Service):
    """Home feed: profile + cached timeline + post hydration."""

    def setup(self) -> None:
        self.add_route("/feed/{user_id}", self.get_feed)

    async def get_feed(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        user = await self.get_user(uid)
        await ctx.work(0.002)
        key = f"timeline:{uid}"
        timeline = await self.cache_get(key, [])
        r = await self.call("post", "GET", "/posts", params={"for_user": uid})
        posts = r.json().get("posts", [])
        if timeline is None:
            await self.cache_cmd("set", key, [p["id"] for p in posts])
        return JSONResponse({"user": user["id"], "items": posts[:10]})


class PostService(Service):
    """Post listing (cache-aside) and creation (postgres + kafka)."""

    def setup(self) -> None:
        self.created = Counter("posts_created_total", "Posts created.", registry=self.registry)
        self.add_route("/posts", self.list_posts, ("GET",))
        self.add_route("/posts", self.create_post, ("POST",))

    async def list_posts(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.query_params, "for_user")
        await ctx.work(0.0015)
        key = f"posts:{uid}"
        posts = await self.cache_get(key, [{"id": f"{uid}-{i}", "author": uid} for i in range(5)])
        if posts is None:
            posts = (await self.query("select", "posts", uid))["rows"]
            await self.cache_cmd("set", key, posts)
        return JSONResponse({"posts": posts})

    async def create_post(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid = int_field(body, "user_id")
        await ctx.work(0.002)
        res = await self.query("insert", "posts", uid)
        await self.produce("posts", uid, {"post_id": res["id"], "author": uid})
        await self.cache_cmd("del", f"posts:{uid}")
        self.created.inc()
        return JSONResponse({"post_id": res["id"]}, status_code=201)


class MessageService(Service):
    """Direct messages: sender lookup, kafka delivery, unread counter."""

    def setup(self) -> None:
        self.sent = Counter("messages_sent_total", "Direct messages sent.", registry=self.registry)
        self.add_route("/messages", self.send, ("POST",))

    async def send(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid, to = int_field(body, "user_id"), int_field(body, "to_user")
        await self.get_user(uid)
        await ctx.work(0.0015)
        await self.produce("messages", to, {"from": uid, "to": to, "text": str(body.get("text", ""))[:200]})
        await self.cache_cmd("incr", f"unread:{to}")
        self.sent.inc()
        return JSONResponse({"status": "sent"}, status_code=201)


class LiveService(Service):
    """Live rooms: joining counts a viewer for a random watch time."""

    mean_watch_seconds = 90.0

    def setup(self) -> None:
        self.viewers = ExpiringCount()
        Gauge("live_viewers", "Viewers currently watching live rooms.",
              registry=self.registry).set_function(self.viewers.count)
        self.add_route("/rooms/{room_id}/join", self.join, ("POST",))

    async def join(self, request: Request, ctx: RequestContext) -> Response:
        room = int_field(request.path_params, "room_id")
        uid = int_field(await json_body(request), "user_id")
        await self.get_user(uid)
        await ctx.work(0.0015)
        await self.cache_cmd("sadd", f"room:{room}:viewers", uid)
        self.viewers.add(self.rng.expovariate(1.0 / self.mean_watch_seconds))
        return JSONResponse({"room_id": room, "viewers": self.viewers.count()})


class GiftService(Service):
    """Gift orders: user lookup, wallet debit, kafka settlement, leaderboard."""

    def setup(self) -> None:
        self.orders = Counter("gift_orders_total", "Gift orders by outcome.", ["status"], registry=self.registry)
        self.orders.labels("ok")
        self.orders.labels("failed")
        self.add_route("/orders", self.order, ("POST",))

    def record_outcome(self, route: str, status: int) -> None:
        if route == "/orders":
            self.orders.labels("ok" if status < 400 else "failed").inc()

    async def order(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid, room = int_field(body, "user_id"), int_field(body, "room_id")
        amount = int_field(body, "amount")
        await self.get_user(uid)
        await ctx.work(0.002)
        await self.query("update", "wallets", uid)
        await self.produce("gifts", room, {"from": uid, "room": room, "amount": amount})
        await self.cache_cmd("zincrby", f"leaderboard:{room}", amount)
        return JSONResponse({"status": "ok"}, status_code=201)
