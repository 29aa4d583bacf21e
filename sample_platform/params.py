"""Behaviour parameters of every node, in one place (``PARAMS``).

A node reads its parameters from ``node.params`` on every request, never from
copies, so changing them at run time (``node.params = replace(node.params,
hit_ratio=0.0)``) changes its behaviour at once: that is how a clean deploy
bumps ``version``, how an active fault changes a node
(``fault_kinds.FaultKind.overrides`` returns the fields to replace; the node
gets its own ``base_params`` back when the fault ends), and how an analytic
backfill can reuse the same numbers.  Units are in the field names; times are
seconds, ratios are 0..1.

Every node has the :class:`NodeParams` fields:

- ``version``: the deployed version, exposed as ``platform_build_info{version}``;
- ``pool_size`` / ``max_queue`` / ``queue_timeout_seconds``: the worker pool
  (see :mod:`.pool`); for databases the pool models connection slots;
- ``service_seconds``: median service time per operation (a route template or
  an operation name the node documents); times are lognormal with spread
  ``service_sigma`` (log-space standard deviation), capped at 10x the median;
- ``error_ratio``: baseline probability that a request answers 500;
- ``memory_bytes``: resident memory of the process at rest, exposed as
  ``process_resident_memory_bytes``; ``leak_bytes_per_second`` (from
  ``leak_started_at``, epoch seconds) makes it grow, and each operation then
  pauses ``gc_pause_seconds_per_gib`` per GiB leaked (a collector scanning a
  bigger heap);
- ``partitioned``: downstream -> share of the calls to it that are lost on the
  network (the caller waits out its timeout);
- ``timeout_retries``: downstream -> how many times a call that timed out is
  sent again;
- ``canary_version`` / ``canary_ratio`` / ``canary_error_ratio``: a version
  being rolled out serves ``canary_ratio`` of the operations, and fails with
  its own error ratio (request metrics carry the serving ``version``).

Subclasses add what a node needs (cache hit ratios, consumer batch sizes,
CDN throughput, the shard index, ...).  Downstream calls per request are
documented with each service (:mod:`.services`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

MIB = 2.0 ** 20
GIB = 2.0 ** 30


def _frozen(d: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(d))


def next_version(version: str) -> str:
    """``"1.0.9"`` -> ``"1.0.10"``; a version without a numeric last part gets ``".1"`` appended."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}" if head and last.isdigit() else f"{version}.1"


@dataclass(frozen=True)
class NodeParams:
    """Parameters shared by every node (see the module docstring)."""

    version: str = "1.0.0"
    pool_size: int = 64
    max_queue: int = 512
    queue_timeout_seconds: float = 2.0
    service_seconds: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    service_sigma: float = 0.45
    error_ratio: float = 0.0
    memory_bytes: float = 64 * MIB
    leak_bytes_per_second: float = 0.0
    leak_started_at: float = 0.0
    gc_pause_seconds_per_gib: float = 0.0
    partitioned: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    timeout_retries: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    canary_version: str | None = None
    canary_ratio: float = 0.0
    canary_error_ratio: float = 0.0

    def resident_memory_bytes(self, now: float) -> float:
        """Resident memory in bytes at epoch second ``now``: ``memory_bytes`` plus what leaked since
        ``leak_started_at``."""
        return self.memory_bytes + self.leaked_bytes(now)

    def leaked_bytes(self, now: float) -> float:
        """Bytes leaked by epoch second ``now`` (0 without a leak)."""
        if self.leak_bytes_per_second <= 0:
            return 0.0
        return self.leak_bytes_per_second * max(0.0, now - self.leak_started_at)

    def gc_pause_seconds(self, now: float) -> float:
        """Extra seconds each operation spends in garbage collection at epoch second ``now``."""
        return self.gc_pause_seconds_per_gib * self.leaked_bytes(now) / GIB

    def median(self, operation: str) -> float:
        """Median service time of ``operation`` in seconds; KeyError names the known operations."""
        try:
            return self.service_seconds[operation]
        except KeyError:
            raise KeyError(f"no service time for {operation!r}; known: {', '.join(self.service_seconds)}") from None


@dataclass(frozen=True)
class ConsumerParams(NodeParams):
    """A service that also consumes a kafka topic: it fetches up to ``batch_max``
    messages every ``poll_interval_seconds`` (at once again while the batch was full),
    and processes at most ``max_messages_per_second`` (a stuck or throttled consumer)."""

    poll_interval_seconds: float = 1.0
    batch_max: int = 100
    max_messages_per_second: float = math.inf


@dataclass(frozen=True)
class GatewayParams(NodeParams):
    """Per-route token-bucket rate limits: a route admits ``rate_limit_headroom``
    times its mean offered load ``offered_rps[route]`` (requests/s; the platform
    fills it from ``--rate`` and the traffic mix), at least ``rate_limit_min_rps``,
    with bursts of ``rate_limit_burst_seconds`` of it; the rest is answered 429."""

    offered_rps: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    rate_limit_headroom: float = 8.0
    rate_limit_min_rps: float = 5.0
    rate_limit_burst_seconds: float = 2.0


@dataclass(frozen=True)
class UserParams(NodeParams):
    """Profiles behind an in-process L1 cache (hit ratio ``l1_hit_ratio`` once warm;
    after a restart it ramps up from 0 over ``l1_warmup_seconds``), then redis, then postgres."""

    l1_hit_ratio: float = 0.6
    l1_warmup_seconds: float = 60.0


@dataclass(frozen=True)
class FeedParams(NodeParams):
    """``page_size`` items per feed page; recommendations are best effort within
    ``recommend_timeout_seconds`` (the feed falls back to following posts only)."""

    page_size: int = 10
    recommend_timeout_seconds: float = 0.5


@dataclass(frozen=True)
class RecommendParams(NodeParams):
    """Candidate generation then several scorers run concurrently and combined:
    ``scorers`` maps a scorer to (weight, median seconds)."""

    candidates: int = 50
    scorers: Mapping[str, tuple[float, float]] = field(default_factory=lambda: MappingProxyType({
        "popularity": (0.40, 0.0015), "affinity": (0.35, 0.003), "freshness": (0.25, 0.001)}))


@dataclass(frozen=True)
class MediaParams(ConsumerParams):
    """Uploads go to object storage and a ``transcode`` job to kafka; the transcoder
    (consumer group ``transcoder``) turns each into ``renditions`` renditions taking
    ``transcode_seconds`` (median) each job, ``transcode_concurrency`` jobs at a time."""

    renditions: int = 3
    transcode_seconds: float = 0.3
    transcode_concurrency: int = 4
    upload_bytes: float = 8e6


@dataclass(frozen=True)
class NotificationParams(ConsumerParams):
    """Push sender (consumer group ``push-sender``): each notification takes
    ``push_seconds`` (median) at the push provider and fails with probability
    ``push_failure_ratio`` (stale device tokens)."""

    batch_max: int = 200
    push_seconds: float = 0.02
    push_failure_ratio: float = 0.005


@dataclass(frozen=True)
class LiveParams(NodeParams):
    """Viewers are assigned a CDN edge with probability ``cdn_weights[edge]``;
    each join counts a viewer for an exponential watch time of mean ``mean_watch_seconds``."""

    cdn_weights: Mapping[str, float] = field(default_factory=lambda: _frozen(
        {"cdn-a": 0.36, "cdn-b": 0.34, "cdn-c": 0.30}))
    mean_watch_seconds: float = 90.0


@dataclass(frozen=True)
class OriginParams(NodeParams):
    """Live origin: keeps the last ``window_segments`` segments of each room, and
    archives every ingested segment to object storage (best effort)."""

    window_segments: int = 15


@dataclass(frozen=True)
class CdnParams(NodeParams):
    """A CDN edge: segment cache hits with probability ``hit_ratio`` (a miss pulls
    from the origin); a segment of ``b`` bits takes ``b / throughput_bits_per_second``
    seconds to send."""

    hit_ratio: float = 0.8
    throughput_bits_per_second: float = 1e9


@dataclass(frozen=True)
class PaymentParams(ConsumerParams):
    """Charges debit the wallet in postgres; ``decline_ratio`` of charges are declined
    (402, insufficient funds).  Settlement consumes the ``gifts`` topic."""

    decline_ratio: float = 0.01


@dataclass(frozen=True)
class InventoryParams(NodeParams):
    """Gift stock reservations; ``out_of_stock_ratio`` answer 409."""

    out_of_stock_ratio: float = 0.002


@dataclass(frozen=True)
class DatabaseParams(NodeParams):
    """A relational database; ``shard`` is the shard index (None: not sharded)."""

    shard: int | None = None


@dataclass(frozen=True)
class RedisParams(NodeParams):
    """GET hits with probability ``hit_ratio``; at most ``max_keys`` keys are kept."""

    hit_ratio: float = 0.85
    max_keys: int = 20_000


@dataclass(frozen=True)
class KafkaParams(NodeParams):
    """Each topic keeps its last ``retention_messages`` messages; a consumer further
    behind loses the oldest (as with size-based retention)."""

    retention_messages: int = 5_000


@dataclass(frozen=True)
class ObjstoreParams(NodeParams):
    """Object storage: an object of ``b`` bytes takes ``8 b / throughput_bits_per_second``
    seconds on top of the operation's service time."""

    throughput_bits_per_second: float = 10e9


_DB_OPS = {"select": 0.002, "insert": 0.004, "update": 0.003}

PARAMS: dict[str, NodeParams] = {
    "gateway": GatewayParams(service_seconds=_frozen({"route": 0.0008}), queue_timeout_seconds=3.0),
    "user": UserParams(service_seconds=_frozen({"/users/{user_id}": 0.0015, "/users/{user_id}/following": 0.0015})),
    "feed": FeedParams(service_seconds=_frozen({"/feed/{user_id}": 0.002, "merge": 0.0015})),
    "recommend": RecommendParams(service_seconds=_frozen({"/recommendations/{user_id}": 0.0015})),
    "post": NodeParams(service_seconds=_frozen({
        "GET /posts": 0.0015, "POST /posts": 0.002, "/posts/{post_id}/likes": 0.001,
        "/posts/{post_id}/comments": 0.0015})),
    "media": MediaParams(service_seconds=_frozen({"/media": 0.003, "/playback": 0.001})),
    "search": ConsumerParams(service_seconds=_frozen({"/search": 0.004, "index": 0.0005})),
    "message": ConsumerParams(service_seconds=_frozen({
        "/messages": 0.0015, "/conversations/{user_id}": 0.0015, "frame": 0.001})),
    "notification": NotificationParams(service_seconds=_frozen({
        "/inbox/{user_id}": 0.0015, "/badge/{user_id}": 0.0005, "/campaigns": 0.001})),
    "live": LiveParams(service_seconds=_frozen({"/rooms/{room_id}/join": 0.0015, "/beacons": 0.0008})),
    "origin": OriginParams(service_seconds=_frozen({
        "/ingest/{room_id}/{seq}": 0.002, "/live/{room_id}/playlist": 0.001, "/live/{room_id}/{seq}": 0.002})),
    **{edge: CdnParams(service_seconds=_frozen({"/live/{room_id}/playlist": 0.001, "/live/{room_id}/{seq}": 0.002}))
       for edge in ("cdn-a", "cdn-b", "cdn-c")},
    "gift": NodeParams(service_seconds=_frozen({"/orders": 0.002})),
    "payment": PaymentParams(service_seconds=_frozen({"/charges": 0.002})),
    "inventory": InventoryParams(service_seconds=_frozen({"/reservations": 0.001})),
    "postgres": DatabaseParams(pool_size=32, queue_timeout_seconds=1.0, service_seconds=_frozen(_DB_OPS)),
    "giftdb-0": DatabaseParams(pool_size=16, queue_timeout_seconds=1.0, service_seconds=_frozen(_DB_OPS), shard=0),
    "giftdb-1": DatabaseParams(pool_size=16, queue_timeout_seconds=1.0, service_seconds=_frozen(_DB_OPS), shard=1),
    "redis": RedisParams(queue_timeout_seconds=1.0, service_seconds=_frozen({"command": 0.0004})),
    "kafka": KafkaParams(pool_size=32, queue_timeout_seconds=1.0, service_seconds=_frozen({
        "produce": 0.0015, "fetch": 0.001})),
    "objstore": ObjstoreParams(pool_size=32, queue_timeout_seconds=1.0, service_seconds=_frozen({
        "GET": 0.004, "PUT": 0.006})),
}
