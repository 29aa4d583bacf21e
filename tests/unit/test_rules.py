"""Rule files (alerting/rules.py): format checks with errors that name file, group, rule and key; templates
with Prometheus's humanize helpers; recording rules with staleness; group intervals; anomaly() on any
expression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alerting.lifecycle import AlertTracker
from alerting.rules import (RuleEvaluator, humanize, humanize_duration, humanize_percentage,
                            load_rule_groups)
from collectors.samples import Sample, is_stale_nan
from detection.base import Score
from opswatch.errors import ConfigError
from storage.sqlite import SQLiteStore

S = 1000
T0 = 1_700_000_000_000


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "opswatch.db")
    yield s
    s.close()


def rules_file(tmp_path, text: str):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value, expected", [
    (0, "0"), (1234567, "1.235M"), (0.000123, "123u"), (-2500, "-2.5k"), (math.nan, "nan"), (12.5, "12.5"),
])
def test_humanize(value, expected):
    assert humanize(value) == expected


@pytest.mark.parametrize("value, expected", [
    (0, "0s"), (0.25, "250ms"), (1.5, "1.5s"), (90, "1m 30s"), (3 * 86400 + 3661, "3d 1h 1m 1s"), (-61, "-1m 1s"),
])
def test_humanize_duration(value, expected):
    assert humanize_duration(value) == expected


def test_humanize_percentage():
    assert humanize_percentage(0.1234) == "12.34%" and humanize_percentage(0.5) == "50%"


@pytest.mark.parametrize("text, fragments", [
    ("groups: [{name: g, rules: [{alert: A, record: b, expr: up}]}]",
     ["rules.yaml", "groups.0.rules.0", "(group 'g', rule 'A')", "either 'alert'", "or 'record'"]),
    ("groups: [{name: g, rules: [{record: b, expr: up, for: 1m}]}]",
     ["(group 'g', rule 'b')", "belong to alerting rules; remove them"]),
    ("groups: [{name: g, rules: [{alert: A, expr: up, keep_firing_for: later}]}]",
     ["groups.0.rules.0.keep_firing_for", "(group 'g', rule 'A')", "later"]),
    ("groups: [{name: g, rules: [{alert: A, expr: up, labels: {s: '{{ $value'}}]}]",
     ["group 'g', rule 'A' (groups.0.rules.0), key 'labels.s'", "bad template"]),
    ("groups: [{name: g, rules: [{alert: A, expr: up}]}, {name: g, rules: []}]",
     ["groups.1.name", "appears twice"]),
    ("groups: [{name: g, rules: [{alert: A, exp: up}]}]",
     ["groups.0.rules.0.exp", "did you mean 'expr'"]),
])
def test_rule_file_errors_name_file_group_rule_key_and_fix(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as info:
        load_rule_groups(rules_file(tmp_path, text))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_recording_rule_writes_series_and_staleness_markers(tmp_path, store):
    groups = load_rule_groups(rules_file(tmp_path, """
groups:
  - name: rec
    rules:
      - record: job:g:sum
        expr: sum by (job) (g)
        labels: {source: rule}
      - alert: BigSum
        expr: job:g:sum > 5
        labels: {severity: "{% if $value > 10 %}critical{% else %}warning{% endif %}"}
"""))
    store.append([Sample("g", {"job": "x", "i": "1"}, T0, 4.0), Sample("g", {"job": "x", "i": "2"}, T0, 8.0),
                  Sample("g", {"job": "y", "i": "1"}, T0, 1.0)])
    evaluator = RuleEvaluator(groups, store)
    result = evaluator.evaluate(T0)
    assert sorted((s.labels["job"], s.value) for s in result.samples) == [("x", 12.0), ("y", 1.0)]
    # the alerting rule after it sees the recorded series at once
    [cond] = result.conditions
    assert cond.labels == {"job": "x", "source": "rule", "severity": "critical", "alertname": "BigSum"}
    store.append([Sample("g", {"job": "x", "i": "1"}, T0 + S, 4.0, )])  # y's only series ...
    store.append([Sample("g", {"job": "y", "i": "1"}, T0 + S, float("nan"))])
    later = evaluator.evaluate(T0 + 5 * 60 * S + 2 * S)  # ... and everything older than 5 m is gone
    assert [(s.labels["job"], is_stale_nan(s.value)) for s in later.samples] == [("x", True), ("y", True)]


def test_group_interval_skips_evaluations_until_due(tmp_path, store):
    groups = load_rule_groups(rules_file(tmp_path, """
groups:
  - name: slow
    interval: 10s
    rules: [{alert: Up, expr: up == 1}]
"""))
    store.append([Sample("up", {"job": "x"}, T0, 1.0)])
    evaluator = RuleEvaluator(groups, store)
    assert evaluator.evaluate(T0).evaluated == {"Up"}
    assert evaluator.evaluate(T0 + 5 * S).evaluated == set()
    assert evaluator.evaluate(T0 + 10 * S).evaluated == {"Up"}


def test_anomaly_of_any_expression_keeps_a_detector_per_series(tmp_path, store):
    groups = load_rule_groups(rules_file(tmp_path, """
groups:
  - name: custom
    rules:
      - alert: QueueAnomaly
        expr: anomaly(sum by (job) (queue_depth)) > 5
"""))
    rng = np.random.default_rng(3)
    evaluator = RuleEvaluator(groups, store)
    fired_at = []
    for step in range(60):
        t = T0 + step * S
        depth = 100 + rng.normal(0, 2) + (80 if step >= 50 else 0)  # a jump at step 50
        store.append([Sample("queue_depth", {"job": "q", "i": "1"}, t, depth)])
        if evaluator.evaluate(t).conditions:
            fired_at.append(step)
    assert fired_at and fired_at[0] == 50
    [cond] = evaluator.evaluate(T0 + 59 * S).conditions  # the same time again: the detector is not fed twice
    assert cond.labels == {"job": "q", "alertname": "QueueAnomaly"} and cond.score is not None
    assert cond.score.baseline == pytest.approx(100, abs=3)


LATENCY_RULES = """
groups:
  - name: latency
    rules:
      - alert: LatencyAnomaly
        expr: >-
          max_over_time(opswatch_anomaly_score{signal="latency_p99_seconds"}[30s]) > 1.1
          and on(job) max_over_time(opswatch_anomaly_score{signal="latency_p90_seconds"}[30s]) > 1.1
      - alert: ErrorRatioAnomaly
        expr: anomaly(job:error_ratio) > 1.1
"""


def test_alert_on_a_score_window_takes_its_value_as_score_and_the_engines_evidence(tmp_path, store):
    # p99 peaked at T0 and fell back; p90 crosses 3 s later, when the alert starts: the p99 score now is 0
    score = "opswatch_anomaly_score"
    store.append([Sample(score, {"job": "feed", "signal": "latency_p99_seconds"}, T0, 2.5),
                  Sample(score, {"job": "feed", "signal": "latency_p99_seconds"}, T0 + 3 * S, 0.0),
                  Sample(score, {"job": "feed", "signal": "latency_p90_seconds"}, T0, 0.2),
                  Sample(score, {"job": "feed", "signal": "latency_p90_seconds"}, T0 + 3 * S, 1.4),
                  Sample("job:error_ratio", {"job": "feed"}, T0 + 3 * S, 0.3),
                  Sample(score, {"job": "feed", "signal": "error_ratio"}, T0 + 3 * S, 3.0)])
    now = Score(T0 + 3 * S, 0.8, 0.0, 0.2, 0.05)  # the engine's p99 explanation now: observed 0.8 s, baseline 0.2 s
    evaluator = RuleEvaluator(load_rule_groups(rules_file(tmp_path, LATENCY_RULES)), store)
    conds = {c.labels["alertname"]: c for c in
             evaluator.evaluate(T0 + 3 * S, {("feed", "latency_p99_seconds"): now}).conditions}
    latency = conds["LatencyAnomaly"]
    assert latency.signal == "latency_p99_seconds" and latency.value == 2.5
    assert (latency.score.score, latency.score.value, latency.score.baseline) == (2.5, 0.8, 0.2)
    # no explanation from the engine (error_ratio is not in the scores given): the score, no baseline
    error = conds["ErrorRatioAnomaly"]
    assert error.score.score == 3.0 and math.isnan(error.score.baseline) and math.isnan(error.score.value)
    tracker = AlertTracker()
    tracker.update(T0 + 3 * S, [latency])
    [alert] = tracker.alerts.values()
    assert alert.to_api()["evidence"] == {"signal": "latency_p99_seconds", "baseline": 0.2, "observed": 0.8,
                                          "score": 2.5}
