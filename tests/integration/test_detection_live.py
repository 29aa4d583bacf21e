"""The detection settings in a real ``opswatch run`` process scraping a real HTTP target, with the default
detector (the record-ratio ensemble) and the default rules: a per-series floor from the configuration, a
maintenance window added through the API, and feedback on a detection, each checked on
``/api/v1/detection/explain`` and on the alerts the process raises; the calendar and the feedback survive a
restart of the process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from alerting.model import parse_rfc3339, rfc3339
from detection.ensemble import SUGGESTED_THRESHOLD
from tests.conftest import MetricsPage, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "detection-live-token"
RPS = 100.0
THRESHOLD = SUGGESTED_THRESHOLD  # the default rules' anomaly threshold (record-ratio units)


class Service:
    """A target whose ``http_requests_total`` grows at ``RPS`` with a settable error ratio (exact counters)."""

    def __init__(self):
        self.error_ratio, self.ok, self.errors = 0.0, 0.0, 0.0
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.exporter = MetricsPage(lambda: self.page().encode())
        self.port = self.exporter.port

    def page(self) -> str:
        with self._lock:
            now = time.monotonic()
            n, self._last = RPS * (now - self._last), now
            self.errors += n * self.error_ratio
            self.ok += n * (1 - self.error_ratio)
            return ("# TYPE http_requests_total counter\n"
                    f'http_requests_total{{code="200"}} {self.ok}\nhttp_requests_total{{code="500"}} {self.errors}\n')

    def close(self):
        self.exporter.close()


def start(spawn, data_dir: Path, port: int, target_port: int) -> tuple[subprocess.Popen, str]:
    config = data_dir / "opswatch.yaml"
    config.write_text(f"""\
api_token: {TOKEN}
scrape_interval: 1s
rate_window: 8s
detection:
  series:
    - {{matchers: ['job="payment"'], min_impact: 0.9}}
scrape_configs:
  - job_name: gift
    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]
  - job_name: payment
    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]
""")
    proc = spawn([sys.executable, "-m", "opswatch", "run", "--config", str(config), "--data-dir", str(data_dir),
                  "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/-/healthy", timeout=2).status_code == 200, proc, "opswatch run to answer")
    return proc, base


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"opswatch run exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}"
        try:
            found = condition()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def explained(base: str, job: str) -> dict | None:
    r = httpx.get(f"{base}/api/v1/detection/explain", params={"job": job, "signal": "error_ratio"}, timeout=5)
    return r.json()["data"][0] if r.status_code == 200 else None


def anomaly_alerts(base: str, job: str) -> list[dict]:
    alerts = httpx.get(f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == "ErrorRatioAnomaly" and a["labels"].get("job") == job]


def burst(service: Service, base: str, proc, ratio: float, seconds: float) -> tuple[list[dict], list[dict]]:
    """Raise the error ratio for ``seconds``; returns the explanations of gift and payment and their
    ErrorRatioAnomaly alerts seen meanwhile."""
    seen, alerts = [], []
    service.error_ratio = ratio
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen += [e for e in (explained(base, "gift"), explained(base, "payment")) if e]
        alerts += anomaly_alerts(base, "gift") + anomaly_alerts(base, "payment")
        time.sleep(0.25)
    service.error_ratio = 0.0
    # back to normal: wait until the ratio over the rate window is 0 again
    wait_for(lambda: (explained(base, "gift") or {}).get("value") == 0.0, proc, "the burst to end", 30)
    return seen, alerts


def test_calendar_floors_and_feedback_in_a_running_process(spawn, tmp_path):
    service = Service()
    try:
        port = free_port()
        proc, base = start(spawn, tmp_path, port, service.port)
        wait_for(lambda: (explained(base, "gift") or {}).get("score") is not None, proc, "gift to be scored")

        # 1. a maintenance window added through the API: the burst is scored but suppressed
        window = {"id": "gift-maintenance", "mode": "suppress", "matchers": ['job="gift"'],
                  "start": rfc3339(int(time.time() * 1000)), "end": rfc3339(int(time.time() * 1000) + 25_000)}
        added = httpx.post(f"{base}/api/v1/detection/calendar", json=window, timeout=5,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert added.status_code == 201, added.text
        seen, alerts = burst(service, base, proc, 0.3, 6)
        gift = [e for e in seen if e["labels"]["job"] == "gift" and e["raw_score"] and e["raw_score"] > THRESHOLD]
        assert gift and all(e["score"] == 0 and e["reason"] == "suppressed" for e in gift)
        assert all(e["event"] == "gift-maintenance" for e in gift)
        # the floor configured for payment (0.9 of error ratio) ignores the same burst there
        payment = [e for e in seen if e["labels"]["job"] == "payment" and e["raw_score"] and e["raw_score"] > THRESHOLD]
        assert payment and all(e["score"] == 0 and e["reason"] == "below_floor" for e in payment)
        assert not alerts
        time.sleep(max(0.0, parse_rfc3339(window["end"]) / 1000 - time.time()))

        # 2. a burst outside the window fires; marked as a false positive, the same burst no longer does
        started = int(time.time() * 1000)
        seen, alerts = burst(service, base, proc, 0.3, 10)
        assert max(e["score"] for e in seen if e["labels"]["job"] == "gift" and e["score"] is not None) > THRESHOLD
        assert "firing" in {a["state"] for a in alerts if a["labels"]["job"] == "gift"}, alerts[-3:]
        feedback = {"verdict": "false_positive", "by": "noc", "matchers": ['job="gift"', 'signal="error_ratio"'],
                    "start": rfc3339(started), "end": rfc3339(int(time.time() * 1000))}
        made = httpx.post(f"{base}/api/v1/detection/feedback", json=feedback, timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert made.status_code == 201, made.text
        marked = int(time.time() * 1000)
        # the same pattern, a little larger so the detector, which has learnt 0.3, still scores it raw
        seen, alerts = burst(service, base, proc, 0.35, 10)
        # the alert of the marked burst may still be held by `keep_firing_for`, but its condition no longer holds
        # and no new one starts
        gift_alerts = [a for a in alerts if a["labels"]["job"] == "gift"]
        assert all(parse_rfc3339(a["activeAt"]) < marked for a in gift_alerts), gift_alerts[-3:]
        assert all(a["state"] == "resolved" or a["keepFiringSince"] for a in gift_alerts), gift_alerts[-3:]
        again = [e for e in seen if e["labels"]["job"] == "gift" and e["raw_score"] and e["raw_score"] > THRESHOLD]
        assert again and all(e["score"] == 0 and e["reason"] == "feedback" for e in again)
    finally:
        service.close()

    # 3. both survive a restart
    proc.terminate()
    proc.wait(timeout=30)
    service = Service()
    try:
        proc, base = start(spawn, tmp_path, free_port(), service.port)
        events = httpx.get(f"{base}/api/v1/detection/calendar", timeout=5).json()["data"]
        assert [e["id"] for e in events] == ["gift-maintenance"]
        kept = httpx.get(f"{base}/api/v1/detection/feedback", timeout=5).json()["data"]
        assert [f["id"] for f in kept] == [made.json()["data"]["id"]]
    finally:
        service.close()
