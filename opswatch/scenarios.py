"""Live fault scenarios: the reference platform monitored by the whole pipeline, faults injected one after
another, and what OpsWatch reported set against the ground truth.

One run starts one platform (a child process, as ``opswatch demo`` does) and one :class:`Pipeline`, lets
``baseline_seconds`` of fault-free traffic pass, then for each :class:`Scenario` injects its fault through
the platform's control API, waits out its length and ``gap_seconds`` more (for the incident to resolve),
and goes on to the next. At the end every incident is attributed:

* to a fault when it opened during the fault or within ``attribution_seconds`` after it ended, and its
  nodes include the fault's node (the target; either end of a ``network_partition``), or any incident
  opened during the fault when none did;
* with ``whole_window``, every other incident opened in a fault's window (its start to
  ``attribution_seconds`` after its end) is that fault's too, after those: as the on-call engineer meets
  it, a page on another service during a fault is one more page for the same fault (the RCA benchmark's
  rule, for OpsWatch and Alertmanager alike);
* else it is a false incident (``on_surge`` says whether a legitimate surge was under way).

Used by ``opswatch platform scenario`` and by the RCA benchmark. Times are the platform's and OpsWatch's
wall clock (UTC epoch seconds), as live runs are; nothing here sleeps in tests other than the run itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from alerting.model import parse_rfc3339

from .config import OpsWatchConfig
from .demo import FaultPlan, PlatformProcess, forward_deploys_forever, monitored_platform
from .pipeline import Pipeline

log = logging.getLogger(__name__)

PARTITION_SEPARATOR = "~"  # sample_platform.fault_kinds: a network_partition target is CALLER~DOWNSTREAM


@dataclass(frozen=True)
class Scenario:
    """One fault to inject: ``kind`` into ``target`` for ``for_seconds``, with ``params`` overriding the
    kind's defaults (see ``opswatch demo --list-faults``)."""

    kind: str
    target: str
    for_seconds: float = 60.0
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, for_seconds: float = 60.0) -> "Scenario":
        """``"latency:postgres"`` -> a scenario; raises ValueError naming the valid kinds and targets."""
        plan = FaultPlan.parse(spec, 0.0, for_seconds)
        return cls(plan.kind, plan.target, for_seconds)


def fault_nodes(record: dict) -> set[str]:
    """The topology nodes a fault's ground-truth record puts at fault: its target, or both ends of a
    ``network_partition`` (``CALLER~DOWNSTREAM``)."""
    return set(str(record["target"]).split(PARTITION_SEPARATOR))


@dataclass
class Outcome:
    """What OpsWatch reported about one fault: its ground-truth ``fault`` record, the ``incidents``
    attributed to it (incident views as the API serves them, oldest first), and derived numbers."""

    fault: dict
    incidents: list[dict]

    @property
    def detected(self) -> bool:
        return bool(self.incidents)

    @property
    def root_causes(self) -> list[str]:
        """Ranked root-cause candidates of the first attributed incident (empty when undetected)."""
        return [c["node"] for c in self.incidents[0]["root_causes"]] if self.incidents else []

    def rank(self) -> int | None:
        """1-based rank of the fault's node among :attr:`root_causes`, None when absent."""
        nodes = fault_nodes(self.fault)
        return next((i + 1 for i, n in enumerate(self.root_causes) if n in nodes), None)

    def seconds_to(self, key_time: str) -> float | None:
        """Seconds from the fault's start to the first attributed incident's ``key_times[key_time]``
        (``first_anomaly``: its first alert's condition first held; ``first_alert``: an alert fired; ``opened``,
        ``paged``), None when it never happened."""
        if not self.incidents:
            return None
        at = self.incidents[0].get("key_times", {}).get(key_time) or (
            self.incidents[0]["opened_at"] if key_time == "opened" else None)
        return None if at is None else round((parse_rfc3339(at) - parse_rfc3339(self.fault["start"])) / 1000, 3)

    def to_json(self) -> dict:
        return {"kind": self.fault["kind"], "target": self.fault["target"], "start": self.fault["start"],
                "end": self.fault["end"], "expected_impact": self.fault.get("expected_impact", []),
                "detected": self.detected, "incidents": [i["id"] for i in self.incidents],
                "alerts": sum(len(i["alerts"]) for i in self.incidents), "root_causes": self.root_causes[:3],
                "rank": self.rank(), "seconds_to_first_anomaly": self.seconds_to("first_anomaly"),
                "seconds_to_first_alert": self.seconds_to("first_alert"), "seconds_to_open": self.seconds_to("opened"),
                "seconds_to_page": self.seconds_to("paged")}


@dataclass
class ScenarioRun:
    """Everything one run produced: one :class:`Outcome` per injected fault, the incidents attributed to
    no fault (``false_incidents``, each with ``on_surge``), the ground truth (faults and surges) and the
    fault-free seconds observed (for false incidents per hour)."""

    outcomes: list[Outcome]
    false_incidents: list[dict]
    truth: list[dict]
    alerts: int
    seconds: float
    fault_free_seconds: float

    def to_json(self) -> dict:
        return {"outcomes": [o.to_json() for o in self.outcomes],
                "false_incidents": [{"id": i["id"], "opened_at": i["opened_at"], "on_surge": i["on_surge"],
                                     "root_causes": [c["node"] for c in i["root_causes"]][:3]}
                                    for i in self.false_incidents],
                "alerts": self.alerts, "seconds": round(self.seconds, 1),
                "fault_free_seconds": round(self.fault_free_seconds, 1)}


def _nodes(incident: dict) -> set[str]:
    return {c["node"] for c in incident["root_causes"]} | {a.get("node") for a in incident["alerts"]}


def attribute(faults: list[dict], surges: list[dict], incidents: list[dict], attribution_seconds: float,
              whole_window: bool = False) -> tuple[list[Outcome], list[dict]]:
    """Split ``incidents`` (API incident views, or records with ``id``, ``opened_at``, ``root_causes`` and
    ``alerts`` with ``node``) between the ``faults`` (ground-truth records, in time order) and the false
    incidents, as the module docstring says; a false incident gets ``on_surge``. With ``whole_window`` an
    incident the first pass left over joins the earliest fault whose window holds its opening, after that
    fault's own incidents."""
    grace_ms = attribution_seconds * 1000
    taken: set[str] = set()
    outcomes = []
    for fault in faults:
        start, end = parse_rfc3339(fault["start"]), parse_rfc3339(fault["end"])
        during = [i for i in incidents
                  if i["id"] not in taken and start <= parse_rfc3339(i["opened_at"]) <= end + grace_ms]
        mine = [i for i in during if _nodes(i) & fault_nodes(fault)] or [
            i for i in during if parse_rfc3339(i["opened_at"]) <= end]
        mine.sort(key=lambda i: i["opened_at"])
        taken.update(i["id"] for i in mine)
        outcomes.append(Outcome(fault, mine))
    if whole_window:
        for incident in sorted((i for i in incidents if i["id"] not in taken), key=lambda i: i["opened_at"]):
            opened = parse_rfc3339(incident["opened_at"])
            outcome = next((o for o in outcomes if parse_rfc3339(o.fault["start"]) <= opened
                            <= parse_rfc3339(o.fault["end"]) + grace_ms), None)
            if outcome is not None:
                outcome.incidents.append(incident)
                taken.add(incident["id"])
    false = []
    for incident in incidents:
        if incident["id"] in taken:
            continue
        opened = parse_rfc3339(incident["opened_at"])
        on_surge = any(parse_rfc3339(s["start"]) <= opened <= parse_rfc3339(s["end"]) + grace_ms for s in surges)
        false.append({**incident, "on_surge": on_surge})
    return outcomes, false


async def run_scenarios(config: OpsWatchConfig, scenarios: list[Scenario], *, rate: float = 20.0, seed: int = 1,
                        baseline_seconds: float = 60.0, gap_seconds: float = 60.0,
                        attribution_seconds: float = 30.0, fault_free_seconds: float = 0.0,
                        surges: Sequence[dict] = (),
                        peers: Callable[[PlatformProcess], contextlib.AbstractAsyncContextManager] | None = None,
                        whole_window: bool = False) -> ScenarioRun:
    """Run ``scenarios`` live and headless, one after another, and attribute what OpsWatch reported (see
    the module docstring). ``config.data_dir`` holds the store, the platform's ground truth and the reports.

    After the last fault's gap, ``fault_free_seconds`` more pass with no fault; each of ``surges`` (a body
    of the platform's ``POST /surges``, e.g. ``{"kind": "celebrity_live", "duration_seconds": 60}``) starts
    at the beginning of that stretch: legitimate surges, recorded in the ground truth as not faults.
    ``peers(platform)``, when given, is an async context manager entered once the platform is up and left
    after the run (e.g. another monitoring stack scraping the same targets). ``whole_window``: see
    :func:`attribute`.

    :raises RuntimeError: when the platform does not start; :raises httpx.HTTPStatusError: when the
        platform refuses a fault or a surge (the message names it).
    """
    loop = asyncio.get_running_loop()
    async with monitored_platform(config, rate, seed) as (platform, pipeline):
        async with (peers(platform) if peers else contextlib.nullcontext()):
            started = loop.time()
            await _headless(pipeline, [_inject_all(platform, scenarios, baseline_seconds, gap_seconds,
                                                   fault_free_seconds, surges),
                                       forward_deploys_forever(platform, pipeline)])
            seconds = loop.time() - started
        truth = await platform.faults()
    faults = [r for r in truth if r.get("fault")]
    surges = [r for r in truth if not r.get("fault")]
    outcomes, false = attribute(faults, surges, pipeline.snapshot.incidents, attribution_seconds, whole_window)
    fault_seconds = sum(s.for_seconds + attribution_seconds for s in scenarios)
    alerts = sum(len(i["alerts"]) for i in pipeline.snapshot.incidents)  # every alert that paged joined one
    return ScenarioRun(outcomes, false, truth, alerts, seconds, max(0.0, seconds - fault_seconds))


async def _inject_all(platform: PlatformProcess, scenarios: list[Scenario], baseline_seconds: float,
                      gap_seconds: float, fault_free_seconds: float = 0.0, surges: Sequence[dict] = ()) -> None:
    await asyncio.sleep(baseline_seconds)
    for scenario in scenarios:
        record = await platform.inject(FaultPlan(scenario.kind, scenario.target, 0.0, scenario.for_seconds),
                                       scenario.params)
        log.warning("scenario: injected %s into %s from %s to %s", record["kind"], record["target"],
                    record["start"], record["end"])
        await asyncio.sleep(scenario.for_seconds + gap_seconds)
    for body in surges:
        async with httpx.AsyncClient(timeout=30) as client:  # a deploy's rolling restart takes a moment
            r = await client.post(f"{platform.info['control']}/surges", json=body)
            r.raise_for_status()
        record = r.json()
        log.warning("scenario: legitimate surge %s on %s from %s to %s", record["kind"], record["target"],
                    record["start"], record["end"])
    await asyncio.sleep(fault_free_seconds)


async def _headless(pipeline: Pipeline, coroutines: list) -> None:
    """Run the pipeline until the first coroutine (the script) returns; then drain notifications."""
    script, *others = [asyncio.create_task(c) for c in coroutines]
    runner = asyncio.create_task(pipeline.run(), name="pipeline")
    try:
        done, _ = await asyncio.wait([script, runner], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
        await pipeline.dispatcher.drain()
    finally:
        for task in [runner, *others, script]:
            task.cancel()
        await asyncio.gather(runner, *others, script, return_exceptions=True)


def scenario_config(config: OpsWatchConfig, resolve_after_seconds: float) -> OpsWatchConfig:
    """``config`` with incidents resolving after ``resolve_after_seconds`` of quiet, so that one scenario's
    incident closes before the next fault begins."""
    return config.model_copy(update={"resolve_after": resolve_after_seconds})


__all__ = ["Outcome", "Scenario", "ScenarioRun", "attribute", "fault_nodes", "run_scenarios", "scenario_config"]
