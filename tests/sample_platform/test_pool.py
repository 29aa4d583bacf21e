"""Unit tests for the worker pool (slots, FIFO, load shedding, busy-time accounting)."""

from __future__ import annotations

import asyncio

import pytest

from sample_platform.pool import PoolOverloaded, WorkerPool


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_busy_seconds_integrates_occupied_slots():
    clock = FakeClock()
    pool = WorkerPool(4, clock=clock)

    async def scenario():
        await pool.acquire()
        clock.t += 2          # 1 slot x 2 s
        await pool.acquire()
        clock.t += 1          # 2 slots x 1 s
        pool.release()
        pool.reserve(3)       # 1 in use + 3 stuck = 4 slots (clamped to size) x 1 s
        clock.t += 1
        assert pool.occupied == 4
        pool.release()
        pool.reserve(0)
        clock.t += 5          # idle

    asyncio.run(scenario())
    assert pool.busy_seconds() == pytest.approx(2 + 2 + 4)
    assert pool.occupied == 0


def test_fifo_wait_reserve_and_queue_limits():
    async def scenario():
        pool = WorkerPool(2, max_queue=2)
        await pool.acquire()
        pool.reserve(1)  # one usable slot left, and it is taken
        order: list[int] = []

        async def worker(i: int) -> None:
            await pool.acquire()
            order.append(i)
            pool.release()

        tasks = [asyncio.create_task(worker(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        assert pool.queued == 2 and order == []
        with pytest.raises(PoolOverloaded):  # queue full
            await pool.acquire()
        pool.release()
        await asyncio.gather(*tasks)
        assert order == [0, 1]

        await pool.acquire()  # the only usable slot
        with pytest.raises(PoolOverloaded, match="within 0.05 s"):
            await pool.acquire(timeout=0.05)
        assert pool.queued == 0  # timed-out waiter left the queue
        pool.reserve(0)
        await asyncio.wait_for(pool.acquire(timeout=0.05), 1)  # freed by un-reserving
        assert pool.in_use == 2

    asyncio.run(scenario())


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        WorkerPool(0)
