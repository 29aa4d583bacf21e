"""The flow model: request rates, latencies and outcomes of every operation, per step, without running
the platform.

Drivers are what the live traffic generators do (``sample_platform/traffic``): ``rate x
shape.multiplier(t, seed)`` requests/s split by ``MIX`` (surge factors applied as the generator does),
the IM client pool, live players and streamers, and one poll per second per kafka consumer group.  The
rates then flow down the call table (:mod:`.calls`).  Latency of an operation is its own mean service
time (lognormal with the node's ``service_sigma``: mean = median x exp(sigma^2 / 2)), times a fault's
slowdown, plus extra seconds, plus its calls (a call that outlasts the caller's timeout costs the
timeout).  Outcomes: own failures (500), shed load when the usable worker slots cannot carry it (503),
a failed required call (502, or 504 when it timed out), and the business 4xx of payment (402) and
inventory (409), which gift and the gateway pass on.  Everything is an array over the steps (units:
requests/s, seconds, ratios).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from graphlib import TopologicalSorter

import numpy as np
from scipy.special import ndtr

from ..graph import CDN_EDGES, GATEWAY_ROUTES, INFRA
from ..node import TIMEOUT_FROM_GATEWAY, TIMEOUT_SERVICE_TO_SERVICE, TIMEOUT_TO_INFRA
from ..params import PARAMS
from ..services.gateway import BADGE_TIMEOUT_SECONDS
from ..services.live import SEGMENT_SECONDS
from ..shape import multiplier
from ..traffic import http, im, live
from .calls import CONSUMERS, Op, build_ops
from .effects import Knobs

#: calls with their own timeout instead of :func:`timeout_for`'s (seconds).
CALL_TIMEOUTS = {("gateway", "notification"): BADGE_TIMEOUT_SECONDS,
                 ("feed", "recommend"): PARAMS["feed"].recommend_timeout_seconds}
#: ops that answer with their downstream's 4xx (the gateway proxies; gift passes on 402/409).
PASSES_4XX = ("gateway", "gift")


def timeout_for(caller: str, downstream: str) -> float:
    """The caller's timeout for a call to ``downstream`` in seconds (as :meth:`Node.timeout_for`)."""
    if (caller, downstream) in CALL_TIMEOUTS:
        return CALL_TIMEOUTS[caller, downstream]
    if downstream in INFRA:
        return TIMEOUT_TO_INFRA
    return TIMEOUT_FROM_GATEWAY if caller == "gateway" else TIMEOUT_SERVICE_TO_SERVICE


def exceed(median: np.ndarray, sigma: float, bound: float) -> np.ndarray:
    """P(lognormal(median, sigma) > bound), elementwise."""
    with np.errstate(divide="ignore"):
        return 1.0 - ndtr((math.log(bound) - np.log(np.maximum(median, 1e-9))) / sigma)


def generator_default(cls: type, name: str) -> float:
    """A constructor default of a live traffic generator (the platform starts them with these)."""
    return inspect.signature(cls.__init__).parameters[name].default


@dataclass
class Flows:
    """The model's output (arrays over the steps): per op its ``rate`` (requests/s), mean ``latency``
    (s) and ``codes`` (status code -> share of its requests); per call edge
    ``calls[(caller op, callee op)]`` (calls/s) and ``call_timeouts`` (share that timed out); the
    drivers in ``drivers`` (IM, live and kafka quantities)."""

    ops: dict[str, Op]
    rate: dict[str, np.ndarray] = field(default_factory=dict)
    latency: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    calls: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    call_timeouts: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    drivers: dict[str, np.ndarray] = field(default_factory=dict)


def drivers(t: np.ndarray, rate: float, seed: int, celebrity: np.ndarray, push: np.ndarray) -> dict[str, np.ndarray]:
    """Load entering the platform at each step (requests/s unless named otherwise); ``celebrity`` and
    ``push`` are the factors of the active surges (1 when none)."""
    mult = np.array([multiplier(float(x), seed) for x in t])
    d: dict[str, np.ndarray] = {"multiplier": mult}
    total = rate * mult
    for action, (share, _, path) in http.MIX.items():
        factor = celebrity if action in ("live_join", "gift") else 1 + 0.25 * (push - 1) if action == "feed" else 1.0
        d[path] = total * share * factor
    online = np.maximum(2, np.round(generator_default(im.ImClients, "base_connections") * mult))
    d["im_online"] = online
    d["im_frames"] = online / (im.MEAN_THINK_SECONDS + 0.9)  # think time, then typing and (0.3..1.5 s) the message
    d["im_reads"] = d["im_frames"] * im.ONLINE_PEER_RATIO * im.READ_RATIO
    d["im_opened"] = online / im.MEAN_SESSION_SECONDS
    watch = 10 + live.MEAN_WATCH_SECONDS * (math.exp(-10 / live.MEAN_WATCH_SECONDS)
                                            - math.exp(-120 / live.MEAN_WATCH_SECONDS))  # E[clip(Exp, 10, 120)]
    play = np.minimum(1.0, generator_default(live.LiveAudience, "play_ratio") * celebrity)
    players = np.minimum(generator_default(live.LiveAudience, "max_players"), d["/api/live/join"] * play * watch)
    d["players"], d["sessions"] = players, players / watch
    d["/api/live/beacon"] = players / live.BEACON_SECONDS + players / watch
    rooms = np.maximum(2, np.round(generator_default(live.LiveAudience, "base_rooms") * mult)) + (celebrity > 1)
    d["rooms"], d["ingest"] = rooms, rooms / live.INGEST_SECONDS
    for edge, weight in PARAMS["live"].cdn_weights.items():
        d[f"players {edge}"] = players * weight
    d["push_factor"] = push
    return d


def _cdn_segments(d: dict[str, np.ndarray], knobs: Knobs) -> None:
    """Segments fetched per edge, the rendition played and the stall share, from the edge's throughput and
    the viewers' last mile (median ``CLIENT_MEDIAN_BPS``): adaptive bitrate picks the highest rendition
    below 0.8x the throughput; a segment slower than its own duration stalls playback."""
    for edge in CDN_EDGES:
        throughput = np.minimum(knobs.cdn_throughput[edge], live.CLIENT_MEDIAN_BPS)
        ladder = np.array(live.BITRATE_LADDER)
        fits = ladder[None, :] <= 0.8 * throughput[:, None]
        bitrate = np.where(fits.any(axis=1), (ladder[None, :] * fits).max(axis=1), ladder[0])
        seconds = bitrate * SEGMENT_SECONDS / throughput  # to download one segment
        d[f"bitrate {edge}"] = bitrate
        d[f"stall {edge}"] = np.clip(1 - SEGMENT_SECONDS / seconds, 0.0, 1.0)
        d[f"segments {edge}"] = d[f"players {edge}"] / np.maximum(SEGMENT_SECONDS, seconds)
        d[f"first_frame {edge}"] = ladder[1] * SEGMENT_SECONDS / throughput  # the first segment, rung 2


def _consumers(t: np.ndarray, flows: Flows, produced: dict[str, np.ndarray], knobs: Knobs) -> None:
    """Messages consumed per topic and the group's lag (a Lindley recursion: the backlog grows while
    the consumer is capped below what is produced)."""
    step = float(t[1] - t[0]) if len(t) > 1 else 60.0
    for node, topic in CONSUMERS.values():
        cap = knobs.consumer_cap[node]
        inflow = produced[topic]
        lag = np.empty(len(t))
        backlog = 0.0
        for i, (p, c) in enumerate(zip((inflow * step).tolist(), (cap * step).tolist())):
            backlog = max(0.0, backlog + p - c)
            lag[i] = backlog
        consumed = inflow - np.diff(lag, prepend=0.0) / step
        poll = PARAMS[node].poll_interval_seconds
        flows.drivers[f"lag {topic}"] = lag + inflow * poll / 2  # messages produced since the last poll
        flows.drivers[f"consumed {topic}"] = consumed
        flows.drivers[f"batches {topic}"] = (1 - np.exp(-consumed * poll)) / poll


def run(t: np.ndarray, rate: float, seed: int, celebrity: np.ndarray, push: np.ndarray, knobs: Knobs) -> Flows:
    """The flows of every operation at steps ``t`` (epoch seconds) for mean ``rate`` requests/s."""
    ops = build_ops()
    flows = Flows(ops)
    d = flows.drivers = drivers(t, rate, seed, celebrity, push)
    _cdn_segments(d, knobs)
    zero = np.zeros(len(t))
    entry = {f"gateway {path}": d[path] for path in GATEWAY_ROUTES}
    entry.update({"message frame": d["im_frames"], "message relay": d["im_frames"] + d["im_reads"],
                  "origin /ingest": d["ingest"]})
    for edge in CDN_EDGES:
        entry[f"{edge} /live/{{room_id}}/playlist"] = d["sessions"] * PARAMS["live"].cdn_weights[edge]
        entry[f"{edge} /live/{{room_id}}/{{seq}}"] = d[f"segments {edge}"]
    for node, topic in CONSUMERS.values():
        entry[f"{node} poll {topic}"] = np.full(len(t), 1 / PARAMS[node].poll_interval_seconds)
    callers: dict[str, list[str]] = {name: [] for name in ops}  # lists, not sets: the same order in every run
    for name, op in ops.items():
        for c in op.calls:
            callers[c.op].append(name)
    order = list(TopologicalSorter(callers).static_order())  # callers before the ops they call

    def propagate() -> None:
        rates = {name: entry.get(name, zero).copy() for name in ops}
        for name in order:
            op = ops[name]
            for c in op.calls:
                # a timeout cascade: the callers send each timed-out call again (they nearly all time out)
                per = c.per_request(knobs) * (1 + knobs.retries[op.node, ops[c.op].node])
                flows.calls[name, c.op] = rates[name] * per
                rates[c.op] = rates[c.op] + rates[name] * per
        flows.rate = rates

    propagate()
    produced = {topic: flows.rate[f"kafka /produce {topic}"] for _, topic in CONSUMERS.values()}
    produced["notifications"] = produced["notifications"] * d["push_factor"]  # a campaign adds (factor - 1)x
    _consumers(t, flows, produced, knobs)
    entry["search index"] = flows.drivers["consumed posts"]
    entry["message archive"] = flows.drivers["batches messages"]
    entry["notification push"] = flows.drivers["batches notifications"]
    entry["payment settle"] = flows.drivers["batches gifts"]
    entry["media transcode"] = flows.drivers["consumed transcode"]
    propagate()
    _outcomes(flows, knobs, order)
    return flows


def _outcomes(flows: Flows, knobs: Knobs, order: list[str]) -> None:
    """Latency and status code shares of every op.  Twice: the first pass finds each node's load (busy
    slot-seconds per usable slot), the second sheds what the usable slots cannot carry (503, which the
    callers see as a failed call) and adds the queueing wait."""
    load: dict[str, np.ndarray] = {}
    for _ in range(2):
        busy = _pass(flows, knobs, order, load)
        load = {node: busy[node] / np.maximum(knobs.usable_slots[node], 1e-9) for node in busy}


def _pass(flows: Flows, knobs: Knobs, order: list[str], load: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One pass over the ops, callees first, at the given node loads; returns busy slot-seconds/s per node."""
    ops = flows.ops
    n = len(knobs.t)
    busy: dict[str, np.ndarray] = {}
    for name in reversed(order):
        op = ops[name]
        p = PARAMS[op.node]
        sigma = p.service_sigma
        own = op.median_seconds * math.exp(sigma**2 / 2) * knobs.slowdown[op.node] + knobs.extra_seconds[op.node]
        node_load = load.get(op.node, np.zeros(n))
        shed = np.where(knobs.usable_slots[op.node] < 1, 1.0, np.clip(1 - 1 / np.maximum(node_load, 1e-9), 0.0, 1.0))
        wait = np.minimum(p.queue_timeout_seconds,  # waiting for a slot, at most the queue timeout
                          np.where(node_load < 1, op.median_seconds * node_load / np.maximum(1 - node_load, 1e-3),
                                   np.inf))
        latency = own + wait
        fail_502, fail_504, passed = np.zeros(n), np.zeros(n), {}
        for c in op.calls:
            callee = ops[c.op]
            limit = timeout_for(op.node, callee.node)
            lat = flows.latency[c.op]
            p_timeout = np.clip(exceed(lat / math.exp(sigma**2 / 2), sigma, limit)
                                + knobs.partition[op.node, callee.node], 0.0, 1.0)
            flows.call_timeouts[name, c.op] = p_timeout
            per = c.per_request(knobs)
            retries = knobs.retries[op.node, callee.node]  # a timed-out call is sent again, and waited out again
            latency = latency + per * ((1 - p_timeout) * lat + p_timeout * limit * (1 + retries))
            if not c.required:
                continue
            codes = flows.codes[c.op]
            server_fail = sum((v for k, v in codes.items() if k[0] == "5"), np.zeros(n))
            fail_504 += per * p_timeout
            fail_502 += per * (1 - p_timeout) * server_fail
            if op.node in PASSES_4XX:
                for code, share in codes.items():
                    if code[0] == "4":
                        passed[code] = passed.get(code, 0) + per * (1 - p_timeout) * share
        own_err = np.maximum(p.error_ratio, knobs.error_ratio[op.node])
        if op.node in knobs.canary:
            rollout, errors = knobs.canary[op.node]
            own_err = np.maximum(own_err, rollout * errors)
        codes = {"500": own_err}
        business = {"payment": ("402", getattr(p, "decline_ratio", 0.0)),
                    "inventory": ("409", getattr(p, "out_of_stock_ratio", 0.0))}.get(op.node)
        if business and op.route:
            passed[business[0]] = np.full(n, business[1])
        codes["502"] = np.clip(fail_502, 0, 1) * (1 - own_err)
        codes["504"] = np.clip(fail_504, 0, 1) * (1 - own_err)
        for code, share in passed.items():
            codes[code] = np.clip(share, 0, 1)
        codes["503"] = shed
        for code in ("500", "502", "504", *passed):
            codes[code] = codes[code] * (1 - shed)
        if op.ok_code:
            codes[op.ok_code] = np.clip(1 - sum(codes.values()), 0.0, 1.0)
        flows.latency[name] = latency
        flows.codes[name] = codes
        busy[op.node] = busy.get(op.node, np.zeros(n)) + flows.rate[name] * latency
    return busy
