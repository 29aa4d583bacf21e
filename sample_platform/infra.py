"""Simulated infrastructure nodes: postgres, redis, kafka (small HTTP servers, not real databases).

- postgres ``POST /query`` ``{"operation": "select"|"insert"|"update", "table", "key"}``
  -> ``{"rows": [...]}`` / ``{"id": n, "rowcount": 1}`` / ``{"rowcount": 1}``.
  Metrics: ``pg_query_duration_seconds{operation}`` (includes injected latency),
  ``pg_connections_active`` (occupied worker slots), ``pg_connections_max``.
- redis ``POST /command`` ``{"command": "get"|"set"|"del"|"incr"|"sadd"|"zincrby", "key", "value"}``
  -> ``{"ok": true, "hit": bool, "value": ...}``.  GET hits with probability
  ``hit_ratio`` (0.85).  Metrics: ``redis_keyspace_hits_total``,
  ``redis_keyspace_misses_total``, ``redis_command_duration_seconds{command}``.
- kafka ``POST /produce/{topic}`` (topics ``posts``, ``messages``, ``gifts``)
  -> ``{"topic", "offset"}``.  One internal consumer group per topic consumes at
  a fixed capacity (msgs/s) holding a worker slot per fetch, so kafka faults slow
  consumption.  Metrics: ``kafka_messages_produced_total{topic}``,
  ``kafka_messages_consumed_total{topic}``,
  ``kafka_consumergroup_lag{topic, consumergroup}`` (= produced - consumed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .metrics import DURATION_BUCKETS
from .node import BadRequest, Node, RequestContext, json_body
from .pool import PoolOverloaded


class Postgres(Node):
    """Simulated relational database; the worker pool models its connection slots."""

    pool_size = 32
    queue_timeout = 1.0
    median_seconds = {"select": 0.002, "insert": 0.004, "update": 0.003}

    def setup(self) -> None:
        r = self.registry
        self.query_duration = Histogram("pg_query_duration_seconds", "Query execution time in seconds.",
                                        ["operation"], buckets=DURATION_BUCKETS, registry=r)
        Gauge("pg_connections_active", "Connections executing or stuck.",
              registry=r).set_function(lambda: self.pool.occupied)
        Gauge("pg_connections_max", "Maximum connections.", registry=r).set(self.pool.size)
        self._next_id = 0
        self.add_route("/query", self.query, ("POST",))

    async def query(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        op = body.get("operation")
        if op not in self.median_seconds:
            raise BadRequest(f"unknown operation {op!r}; valid: {', '.join(self.median_seconds)}")
        t0 = time.perf_counter()
        await ctx.work(self.median_seconds[op])
        self.query_duration.labels(op).observe(time.perf_counter() - t0)
        key = body.get("key")
        if op == "select":
            if body.get("table") == "posts":
                rows = [{"id": f"{key}-{i}", "author": key} for i in range(5)]
            else:
                rows = [{"id": key, "name": f"user{key}"}]
            return JSONResponse({"rows": rows})
        if op == "insert":
            self._next_id += 1
            return JSONResponse({"id": self._next_id, "rowcount": 1})
        return JSONResponse({"rowcount": 1})


class Redis(Node):
    """Simulated cache; GET hits with probability ``hit_ratio``."""

    queue_timeout = 1.0
    hit_ratio = 0.85
    max_keys = 20_000
    commands = ("get", "set", "del", "incr", "sadd", "zincrby")

    def setup(self) -> None:
        r = self.registry
        self.hits = Counter("redis_keyspace_hits_total", "GET hits.", registry=r)
        self.misses = Counter("redis_keyspace_misses_total", "GET misses.", registry=r)
        self.cmd_duration = Histogram("redis_command_duration_seconds", "Command execution time in seconds.",
                                      ["command"], buckets=DURATION_BUCKETS, registry=r)
        self.store: dict[str, object] = {}
        self.add_route("/command", self.command, ("POST",))

    async def command(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        cmd, key = body.get("command"), str(body.get("key"))
        if cmd not in self.commands:
            raise BadRequest(f"unknown command {cmd!r}; valid: {', '.join(self.commands)}")
        t0 = time.perf_counter()
        await ctx.work(0.0004)
        self.cmd_duration.labels(cmd).observe(time.perf_counter() - t0)
        if cmd == "get":
            if self.rng.random() < self.hit_ratio:
                self.hits.inc()
                return JSONResponse({"ok": True, "hit": True, "value": self.store.get(key)})
            self.misses.inc()
            return JSONResponse({"ok": True, "hit": False, "value": None})
        if cmd == "del":
            self.store.pop(key, None)
        else:
            if len(self.store) >= self.max_keys:
                self.store.clear()
            if cmd == "set":
                self.store[key] = body.get("value")
            else:  # incr / sadd / zincrby: keep a counter
                prev = self.store.get(key)
                self.store[key] = (prev if isinstance(prev, int) else 0) + 1
        return JSONResponse({"ok": True, "hit": False, "value": None})


class Kafka(Node):
    """Simulated broker with one internal consumer group per topic."""

    pool_size = 32
    queue_timeout = 1.0
    topics = {"posts": "feed-fanout", "messages": "message-delivery", "gifts": "gift-settlement"}
    consumer_capacity = 8.0  # messages/s per topic when healthy
    consumer_interval = 0.25  # seconds between fetches

    def setup(self) -> None:
        r = self.registry
        self.produced_c = Counter("kafka_messages_produced_total", "Messages produced.", ["topic"], registry=r)
        self.consumed_c = Counter("kafka_messages_consumed_total", "Messages consumed.", ["topic"], registry=r)
        lag = Gauge("kafka_consumergroup_lag", "Produced minus consumed messages.",
                    ["topic", "consumergroup"], registry=r)
        self.produced = {t: 0 for t in self.topics}
        self.consumed = {t: 0 for t in self.topics}
        for topic, group in self.topics.items():
            self.produced_c.labels(topic)
            self.consumed_c.labels(topic)
            lag.labels(topic, group).set_function(lambda t=topic: self.produced[t] - self.consumed[t])
        self.add_route("/produce/{topic}", self.produce, ("POST",))

    async def produce(self, request: Request, ctx: RequestContext) -> Response:
        topic = request.path_params["topic"]
        if topic not in self.topics:
            return JSONResponse({"error": f"unknown topic {topic!r}; valid: {', '.join(self.topics)}"},
                                status_code=404)
        await json_body(request)
        await ctx.work(0.0015)
        self.produced[topic] += 1
        self.produced_c.labels(topic).inc()
        return JSONResponse({"topic": topic, "offset": self.produced[topic]})

    def background(self) -> Iterable[Callable[[], Awaitable[None]]]:
        return [lambda t=topic: self._consume(t) for topic in self.topics]

    async def _consume(self, topic: str) -> None:
        """Fetch loop: every interval take one slot, fetch up to capacity*interval messages."""
        batch = max(1, round(self.consumer_capacity * self.consumer_interval))
        while True:
            await asyncio.sleep(self.consumer_interval)
            lag = self.produced[topic] - self.consumed[topic]
            if lag <= 0:
                continue
            effects = self.injector.effects(self.name)
            try:
                await self.pool.acquire(self.queue_timeout)
            except PoolOverloaded:
                continue
            try:
                await asyncio.sleep(self.service_time(0.001) + effects.extra_seconds)
                if effects.error_ratio and self.rng.random() < effects.error_ratio:
                    continue  # failed fetch
                n = min(lag, batch)
                self.consumed[topic] += n
                self.consumed_c.labels(topic).inc(n)
            finally:
                self.pool.release()
