"""``opswatch demo``: the reference platform, monitored live by the whole pipeline, with a wall screen.

The platform runs as a child process in its own process group (``python -m sample_platform run``); it
writes the address of every node to a ports file, which becomes the scrape targets. With ``--duration``
the demo runs headless for that long, optionally injecting one fault through the platform's control
API, and writes a JSON summary on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from alerting.changes import ChangeEvent
from alerting.model import parse_rfc3339
from collectors.scrape import Target
from topology.graph import REFERENCE_PLATFORM, Topology

from .config import OpsWatchConfig
from .pipeline import Pipeline
from .processes import stop_process_group
from .serve import serve

log = logging.getLogger(__name__)


@dataclass
class FaultPlan:
    """Inject ``kind`` into ``target`` at ``at_seconds`` after start, for ``for_seconds``."""

    kind: str
    target: str
    at_seconds: float
    for_seconds: float

    @classmethod
    def parse(cls, spec: str, at_seconds: float, for_seconds: float) -> "FaultPlan":
        """``"latency:postgres"`` -> a plan; raises ValueError naming the valid kinds and targets."""
        from sample_platform.faults import FAULT_KINDS, valid_targets

        kind, sep, target = spec.partition(":")
        if not sep or kind not in FAULT_KINDS:
            raise ValueError(f"--fault {spec!r}: write KIND:TARGET with KIND one of {', '.join(FAULT_KINDS)}")
        if target not in valid_targets(kind):
            raise ValueError(f"--fault {spec!r}: target must be one of {', '.join(valid_targets(kind))}")
        return cls(kind, target, at_seconds, for_seconds)


class PlatformProcess:
    """The reference platform as a child process; always stopped by :meth:`stop` (SIGTERM, then SIGKILL)."""

    def __init__(self, data_dir: Path, rate: float, seed: int):
        self.ports_file = data_dir / "platform.json"
        self.faults_log = data_dir / "faults.jsonl"
        self.ports_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sample_platform", "run", "--ports-file", str(self.ports_file),
             "--faults-log", str(self.faults_log), "--rate", str(rate), "--seed", str(seed), "--exit-with-parent"],
            start_new_session=True,
        )
        self.info: dict = {}

    async def wait_ready(self, timeout_seconds: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_seconds
        while not self.ports_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the reference platform exited with status {self.proc.returncode} at start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the reference platform did not write {self.ports_file} in {timeout_seconds:g}s")
            await asyncio.sleep(0.1)
        self.info = json.loads(self.ports_file.read_text())
        return self.info

    def targets(self) -> list[Target]:
        return [Target(job, url.rstrip("/") + "/metrics") for job, url in self.info["nodes"].items()]

    async def inject(self, plan: FaultPlan, params: dict | None = None) -> dict:
        """Inject ``plan``'s fault now (``params`` override the kind's defaults); returns its ground truth.

        :raises httpx.HTTPStatusError: when the platform refuses it (its message says why).
        """
        body = {"kind": plan.kind, "target": plan.target, "duration_seconds": plan.for_seconds}
        if params:
            body["params"] = params
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"{self.info['control']}/faults", json=body)
            r.raise_for_status()
            return r.json()

    async def faults(self) -> list[dict]:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                return (await client.get(f"{self.info['control']}/faults")).json()["faults"]
        except (httpx.HTTPError, KeyError, ValueError):  # platform already gone: fall back to the JSONL file
            if not self.faults_log.exists():
                return []
            return [json.loads(line) for line in self.faults_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        stop_process_group(self.proc, timeout_seconds=10)


DEPLOY_POLL_SECONDS = 5.0
MONITOR_NICENESS = 5


def yield_cpu_to_platform() -> None:
    """Lower this process's CPU priority (``nice`` +5) once the platform is running.

    The demo runs the monitored platform and its monitor on one machine, where they would be on different
    hosts in production: an evaluation burst of OpsWatch must not stall the platform's event loop, which
    would show as a latency spike on every node at once -- a fault of the demo, not of the platform.
    """
    os.nice(MONITOR_NICENESS)


def deploy_change(record: dict) -> ChangeEvent | None:
    """The platform's ground-truth record of a clean deploy (``"kind": "surge:deploy"``, see
    :mod:`sample_platform.surges`) as a change event; None for any other record."""
    if record.get("kind") != "surge:deploy":
        return None
    params = record.get("params") or {}
    before, after = params.get("from_version", "?"), params.get("to_version", "")
    return ChangeEvent(record["id"], "deploy", record["target"], after,
                       f"rolling restart of {record['target']} from {before} to {after}", "sample_platform",
                       parse_rfc3339(record["start"]), "reference_platform")


async def forward_deploys(platform: PlatformProcess, pipeline: Pipeline) -> int:
    """Hand the platform's deploys recorded so far to the pipeline's change log (known ids are skipped);
    returns how many were new."""
    changes = [c for c in map(deploy_change, await platform.faults()) if c is not None]
    return sum([(await asyncio.to_thread(pipeline.record_change, c))[1] for c in changes])


async def forward_deploys_forever(platform: PlatformProcess, pipeline: Pipeline) -> None:
    while True:
        try:
            await forward_deploys(platform, pipeline)
        except Exception:  # a bad record must not stop the demo; the next poll retries
            log.exception("forwarding the platform's deploys to the change log failed")
        await asyncio.sleep(DEPLOY_POLL_SECONDS)


def summarize(pipeline: Pipeline, faults: list[dict]) -> dict:
    """The JSON summary written by ``--summary``."""
    return {
        "faults": [{k: f.get(k) for k in ("kind", "target", "start", "end", "expected_impact")}
                   for f in faults if f.get("fault", True)],
        "incidents": [
            {"id": i["id"], "opened_at": i["opened_at"], "status": i["status"],
             "root_causes": [c["node"] for c in i["root_causes"]],
             "impacted_businesses": i["impacted_businesses"], "alerts": len(i["alerts"]), "report": i["report"]}
            for i in sorted(pipeline.snapshot.incidents, key=lambda i: i["opened_at"])
        ],
        "notifications": pipeline.dispatcher.sent,
    }


@contextlib.asynccontextmanager
async def monitored_platform(config: OpsWatchConfig, rate: float, seed: int
                             ) -> AsyncIterator[tuple[PlatformProcess, Pipeline]]:
    """The reference platform as a child process (ground truth in ``config.data_dir``) and a pipeline
    scraping every node of it (besides ``config.scrape_configs``); both are stopped on exit, error or not.

    :raises RuntimeError: when the platform does not start.
    """
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    platform = PlatformProcess(data_dir, rate, seed)
    pipeline = None
    try:
        await platform.wait_ready()
        yield_cpu_to_platform()
        topology = Topology.load(config.topology_file or REFERENCE_PLATFORM)
        pipeline = Pipeline(config, platform.targets(), topology=topology)
        yield platform, pipeline
    finally:
        platform.stop()
        if pipeline is not None:
            pipeline.close()


async def run_demo(config: OpsWatchConfig, port: int, duration: float | None, fault: FaultPlan | None,
                   summary_path: Path | None, rate: float, seed: int) -> dict:
    """Run the demo; returns the summary. Stops after ``duration`` seconds, or on SIGINT/SIGTERM."""
    async with monitored_platform(config, rate, seed) as (platform, pipeline):
        background = [forward_deploys_forever(platform, pipeline)] + ([_inject_later(platform, fault)] if fault else [])
        await serve(pipeline, port, duration, background)
        summary = summarize(pipeline, await platform.faults())
    if summary_path:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2))
    return summary


async def _inject_later(platform: PlatformProcess, plan: FaultPlan) -> None:
    await asyncio.sleep(plan.at_seconds)
    record = await platform.inject(plan)
    log.warning("injected fault %s into %s from %s to %s", record["kind"], record["target"], record["start"], record["end"])
