"""OpsWatch reference platform: a short-video/live-streaming social network, every business of it.

Every node is its own uvicorn/Starlette HTTP server on 127.0.0.1 inside one
process and one asyncio loop; nodes call each other with aiohttp and expose
``GET /metrics`` (the standard families of :mod:`.metrics` plus their business
metrics).  The node names are the Prometheus ``job`` label and the topology
node names (``topology/reference_platform.yaml``):

==================  ===========================================================
business            nodes
==================  ===========================================================
(entry point)       ``gateway`` (BFF, per-route rate limits, 429s counted)
user profile        ``user`` (in-process L1 cache, ``redis`` L2, ``postgres``)
watch feed          ``feed`` (following + recommended, merged and ranked),
                    ``recommend`` (several scorers combined)
post content        ``post`` (posts, likes, comments), ``media`` (uploads,
                    transcoder on kafka), ``objstore`` (object storage)
search              ``search`` (inverted index fed from kafka)
messaging           ``message`` (IM over WebSockets, HTTP send and history)
push notifications  ``notification`` (fed by likes, comments, messages)
live streaming      ``live`` (rooms, viewers, player beacons), ``origin``,
                    ``cdn-a`` ``cdn-b`` ``cdn-c`` (one node per CDN provider)
send gift           ``gift`` (orders), ``payment``, ``inventory``, the sharded
                    ``giftdb-0`` / ``giftdb-1``
shared infra        ``postgres``, ``redis``, ``kafka`` (topics, consumer lag)
==================  ===========================================================

Behaviour parameters of every node (service times, error ratio, hit ratios,
CDN throughput, shard, version, ...) are in one place, :mod:`.params`.

Traffic (:mod:`.traffic`) is shaped by :mod:`.shape`: a diurnal x weekly x
slow-noise multiplier, a pure function of simulated time (``--time-scale K``
runs K times faster; ``--sim-start`` picks the simulated start).  Legitimate
surges (:mod:`.surges`: ``celebrity_live``, ``marketing_push``, ``deploy``)
start from the control API (``POST /surges``) or the weekly calendar
(``--surges calendar``).

Ground truth (:mod:`.groundtruth`): one JSONL log (``--faults-log``) and
``GET /faults`` on the control server hold every fault *and* every surge::

    {"id": "...", "kind": "latency", "target": "postgres", "start": "2026-11-22T10:00:00.123Z",
     "end": "2026-11-22T10:01:00.123Z", "params": {"latency_seconds": 0.25}, "fault": true,
     "expected_impact": ["watch_feed", "user_profile", "post_content", "messaging", "live_streaming",
                         "send_gift"]}
    {"id": "...", "kind": "surge:celebrity_live", "target": "live", "start": "...", "end": "...",
     "params": {"factor": 4.0, "room_id": 1}, "fault": false}

``fault: false`` marks a legitimate surge: an alert during it is a false positive.

Modules (each with one job):

- :mod:`.graph` -- node names, call graph, gateway routes (static data).
- :mod:`.params` -- behaviour parameters of every node.
- :mod:`.fault_kinds` -- the fault catalogue: twelve kinds, their targets, params and overrides.
- :mod:`.faults` -- ``FaultInjector``: active faults, their effects, ground truth with expected impact.
- :mod:`.groundtruth` -- the shared ground-truth log.
- :mod:`.surges` -- legitimate surges, their controller and calendar.
- :mod:`.shape` -- traffic shape over simulated time, ``SimClock``.
- :mod:`.pool` -- bounded worker pool with busy-time accounting.
- :mod:`.metrics` -- the standard per-node Prometheus metrics.
- :mod:`.node` -- node base class: instrumentation, faults, outgoing calls.
- :mod:`.services` / :mod:`.infra` -- node behaviour, one module per business.
- :mod:`.traffic` -- HTTP load, WebSocket IM clients, live streamers and viewers.
- :mod:`.control` -- control HTTP API (``/faults``, ``/surges``, ``/traffic``).
- :mod:`.serve` -- uvicorn on pre-bound sockets without signal handling.
- :mod:`.runner` -- ``Platform`` (in-process API, clean restarts) and the ``run`` command.

Entry point: ``python -m sample_platform run --ports-file PATH --faults-log PATH
[--rate 20] [--seed 1] [--time-scale 1] [--sim-start ISO8601] [--surges none|calendar]``.
In-process: ``async with Platform(...) as p`` (see :mod:`.runner`).  Importing
this package starts nothing; ``Platform`` is imported lazily so that
``sample_platform.faults`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Platform"]


def __getattr__(name: str) -> Any:
    if name == "Platform":
        from .runner import Platform

        return Platform
    raise AttributeError(name)
