"""Simulated object storage (``objstore``), S3-like.

- ``PUT /objects/{bucket}/{key}`` ``{"bytes": n}`` -> 201 ``{"bucket", "key", "bytes"}``.
- ``GET /objects/{bucket}/{key}`` -> ``{"bucket", "key", "bytes"}``, 404 when absent.

Only sizes are kept (no content).  An operation takes its median service time
(``GET``/``PUT`` in ``params.service_seconds``) plus ``8 * bytes /
params.throughput_bits_per_second``.  At most ``MAX_OBJECTS`` objects are kept
(the oldest expire first, like a lifecycle rule).

Metrics: ``objstore_objects``, ``objstore_stored_bytes``,
``objstore_transferred_bytes_total{direction="in"|"out"}``.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, Node, RequestContext, json_body

MAX_OBJECTS = 20_000
MAX_OBJECT_BYTES = 5e12


class ObjectStore(Node):
    """Bucket/key -> object size, with transfer time proportional to size."""

    def setup(self) -> None:
        r = self.registry
        self.objects: OrderedDict[str, float] = OrderedDict()
        self.stored = 0.0
        self.transferred = Counter("objstore_transferred_bytes_total", "Bytes uploaded (in) and downloaded (out).",
                                   ["direction"], registry=r)
        Gauge("objstore_objects", "Objects stored.", registry=r).set_function(lambda: len(self.objects))
        Gauge("objstore_stored_bytes", "Bytes stored.", registry=r).set_function(lambda: self.stored)
        self.add_route("/objects/{bucket}/{key:path}", self.put, ("PUT",))
        self.add_route("/objects/{bucket}/{key:path}", self.get, ("GET",))

    def _transfer_seconds(self, size: float) -> float:
        return 8 * size / self.params.throughput_bits_per_second

    async def put(self, request: Request, ctx: RequestContext) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        size = (await json_body(request)).get("bytes")
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 <= size <= MAX_OBJECT_BYTES:
            raise BadRequest(f"'bytes' must be a number in [0, {MAX_OBJECT_BYTES:g}], got {size!r}")
        await ctx.work(self.params.median("PUT") + self._transfer_seconds(size))
        name = f"{bucket}/{key}"
        self.stored += size - self.objects.pop(name, 0.0)
        self.objects[name] = float(size)
        while len(self.objects) > MAX_OBJECTS:
            self.stored -= self.objects.popitem(last=False)[1]
        self.transferred.labels("in").inc(size)
        return JSONResponse({"bucket": bucket, "key": key, "bytes": size}, status_code=201)

    async def get(self, request: Request, ctx: RequestContext) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        size = self.objects.get(f"{bucket}/{key}")
        await ctx.work(self.params.median("GET") + self._transfer_seconds(size or 0.0))
        if size is None:
            return JSONResponse({"error": f"no object {bucket}/{key}"}, status_code=404)
        self.transferred.labels("out").inc(size)
        return JSONResponse({"bucket": bucket, "key": key, "bytes": size})
