"""End to end: the real reference platform and OpsWatch as real processes, a fault injected, and what
an on-call engineer gets: one incident, the right root cause, a report, a webhook, a wall screen.

Timeline of each run (1 s scrapes): baseline from 0 s, fault at FAULT_AT for FAULT_FOR, exit at DURATION.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from alerting.model import parse_rfc3339
from tests.browser import chromium, console_errors
from tests.conftest import free_port
from topology.graph import REFERENCE_PLATFORM, Topology

FAULT_AT, FAULT_FOR, DURATION = 60, 25, 105

pytestmark = pytest.mark.integration


def run_demo(spawn, tmp_path: Path, fault: str, webhook_url: str):
    port = free_port()
    config = tmp_path / "opswatch.yaml"
    # group_wait 5s instead of Alertmanager's 30s: the page must land before the run ends at DURATION
    config.write_text(f"receivers:\n  - name: oncall\n    webhook_configs: [{{url: \"{webhook_url}\"}}]\n"
                      f"route: {{receiver: oncall, group_wait: 5s}}\n")
    summary = tmp_path / "summary.json"
    proc = spawn([sys.executable, "-m", "opswatch", "demo", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                  "--port", str(port), "--scrape-interval", "1s", "--duration", str(DURATION), "--fault", fault,
                  "--fault-at", str(FAULT_AT), "--fault-for", str(FAULT_FOR), "--summary", str(summary)])
    return proc, f"http://127.0.0.1:{port}", summary


def wait_for_open_incident(proc, base: str, deadline_s: float) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = httpx.get(f"{base}/api/v1/incidents", params={"status": "open"}, timeout=5).json()["data"]
            if rows:
                return rows[0]
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("no incident was opened while the fault was active")


def check_summary(summary_path: Path, proc, expected_root: str) -> dict:
    assert proc.wait(timeout=DURATION + 60) == 0
    summary = json.loads(summary_path.read_text())
    [fault] = summary["faults"]
    fault_start = parse_rfc3339(fault["start"])
    # No incident during the baseline: every incident opened after the fault began.
    assert all(parse_rfc3339(i["opened_at"]) >= fault_start for i in summary["incidents"]), summary["incidents"]
    assert len(summary["incidents"]) == 1, summary["incidents"]
    [incident] = summary["incidents"]
    assert incident["root_causes"][0] == expected_root, incident
    report = Path(incident["report"])
    assert report.exists() and report.with_suffix(".md").exists()
    assert summary["notifications"] >= 1
    return summary


def check_webhook(webhook, incident_id: str) -> None:
    assert webhook.payloads, "the webhook receiver got nothing"
    for payload in webhook.payloads:
        assert payload["version"] == "4"
        assert payload["receiver"] == "oncall"
        assert payload["groupLabels"] == {"incident": incident_id}
        assert payload["alerts"] and all("fingerprint" in a for a in payload["alerts"])


def test_latency_in_postgres_gives_one_incident_rooted_at_postgres(spawn, tmp_path, webhook, artifacts):
    proc, base, summary_path = run_demo(spawn, tmp_path, "latency:postgres", webhook.url)
    live = wait_for_open_incident(proc, base, FAULT_AT + FAULT_FOR + 10)
    assert httpx.get(f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    detail = httpx.get(f"{base}/api/v1/incidents/{live['id']}", timeout=5).json()["data"]
    assert detail["root_causes"][0]["evidence"], "the top candidate carries no evidence"
    assert httpx.get(f"{base}/api/v1/incidents/INC-none", timeout=5).status_code == 404

    # The wall screen, in a real browser, while the incident is open.
    driver = chromium()
    try:
        driver.get(base + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile.critical"))
        wait.until(lambda d: "postgres" in d.find_element(By.ID, "incidents").text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#kpis .kpi img.sparkline")) >= 3)
        for region in ("business-tiles", "kpis", "topology", "incidents", "freshness"):
            assert driver.find_element(By.ID, region).is_displayed(), region
        businesses = Topology.load(REFERENCE_PLATFORM).nodes("business")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#business-tiles .tile")) == len(businesses)
        driver.save_screenshot(str(artifacts / "wallscreen-postgres-latency.png"))
        assert console_errors(driver) == []
    finally:
        driver.quit()

    summary = check_summary(summary_path, proc, "postgres")
    incident = summary["incidents"][0]
    # Businesses whose services read postgres (user, post, gift) are impacted.
    assert {"user_profile", "post_content", "send_gift"} <= set(incident["impacted_businesses"])
    check_webhook(webhook, incident["id"])
    assert summary["notifications"] == len(webhook.payloads)


def test_error_burst_in_gift_is_rooted_at_gift_not_its_callers(spawn, tmp_path, webhook):
    proc, base, summary_path = run_demo(spawn, tmp_path, "errors:gift", webhook.url)
    summary = check_summary(summary_path, proc, "gift")
    incident = summary["incidents"][0]
    assert "send_gift" in incident["impacted_businesses"]
    check_webhook(webhook, incident["id"])
