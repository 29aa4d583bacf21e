"""Helpers shared by the application services: cache-aside over redis, postgres
queries, kafka produce, user lookups, and a kafka consumer loop.

Redis is always best effort (a failure is a cache miss); the other downstreams
are required (their failure raises :class:`~sample_platform.node.DownstreamError`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from prometheus_client import Gauge

from ..node import BadRequest, DownstreamError, InjectedFailure, Node, RequestContext
from ..pool import PoolOverloaded

log = logging.getLogger("sample_platform")


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
    """Node with cache-aside helpers over redis and postgres, and kafka access."""

    @functools.cached_property
    def consumer_groups(self) -> Gauge:
        """``kafka_consumer_group_info{topic, consumergroup}`` (always 1): the consumer groups this service
        runs, so the broker's ``kafka_consumergroup_lag`` can be joined to the consuming job."""
        return Gauge("kafka_consumer_group_info", "Kafka consumer groups this service runs (always 1).",
                     ["topic", "consumergroup"], registry=self.registry)

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

    async def cache_cmd(self, command: str, key: str, value: Any = None) -> Any:
        """Best-effort redis command; returns its ``value`` (None on failure)."""
        r = await self.best_effort("redis", "POST", "/command", json={"command": command, "key": key, "value": value})
        return r.json().get("value") if r is not None and r.status_code == 200 else None

    async def cache_pipeline(self, commands: list[dict[str, Any]]) -> bool:
        """Best-effort redis pipeline (one round trip); True when redis answered."""
        r = await self.best_effort("redis", "POST", "/pipeline", json={"commands": commands})
        return r is not None and r.status_code == 200

    async def query(self, operation: str, table: str, key: Any, *, db: str = "postgres", rows: int = 1) -> dict:
        """Required database query on ``db``; returns the JSON answer, raises DownstreamError."""
        r = await self.call(db, "POST", "/query", json={"operation": operation, "table": table, "key": key,
                                                         "rows": rows})
        return r.json()

    async def produce(self, topic: str, key: Any, value: Any) -> None:
        """Required kafka produce of one message; raises DownstreamError."""
        await self.call("kafka", "POST", f"/produce/{topic}", json={"key": key, "value": value})

    async def produce_batch(self, topic: str, values: list[Any]) -> None:
        """Required kafka produce of several messages in one request; raises DownstreamError."""
        await self.call("kafka", "POST", f"/produce/{topic}", json={"messages": [{"value": v} for v in values]})

    async def get_user(self, user_id: int) -> dict[str, Any]:
        """Required user lookup via the user service; raises DownstreamError, BadRequest on 4xx."""
        r = await self.call("user", "GET", f"/users/{user_id}")
        if r.status_code != 200:
            raise BadRequest(f"user {user_id}: HTTP {r.status_code}")
        return r.json()["user"]


Batch = Callable[[RequestContext, list[Any]], Awaitable[None]]


class Consumer:
    """A kafka consumer loop run by a service for one (topic, group).

    Every ``params.poll_interval_seconds`` (at once again after a full batch) it
    fetches up to ``params.batch_max`` messages from its position and hands them
    to ``process`` inside :meth:`Node.run_op` (one worker slot, the node's
    faults).  The position only advances when the batch succeeded, so a failing
    or slow consumer makes the group's lag grow and retries the batch.  With a
    finite ``params.max_messages_per_second`` it fetches what that rate allows in
    one poll interval (at least one message) and waits out the rest of the rate.
    """

    def __init__(self, node: Service, topic: str, group: str, process: Batch) -> None:
        self.node, self.topic, self.group, self.process = node, topic, group, process
        self.position: int | None = None  # None: resume from the committed offset
        node.consumer_groups.labels(topic, group).set(1)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            full = False
            try:
                full = await self.poll_once()
            except (DownstreamError, PoolOverloaded, InjectedFailure, BadRequest) as exc:
                log.debug("%s: %s/%s batch failed: %s", self.node.name, self.topic, self.group, exc)
            except Exception:
                log.exception("%s: consumer %s/%s", self.node.name, self.topic, self.group)
            if not full:
                await asyncio.sleep(self.node.params.poll_interval_seconds)

    async def poll_once(self) -> bool:
        """One fetch and, if it returned messages, one processed batch; True when the batch was full."""
        p = self.node.params
        limit = p.batch_max
        if math.isfinite(p.max_messages_per_second):
            limit = max(1, min(limit, math.floor(p.max_messages_per_second * p.poll_interval_seconds)))
        body: dict[str, Any] = {"group": self.group, "max": limit}
        if self.position is not None:
            body["offset"] = self.position
        r = await self.node.call("kafka", "POST", f"/fetch/{self.topic}", json=body)
        if r.status_code != 200:
            raise BadRequest(f"fetch {self.topic}/{self.group}: HTTP {r.status_code} {r.text[:200]}")
        data = r.json()
        messages = data["messages"]
        if messages:
            await self.node.run_op(lambda ctx: self.process(ctx, messages))
            await self._throttle(len(messages))
        self.position = data["next_offset"]
        return len(messages) >= limit

    async def _throttle(self, count: int) -> None:
        """Wait until ``count`` messages fit under ``params.max_messages_per_second``, re-reading the
        cap every poll interval, so lifting it ends the wait."""
        waited = 0.0
        while waited < count / self.node.params.max_messages_per_second:
            step = self.node.params.poll_interval_seconds
            await asyncio.sleep(step)
            waited += step
