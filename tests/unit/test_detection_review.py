"""Calendar, re-baselining, sensitivity and floors, explanations and feedback (issue 5, deliverable 5), on
synthetic data with explicit timestamps: nothing sleeps."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from detection.calendar import Calendar, ExpectedEvent
from detection.engine import DEFAULT_POLICIES, ScoringEngine
from detection.explain import COLUMNS, explain
from detection.feedback import FeedbackLog
from detection.matching import labels_key
from detection.policy import PolicyOverride, resolve_policy
from detection.rebaseline import REPLAY_POINTS, Rebaseline
from detection.robust_zscore import RobustZScore
from storage.matchers import Matcher

STEP = 5_000  # ms between evaluations
T0 = 1_700_000_000_000


def noisy(n: int, level: float, sd: float, seed: int) -> np.ndarray:
    return level + sd * np.random.default_rng(seed).standard_normal(n)


def series(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.to_datetime(T0 + STEP * np.arange(len(values)), unit="ms", utc=True))


def feed(engine: ScoringEngine, values, job="gift", signal="latency_p99_seconds", start=0):
    """Feed one value per evaluation; returns the reported scores."""
    return [engine.update(T0 + STEP * (start + i), {job: {signal: float(v)}})[(job, signal)].score
            for i, v in enumerate(values)]


# --- calendar --------------------------------------------------------------------------------------------


def test_a_suppress_window_reports_nothing_and_teaches_the_baseline_nothing():
    values = noisy(400, 10.0, 0.5, 1)
    values[200:240] += 30  # a maintenance window: the service is down to a crawl
    window = ExpectedEvent("mw", "suppress", T0 + 200 * STEP, T0 + 240 * STEP, (Matcher("job", "=", "gift"),))
    frame = explain(series(values), labels={"job": "gift"}, calendar=Calendar([window]))
    inside = frame.iloc[200:240]
    assert (inside["score"] == 0).all() and (inside["raw_score"] > 1).any()
    assert set(inside.loc[inside["raw_score"] > 0, "reason"]) == {"suppressed"}
    assert set(inside.loc[inside["raw_score"] > 0, "event"]) == {"mw"}
    # After the window the detector is exactly where it would be had the window never happened.
    without = explain(series(np.delete(values, range(200, 240))))
    np.testing.assert_allclose(frame["raw_score"].iloc[240:].to_numpy(), without["raw_score"].iloc[200:].to_numpy())
    # The event selects by labels: another job is scored as usual.
    other = explain(series(values), labels={"job": "feed"}, calendar=Calendar([window]))
    assert other["anomalous"].iloc[200:240].any()


def test_an_expect_window_accepts_the_planned_deviation_only():
    values = noisy(400, 100.0, 2.0, 2)
    values[200:230] *= 4  # the planned x4 surge
    values[260] = 40  # a drop during the event is not what was planned
    surge = ExpectedEvent("celebrity", "expect", T0 + 200 * STEP, T0 + 300 * STEP, (Matcher("job", "=", "live"),),
                          kind="surge", direction="up", max_relative_deviation=3.5)
    frame = explain(series(values), labels={"job": "live"}, calendar=Calendar([surge]))
    assert not frame["anomalous"].iloc[200:230].any()
    assert set(frame["reason"].iloc[200:230]) <= {"expected", ""} and "expected" in set(frame["reason"])
    assert frame["anomalous"].iloc[260] and frame["reason"].iloc[260] == ""
    bigger = values.copy()
    bigger[210] = 100 * 8  # beyond the stated size
    assert explain(series(bigger), labels={"job": "live"}, calendar=Calendar([surge]))["anomalous"].iloc[210]


@pytest.mark.parametrize("detector", ["robust_zscore", "ensemble"])
def test_engine_scores_but_does_not_learn_inside_an_expected_event(detector):
    calendar = Calendar([ExpectedEvent("deploy-1", "suppress", T0 + 150 * STEP, T0 + 160 * STEP,
                                       (Matcher("job", "=", "gift"),), kind="deploy")])
    engine = ScoringEngine(window=30, min_points=10, calendar=calendar, detector=detector)
    twin = ScoringEngine(window=30, min_points=10, detector=detector)
    key = ("gift", "latency_p99_seconds")
    values = noisy(200, 0.1, 0.005, 3)
    values[150:160] = 0.5
    scores, reference = [], []
    for i, v in enumerate(values):
        now = T0 + STEP * i
        scores.append(engine.update(now, {"gift": {key[1]: v}})[key].score)
        if not 150 <= i < 160:  # the twin never sees the window's points, at the same timestamps otherwise
            reference.append(twin.update(now, {"gift": {key[1]: v}})[key].score)
    assert scores[150:160] == [0.0] * 10 and engine.explanations[key].reason != "suppressed"  # the last is after it
    np.testing.assert_allclose(scores[160:], reference[150:])


def test_calendar_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "calendar.json"
    configured = ExpectedEvent("weekly", "suppress", 0, 10, source="config")
    calendar = Calendar([configured], path)
    added = calendar.add(ExpectedEvent("e1", "expect", 5, 50, (Matcher("signal", "=~", "request_.*"),),
                                       kind="surge", direction="up", max_relative_deviation=2))
    again = Calendar([configured], path)
    assert again.events == (configured, added)
    assert [e["id"] for e in json.loads(path.read_text())["events"]] == ["e1"]  # configured events stay in config
    with pytest.raises(ValueError, match="used twice"):
        calendar.add(ExpectedEvent("e1", "suppress", 0, 1))
    with pytest.raises(ValueError, match="end .* must be after start"):
        ExpectedEvent("bad", "suppress", 10, 10)
    with pytest.raises(ValueError, match="mode 'mute'"):
        ExpectedEvent("bad", "mute", 0, 10)
    path.write_text('{"version": 1, "events": [{"id": "x", "mode": "suppress"}]}')
    with pytest.raises(ValueError, match=r"calendar .*calendar.json.*missing field 'start_ms'"):
        Calendar(path=path)


# --- re-baselining ---------------------------------------------------------------------------------------


def test_a_permanent_step_fires_then_is_rebaselined_and_scores_normally_around_the_new_level():
    values = np.concatenate([noisy(100, 0.05, 0.002, 4), noisy(300, 0.15, 0.002, 5)])
    values[350] = 0.40  # a spike on the new level (the policy's spread is at least 25 % of the baseline)
    key = ("gift", "latency_p99_seconds")
    stuck = feed(ScoringEngine(detector="robust_zscore", window=60, min_points=20), values)
    assert min(stuck[100:400]) > 5  # without re-baselining the step pages for ever

    engine = ScoringEngine(detector="robust_zscore", window=60, min_points=20, rebaseline_after=12)
    scores = feed(engine, values)
    assert min(scores[100:112]) > 5  # it fires while the shift is being confirmed
    assert engine.rebaselined[key] == T0 + 111 * STEP
    after = np.array(scores[112:350])
    assert np.nanmax(after) < 5 and np.nanmedian(after) < 2
    assert abs(engine.explanations[key].baseline - 0.15) < 0.01
    assert scores[350] > 5  # and anomalies around the new level are still found


def test_a_ramp_is_not_a_stable_level_and_keeps_being_reported():
    values = np.concatenate([noisy(100, 1.0, 0.01, 6), 1.0 + 0.05 * np.arange(1, 101)])
    engine = ScoringEngine(detector="robust_zscore", window=60, min_points=20, rebaseline_after=12)
    scores = feed(engine, values, signal="saturation_ratio")
    assert ("gift", "saturation_ratio") not in engine.rebaselined
    assert min(scores[110:200]) > 5


def test_library_rebaselining_restarts_the_detector():
    values = np.concatenate([noisy(150, 10.0, 0.2, 7), noisy(150, 20.0, 0.2, 8)])
    frame = explain(series(values), RobustZScore(window=60, min_points=20), threshold=5,
                    rebaseline=Rebaseline(after=10, threshold=5))
    assert frame["anomalous"].iloc[150:160].all()  # at least `after` detections, then a restart once stable
    assert not frame["anomalous"].iloc[150 + REPLAY_POINTS:].any()


# --- sensitivity and floors ------------------------------------------------------------------------------


def test_overrides_apply_in_order_and_default_to_the_signal_policies():
    overrides = [PolicyOverride((Matcher("signal", "=", "latency_p99_seconds"),), {"sensitivity": 0.5}),
                 PolicyOverride((Matcher("job", "=", "gift"),), {"min_impact": 0.05, "sensitivity": 2.0})]
    latency = DEFAULT_POLICIES["latency_p99_seconds"]
    assert resolve_policy({"job": "feed", "signal": "error_ratio"}, DEFAULT_POLICIES["error_ratio"], overrides) \
        == DEFAULT_POLICIES["error_ratio"]
    assert resolve_policy({"job": "feed", "signal": "latency_p99_seconds"}, latency, overrides).sensitivity == 0.5
    gift = resolve_policy({"job": "gift", "signal": "latency_p99_seconds"}, latency, overrides)
    assert (gift.sensitivity, gift.min_impact, gift.min_scale) == (2.0, 0.05, latency.min_scale)
    with pytest.raises(ValueError, match="unknown setting"):
        PolicyOverride((), {"sensitivty": 2})
    with pytest.raises(ValueError, match="sensitivity=0"):
        resolve_policy({}, latency, [PolicyOverride((), {"sensitivity": 0})])


def test_sensitivity_scales_scores_and_impact_floors_ignore_small_deviations():
    values = noisy(60, 0.100, 0.002, 9)
    values[40] = 0.160  # +60 ms: a rare but small latency bump (above the default floor, half the baseline)
    values[50] = 0.300  # +200 ms
    plain = feed(ScoringEngine(detector="robust_zscore", window=30, min_points=10), values)
    floors = [PolicyOverride((Matcher("job", "=", "gift"),), {"min_impact": 0.08, "sensitivity": 2.0})]
    engine = ScoringEngine(detector="robust_zscore", window=30, min_points=10, overrides=floors)
    scored = feed(engine, values)
    assert plain[40] > 1 and scored[40] == 0.0  # below the 80 ms floor
    assert scored[50] == pytest.approx(2 * plain[50])
    relative = ScoringEngine(detector="robust_zscore", window=30, min_points=10, overrides=[
        PolicyOverride((), {"min_relative_impact": 0.75})])
    rel = feed(relative, values)
    assert rel[40] == 0.0 and rel[50] == pytest.approx(plain[50])
    assert relative.explanations[("gift", "latency_p99_seconds")].reason == ""
    other = feed(ScoringEngine(detector="robust_zscore", window=30, min_points=10, overrides=floors), values, job="feed")
    assert other == pytest.approx(plain, nan_ok=True)


# --- explanations ----------------------------------------------------------------------------------------


def test_every_detection_is_explained():
    values = noisy(600, 50.0, 1.0, 10)
    values[500] = 80.0
    frame = explain(series(values))
    assert list(frame.columns) == list(COLUMNS)
    row = frame.iloc[500]
    assert row["anomalous"] and row["value"] == 80.0
    assert row["deviation"] == pytest.approx(80.0 - row["baseline"])
    assert row["relative_deviation"] == pytest.approx(row["deviation"] / row["baseline"])
    assert 20 < row["deviation_sigmas"] < 45  # about 30 robust sigmas (sd 1)
    assert "range" in row["detectors"].split(",")
    assert frame["anomalous"].iloc[400:].sum() == 1  # the spike is the one detection of the last third


def test_engine_explanations_name_the_agreeing_ensemble_members():
    engine = ScoringEngine(detector="ensemble")
    values = noisy(400, 0.2, 0.01, 11)
    values[399] = 0.9
    feed(engine, values, signal="saturation_ratio")
    e = engine.explanations[("gift", "saturation_ratio")]
    assert e.score > 1.1 and "range" in e.detectors and e.value == pytest.approx(0.9)
    assert e.to_json()["detectors"] == list(e.detectors) and e.to_json()["deviation_sigmas"] > 20


# --- feedback --------------------------------------------------------------------------------------------


def test_feedback_silences_the_same_pattern_for_that_series_only(tmp_path):
    key = ("gift", "error_ratio")
    values = noisy(400, 0.01, 0.001, 12)
    for at in (100, 200, 300):  # a nightly batch job's burst of errors, the same size each time
        values[at] = 0.07 + 0.002 * (at // 100)
    values[350] = 0.12  # a real incident, much larger
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    engine = ScoringEngine(detector="robust_zscore", window=60, min_points=20, feedback=log)
    scores = feed(engine, values[:101], signal="error_ratio")
    assert scores[100] > 5
    marked = engine.explanations[key]  # the analyst marks the burst (the API reads it from the recorded series)
    fb = log.mark("false_positive", [Matcher("job", "=", "gift")], T0 + 99 * STEP, T0 + 101 * STEP,
                  {labels_key({"job": "gift", "signal": "error_ratio"}): [marked.deviation]}, by="noc")
    assert fb.floors[0].up == pytest.approx(1.25 * marked.deviation) and fb.floors[0].down == 0
    feed(engine, values[101:150], signal="error_ratio", start=101)
    later = feed(engine, values[150:], signal="error_ratio", start=150)
    assert later[50] == 0.0 and later[150] == 0.0  # the bursts at 200 and 300
    assert later[200] > 5  # the larger incident still pages
    other = feed(ScoringEngine(detector="robust_zscore", window=60, min_points=20, feedback=log), values, job="feed", signal="error_ratio")
    assert other[200] > 5  # another job's bursts are not covered
    assert FeedbackLog(tmp_path / "feedback.jsonl").floors({"job": "gift", "signal": "error_ratio"}) == \
        log.floors({"job": "gift", "signal": "error_ratio"})


def test_feedback_refuses_bad_input_and_names_bad_lines(tmp_path):
    log = FeedbackLog()
    with pytest.raises(ValueError, match="verdict 'wrong'"):
        log.mark("wrong", [], 0, 1, {("a",): [1.0]})
    with pytest.raises(ValueError, match="nothing to learn from"):
        log.mark("expected", [], 0, 1, {("a",): [float("nan")]})
    path = tmp_path / "feedback.jsonl"
    path.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"feedback.jsonl:1: not a feedback line"):
        FeedbackLog(path)


# --- configuration ---------------------------------------------------------------------------------------


def test_the_detection_section_of_the_configuration(tmp_path):
    from opswatch.config import load_config
    from opswatch.errors import ConfigError
    from opswatch.pipeline import scoring_engine

    path = tmp_path / "opswatch.yaml"
    path.write_text(f"""\
data_dir: {tmp_path}
scrape_interval: 10s
detection:
  rebaseline_after: 5m
  series: [{{matchers: ['job="gift"', 'signal=~"latency.*"'], sensitivity: 0.5, min_impact: 0.05}}]
  calendar:
    - {{id: mw, mode: suppress, start: "2026-11-29T02:00:00Z", end: "2026-11-29T03:00:00Z", matchers: ['job="gift"']}}
""")
    engine = scoring_engine(load_config(path))
    assert engine.rebaseline.after == 30  # 5 minutes of 10 s evaluations
    assert engine.policy(("gift", "latency_p99_seconds")).sensitivity == 0.5
    assert engine.policy(("feed", "latency_p99_seconds")) == DEFAULT_POLICIES["latency_p99_seconds"]
    [event] = engine.calendar.events
    assert (event.id, event.source, event.end_ms - event.start_ms) == ("mw", "config", 3_600_000)

    for text, named in [
        ("detection: {series: [{matchers: ['job~gift'], sensitivity: 2}]}", "key 'detection.series.0.matchers'"),
        ("detection: {series: [{matchers: ['job=\"a\"'], sensitivity: -1}]}", "key 'detection.series.0.sensitivity'"),
        ("detection: {calendar: [{id: a, mode: suppress, start: '2026-11-29T03:00:00Z', end: '2026-11-29T02:00:00Z'}]}",
         "key 'detection.calendar.0': calendar event 'a': end (2026-11-29T02:00:00+00:00) must be after start"),
        ("detection: {calendar: [{id: a, mode: suppress, start: '2026-11-29T02:00:00', end: '2026-11-29T03:00:00Z'}]}",
         "key 'detection.calendar.0.start'"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(named)):
            load_config(path)
