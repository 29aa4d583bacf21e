"""The Prometheus + Alertmanager baseline's alert count (opswatch/peer_stack.py) against a real Prometheus and
Alertmanager (Debian packages): every alert instance Prometheus fired, from its ``ALERTS`` series."""

from __future__ import annotations

import asyncio
import time

import pytest

from opswatch.peer_stack import Grouping, fired_alerts, prometheus_stack

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: test
    rules:
      - alert: Always
        expr: vector(1)
      - alert: Flapping          # fires 2 s of every 4 s: a new instance each time
        expr: vector(time() % 4) < 2
      - alert: Never
        expr: vector(1) > 2
"""


def test_fired_alerts_counts_each_firing_run_of_prometheus_alerts(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)

    async def run() -> tuple[int, int]:
        async with prometheus_stack({}, tmp_path / "peers", 1, 1, Grouping(1, 1, 60), rules) as stack:
            start_ms = int(time.time() * 1000)
            await asyncio.sleep(10)
            end_ms = int(time.time() * 1000)
            total = await asyncio.to_thread(fired_alerts, stack.prometheus_url, start_ms, end_ms, 1)
            # a window before any rule ran holds nothing
            return total, await asyncio.to_thread(fired_alerts, stack.prometheus_url, start_ms - 60_000,
                                                  start_ms - 30_000, 1)

    total, before = asyncio.run(run())
    assert before == 0
    assert 3 <= total <= 4, total  # Always once, Flapping 2-3 times in 10 s, Never not at all
