"""Virtual-gift ("prop") trading: ``gift`` (orders), ``payment``, ``inventory`` and the
sharded gift database (``giftdb-0``, ``giftdb-1``).

gift ``POST /orders`` ``{user_id, room_id, gift, amount}`` -> 201
``{"order_id", "shard"}``.  The order's shard is ``user_id % len(GIFT_SHARDS)``.
Steps, each one call: the buyer's profile (user), a stock reservation
(inventory; 409 out of stock), the charge (payment; 402 declined), an
idempotency-key select and the order insert on the shard's database, the
settlement message (kafka ``gifts``), the room leaderboard (redis, best effort).
A 4xx from inventory or payment is passed on; anything else failing answers
502/504.

payment ``POST /charges`` ``{user_id, amount}`` -> 201, or 402 with probability
``params.decline_ratio``: one wallet update in postgres.  The settlement
(consumer group ``gift-settlement`` on ``gifts``) marks a batch's orders settled
on their shards (one statement per shard present) and credits the streamers
(one postgres statement).

inventory ``POST /reservations`` ``{gift, quantity}`` -> 201, or 409 with
probability ``params.out_of_stock_ratio``: one stock decrement in redis
(required: redis holds the stock).

Metrics: gift ``gift_orders_total{shard, status="ok"|"failed"}`` (shard is the
database node, ``none`` when the order was refused before the shard was
known), ``gift_order_duration_seconds{shard}``; payment
``payment_charges_total{status="ok"|"declined"}``, ``payment_settled_gifts_total``;
inventory ``inventory_reservations_total{status="ok"|"out_of_stock"}``.
"""

from __future__ import annotations

import collections
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..graph import GIFT_SHARDS
from ..metrics import DURATION_BUCKETS
from ..node import BadRequest, RequestContext, int_field, json_body
from ..params import InventoryParams, PaymentParams
from .base import Consumer, Service

GIFTS = ("rose", "heart", "rocket", "crown", "castle")


def shard_of(user_id: int) -> str:
    """The gift database node holding ``user_id``'s orders."""
    return GIFT_SHARDS[user_id % len(GIFT_SHARDS)]


class GiftService(Service):
    """Gift orders across the sharded database."""

    def setup(self) -> None:
        r = self.registry
        self.orders = Counter("gift_orders_total", "Gift orders by shard and outcome.", ["shard", "status"],
                              registry=r)
        self.order_duration = Histogram("gift_order_duration_seconds", "Gift order latency by shard, seconds.",
                                        ["shard"], buckets=DURATION_BUCKETS, registry=r)
        for shard in GIFT_SHARDS:
            self.orders.labels(shard, "ok")
            self.orders.labels(shard, "failed")
            self.order_duration.labels(shard)
        self.add_route("/orders", self.order, ("POST",))

    def record_outcome(self, request: Request, route: str, status: int, seconds: float) -> None:
        shard = getattr(request.state, "shard", "none")
        self.orders.labels(shard, "ok" if status < 400 else "failed").inc()
        if shard != "none":
            self.order_duration.labels(shard).observe(seconds)

    async def order(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid, room, amount = int_field(body, "user_id"), int_field(body, "room_id"), int_field(body, "amount")
        gift = body.get("gift", "rose")
        if gift not in GIFTS or not 1 <= amount <= 10_000:
            raise BadRequest(f"gift must be one of {', '.join(GIFTS)} and amount in [1, 10000]; "
                             f"got {gift!r}, {amount!r}")
        shard = request.state.shard = shard_of(uid)
        await self.get_user(uid)
        await ctx.work_on("/orders")
        for downstream, path, payload in (("inventory", "/reservations", {"gift": gift, "quantity": 1}),
                                          ("payment", "/charges", {"user_id": uid, "amount": amount})):
            r = await self.call(downstream, "POST", path, json=payload)
            if r.status_code >= 400:
                return Response(r.content, status_code=r.status_code, media_type="application/json")
        key = f"{uid}:{room}:{gift}:{amount}"
        await self.query("select", "orders", key, db=shard)
        res = await self.query("insert", "orders", key, db=shard)
        await self.produce("gifts", room, {"room": room, "amount": amount, "shard": shard})
        await self.cache_cmd("zincrby", f"leaderboard:{room}", amount)
        return JSONResponse({"order_id": f"{shard}-{res['id']}", "shard": shard}, status_code=201)


class PaymentService(Service):
    """Wallet charges and gift settlement."""

    params: PaymentParams

    def setup(self) -> None:
        r = self.registry
        self.charges = Counter("payment_charges_total", "Charges by outcome.", ["status"], registry=r)
        self.charges.labels("ok")
        self.charges.labels("declined")
        self.settled = Counter("payment_settled_gifts_total", "Gifts settled to streamers.", registry=r)
        self.add_route("/charges", self.charge, ("POST",))

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [Consumer(self, "gifts", "gift-settlement", self._settle).run]

    async def charge(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid, amount = int_field(body, "user_id"), int_field(body, "amount")
        await ctx.work_on("/charges")
        if self.rng.random() < self.params.decline_ratio:
            self.charges.labels("declined").inc()
            return JSONResponse({"error": f"user {uid}: insufficient funds for {amount}"}, status_code=402)
        await self.query("update", "wallets", uid)
        self.charges.labels("ok").inc()
        return JSONResponse({"user_id": uid, "amount": amount}, status_code=201)

    async def _settle(self, ctx: RequestContext, gifts: list[Any]) -> None:
        by_shard = collections.Counter(g.get("shard") for g in gifts
                                       if isinstance(g, dict) and g.get("shard") in GIFT_SHARDS)
        for shard, rows in sorted(by_shard.items()):
            await self.query("update", "orders", "settled", db=shard, rows=rows)
        await self.query("update", "earnings", "batch", rows=len(gifts))
        self.settled.inc(len(gifts))


class InventoryService(Service):
    """Gift stock, held in redis."""

    params: InventoryParams

    def setup(self) -> None:
        self.reservations = Counter("inventory_reservations_total", "Stock reservations by outcome.", ["status"],
                                    registry=self.registry)
        self.reservations.labels("ok")
        self.reservations.labels("out_of_stock")
        self.add_route("/reservations", self.reserve, ("POST",))

    async def reserve(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        gift, quantity = body.get("gift"), int_field(body, "quantity")
        if gift not in GIFTS or not 1 <= quantity <= 100:
            raise BadRequest(f"gift must be one of {', '.join(GIFTS)} and quantity in [1, 100]")
        await ctx.work_on("/reservations")
        if self.rng.random() < self.params.out_of_stock_ratio:
            self.reservations.labels("out_of_stock").inc()
            return JSONResponse({"error": f"{gift} is out of stock"}, status_code=409)
        await self.call("redis", "POST", "/command", json={"command": "decrby", "key": f"stock:{gift}",
                                                           "value": quantity})
        self.reservations.labels("ok").inc()
        return JSONResponse({"gift": gift, "quantity": quantity}, status_code=201)
