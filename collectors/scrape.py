"""The scrape loop: GET each target's metrics page on its interval and queue the samples for the store.

As Prometheus does (``scrape/scrape.go``), every scrape:

* asks for OpenMetrics or text 0.0.4 with ``Accept`` and parses by the answer's ``Content-Type``
  (gzip is decoded); a status other than 200 is a failed scrape, and so is a page over the job's
  ``body_size_limit`` or with more samples than its ``sample_limit`` after metric relabeling;
* stamps every sample of the page with the scrape's start time unless the page gives one (and
  ``honor_timestamps``); joins the target's labels (``honor_labels``); applies
  ``metric_relabel_configs``;
* writes the synthetic series ``up``, ``scrape_duration_seconds`` (the HTTP request),
  ``scrape_samples_scraped``, ``scrape_samples_post_metric_relabeling`` and ``scrape_series_added``
  with the target's labels;
* writes staleness markers for series that disappeared (see :mod:`collectors.scrape_cache`), for all
  of a target's series when its scrape fails, and for all of them plus its synthetic series when the
  target goes away.

A target that is down or serves a malformed page gives ``up 0``, is counted in
``opswatch_scrape_failures_total{job,reason}`` and reported in :attr:`ScrapeManager.health`; the other
targets keep going. Targets of a ``probe`` job are probed (:mod:`collectors.probe`) instead of scraped.

Backpressure: each target has its own loop with its own deadline, the HTTP clients have no connection
limit that one slow target could exhaust, parsing runs off the event loop, and samples go through a
bounded :class:`~collectors.append_queue.AppendQueue`, so neither a slow target nor a slow store delays
another target's scrapes.

A scrape is a :class:`~collectors.samples.SampleBatch`: a page laid out as the target's last one is one
:class:`~collectors.samples.ColumnBatch` (see :mod:`collectors.scrape_cache`), handed to a store's
``append_columns`` as it is, so no Python object is made per sample on the way to the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

from opswatch.errors import ParseError, ScrapeError, ScrapeLimitError

from .append_queue import AppendQueue
from .config import TLSConfig
from .discovery import TargetDiscovery
from .probe import probe_http
from .samples import STALE_NAN, ColumnBatch, Sample, SampleBatch
from .scrape_cache import ScrapeCache, ScrapeResult
from .targets import Target

log = logging.getLogger(__name__)

USER_AGENT = "OpsWatch/0.1"
SYNTHETIC = ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added")


@dataclass
class TargetHealth:
    """What the last scrape of a target found (shape of Prometheus's ``/api/v1/targets`` entries)."""

    job: str
    instance: str
    url: str
    labels: dict[str, str] = field(default_factory=dict)
    discovered_labels: dict[str, str] = field(default_factory=dict)
    health: str = "unknown"  # "up", "down" or "unknown" before the first scrape
    last_scrape_ms: int | None = None
    last_scrape_duration_seconds: float | None = None
    last_error: str = ""  # for probes: why the last probe failed
    samples_scraped: int = 0


@dataclass
class ScrapeMetrics:
    """OpsWatch's own scrape metrics, registered on the given registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.failures = Counter(
            "opswatch_scrape_failures", "Scrapes that failed, by reason.", ["job", "reason"], registry=self.registry
        )
        self.duration = Histogram(
            "opswatch_scrape_duration_seconds", "Time to fetch a target's page (or run its probe).", ["job"],
            registry=self.registry,
        )
        self.missed = Counter(
            "opswatch_scrape_missed_intervals", "Scrape slots skipped because the previous scrape overran.",
            ["job"], registry=self.registry,
        )


class _TargetState:
    """A target's cache and health; ``lock`` keeps its scrapes and final staleness markers in order."""

    def __init__(self, target: Target):
        self.target = target
        self.cache = ScrapeCache(target.label_set, target.options)
        self.health = TargetHealth(target.job, target.instance, target.url, dict(target.label_set),
                                   dict(target.discovered_labels))
        self.lock = threading.Lock()
        self.task: asyncio.Task | None = None
        self.reported = False  # synthetic series written at least once


async def _get_limited(client: httpx.AsyncClient, url: str, headers: dict, timeout: float, limit: int
                       ) -> tuple[int, bytes, str | None]:
    """GET ``url`` reading at most ``limit`` bytes of the uncompressed body, as Prometheus's
    ``body_size_limit``: the connection is dropped as soon as the page is known to be bigger.
    Returns ``(status, body, content type)``.

    :raises ScrapeLimitError: the body is bigger than ``limit``.
    """
    async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ScrapeLimitError(f"body size limit exceeded: more than {limit} bytes (body_size_limit)",
                                       "body_size_limit")
            chunks.append(chunk)
        return response.status_code, b"".join(chunks), response.headers.get("content-type")


def _offset(target: Target, interval: float) -> float:
    """A stable offset of ``target`` within the interval, spreading targets over it (as Prometheus)."""
    digest = hashlib.md5(f"{target.job}\xff{target.url}\xff{target.labels}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


class ScrapeManager:
    """Scrapes targets, each on its own interval, and queues their samples for the store.

    :param targets: what to scrape from the start (besides ``discovery``'s targets).
    :param append: the store's ``append(samples) -> int``; called from the append queue's thread.
    :param append_columns: the store's ``append_columns(parts) -> int`` (see
        :meth:`storage.base.Store.append_columns`), if it has one: scrapes then reach it as columns.
    :param interval_seconds: time between two scrapes of a target that does not set its own.
    :param timeout_seconds: deadline of one scrape of such a target (default ``min(10, interval)``).
    :param clock: returns seconds since the epoch; used for sample timestamps.
    :param metrics: OpsWatch's own scrape metrics (the append queue registers on the same registry).
    :param transport: an httpx transport, for tests that cannot cause a fault otherwise.
    :param discovery: targets from ``scrape_configs``, watched for changes while :meth:`run` runs.
    :param queue_capacity_samples: bound of the append queue, in samples.
    """

    def __init__(
        self,
        targets: list[Target],
        append: Callable[[list[Sample]], int],
        interval_seconds: float,
        timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        metrics: ScrapeMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        discovery: TargetDiscovery | None = None,
        queue_capacity_samples: int = 500_000,
        append_columns: Callable[[list[ColumnBatch | list[Sample]]], int] | None = None,
    ):
        self.interval = interval_seconds
        self.timeout = timeout_seconds or min(10.0, interval_seconds)
        self.clock = clock
        self.metrics = metrics or ScrapeMetrics()
        self.queue = AppendQueue(append, queue_capacity_samples, registry=self.metrics.registry,
                                 append_columns=append_columns)
        self.discovery = discovery
        self._static = list(targets)
        self._transport = transport
        self._clients: dict[TLSConfig | None, httpx.AsyncClient] = {}
        self._states: dict[Target, _TargetState] = {}
        self._running = False
        for target in self._static + (discovery.targets() if discovery else []):
            self._states.setdefault(target, _TargetState(target))

    @property
    def targets(self) -> list[Target]:
        """The targets being scraped."""
        return list(self._states)

    @property
    def health(self) -> dict[Target, TargetHealth]:
        """Each target's last scrape."""
        return {t: s.health for t, s in self._states.items()}

    def _client(self, tls: TLSConfig | None) -> httpx.AsyncClient:
        client = self._clients.get(tls)
        if client is None:
            # No pool limit: every target has at most one scrape in flight, and a limit would let slow
            # targets hold every connection while the others wait for one.
            client = httpx.AsyncClient(
                transport=self._transport, verify=tls.ssl_context() if tls else True,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                headers={"User-Agent": USER_AGENT})
            self._clients[tls] = client
        return client

    def _timeout(self, target: Target) -> float:
        return target.timeout_seconds or self.timeout

    async def _fetch(self, target: Target) -> tuple[bytes, str | None]:
        timeout = self._timeout(target)
        headers = {"Accept": target.options.accept, "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}"}
        try:
            client = self._client(target.options.tls)
            if target.options.body_size_limit:
                status, content, content_type = await _get_limited(client, target.url, headers, timeout,
                                                                   target.options.body_size_limit)
            else:
                response = await client.get(target.url, headers=headers, timeout=timeout)
                status, content, content_type = response.status_code, response.content, response.headers.get(
                    "content-type")
        except httpx.TimeoutException as exc:
            raise ScrapeError(f"timeout after {timeout:g}s") from exc
        except (httpx.HTTPError, OSError) as exc:  # OSError: an unreadable ca_file/cert_file
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise ScrapeError(f"server returned HTTP status {status}")
        return content, content_type

    def _ingest(self, state: _TargetState, body: bytes, content_type: str | None, ts: int) -> ScrapeResult:
        with state.lock:
            return state.cache.ingest_page(body, content_type, ts)

    def _fail(self, state: _TargetState, ts: int) -> ScrapeResult:
        with state.lock:
            return state.cache.fail(ts)

    async def scrape(self, target: Target) -> SampleBatch:
        """Scrape (or probe) one target once, queue its samples and synthetic series, and return them all
        (a :class:`~collectors.samples.SampleBatch`, which reads as a list of samples).

        Never raises for target faults: they become ``up 0`` and a recorded error. The samples reach
        the store when the append queue runs (:meth:`run`) or is drained (:meth:`close`).
        """
        state = self._states.get(target) or self._states.setdefault(target, _TargetState(target))
        health = state.health
        ts = int(self.clock() * 1000)
        t0 = time.perf_counter()
        try:
            if target.options.probe is not None:
                page, health.last_error = await probe_http(target.url, target.options.probe, self._timeout(target))
                duration = time.perf_counter() - t0
                with state.lock:
                    result = state.cache.ingest_samples(page, ts)
            else:
                body, content_type = await self._fetch(target)
                duration = time.perf_counter() - t0
                result = await asyncio.to_thread(self._ingest, state, body, content_type, ts)
                health.last_error = ""
            up = 1.0
        except (ScrapeError, ParseError) as exc:
            duration = time.perf_counter() - t0
            reason = "parse" if isinstance(exc, ParseError) else getattr(exc, "reason", "fetch")
            self.metrics.failures.labels(target.job, reason).inc()
            log.warning("scrape of %s (%s) failed: %s", target.job, target.url, exc)
            result, up, health.last_error = await asyncio.to_thread(self._fail, state, ts), 0.0, str(exc)
        self.metrics.duration.labels(target.job).observe(duration)
        if result.duplicates:
            self.queue.dropped.labels(target.job, "duplicate").inc(result.duplicates)
        base = target.label_set
        values = (up, duration, result.scraped, result.post_relabeling, result.series_added)
        rest = result.samples + [Sample(name, base, ts, float(v)) for name, v in zip(SYNTHETIC, values)]
        batch = SampleBatch([rest] if result.columns is None else [result.columns, rest])
        state.reported = True
        health.health = "up" if up else "down"
        health.last_scrape_ms, health.last_scrape_duration_seconds = ts, duration
        health.samples_scraped = result.scraped
        self.queue.submit(target.job, batch)
        return batch

    async def _loop(self, state: _TargetState) -> None:
        target = state.target
        interval = target.interval_seconds or self.interval
        loop = asyncio.get_running_loop()
        next_at = loop.time() + (_offset(target, interval) - loop.time()) % interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.scrape(target)
            except Exception:  # a bug in one scrape must not end the target's loop
                log.exception("scrape of %s (%s) failed unexpectedly", target.job, target.url)
            next_at += interval
            behind = loop.time() - next_at
            if behind > 0:  # the scrape overran: skip the slots it covered, as Prometheus's ticker does
                missed = math.ceil(behind / interval)
                self.metrics.missed.labels(target.job).inc(missed)
                next_at += missed * interval

    def _start(self, state: _TargetState) -> None:
        state.task = asyncio.create_task(self._loop(state), name=f"scrape {state.target.job} {state.target.url}")

    async def _retire(self, state: _TargetState) -> None:
        """Stop a target's loop and mark all its series stale, synthetic ones included."""
        if state.task is not None:
            state.task.cancel()
            await asyncio.gather(state.task, return_exceptions=True)
        ts = int(self.clock() * 1000)
        result = await asyncio.to_thread(self._fail, state, ts)
        synthetic = [Sample(name, state.target.label_set, ts, STALE_NAN) for name in SYNTHETIC] if state.reported else []
        if result.samples or synthetic:
            self.queue.submit(state.target.job, result.samples + synthetic)

    async def sync(self, targets: list[Target]) -> None:
        """Scrape exactly the static targets and ``targets`` from now on: start loops for new targets,
        stop the ones gone (their series get staleness markers)."""
        wanted = {t: None for t in self._static + list(targets)}
        for target in [t for t in self._states if t not in wanted]:
            await self._retire(self._states.pop(target))
        for target in wanted:
            if target not in self._states:
                self._states[target] = _TargetState(target)
                if self._running:
                    self._start(self._states[target])
        log.info("scraping %d targets", len(self._states))

    async def _watch(self) -> None:
        pending: list[list[Target]] = []
        changed = asyncio.Event()

        def on_change(targets: list[Target]) -> None:
            pending[:] = [targets]
            changed.set()

        watcher = asyncio.create_task(self.discovery.run(on_change))
        try:
            while True:
                await changed.wait()
                changed.clear()
                await self.sync(pending.pop())
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def run(self) -> None:
        """Scrape every target until cancelled, following discovery's changes; then write what is queued
        and close the HTTP clients."""
        self._running = True
        writer = asyncio.create_task(self.queue.run(), name="append queue")
        for state in self._states.values():
            self._start(state)
        background = [writer]
        if self.discovery is not None and self.discovery.watches_files:
            background.append(asyncio.create_task(self._watch(), name="target discovery"))
        try:
            await asyncio.gather(*background)
        finally:
            self._running = False
            tasks = [s.task for s in self._states.values() if s.task is not None] + background
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.shield(self.close())

    async def close(self) -> None:
        """Write what is queued and close the HTTP clients (``run`` does this when cancelled)."""
        await self.queue.drain()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self.queue.close()
