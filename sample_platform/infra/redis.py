"""Simulated cache (``redis``), with redis_exporter's metric names.

- ``POST /command`` ``{"command", "key", "value"?}`` -> ``{"ok": true, "hit": bool, "value": ...}``.
- ``POST /pipeline`` ``{"commands": [{"command", "key", "value"?}, ...]}`` ->
  ``{"results": [...]}``: several commands in one round trip (one slot, one
  service time per command).

Commands: ``get`` (hits with probability ``params.hit_ratio``: a hit returns the
stored value, or None when nothing was stored), ``set``, ``del``, ``incr``,
``decrby``, ``sadd``, ``zincrby`` (counters), ``lpush`` (capped list of 50),
``lrange`` (the list).  At most ``params.max_keys`` keys are kept (all are
dropped when full, like an eviction storm -- rare at the platform's key counts).

Metrics: ``redis_keyspace_hits_total``, ``redis_keyspace_misses_total``,
``redis_commands_total{cmd}``, ``redis_commands_duration_seconds_total{cmd}``,
``redis_db_keys{db}``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, Node, RequestContext, json_body

COMMANDS = ("get", "set", "del", "incr", "decrby", "sadd", "zincrby", "lpush", "lrange")
LIST_CAP = 50
MAX_PIPELINE = 1000


class Redis(Node):
    """Simulated cache; GET hits with probability ``params.hit_ratio``."""

    def setup(self) -> None:
        r = self.registry
        self.hits = Counter("redis_keyspace_hits_total", "GET hits.", registry=r)
        self.misses = Counter("redis_keyspace_misses_total", "GET misses.", registry=r)
        self.calls = Counter("redis_commands_total", "Commands processed.", ["cmd"], registry=r)
        self.cmd_seconds = Counter("redis_commands_duration_seconds_total",
                                   "Time spent executing commands, in seconds.", ["cmd"], registry=r)
        self.store: dict[str, Any] = {}
        Gauge("redis_db_keys", "Keys in the database.", ["db"], registry=r).labels("db0").set_function(
            lambda: len(self.store))
        self.add_route("/command", self.command, ("POST",))
        self.add_route("/pipeline", self.pipeline, ("POST",))

    async def command(self, request: Request, ctx: RequestContext) -> Response:
        cmd = self._check(await json_body(request))
        t0 = time.perf_counter()
        await ctx.work_on("command")
        result = self._execute(cmd)
        self.cmd_seconds.labels(cmd["command"]).inc(time.perf_counter() - t0)
        return JSONResponse(result)

    async def pipeline(self, request: Request, ctx: RequestContext) -> Response:
        commands = (await json_body(request)).get("commands")
        if not isinstance(commands, list) or not 1 <= len(commands) <= MAX_PIPELINE:
            raise BadRequest(f"'commands' must be a list of 1..{MAX_PIPELINE} commands")
        checked = [self._check(c) for c in commands]
        t0 = time.perf_counter()
        await ctx.work(self.params.median("command") * len(checked))
        share = (time.perf_counter() - t0) / len(checked)
        results = []
        for cmd in checked:
            results.append(self._execute(cmd))
            self.cmd_seconds.labels(cmd["command"]).inc(share)
        return JSONResponse({"results": results})

    @staticmethod
    def _check(cmd: Any) -> dict[str, Any]:
        if not isinstance(cmd, dict) or cmd.get("command") not in COMMANDS:
            got = cmd.get("command") if isinstance(cmd, dict) else cmd
            raise BadRequest(f"unknown command {got!r}; valid: {', '.join(COMMANDS)}")
        return cmd

    def _execute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name, key, value = cmd["command"], str(cmd.get("key")), cmd.get("value")
        self.calls.labels(name).inc()
        if name == "get":
            if self.rng.random() < self.params.hit_ratio:
                self.hits.inc()
                return {"ok": True, "hit": True, "value": self.store.get(key)}
            self.misses.inc()
            return {"ok": True, "hit": False, "value": None}
        if name == "lrange":
            return {"ok": True, "hit": key in self.store, "value": self.store.get(key, [])}
        if name == "del":
            self.store.pop(key, None)
            return {"ok": True, "hit": False, "value": None}
        if len(self.store) >= self.params.max_keys:
            self.store.clear()
        prev = self.store.get(key)
        if name == "set":
            self.store[key] = value
        elif name == "lpush":
            items = prev if isinstance(prev, list) else []
            self.store[key] = [value, *items[:LIST_CAP - 1]]
        else:  # counters
            step = value if name in ("decrby", "zincrby") and isinstance(value, int) else 1
            self.store[key] = (prev if isinstance(prev, int) else 0) + (-step if name == "decrby" else step)
        return {"ok": True, "hit": False, "value": None}
