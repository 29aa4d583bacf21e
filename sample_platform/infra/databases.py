"""Simulated relational databases: ``postgres`` and the gift database shards.

``POST /query`` ``{"operation": "select"|"insert"|"update", "table", "key", "rows"?}``
-> ``{"rows": [...]}`` (select) / ``{"id": n, "rowcount": rows}`` (insert) /
``{"rowcount": rows}`` (update).  ``rows`` (default 1) makes a batch statement:
it takes ``1 + 0.1 * (rows - 1)`` times the operation's median service time.
The worker pool models the connection slots.

Metrics: ``pg_query_duration_seconds{operation}`` histogram (includes injected
latency), ``pg_connections_active`` (occupied slots, stuck ones included),
``pg_connections_max``, ``pg_rows_written_total``.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..metrics import DURATION_BUCKETS
from ..node import BadRequest, Node, RequestContext, json_body

OPERATIONS = ("select", "insert", "update")
MAX_BATCH_ROWS = 10_000


def select_rows(table: str, key: object) -> list[dict]:
    """Deterministic rows for a select on ``table`` by ``key``."""
    if table == "posts":
        return [{"id": f"{key}-{i}", "author": key} for i in range(5)]
    if table == "messages":
        return [{"id": f"m{key}-{i}", "peer": key} for i in range(3)]
    if table == "follows":
        k = int(key) if isinstance(key, int) else 0
        return [{"user_id": k, "follows": (k * 7919 + i * 104729) % 10_000 + 1} for i in range(8)]
    return [{"id": key, "name": f"user{key}"}]


class Database(Node):
    """One database server; ``params.shard`` says which shard it holds (None: not sharded)."""

    def setup(self) -> None:
        r = self.registry
        self.query_duration = Histogram("pg_query_duration_seconds", "Query execution time in seconds.",
                                        ["operation"], buckets=DURATION_BUCKETS, registry=r)
        Gauge("pg_connections_active", "Connections executing or stuck.",
              registry=r).set_function(lambda: self.pool.occupied)
        Gauge("pg_connections_max", "Maximum connections.", registry=r).set_function(lambda: self.pool.size)
        self.rows_written = Counter("pg_rows_written_total", "Rows inserted or updated.", registry=r)
        self._next_id = 0
        self.add_route("/query", self.query, ("POST",))

    async def query(self, request: Request, ctx: RequestContext) -> Response:
        body = await json_body(request)
        op = body.get("operation")
        if op not in OPERATIONS:
            raise BadRequest(f"unknown operation {op!r}; valid: {', '.join(OPERATIONS)}")
        rows = body.get("rows", 1)
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_BATCH_ROWS:
            raise BadRequest(f"'rows' must be an integer in [1, {MAX_BATCH_ROWS}], got {rows!r}")
        t0 = time.perf_counter()
        await ctx.work(self.params.median(op) * (1 + 0.1 * (rows - 1)))
        self.query_duration.labels(op).observe(time.perf_counter() - t0)
        if op == "select":
            return JSONResponse({"rows": select_rows(str(body.get("table")), body.get("key"))})
        self.rows_written.inc(rows)
        if op == "insert":
            self._next_id += rows
            return JSONResponse({"id": self._next_id, "rowcount": rows})
        return JSONResponse({"rowcount": rows})
