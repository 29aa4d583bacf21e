"""``opswatch bench rca`` end to end: the real platform and pipeline, a real Prometheus and Alertmanager
(Debian packages) scraping the same nodes, one fault injected live, a legitimate surge, BARO and n-sigma on the
stored signals, and the JSON's shape and numbers set against the ground truth (opswatch/bench_rca.py). It runs
the scenario runner (opswatch/scenarios.py) that ``opswatch platform scenario`` runs, and stands for its live test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from opswatch.bench_rca import KEYS

pytestmark = pytest.mark.integration


def test_bench_rca_one_scenario_with_every_baseline(spawn, tmp_path):
    config = tmp_path / "opswatch.yaml"  # a short group_wait (OpsWatch's and Alertmanager's) for a 20 s fault
    config.write_text("route: {receiver: log, group_wait: 2s, group_interval: 10s}\n")
    data = tmp_path / "data"
    proc = spawn([sys.executable, "-m", "opswatch", "bench", "rca", "--scenarios", "1", "--seed", "1", "--json",
                  "--scrape-interval", "1s", "--baseline-seconds", "60", "--fault-seconds", "20",
                  "--gap-seconds", "15", "--fault-free-seconds", "20", "--config", str(config),
                  "--data-dir", str(data)], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0
    result = json.loads(out)

    assert set(KEYS) <= set(result) and set(result["baselines"]) == {"baro", "n_sigma", "prometheus_alertmanager"}
    for name in ("baro", "n_sigma"):  # ranking only: AC@k, the rest null
        ranking = result["baselines"][name]
        assert set(KEYS) <= set(ranking) and 0 <= ranking["ac_at_3"] <= 1, ranking
        assert all(ranking[k] is None for k in KEYS if not k.startswith("ac_at")), ranking

    [scenario] = result["scenarios"]
    assert (scenario["kind"], scenario["target"]) == ("errors", "post")  # seed 1 picks this one
    assert scenario["detected"] and scenario["rank"] is not None and scenario["rank"] <= 3, scenario
    assert "post_content" in scenario["expected_impact"]  # from the platform's ground truth
    assert 0 < scenario["seconds_to_open"] <= scenario["seconds_to_page"] < 40, scenario
    assert result["ac_at_3"] == 1.0 and result["incidents_per_fault"] >= 1
    assert 0 < result["median_seconds_to_notify"] < 40 and 0 < result["purity"] <= 1
    assert len(scenario["baro_top3"]) == 3 and len(scenario["n_sigma_top3"]) == 3

    prometheus = result["baselines"]["prometheus_alertmanager"]
    assert prometheus["ac_at_1"] is None and prometheus["ac_at_3"] is None
    assert scenario["prometheus_alertmanager"]["incidents"] >= 1, scenario  # HighErrorRatio on post (and feed)
    assert 0 < prometheus["median_seconds_to_notify"] < 40 and prometheus["alerts"] >= 1
    notified = [json.loads(line) for line in (data / "peers" / "notifications.jsonl").read_text().splitlines()]
    assert any(n["body"]["groupLabels"] == {"alertname": "HighErrorRatio", "service": "post"} for n in notified)

    run = result["run"]
    assert {"surge:celebrity_live:live", "surge:deploy:gateway"} <= set(run["surges"])
    assert run["faults"] == 1 and run["fault_free_seconds"] > 0 and run["scrape_interval_seconds"] == 1.0
    for false in result["false_incidents"]:
        assert set(false) == {"id", "opened_at", "on_surge", "root_causes"}
    # the ground truth and the store stay in the data directory for a look afterwards
    assert (data / "faults.jsonl").exists() and (data / "opswatch.db").exists()
