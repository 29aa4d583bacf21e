"""Golden-signal instrumentation shared by every node (one CollectorRegistry per node).

Metric names (identical on every node, so one query works for all jobs):

- ``http_requests_total{route, method, code, version}`` counter, server side;
  ``route`` is the route template (e.g. ``/users/{user_id}``), ``code`` the
  status code string, ``version`` the version that served the request (two
  while a rollout is under way).  ``/metrics`` itself is never counted.
- ``http_request_duration_seconds{route, method}`` histogram, seconds.
- ``http_requests_in_flight`` gauge.
- ``http_client_requests_total{downstream, code}`` counter; ``code`` is the status
  code string, ``timeout`` or ``connect_error``.
- ``http_client_request_duration_seconds{downstream}`` histogram, seconds.
- ``worker_pool_size`` gauge (slots) and ``worker_busy_seconds_total`` counter
  (slot-seconds occupied), so saturation = ``rate(worker_busy_seconds_total[1m])
  / worker_pool_size`` (0..1).
- ``platform_build_info{version}`` gauge, always 1: the deployed version(s).
- ``process_resident_memory_bytes`` gauge: the node's resident memory (from its
  parameters: a base plus what a ``memory_leak`` fault leaked).
- ``process_start_time_seconds`` gauge: when this instance started (epoch
  seconds); it changes on a restart, when every counter starts again from 0.

Node-specific extras (infra and business metrics) are registered on
``NodeMetrics.registry`` by the node itself.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .pool import WorkerPool

#: Histogram buckets (seconds) used for every duration histogram: 1 ms .. 10 s.
DURATION_BUCKETS: tuple[float, ...] = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class _BusyCollector:
    """Exposes ``worker_busy_seconds_total`` computed from the pool at scrape time."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "worker_busy_seconds",
            "Slot-seconds the node's worker pool slots were occupied.",
            value=self._pool.busy_seconds(),
        )


class _Family:
    """One collected metric family as a collector (``generate_latest`` renders any collector)."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


class _BuildInfoCollector:
    """Exposes ``platform_build_info{version} 1`` for each version serving, read at scrape time."""

    def __init__(self, versions: Callable[[], Iterable[str]]) -> None:
        self._versions = versions

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("platform_build_info", "Deployed version(s) of this node (always 1).",
                                 labels=["version"])
        for version in self._versions():
            info.add_metric([version], 1.0)
        yield info


class NodeMetrics:
    """The standard metrics of one node, in a fresh registry.

    ``pool``: the node's worker pool; ``versions``: returns the versions serving
    (the deployed one, and one being rolled out); ``started_at``: the instance's
    start time (epoch seconds); ``resident_memory``: returns the resident memory
    in bytes.
    Attributes: ``registry``, ``requests``, ``request_duration``, ``in_flight``,
    ``client_requests``, ``client_duration``, ``pool_size``.
    """

    def __init__(self, pool: WorkerPool, versions: Callable[[], Iterable[str]], started_at: float,
                 resident_memory: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total",
                                "HTTP requests handled, by route template, status code and serving version.",
                                ["route", "method", "code", "version"], registry=r)
        self.request_duration = Histogram("http_request_duration_seconds",
                                          "Server-side HTTP request latency in seconds.",
                                          ["route", "method"], buckets=DURATION_BUCKETS, registry=r)
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being handled now.", registry=r)
        self.client_requests = Counter("http_client_requests_total",
                                       "Outgoing HTTP requests to downstream nodes, by status code "
                                       "(or timeout / connect_error).",
                                       ["downstream", "code"], registry=r)
        self.client_duration = Histogram("http_client_request_duration_seconds",
                                         "Client-side latency of outgoing HTTP requests in seconds.",
                                         ["downstream"], buckets=DURATION_BUCKETS, registry=r)
        self.pool_size = Gauge("worker_pool_size", "Worker pool slots of this node.", registry=r)
        self.pool_size.set(pool.size)
        r.register(_BusyCollector(pool))
        r.register(_BuildInfoCollector(versions))
        Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
              registry=r).set_function(resident_memory)
        Gauge("process_start_time_seconds", "Start time of this node instance since the epoch, in seconds.",
              registry=r).set(started_at)

    def render(self) -> bytes:
        """Prometheus text exposition of this node's registry."""
        return generate_latest(self.registry)

    async def render_async(self) -> bytes:
        """:meth:`render`, yielding to the event loop after each metric family: when every node is
        scraped at once, the requests being served wait for one family (a few ms at most), not for
        every registry of the process (tens of ms)."""
        parts = []
        for family in self.registry.collect():
            parts.append(generate_latest(_Family(family)))
            await asyncio.sleep(0)
        return b"".join(parts)
