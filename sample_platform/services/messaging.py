"""IM messaging over WebSockets (``message``).

WebSocket ``/ws?user_id=N`` (one connection per user; a newer one replaces the
older).  Client -> server frames (JSON):

- ``{"type": "message", "id", "to", "text"}``: checked against the sender's
  profile (user), appended to kafka ``messages`` (required), then delivered to
  the recipient's socket if it is online here, else handed to push
  notifications (kafka ``notifications``).  The sender gets ``{"type": "ack",
  "id", "via"}`` or ``{"type": "error", "id", "error"}``.
- ``{"type": "typing", "to"}`` and ``{"type": "read", "to", "id"}``: relayed to
  the recipient if online (no storage).

Server -> client frames: ``message {id, from, text}``, ``typing {from}``,
``read {from, id}``, ``ack``, ``error``.  Each frame is one :meth:`run_op`
(worker slot, faults, ``frame`` service time).  On a deploy the old instance
closes its sockets with code 1012 (service restart) and clients reconnect.

HTTP: ``POST /messages`` ``{user_id, to_user, text}`` -> 201 (same path as a
message frame), ``GET /conversations/{user_id}`` -> recent messages
(cache-aside: redis, then postgres).  The archiver (consumer group
``message-archiver`` on ``messages``) writes each batch to postgres in one
statement.

Metrics: ``im_connections_online``, ``im_connections_opened_total``,
``im_messages_sent_total`` (messages submitted), ``im_messages_delivered_total{via="socket"|"push"}``
(acknowledged to the sender; delivery ratio = delivered / sent), ``im_message_delivery_seconds`` (submit
to recipient socket), ``im_events_total{type="typing"|"read"}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..metrics import DURATION_BUCKETS
from ..node import BadRequest, DownstreamError, InjectedFailure, RequestContext, int_field, json_body
from ..pool import PoolOverloaded
from .base import Consumer, Service

SEND_TIMEOUT_SECONDS = 1.0
CLOSE_SERVICE_RESTART = 1012


class MessageService(Service):
    """WebSocket IM with HTTP send/history and a kafka archiver."""

    def setup(self) -> None:
        r = self.registry
        self.sockets: dict[int, WebSocket] = {}
        Gauge("im_connections_online", "WebSocket connections open now.", registry=r).set_function(
            lambda: len(self.sockets))
        self.opened = Counter("im_connections_opened_total", "WebSocket connections accepted.", registry=r)
        self.sent = Counter("im_messages_sent_total", "Messages submitted by senders.", registry=r)
        self.delivered = Counter("im_messages_delivered_total", "Messages delivered, by path.", ["via"], registry=r)
        self.delivered.labels("socket")
        self.delivered.labels("push")
        self.delivery_seconds = Histogram("im_message_delivery_seconds",
                                          "Time from submit to the recipient's socket, seconds.",
                                          buckets=DURATION_BUCKETS, registry=r)
        self.events = Counter("im_events_total", "Typing and read events relayed.", ["type"], registry=r)
        self.events.labels("typing")
        self.events.labels("read")
        self.add_websocket_route("/ws", self.websocket)
        self.add_route("/messages", self.send_http, ("POST",))
        self.add_route("/conversations/{user_id}", self.conversations)

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [Consumer(self, "messages", "message-archiver", self._archive).run]

    async def close_connections(self) -> None:
        """Close every socket with 1012 (service restart) so clients reconnect elsewhere."""
        for ws in list(self.sockets.values()):
            try:
                await ws.close(CLOSE_SERVICE_RESTART)
            except Exception:  # already gone
                pass
        self.sockets.clear()

    # -- delivery -------------------------------------------------------------
    async def _push_to(self, uid: int, frame: dict[str, Any]) -> bool:
        ws = self.sockets.get(uid)
        if ws is None:
            return False
        try:
            await asyncio.wait_for(ws.send_json(frame), SEND_TIMEOUT_SECONDS)
            return True
        except Exception:  # closed or stuck socket: treat as offline
            if self.sockets.get(uid) is ws:
                del self.sockets[uid]
            return False

    async def deliver(self, ctx: RequestContext, sender: int, to: int, msg_id: str, text: str) -> str:
        """Store and deliver one message; returns the path (``socket``/``push``).  Raises
        DownstreamError when it could not be stored or handed over.  The caller counts it
        delivered once the sender is acknowledged (an operation failing after the hand-over
        is a failure for the sender, who would send again)."""
        t0 = time.perf_counter()
        self.sent.inc()
        await self.get_user(sender)
        await ctx.work_on("frame")
        await self.produce("messages", to, {"id": msg_id, "from": sender, "to": to, "text": text})
        if await self._push_to(to, {"type": "message", "id": msg_id, "from": sender, "text": text}):
            via = "socket"
            self.delivery_seconds.observe(time.perf_counter() - t0)
        else:
            await self.produce("notifications", to, {"kind": "message", "to": to, "from": sender})
            via = "push"
        await self.cache_cmd("incr", f"unread:{to}")
        return via

    # -- WebSocket ------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        try:
            uid = int(ws.query_params.get("user_id", ""))
        except ValueError:
            await ws.close(code=1008, reason="user_id query parameter must be an integer")
            return
        await ws.accept()
        previous = self.sockets.get(uid)
        self.sockets[uid] = ws
        self.opened.inc()
        if previous is not None:
            await _close_quietly(previous)
        try:
            while True:
                text = await ws.receive_text()
                try:
                    frame = json.loads(text)
                except ValueError as exc:
                    await ws.send_json({"type": "error", "id": "", "error": f"frame is not JSON: {exc}"})
                    continue
                await self._frame(ws, uid, frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self.sockets.get(uid) is ws:
                del self.sockets[uid]

    async def _frame(self, ws: WebSocket, uid: int, frame: Any) -> None:
        kind = frame.get("type") if isinstance(frame, dict) else None
        msg_id = str(frame.get("id", "")) if isinstance(frame, dict) else ""
        try:
            if kind not in ("message", "typing", "read"):
                raise BadRequest(f"unknown frame type {kind!r}; valid: message, typing, read")
            to = int_field(frame, "to")
            if kind == "message":
                text = str(frame.get("text", ""))[:1000]
                via = await self.run_op(lambda ctx: self.deliver(ctx, uid, to, msg_id, text))
                self.delivered.labels(via).inc()
                await ws.send_json({"type": "ack", "id": msg_id, "via": via})
            else:
                await self.run_op(lambda ctx: self._relay(ctx, kind, uid, to, msg_id))
        except (BadRequest, DownstreamError, InjectedFailure, PoolOverloaded) as exc:
            await ws.send_json({"type": "error", "id": msg_id, "error": str(exc) or type(exc).__name__})

    async def _relay(self, ctx: RequestContext, kind: str, uid: int, to: int, msg_id: str) -> None:
        await ctx.work_on("frame")
        frame = {"type": kind, "from": uid} if kind == "typing" else {"type": kind, "from": uid, "id": msg_id}
        await self._push_to(to, frame)
        self.events.labels(kind).inc()

    # -- HTTP -----------------------------------------------------------------
    async def send_http(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        uid, to = int_field(body, "user_id"), int_field(body, "to_user")
        msg_id = f"h{uid}-{time.time_ns()}"
        via = request.state.via = await self.deliver(ctx, uid, to, msg_id, str(body.get("text", ""))[:1000])
        return JSONResponse({"id": msg_id, "status": "sent", "via": via}, status_code=201)

    def record_outcome(self, request: Request, route: str, status: int, seconds: float) -> None:
        if route == "/messages" and status == 201:
            self.delivered.labels(request.state.via).inc()

    async def conversations(self, request: Request, ctx: RequestContext) -> Response:
        uid = int_field(request.path_params, "user_id")
        await ctx.work_on("/conversations/{user_id}")
        key = f"conv:{uid}"
        rows = await self.cache_get(key, [])
        if rows is None:
            rows = (await self.query("select", "messages", uid))["rows"]
            await self.cache_cmd("set", key, rows)
        return JSONResponse({"user": uid, "messages": rows})

    async def _archive(self, ctx: RequestContext, messages: list[Any]) -> None:
        await self.query("insert", "messages", "batch", rows=len(messages))


async def _close_quietly(ws: WebSocket) -> None:
    try:
        await ws.close()
    except Exception:  # already closed
        pass
