"""`opswatch run` against exporters no one here wrote: Debian's node_exporter and Prometheus's own
/metrics, plus a target that is down, all started for real on loopback."""

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


def test_run_scrapes_node_exporter_and_prometheus_and_reports_a_dead_target(spawn, tmp_path):
    node, prom, dead, web = free_port(), free_port(), free_port(), free_port()
    spawn([binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node}"])
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    spawn([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
           f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}"])
    wait_http(f"http://127.0.0.1:{node}/metrics")
    wait_http(f"http://127.0.0.1:{prom}/metrics")

    config = tmp_path / "opswatch.yaml"
    config.write_text(f"""
data_dir: {tmp_path / 'data'}
scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node}"]}}]
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{prom}"]}}]
  - job_name: dead
    static_configs: [{{targets: ["127.0.0.1:{dead}"]}}]
""")
    run = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--port", str(web), "--duration", "8"])
    wait_http(f"http://127.0.0.1:{web}/-/healthy")
    time.sleep(4)
    targets = httpx.get(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    health = {t["job"]: t for t in targets}
    assert health["node"]["health"] == "up" and health["prometheus"]["health"] == "up"
    assert health["dead"]["health"] == "down" and "ConnectError" in health["dead"]["last_error"]
    assert run.wait(timeout=30) == 0

    store = SQLiteStore(tmp_path / "data" / "opswatch.db")
    try:
        up = {ts.labels["job"]: list(ts.values) for ts in store.select("up")}
        assert set(up["dead"]) == {0.0} and len(up["dead"]) >= 3  # the loop kept going
        assert set(up["node"]) == {1.0} and set(up["prometheus"]) == {1.0}
        cpu = store.select("node_cpu_seconds_total", {"mode": "idle"})
        assert cpu and all(ts.labels["instance"] == f"127.0.0.1:{node}" for ts in cpu)
        assert store.select("prometheus_build_info", {"job": "prometheus"})
        [scraped] = store.select("scrape_samples_scraped", {"job": "node"})
        assert scraped.values.iloc[-1] > 100
    finally:
        store.close()
