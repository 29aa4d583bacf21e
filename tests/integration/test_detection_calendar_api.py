"""A recurring expected event through ``POST /api/v1/detection/calendar`` over real HTTP (uvicorn on a free port) in
front of a real pipeline: stored with its time intervals and no end, errors naming the field, kept across a
restart, and on only inside its weekly window."""

from __future__ import annotations

import pytest

from alerting.model import rfc3339
from tests.integration.test_detection_api import Served, pipeline_factory  # noqa: F401 (a fixture)
from tests.unit.test_pipeline import T0

pytestmark = pytest.mark.integration

WINDOW = [{"weekdays": ["friday:sunday"], "times": [{"start_time": "20:00", "end_time": "21:30"}]}]


def test_a_weekly_surge_through_the_api(pipeline_factory):  # noqa: F811 (the fixture above)
    pipeline = pipeline_factory()
    api = Served(pipeline)
    event = {"id": "celebrity-live", "mode": "expect", "kind": "surge", "matchers": ['job="live"'], "direction": "up",
             "max_relative_deviation": 3, "start": rfc3339(T0), "time_intervals": WINDOW}
    try:
        for change, field in [({"time_intervals": [{"weekdays": ["fri"]}]}, "body.time_intervals.0.weekdays"),
                              ({"time_intervals": [{"times": [{"start_time": "21:30", "end_time": "20:00"}]}]},
                               "body.time_intervals.0.times.0"),
                              ({"time_intervals": []}, "end: required unless the event recurs")]:
            bad = api.post("/api/v1/detection/calendar", {**event, **change})
            assert bad.status_code == 422 and field in bad.json()["error"], bad.text
        added = api.post("/api/v1/detection/calendar", event)
        assert added.status_code == 201, added.text
        [listed] = api.get("/api/v1/detection/calendar").json()["data"]
        assert listed == added.json()["data"]
        assert listed["end"] is None and listed["time_intervals"] == WINDOW
    finally:
        api.stop()
    [kept] = pipeline_factory().engine.calendar.events
    fridays = [t for t in range(T0, T0 + 8 * 86_400_000, 3_600_000) if kept.on(t)]
    assert fridays and all(kept.covers(t, {"job": "live"}) for t in fridays)
    assert {rfc3339(t)[11:16] for t in fridays} == {"20:00", "21:00"}  # hourly probes inside 20:00-21:30
