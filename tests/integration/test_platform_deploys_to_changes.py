"""The reference platform's clean deploys reach OpsWatch's change log: a real platform process, a deploy
started on its control API, and the demo's forwarding, read back from the pipeline and its file."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from alerting.changes import ChangeLog
from opswatch.config import load_config
from opswatch.demo import PlatformProcess, forward_deploys
from opswatch.pipeline import Pipeline

pytestmark = pytest.mark.integration


def test_a_platform_deploy_becomes_one_change_event(tmp_path):
    pipeline = Pipeline(load_config(None, data_dir=str(tmp_path)), targets=[])
    platform = PlatformProcess(tmp_path, rate=5, seed=1)
    try:
        info = asyncio.run(platform.wait_ready())
        started = httpx.post(f"{info['control']}/surges", timeout=30,
                             json={"kind": "deploy", "target": "feed", "duration_seconds": 5})
        assert started.status_code == 201, started.text
        record = started.json()

        assert asyncio.run(forward_deploys(platform, pipeline)) == 1
        assert asyncio.run(forward_deploys(platform, pipeline)) == 0  # polled again: nothing twice
    finally:
        platform.stop()
        pipeline.close()

    [change] = pipeline.changes.events()
    assert (change.id, change.kind, change.node, change.source) == (record["id"], "deploy", "feed", "reference_platform")
    assert change.version == record["params"]["to_version"] != record["params"]["from_version"]
    assert change.to_api()["time"] == record["start"]
    assert ChangeLog(tmp_path / "changes.jsonl").events() == [change]
