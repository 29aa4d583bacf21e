"""``opswatch bench rca``: the root-cause benchmark of issue 6 over the platform's fault catalogue, live.

One run (:func:`run_bench`) starts the reference platform with OpsWatch watching it
(:func:`opswatch.scenarios.run_scenarios`) and, beside it, a real Prometheus + Alertmanager scraping the same
targets with conventional per-service rules (:mod:`opswatch.peer_stack`). After ``baseline_seconds`` of
warm-up it injects N faults one after another (:func:`pick_scenarios`: round-robin over the twelve kinds, a
seeded target each), then a fault-free stretch with legitimate surges (``POST /surges``). Afterwards BARO and
n-sigma (:mod:`opswatch.rca_baselines`) rank root causes on the golden signals OpsWatch stored in the run.

An incident of either system is attributed the same way (:func:`opswatch.scenarios.attribute` with
``whole_window``), as the on-call engineer meets it: every incident that opens in a fault's *window* (its start
to ``attribution_seconds`` after its end) is one of that fault's incidents, whatever its nodes: a page on
another service during the fault is one more page for the same fault. The fault's *first* incident (for AC@k
and time to notify) is the first whose nodes (alerts and root-cause candidates) include the fault's node, else
the first opened in the window. For Alertmanager an incident is one notification group (``groupKey``) from its
first firing notification until it resolves.

Keys, for OpsWatch and per baseline (null where a key means nothing for that system; the ranking-only
BARO and n-sigma have only the AC@k keys, Prometheus + Alertmanager ranks nothing so its AC@k are null):

* ``ac_at_1``, ``ac_at_3``: fraction of all faults whose node (the target, or either end of a
  ``network_partition``) is among the first 1 / 3 root-cause candidates of the fault's first incident; an
  undetected fault counts as a miss.
* ``detected``: fraction of faults with at least one attributed incident.
* ``incidents_per_fault``: incidents attributed to a fault, averaged over the detected faults (goal 1.0).
* ``noise_reduction``: ``1 - incidents / alerts`` over the whole run (every incident, false ones included).
  ``alerts`` counts every alert instance that fired, in both systems alike: OpsWatch's alerts in its incidents
  (every firing alert joins one), Prometheus's firing ``ALERTS`` runs (:func:`opswatch.peer_stack.fired_alerts`),
  notified or not; ``alerts_notified`` says how many of them reached the webhook.
* ``purity``: mean over the incidents attributed to faults of the fraction of the incident's alerts on the
  fault's *relevant nodes* (:func:`relevant_nodes`): the fault's nodes, the nodes the fault kind acts on,
  and every node on a dependency path from a fault node up to a business of the fault's
  ``expected_impact``. An alert elsewhere (e.g. on postgres when a redis outage sends the reads there, which
  no dependency edge explains) counts as impure.
* ``false_incidents_per_hour``: incidents opened outside every fault window, per hour of fault-free time
  (the run minus each fault window, minus the warm-up ``baseline_seconds``).
* ``median_seconds_to_notify``: median over detected faults of the seconds from the fault's start to the
  first notification (OpsWatch's page, Alertmanager's first webhook call) of its first incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from pathlib import Path

import networkx as nx

from alerting.model import parse_rfc3339
from sample_platform.faults import FAULT_KINDS, valid_targets
from storage.sqlite import SQLiteStore
from topology.graph import REFERENCE_PLATFORM, Topology

from .config import OpsWatchConfig
from .peer_stack import Grouping, fired_alerts, notification_groups, prometheus_stack
from .rca_baselines import SCALERS, rank_fault
from .scenarios import Outcome, Scenario, ScenarioRun, attribute, fault_nodes, run_scenarios

KEYS = ("ac_at_1", "ac_at_3", "incidents_per_fault", "noise_reduction", "purity", "false_incidents_per_hour",
        "median_seconds_to_notify")
DEFAULT_SURGES = ("celebrity_live", "deploy")


def pick_scenarios(n: int, seed: int, for_seconds: float) -> list[Scenario]:
    """``n`` faults over the catalogue: kinds round-robin in catalogue order starting at ``seed % 12`` (so any
    12 in a row cover every kind), each with a target drawn from the kind's valid targets by
    ``random.Random(seed)``. :raises ValueError: ``n < 1``."""
    if n < 1:
        raise ValueError(f"--scenarios {n}: run at least one")
    kinds, rng = list(FAULT_KINDS), random.Random(seed)
    picked = [kinds[(seed + i) % len(kinds)] for i in range(n)]
    return [Scenario(kind, rng.choice(valid_targets(kind)), for_seconds) for kind in picked]


def relevant_nodes(topology: Topology, fault: dict) -> set[str]:
    """The nodes an alert of ``fault``'s incident may be on and still belong to it (see ``purity`` above).
    A router (the gateway) is on the path of every business but is not followed to the other businesses'
    backends, as :meth:`topology.graph.Topology.impacted_businesses` does not."""
    graph, nodes = topology.graph, fault_nodes(fault)
    kind = FAULT_KINDS.get(fault.get("kind", ""))
    relevant = nodes | (set(kind.nodes(fault["target"])) if kind else set())
    below_impact: set[str] = set()
    for business in fault.get("expected_impact") or []:
        for dep in graph.successors(business) if business in graph else ():
            below_impact |= {dep} if graph.nodes[dep].get("router") else {dep} | nx.descendants(graph, dep)
    for node in nodes & set(graph):
        relevant |= nx.ancestors(graph, node) & below_impact
    return relevant


def ac_at(ranks: list[int | None], k: int) -> float | None:
    """Fraction of ``ranks`` (1-based rank of the fault's node, None when absent) that are ``<= k``."""
    return None if not ranks else sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def purity(incidents: list[tuple[list[str | None], set[str]]]) -> float | None:
    """Mean over ``(alert nodes of an incident, the fault's relevant nodes)`` of the fraction of the alert
    nodes that are relevant; incidents with no alert are left out. None when none is left."""
    fractions = [sum(1 for n in alerts if n in relevant) / len(alerts) for alerts, relevant in incidents if alerts]
    return statistics.fmean(fractions) if fractions else None


def noise_reduction(incidents: int, alerts: int) -> float | None:
    """``1 - incidents / alerts``; None without alerts."""
    return None if alerts == 0 else 1 - incidents / alerts


def median(values: list[float | None]) -> float | None:
    """Median of the values that are not None; None when there are none."""
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def score_incidents(outcomes: list[Outcome], false: list[dict], alerts: int, fault_free_hours: float,
                    topology: Topology, ranks: bool = True) -> dict:
    """The benchmark's keys for one incident-producing system from its attributed ``outcomes`` (each
    incident with ``alerts`` carrying ``node``), its ``false`` incidents and its alert count. ``ranks=False``
    (a system that ranks nothing) makes the AC@k keys null."""
    detected = [o for o in outcomes if o.detected]
    attributed = sum(len(o.incidents) for o in outcomes)
    rank_list = [o.rank() for o in outcomes]
    return {
        "ac_at_1": _round(ac_at(rank_list, 1)) if ranks else None,
        "ac_at_3": _round(ac_at(rank_list, 3)) if ranks else None,
        "incidents_per_fault": _round(attributed / len(detected)) if detected else None,
        "noise_reduction": _round(noise_reduction(attributed + len(false), alerts), 4),
        "purity": _round(purity([([a.get("node") for a in i["alerts"]], relevant_nodes(topology, o.fault))
                                 for o in outcomes for i in o.incidents])),
        "false_incidents_per_hour": _round(len(false) / fault_free_hours, 2) if fault_free_hours > 0 else None,
        "median_seconds_to_notify": _round(median([o.seconds_to("paged") for o in detected]), 1),
        "detected": _round(len(detected) / len(outcomes)) if outcomes else None,
        "incidents": attributed + len(false), "alerts": alerts, "false_incidents": len(false),
        "false_incidents_on_surge": sum(1 for i in false if i.get("on_surge")),
    }


def score_rankings(faults: list[dict], rankings: list[dict[str, list[str]]], method: str) -> dict:
    """AC@k of a ranking-only baseline (``rankings[i][method]`` ranks fault ``i``); its other keys are null."""
    ranks = [next((i + 1 for i, n in enumerate(r[method]) if n in fault_nodes(f)), None)
             for f, r in zip(faults, rankings)]
    return {**dict.fromkeys(KEYS), "ac_at_1": _round(ac_at(ranks, 1)), "ac_at_3": _round(ac_at(ranks, 3))}


LOOKBACK_SECONDS = 600.0
"""How far before a fault BARO and n-sigma look for normal data."""


def baseline_windows(faults: list[dict], baseline_seconds: float, rate_window: float,
                     lookback_seconds: float = LOOKBACK_SECONDS) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """``(start_ms, end_ms, excluded)`` per fault for BARO and n-sigma: from ``lookback_seconds`` before the
    fault to its end, leaving out (``excluded``, ms intervals) the run's start-up (its first rate window
    and 30 s more) and every earlier fault until one rate window after it ended (its signals recovering):
    the normal data is the quiet time of the last minutes, as RCAEval's cases have minutes of it."""
    run_start = parse_rfc3339(faults[0]["start"]) - int(baseline_seconds * 1000) if faults else 0
    startup = (run_start, run_start + int((rate_window + 30) * 1000))
    windows = []
    for i, fault in enumerate(faults):
        start, end = parse_rfc3339(fault["start"]), parse_rfc3339(fault["end"])
        earlier = [(parse_rfc3339(f["start"]), parse_rfc3339(f["end"]) + int(rate_window * 1000)) for f in faults[:i]]
        windows.append((start - int(lookback_seconds * 1000), end, [startup, *earlier]))
    return windows


def grouping_of(config: OpsWatchConfig) -> Grouping:
    """OpsWatch's root route timers, for Alertmanager's route to match."""
    route = config.routing_tree()
    return Grouping(route.group_wait_ms / 1000, route.group_interval_ms / 1000, route.repeat_interval_ms / 1000)


async def run_bench(config: OpsWatchConfig, scenarios: list[Scenario], *, seed: int = 1, rate: float = 20.0,
                    baseline_seconds: float = 240.0, gap_seconds: float = 60.0, fault_free_seconds: float = 240.0,
                    surges: tuple[str, ...] = DEFAULT_SURGES, attribution_seconds: float = 30.0) -> dict:
    """Run the benchmark (module docstring) with ``config`` (its ``data_dir`` must be new or empty); returns the
    JSON result. :raises RuntimeError: the platform, Prometheus or Alertmanager does not start."""
    data_dir = Path(config.data_dir)
    topology = Topology.load(config.topology_file or REFERENCE_PLATFORM)
    grouping = grouping_of(config)
    notifications: list[tuple[int, dict]] = []  # Alertmanager's, kept when the stack stops
    fired: list[int] = []  # Prometheus's alert instances over the run

    @contextlib.asynccontextmanager
    async def peers(platform):
        async with prometheus_stack(platform.info["nodes"], data_dir / "peers", config.scrape_interval,
                                    config.scrape_timeout_seconds, grouping) as stack:
            started_ms = int(time.time() * 1000)
            try:
                yield
                fired.append(await asyncio.to_thread(fired_alerts, stack.prometheus_url, started_ms,
                                                     int(time.time() * 1000), config.scrape_interval))
            finally:
                notifications.extend(stack.hook.notifications)
                (data_dir / "peers" / "notifications.jsonl").write_text(  # kept for a look afterwards
                    "".join(json.dumps({"received_ms": at, "body": body}) + "\n" for at, body in notifications))

    surge_bodies = [{"kind": kind, "duration_seconds": fault_free_seconds / 2} for kind in surges]
    run = await run_scenarios(config, scenarios, rate=rate, seed=seed, baseline_seconds=baseline_seconds,
                              gap_seconds=gap_seconds, attribution_seconds=attribution_seconds,
                              fault_free_seconds=fault_free_seconds, surges=surge_bodies, peers=peers,
                              whole_window=True)
    hours = max(0.0, run.fault_free_seconds - baseline_seconds) / 3600
    faults = [o.fault for o in run.outcomes]
    surges_truth = [r for r in run.truth if not r.get("fault")]

    groups, notified = notification_groups(notifications)
    am_outcomes, am_false = attribute(faults, surges_truth, groups, attribution_seconds, whole_window=True)

    store = SQLiteStore(data_dir / "opswatch.db")
    try:
        rankings = [rank_fault(store, start, end, excluded)
                    for start, end, excluded in baseline_windows(faults, baseline_seconds, config.rate_window)]
    finally:
        store.close()

    return {
        **score_incidents(run.outcomes, run.false_incidents, run.alerts, hours, topology),
        "scenarios": _scenarios_json(run, am_outcomes, rankings),
        "baselines": {
            **{m: score_rankings(faults, rankings, m) for m in SCALERS},
            "prometheus_alertmanager": {**score_incidents(am_outcomes, am_false, fired[0], hours, topology,
                                                          ranks=False), "alerts_notified": notified},
        },
        "false_incidents": run.to_json()["false_incidents"],
        "run": {"seconds": round(run.seconds, 1), "fault_free_seconds": round(hours * 3600, 1),
                "scrape_interval_seconds": config.scrape_interval, "faults": len(faults),
                "surges": [f"{s['kind']}:{s['target']}" for s in surges_truth],
                "group_wait_seconds": grouping.group_wait, "data_dir": str(data_dir)},
    }


def _scenarios_json(run: ScenarioRun, am_outcomes: list[Outcome], rankings: list[dict[str, list[str]]]) -> list[dict]:
    out = []
    for ours, am, ranked in zip(run.outcomes, am_outcomes, rankings):
        nodes = fault_nodes(ours.fault)
        out.append({**ours.to_json(),
                    **{f"{m}_top3": r[:3] for m, r in ranked.items()},
                    **{f"{m}_rank": next((i + 1 for i, n in enumerate(r) if n in nodes), None)
                       for m, r in ranked.items()},
                    "prometheus_alertmanager": {"incidents": len(am.incidents),
                                                "alerts": sum(len(i["alerts"]) for i in am.incidents),
                                                "seconds_to_notify": am.seconds_to("paged")}})
    return out
