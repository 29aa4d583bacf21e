"""Simulated message broker (``kafka``): topics, consumer groups, lag.

- ``POST /produce/{topic}`` ``{"key", "value"}`` or ``{"messages": [{"key", "value"}, ...]}``
  -> ``{"topic", "offset"}`` (the offset after the last message).
- ``POST /fetch/{topic}`` ``{"group", "offset"?, "max"?}`` -> ``{"messages": [value, ...],
  "offset": first, "next_offset": n}``.  ``offset`` is the consumer's position:
  everything before it is processed, so the broker commits it (the group's lag is
  end offset minus committed offset, as with Kafka's commit-on-poll).  Without
  ``offset`` the group resumes from its committed offset (a restarted consumer).
  A position older than the retention (``params.retention_messages`` per topic)
  skips to the oldest retained message.

Topics and their consumer groups: ``TOPICS``.  Unknown topic or group -> 404.

Metrics: ``kafka_messages_produced_total{topic}``,
``kafka_messages_consumed_total{topic, consumergroup}``,
``kafka_consumergroup_lag{topic, consumergroup}``,
``kafka_topic_partition_current_offset{topic}``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..node import BadRequest, Node, RequestContext, json_body

#: topic -> consumer groups reading it (the service running each group is in its docstring).
TOPICS: dict[str, tuple[str, ...]] = {
    "posts": ("search-indexer",),
    "messages": ("message-archiver",),
    "gifts": ("gift-settlement",),
    "notifications": ("push-sender",),
    "transcode": ("transcoder",),
}
MAX_FETCH = 1000
MAX_PRODUCE_BATCH = 5000


class _Topic:
    """One single-partition topic: retained values and offsets."""

    def __init__(self, groups: tuple[str, ...]) -> None:
        self.values: deque[Any] = deque()
        self.first = 0  # offset of values[0]
        self.end = 0  # offset of the next message
        self.committed = dict.fromkeys(groups, 0)


class Kafka(Node):
    """Simulated broker with one partition per topic."""

    def setup(self) -> None:
        r = self.registry
        self.produced_c = Counter("kafka_messages_produced_total", "Messages produced.", ["topic"], registry=r)
        self.consumed_c = Counter("kafka_messages_consumed_total", "Messages committed by consumer groups.",
                                  ["topic", "consumergroup"], registry=r)
        lag = Gauge("kafka_consumergroup_lag", "End offset minus committed offset.",
                    ["topic", "consumergroup"], registry=r)
        current = Gauge("kafka_topic_partition_current_offset", "End offset of the topic.", ["topic"], registry=r)
        self.topics = {name: _Topic(groups) for name, groups in TOPICS.items()}
        for name, topic in self.topics.items():
            self.produced_c.labels(name)
            current.labels(name).set_function(lambda t=topic: t.end)
            for group in topic.committed:
                self.consumed_c.labels(name, group)
                lag.labels(name, group).set_function(lambda t=topic, g=group: t.end - t.committed[g])
        self.add_route("/produce/{topic}", self.produce, ("POST",))
        self.add_route("/fetch/{topic}", self.fetch, ("POST",))

    def _topic(self, request: Request) -> tuple[str, _Topic | None]:
        name = request.path_params["topic"]
        return name, self.topics.get(name)

    async def produce(self, request: Request, ctx: RequestContext) -> Response:
        name, topic = self._topic(request)
        if topic is None:
            return _not_found(f"unknown topic {name!r}; valid: {', '.join(self.topics)}")
        body = await json_body(request)
        batch = body.get("messages", [body])
        if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_PRODUCE_BATCH:
            raise BadRequest(f"'messages' must be a list of 1..{MAX_PRODUCE_BATCH} messages")
        await ctx.work(self.params.median("produce") * (1 + 0.02 * (len(batch) - 1)))
        for message in batch:
            topic.values.append(message.get("value") if isinstance(message, dict) else message)
        topic.end += len(batch)
        overflow = len(topic.values) - self.params.retention_messages
        for _ in range(max(0, overflow)):
            topic.values.popleft()
            topic.first += 1
        self.produced_c.labels(name).inc(len(batch))
        return JSONResponse({"topic": name, "offset": topic.end})

    async def fetch(self, request: Request, ctx: RequestContext) -> Response:
        name, topic = self._topic(request)
        if topic is None:
            return _not_found(f"unknown topic {name!r}; valid: {', '.join(self.topics)}")
        body = await json_body(request)
        group = body.get("group")
        if group not in topic.committed:
            return _not_found(f"unknown consumer group {group!r} for topic {name!r}; "
                              f"valid: {', '.join(topic.committed)}")
        limit = body.get("max", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FETCH:
            raise BadRequest(f"'max' must be an integer in [1, {MAX_FETCH}], got {limit!r}")
        position = body.get("offset", topic.committed[group])
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= topic.end:
            raise BadRequest(f"'offset' must be an integer in [0, {topic.end}], got {position!r}")
        await ctx.work_on("fetch")
        advanced = position - topic.committed[group]
        if advanced > 0:
            self.consumed_c.labels(name, group).inc(advanced)
        topic.committed[group] = max(topic.committed[group], position)
        start = max(position, topic.first)
        stop = min(topic.end, start + limit)
        values = [topic.values[i - topic.first] for i in range(start, stop)]
        return JSONResponse({"messages": values, "offset": start, "next_offset": stop})


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=404)
