"""OpsWatch reference platform: a small short-video/live-streaming social network.

Every node (services ``gateway user feed post live gift message``, simulated
infrastructure ``postgres redis kafka``) is its own uvicorn/Starlette HTTP
server on 127.0.0.1 inside one process and one asyncio loop; nodes call each
other with httpx.  Each node exposes ``GET /metrics`` (see :mod:`.metrics`).

Modules (each with one job):

- :mod:`.graph` -- node names, call graph, gateway routes (static data).
- :mod:`.faults` -- fault catalogue and ``FaultInjector`` with JSONL ground truth.
- :mod:`.pool` -- bounded worker pool with busy-time accounting.
- :mod:`.metrics` -- the standard per-node Prometheus metrics.
- :mod:`.node` -- node base class: instrumentation, faults, outgoing calls.
- :mod:`.services` / :mod:`.infra` -- node behaviour.
- :mod:`.traffic` -- open-loop Poisson traffic generator.
- :mod:`.control` -- control HTTP API (``/faults``).
- :mod:`.serve` -- uvicorn on pre-bound sockets without signal handling.
- :mod:`.runner` -- ``Platform`` (in-process API) and the ``run`` command.

Entry point: ``python -m sample_platform run --ports-file PATH --faults-log PATH
[--rate 20] [--seed 1]``.  In-process: ``async with Platform(...) as p`` (see
:mod:`.runner`).  Importing this package starts nothing; ``Platform`` is
imported lazily so that ``sample_platform.faults`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Platform"]


def __getattr__(name: str) -> Any:
    if name == "Platform":
        from .runner import Platform

        return Platform
    raise AttributeError(name)
