"""``opswatch platform scenario`` end to end: the real platform and pipeline, a fault injected live through
the control API, and the run's JSON set against the ground truth (opswatch/scenarios.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_scenario_run_finds_the_fault_and_ranks_its_node_first(spawn, tmp_path):
    config = tmp_path / "opswatch.yaml"
    config.write_text("route: {receiver: log, group_wait: 2s}\n")
    proc = spawn([sys.executable, "-m", "opswatch", "platform", "scenario", "--fault", "errors:gift", "--for", "20",
                  "--baseline", "40", "--gap", "25", "--scrape-interval", "1s", "--config", str(config),
                  "--data-dir", str(tmp_path / "data"), "--json"], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0
    run = json.loads(out)
    [outcome] = run["outcomes"]
    assert outcome["kind"] == "errors" and outcome["target"] == "gift"
    assert outcome["expected_impact"] == ["send_gift"]  # from the platform's ground truth
    assert outcome["detected"] and outcome["rank"] == 1, outcome
    assert 0 < outcome["seconds_to_open"] <= outcome["seconds_to_page"] < 40, outcome
    assert run["alerts"] >= 1 and run["fault_free_seconds"] > 30
    for false in run["false_incidents"]:
        assert set(false) == {"id", "opened_at", "on_surge", "root_causes"}
    # the ground truth and the store stay in the data directory for a look afterwards
    assert (tmp_path / "data" / "faults.jsonl").exists() and (tmp_path / "data" / "opswatch.db").exists()
