"""`opswatch run` against exporters no one here wrote: Debian's node_exporter, Prometheus's own /metrics
and Alertmanager's /metrics, plus a target that is down, all started for real on loopback."""

from __future__ import annotations

import shutil
import sys
import time

import httpx
import pytest

from storage.sqlite import SQLiteStore
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # fail, never skip: `make test` installs the Debian package
        raise RuntimeError(f"{name} is missing: run `make test`, which apt-installs it")
    return path


def wait_http(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {deadline_s}s")


def start_alertmanager(spawn, tmp_path) -> int:
    """A real Alertmanager on loopback (no cluster), routing everything to a receiver that does nothing."""
    port = free_port()
    (tmp_path / "alertmanager.yml").write_text('route: {receiver: "null"}\nreceivers: [{name: "null"}]\n')
    spawn([binary("prometheus-alertmanager"), f"--config.file={tmp_path / 'alertmanager.yml'}",
           f"--storage.path={tmp_path / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{port}",
           "--cluster.listen-address="])
    return port


def test_run_scrapes_real_exporters_and_reports_a_dead_target(spawn, tmp_path):
    node, prom, dead, web = free_port(), free_port(), free_port(), free_port()
    spawn([binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node}"])
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    spawn([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
           f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}"])
    alertmanager = start_alertmanager(spawn, tmp_path)
    wait_http(f"http://127.0.0.1:{node}/metrics")
    wait_http(f"http://127.0.0.1:{prom}/metrics")
    wait_http(f"http://127.0.0.1:{alertmanager}/metrics")

    config = tmp_path / "opswatch.yaml"
    config.write_text(f"""
data_dir: {tmp_path / 'data'}
scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node}"], labels: {{env: test}}}}]
    metric_relabel_configs: [{{source_labels: [__name__], regex: "go_gc_.*", action: drop}}]
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{prom}"]}}]
  - job_name: alertmanager
    static_configs: [{{targets: ["127.0.0.1:{alertmanager}"]}}]
  - job_name: dead
    static_configs: [{{targets: ["127.0.0.1:{dead}"]}}]
""")
    run = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--port", str(web), "--duration", "8"])
    wait_http(f"http://127.0.0.1:{web}/-/healthy")
    time.sleep(4)
    targets = httpx.get(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    health = {t["job"]: t for t in targets}
    assert {job: health[job]["health"] for job in ("node", "prometheus", "alertmanager")} == dict.fromkeys(
        ("node", "prometheus", "alertmanager"), "up"), health
    assert health["dead"]["health"] == "down" and "ConnectError" in health["dead"]["last_error"]
    assert health["node"]["labels"] == {"job": "node", "instance": f"127.0.0.1:{node}", "env": "test"}
    own = httpx.get(f"http://127.0.0.1:{web}/metrics", timeout=5).text
    assert "opswatch_append_queue_capacity_samples 500000.0" in own and "opswatch_samples_appended_total" in own
    assert run.wait(timeout=30) == 0

    store = SQLiteStore(tmp_path / "data" / "opswatch.db")
    try:
        up = {ts.labels["job"]: list(ts.values) for ts in store.select("up")}
        assert set(up["dead"]) == {0.0} and len(up["dead"]) >= 3  # the loop kept going
        assert set(up["node"]) == set(up["prometheus"]) == set(up["alertmanager"]) == {1.0}
        cpu = store.select("node_cpu_seconds_total", {"mode": "idle"})
        assert cpu and all(ts.labels["instance"] == f"127.0.0.1:{node}" and ts.labels["env"] == "test" for ts in cpu)
        assert store.select("prometheus_build_info", {"job": "prometheus"})
        assert store.select("alertmanager_build_info", {"job": "alertmanager"})
        assert store.select("alertmanager_alerts", {"job": "alertmanager"})
        assert not store.select("go_gc_duration_seconds", {"job": "node"})  # dropped by metric_relabel_configs
        assert store.select("go_gc_duration_seconds", {"job": "prometheus"})  # ... for that job only
        [scraped] = store.select("scrape_samples_scraped", {"job": "node"})
        [kept] = store.select("scrape_samples_post_metric_relabeling", {"job": "node"})
        assert scraped.values.iloc[-1] > 100 and kept.values.iloc[-1] < scraped.values.iloc[-1]
    finally:
        store.close()
