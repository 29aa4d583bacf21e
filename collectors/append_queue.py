"""The bounded queue between the scrape loops and the store (backpressure).

Scrape loops never wait for the store: :meth:`AppendQueue.submit` only enqueues. One writer task drains
the queue, handing the store several scrapes at once (one ``append``, one transaction) from one
dedicated thread, so a slow store slows only the writer. The queue holds at most ``capacity_samples``
samples; when a scrape does not fit, the oldest queued scrapes are dropped first (for monitoring the
newest data matters most), and every dropped sample is counted in
``opswatch_scrape_samples_dropped_total{job, reason="queue_full"}``. A batch the store rejects
(:class:`opswatch.errors.StorageError`) is counted there with ``reason="store_error"``.

A scrape is queued as a :class:`~collectors.samples.SampleBatch` (or a list of samples); a store with
``append_columns`` gets the batches' parts as they are (column batches stay columns), any other store
gets them as samples through ``append``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from opswatch.errors import OpsWatchError

from .samples import ColumnBatch, Sample, SampleBatch

log = logging.getLogger(__name__)


class AppendQueue:
    """Bounded, drop-oldest queue of scrape batches, drained into ``append`` by :meth:`run`.

    :param append: the store's ``append(samples) -> int``; called from one worker thread.
    :param capacity_samples: most samples queued at once.
    :param max_batch_samples: most samples handed to one ``append`` call (whole scrapes are never split).
    :param registry: where the queue's metrics go.
    :param append_columns: the store's ``append_columns(parts) -> int``, if it has one; used instead of
        ``append``.
    """

    def __init__(self, append: Callable[[list[Sample]], int], capacity_samples: int = 500_000,
                 max_batch_samples: int = 50_000, registry: CollectorRegistry | None = None,
                 append_columns: Callable[[list[ColumnBatch | list[Sample]]], int] | None = None):
        if capacity_samples < 1:
            raise ValueError(f"capacity_samples must be at least 1, got {capacity_samples}")
        registry = registry or CollectorRegistry()
        self.append = append
        self.append_columns = append_columns
        self.capacity = capacity_samples
        self.max_batch = max_batch_samples
        self._batches: collections.deque[tuple[str, SampleBatch | list[Sample]]] = collections.deque()
        self._queued = 0
        self._ready: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="opswatch-append")
        self.dropped = Counter("opswatch_scrape_samples_dropped", "Scraped samples not stored, by reason.",
                               ["job", "reason"], registry=registry)
        self.appended = Counter("opswatch_samples_appended", "Samples written to the store by scrapes.",
                                registry=registry)
        self.depth = Gauge("opswatch_append_queue_samples", "Samples waiting for the store.", registry=registry)
        Gauge("opswatch_append_queue_capacity_samples", "Most samples the append queue holds.",
              registry=registry).set(capacity_samples)
        self.depth.set_function(lambda: self._queued)

    def __len__(self) -> int:
        """Samples queued."""
        return self._queued

    def submit(self, job: str, samples: SampleBatch | list[Sample]) -> None:
        """Queue one scrape's samples without waiting; drop the oldest scrapes if they do not fit."""
        if len(samples) > self.capacity:
            self.dropped.labels(job, "queue_full").inc(len(samples))
            return
        while self._queued + len(samples) > self.capacity:
            old_job, old = self._batches.popleft()
            self._queued -= len(old)
            self.dropped.labels(old_job, "queue_full").inc(len(old))
        self._batches.append((job, samples))
        self._queued += len(samples)
        if self._ready is not None:
            self._ready.set()

    def _take(self) -> list[tuple[str, SampleBatch | list[Sample]]]:
        taken, size = [], 0
        while self._batches and (not taken or size + len(self._batches[0][1]) <= self.max_batch):
            job, samples = self._batches.popleft()
            self._queued -= len(samples)
            taken.append((job, samples))
            size += len(samples)
        return taken

    async def _write(self, taken: list[tuple[str, SampleBatch | list[Sample]]]) -> None:
        if self.append_columns is not None:
            write = self.append_columns
            merged = [p for _, batch in taken for p in (batch.parts if isinstance(batch, SampleBatch) else [batch])]
        else:
            write, merged = self.append, [s for _, samples in taken for s in samples]
        try:
            written = await asyncio.get_running_loop().run_in_executor(self._executor, write, merged)
            self.appended.inc(written)
        except OpsWatchError as exc:
            log.error("storing %d scraped samples failed: %s", sum(len(b) for _, b in taken), exc)
            for job, samples in taken:
                self.dropped.labels(job, "store_error").inc(len(samples))

    async def run(self) -> None:
        """Write queued scrapes to the store until cancelled."""
        self._ready = asyncio.Event()
        while True:
            if not self._batches:
                self._ready.clear()
                await self._ready.wait()
            await self._write(self._take())

    async def drain(self) -> None:
        """Write everything still queued (at shutdown)."""
        while self._batches:
            await self._write(self._take())

    def close(self) -> None:
        """Stop the writer thread (after :meth:`drain`)."""
        self._executor.shutdown(wait=True)
