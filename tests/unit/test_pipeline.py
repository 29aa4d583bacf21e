"""The pipeline's evaluation path on a real SQLite store, with samples written directly and an explicit
clock: signals -> detector -> rules -> alerts -> incident -> report and notification, no sleeping."""

from __future__ import annotations

import json

import numpy as np

from collectors.samples import Sample
from opswatch.config import load_config
from opswatch.pipeline import Pipeline

T0 = 1_800_000_000_000  # ms
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))


class FakeService:
    """Cumulative counters of one job, advanced one second at a time (Poisson traffic, seeded)."""

    def __init__(self, job: str, rps: float, rng: np.random.Generator):
        self.job, self.rps, self.rng = job, rps, rng
        self.ok = self.errors = 0.0
        self.buckets = dict.fromkeys(BUCKETS, 0.0)

    def step(self, t_ms: int, error_ratio: float = 0.0) -> list[Sample]:
        n = self.rng.poisson(self.rps)
        bad = self.rng.binomial(n, error_ratio) if error_ratio else 0
        self.ok, self.errors = self.ok + n - bad, self.errors + bad
        latencies = self.rng.lognormal(np.log(0.008), 0.3, n)
        for le in BUCKETS:
            self.buckets[le] += float((latencies <= le).sum())
        base = {"job": self.job, "instance": f"{self.job}:80"}
        out = [Sample("up", base, t_ms, 1.0),
               Sample("http_requests_total", {**base, "code": "200"}, t_ms, self.ok),
               Sample("http_requests_total", {**base, "code": "500"}, t_ms, self.errors)]
        out += [Sample("http_request_duration_seconds_bucket", {**base, "le": str(le) if le != float("inf") else "+Inf"},
                       t_ms, c) for le, c in self.buckets.items()]
        return out


def test_error_burst_becomes_one_incident_with_report_and_notification(tmp_path):
    config = load_config(None, data_dir=str(tmp_path), scrape_interval="1s", rate_window="10s")
    pipeline = Pipeline(config, targets=[], clock=lambda: T0 / 1000)
    rng = np.random.default_rng(7)
    services = [FakeService("gateway", 40, rng), FakeService("gift", 10, rng), FakeService("postgres", 30, rng)]
    opened_at = {}
    for second in range(150):
        now = T0 + second * 1000
        faulty = 90 <= second < 130
        samples = []
        for svc in services:
            ratio = 0.5 if faulty and svc.job == "gift" else 0.06 if faulty and svc.job == "gateway" else 0.0
            samples += svc.step(now, ratio)
        pipeline.store.append(samples)
        for incident in pipeline.evaluate(now):
            opened_at.setdefault(incident.id, second)

    assert list(opened_at.values()) and min(opened_at.values()) >= 90, "an incident opened before the fault"
    incidents = [i for i in pipeline.snapshot.incidents]
    assert len(incidents) == 1
    [incident] = incidents
    assert incident["root_causes"][0]["node"] == "gift"
    assert incident["impacted_businesses"] == ["send_gift"]
    report = json.loads((tmp_path / "reports" / f"{incident['id']}.json").read_text())
    assert report["root_causes"][0]["evidence"][0]["signal"] == "error_ratio"
    assert pipeline.outbox and pipeline.outbox[0].payload["version"] == "4"
    # recorded signals are queryable like any other series
    [rate] = pipeline.store.select("job:request_rate", {"job": "gateway"})
    assert 30 < rate.values.iloc[-1] < 50


def test_detector_baselines_survive_a_restart(tmp_path):
    config = load_config(None, data_dir=str(tmp_path), scrape_interval="1s", rate_window="10s")
    now = {"ms": T0}
    pipeline = Pipeline(config, targets=[], clock=lambda: now["ms"] / 1000)
    service = FakeService("gateway", 40, np.random.default_rng(3))
    for second in range(40):
        now["ms"] = T0 + second * 1000
        pipeline.store.append(service.step(now["ms"]))
        pipeline.evaluate(now["ms"])
    before = dict(pipeline.engine.latest)
    pipeline.close()
    assert (tmp_path / "detector_state.npz").exists()

    reopened = Pipeline(config, targets=[], clock=lambda: now["ms"] / 1000)
    assert reopened.engine.scorer.keys == pipeline.engine.scorer.keys
    # the restored baseline scores the next point at once, where a fresh engine would wait for min_points
    now["ms"] += 1000
    reopened.store.append(service.step(now["ms"]))
    reopened.evaluate(now["ms"])
    key = ("gateway", "request_rate")
    assert not np.isnan(reopened.engine.latest[key].score)
    assert abs(reopened.engine.latest[key].baseline - before[key].baseline) < 0.2 * before[key].baseline
    reopened.close()


def test_an_unusable_detector_state_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "detector_state.npz").write_bytes(b"not a state file")
    config = load_config(None, data_dir=str(tmp_path), scrape_interval="1s", rate_window="10s")
    pipeline = Pipeline(config, targets=[], clock=lambda: T0 / 1000)
    assert len(pipeline.engine.scorer) == 0
    assert (tmp_path / "detector_state.npz.unusable").read_bytes() == b"not a state file"
    pipeline.close()
