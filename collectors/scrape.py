"""The scrape loop: GET each target's metrics page on an interval and write the samples to the store.

Like Prometheus, every scrape adds ``job`` and ``instance`` to each sample and writes the synthetic
series ``up`` (1 or 0), ``scrape_duration_seconds`` and ``scrape_samples_scraped``. A target that is down
or serves a malformed page gives ``up 0``, is counted in ``opswatch_scrape_failures_total{job,reason}``
and reported in :attr:`ScrapeManager.health`; the other targets keep going.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

from opswatch.errors import OpsWatchError, ParseError, ScrapeError

from .exposition import parse_text
from .samples import Sample

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape: ``job`` name and the full ``url`` of its metrics page."""

    job: str
    url: str

    @property
    def instance(self) -> str:
        """``host:port`` of the URL, as Prometheus sets the ``instance`` label."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"


@dataclass
class TargetHealth:
    """What the last scrape of a target found (shape of Prometheus's ``/api/v1/targets`` entries)."""

    job: str
    instance: str
    url: str
    health: str = "unknown"  # "up", "down" or "unknown" before the first scrape
    last_scrape_ms: int | None = None
    last_scrape_duration_seconds: float | None = None
    last_error: str = ""
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
            "opswatch_scrape_duration_seconds", "Time to fetch and parse a target.", ["job"], registry=self.registry
        )
        self.samples = Counter(
            "opswatch_samples_appended", "Samples written to the store by scrapes.", registry=self.registry
        )


class ScrapeManager:
    """Scrapes a fixed set of targets on one interval.

    :param targets: what to scrape.
    :param append: called with each scrape's samples (a store's ``append``); run in a worker thread.
    :param interval_seconds: time between two scrapes of one target.
    :param timeout_seconds: deadline of one scrape (defaults to ``min(10, interval)``).
    :param clock: returns seconds since the epoch; used for sample timestamps.
    :param transport: an httpx transport, for tests that cannot cause a fault otherwise.
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
    ):
        self.targets = list(targets)
        self.append = append
        self.interval = interval_seconds
        self.timeout = timeout_seconds or min(10.0, interval_seconds)
        self.clock = clock
        self.metrics = metrics or ScrapeMetrics()
        self.health = {t: TargetHealth(t.job, t.instance, t.url) for t in self.targets}
        self._client = httpx.AsyncClient(timeout=self.timeout, transport=transport, headers={"Accept": ACCEPT})

    async def _fetch(self, target: Target) -> str:
        try:
            response = await self._client.get(target.url)
        except httpx.TimeoutException as exc:
            raise ScrapeError(f"timeout after {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code // 100 != 2:
            raise ScrapeError(f"server returned HTTP status {response.status_code}")
        return response.text

    async def scrape(self, target: Target) -> list[Sample]:
        """Scrape one target once, write its samples and synthetic series, and return them all.

        Never raises for target faults: they become ``up 0`` and a recorded error.
        """
        started = self.clock()
        ts = int(started * 1000)
        t0 = time.perf_counter()
        base = {"job": target.job, "instance": target.instance}
        health = self.health[target]
        try:
            samples = parse_text(await self._fetch(target), ts, base)
            up, health.last_error = 1.0, ""
        except (ScrapeError, ParseError) as exc:
            reason = "parse" if isinstance(exc, ParseError) else "fetch"
            self.metrics.failures.labels(target.job, reason).inc()
            log.warning("scrape of %s (%s) failed: %s", target.job, target.url, exc)
            samples, up, health.last_error = [], 0.0, str(exc)
        duration = time.perf_counter() - t0
        self.metrics.duration.labels(target.job).observe(duration)
        samples += [
            Sample("up", base, ts, up),
            Sample("scrape_duration_seconds", base, ts, duration),
            Sample("scrape_samples_scraped", base, ts, float(len(samples))),
        ]
        health.health = "up" if up else "down"
        health.last_scrape_ms, health.last_scrape_duration_seconds = ts, duration
        health.samples_scraped = len(samples) - 3
        try:
            written = await asyncio.to_thread(self.append, samples)
            self.metrics.samples.inc(written)
        except OpsWatchError as exc:
            log.error("storing the scrape of %s failed: %s", target.job, exc)
        return samples

    async def _loop(self, target: Target, offset: float) -> None:
        await asyncio.sleep(offset)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.scrape(target)
            except Exception:  # a bug in one scrape must not end the target's loop
                log.exception("scrape of %s (%s) failed unexpectedly", target.job, target.url)
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def run(self) -> None:
        """Scrape every target forever, spreading them over the interval. Cancel to stop."""
        n = max(1, len(self.targets))
        try:
            await asyncio.gather(*(self._loop(t, self.interval * i / n) for i, t in enumerate(self.targets)))
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP client (``run`` does this when cancelled)."""
        await self._client.aclose()
