"""The detection API over real HTTP (uvicorn on a free port) in front of a real pipeline on a real SQLite store,
evaluated with an explicit clock: a recurring error burst is detected and explained, marked as a false positive,
and then no longer fires; a maintenance window added through the API suppresses a larger burst; both survive a
restart of the pipeline."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from alerting.model import rfc3339
from detection.ensemble import SUGGESTED_THRESHOLD
from opswatch.api import create_api
from opswatch.config import load_config
from opswatch.pipeline import Pipeline
from tests.conftest import free_port
from tests.unit.test_pipeline import T0, FakeService

pytestmark = pytest.mark.integration

TOKEN = "detection-api-token"
KEY = ("gift", "error_ratio")


class Served:
    """``create_api(pipeline)`` served by uvicorn in a thread, stopped at the end."""

    def __init__(self, pipeline: Pipeline):
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_api(pipeline), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
            time.sleep(0.02)

    def get(self, path: str, **params) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=10)

    def post(self, path: str, body: dict, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.base + path, json=body, headers=headers, timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run(pipeline: Pipeline, service: FakeService, seconds: range, bursts: dict[range, float]) -> dict[int, float]:
    """Evaluate once a second; returns the reported error-ratio score per second."""
    scores = {}
    for second in seconds:
        now = T0 + second * 1000
        ratio = next((r for span, r in bursts.items() if second in span), 0.0)
        pipeline.store.append(service.step(now, ratio))
        pipeline.evaluate(now)
        scores[second] = pipeline.engine.latest[KEY].score if KEY in pipeline.engine.latest else float("nan")
    return scores


@pytest.fixture
def pipeline_factory(tmp_path):
    made = []

    def make() -> Pipeline:
        config = load_config(None, data_dir=str(tmp_path), scrape_interval="1s", rate_window="10s", api_token=TOKEN)
        made.append(Pipeline(config, targets=[], clock=lambda: T0 / 1000))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_explain_feedback_and_calendar_over_http(pipeline_factory):
    pipeline = pipeline_factory()
    service = FakeService("gift", 50, np.random.default_rng(3))
    api = Served(pipeline)
    try:
        first = run(pipeline, service, range(120), {range(80, 100): 0.3})
        assert max(first[s] for s in range(80, 100)) > SUGGESTED_THRESHOLD, "the first burst was not detected"

        explained = api.get("/api/v1/detection/explain", job="gift", signal="error_ratio").json()["data"]
        [row] = explained
        assert row["labels"] == {"job": "gift", "signal": "error_ratio"}
        assert {"baseline", "value", "deviation", "relative_deviation", "deviation_sigmas", "detectors", "score",
                "raw_score", "reason", "policy"} <= set(row)
        assert row["policy"]["direction"] == "up"
        assert api.get("/api/v1/detection/explain", job="nope").status_code == 404

        body = {"verdict": "false_positive", "matchers": ['job="gift"', 'signal="error_ratio"'],
                "start": rfc3339(T0 + 80_000), "end": rfc3339(T0 + 110_000), "by": "noc", "comment": "nightly batch"}
        assert api.post("/api/v1/detection/feedback", body, token=None).status_code == 401
        assert api.post("/api/v1/detection/feedback", body, token="wrong-token").status_code == 401
        bad = api.post("/api/v1/detection/feedback", {**body, "verdict": "meh"})
        assert bad.status_code == 422 and "body.verdict" in bad.json()["error"]
        empty = api.post("/api/v1/detection/feedback", {**body, "matchers": ['job="feed"']})
        assert empty.status_code == 422 and "nothing to learn from" in empty.json()["error"]
        made = api.post("/api/v1/detection/feedback", body)
        assert made.status_code == 201, made.text
        [floor] = made.json()["data"]["floors"]
        assert floor["labels"] == {"job": "gift", "signal": "error_ratio"} and 0.3 < floor["up"] < 0.5

        second = run(pipeline, service, range(120, 200), {range(150, 170): 0.3})
        assert max(second[s] for s in range(150, 170)) == 0.0, "the same burst fired again after feedback"
        assert [f["id"] for f in api.get("/api/v1/detection/feedback").json()["data"]] == [made.json()["data"]["id"]]

        window = {"id": "gift-db-migration", "mode": "suppress", "kind": "maintenance", "matchers": ['job="gift"'],
                  "start": rfc3339(T0 + 200_000), "end": rfc3339(T0 + 240_000), "description": "schema migration"}
        assert api.post("/api/v1/detection/calendar", {**window, "matchers": ["job"]}).status_code == 422
        added = api.post("/api/v1/detection/calendar", window)
        assert added.status_code == 201, added.text
        assert api.post("/api/v1/detection/calendar", window).status_code == 422  # the id is taken
        assert [e["id"] for e in api.get("/api/v1/detection/calendar").json()["data"]] == ["gift-db-migration"]

        third = run(pipeline, service, range(200, 240), {range(210, 230): 0.9})
        assert max(third.values()) == 0.0
        assert pipeline.engine.explanations[KEY].timestamp_ms == T0 + 239_000
        active = [a for a in api.get("/api/v1/alerts").json()["data"]["alerts"]
                  if a["labels"]["alertname"] == "ErrorRatioAnomaly" and a["state"] != "resolved"]
        assert not active
        fourth = run(pipeline, service, range(240, 300), {range(270, 290): 0.9})
        assert max(fourth.values()) > SUGGESTED_THRESHOLD, "a larger burst after the window must fire"
    finally:
        api.stop()

    restarted = pipeline_factory()
    assert [e.id for e in restarted.engine.calendar.events] == ["gift-db-migration"]
    assert restarted.engine.feedback.floors({"job": "gift", "signal": "error_ratio"}) == \
        pipeline.engine.feedback.floors({"job": "gift", "signal": "error_ratio"})
