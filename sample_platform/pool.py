"""Bounded worker pool of one node, with busy-time accounting.

``WorkerPool(size, max_queue)`` behaves like an ``asyncio.Semaphore`` of
``size`` slots with a FIFO wait queue, plus:

- ``reserve(n)``: ``n`` slots are taken by stuck work or leaked connections
  (``cpu_saturation`` / ``connection_pool_exhaustion`` faults); they count as
  busy but serve nothing.
- ``busy_seconds()``: integral over time of occupied slots (in-use + reserved),
  in slot-seconds, so ``rate(busy_seconds) / size`` is the utilization (0..1).
- ``acquire(timeout)`` raises :class:`PoolOverloaded` when ``max_queue``
  requests are already waiting or the wait exceeds ``timeout`` seconds (load
  shedding: the node answers 503 instead of serving requests whose caller has
  long given up, which would otherwise cause a thundering herd when a
  saturation fault ends).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable


class PoolOverloaded(Exception):
    """The wait queue of a worker pool is full, or a request waited too long for a slot."""


class WorkerPool:
    """FIFO slot pool of ``size`` slots; ``max_queue`` bounds the waiters."""

    def __init__(self, size: int, max_queue: int = 512,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self.max_queue = max_queue
        self._clock = clock
        self.in_use = 0
        self.reserved = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._busy_accum = 0.0
        self._last = clock()

    # -- accounting ---------------------------------------------------------
    def _tick(self) -> None:
        now = self._clock()
        self._busy_accum += self.occupied * (now - self._last)
        self._last = now

    def busy_seconds(self) -> float:
        """Slot-seconds spent occupied since creation (monotonic non-decreasing)."""
        return self._busy_accum + self.occupied * (self._clock() - self._last)

    @property
    def occupied(self) -> int:
        """Slots occupied now (0..size): in use by requests plus reserved by stuck work.

        Stuck work takes slots as requests free them, so this never exceeds ``size``.
        """
        return min(self.size, self.in_use + self.reserved)

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._waiters)

    # -- slots --------------------------------------------------------------
    def _free(self) -> int:
        return self.size - self.in_use - self.reserved

    def _wake(self) -> None:
        while self._waiters and self._free() > 0:
            fut = self._waiters.popleft()
            if fut.done():  # cancelled waiter
                continue
            self._tick()
            self.in_use += 1
            fut.set_result(None)

    async def acquire(self, timeout: float | None = None) -> None:
        """Take one slot, waiting FIFO if none is free.

        Raises PoolOverloaded if ``max_queue`` requests already wait, or if no slot
        was obtained within ``timeout`` seconds (None = wait forever).
        """
        if not self._waiters and self._free() > 0:
            self._tick()
            self.in_use += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise PoolOverloaded(f"{len(self._waiters)} requests already queued")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        timer = loop.call_later(timeout, self._expire, fut) if timeout is not None else None
        try:
            await fut
        except PoolOverloaded:
            raise PoolOverloaded(f"no worker slot within {timeout:g} s") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # got the slot while being cancelled
                self.release()
            else:
                self._discard(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            self._discard(fut)
            fut.set_exception(PoolOverloaded())

    def _discard(self, fut: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass

    def release(self) -> None:
        """Give back a slot taken by ``acquire``."""
        self._tick()
        self.in_use -= 1
        self._wake()

    def reserve(self, n: int) -> None:
        """Mark ``n`` slots (clamped to ``0..size``) as held by stuck work or leaked connections; 0 frees them."""
        n = max(0, min(int(n), self.size))
        if n != self.reserved:
            self._tick()
            self.reserved = n
            self._wake()
