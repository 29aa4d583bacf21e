"""``opswatch rules backtest`` (opswatch/backtest.py, storage/replay.py) on a small backfilled store: 2 h of
the reference platform (seed 0, no surges) whose one fault is ``errors`` on payment (50% of its operations
fail from minute 50 to minute 69), replayed with a threshold rule, a silence, a stricter rule, and bad input.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from alerting.model import parse_rfc3339, rfc3339
from alerting.routing import GROUP_WAIT_SECONDS
from collectors.samples import STALE_NAN, Sample
from detection.signals import compute_golden_signals
from opswatch.backtest import History, backtest, load_silences, recorded_signals, replay_window
from opswatch.cli import main
from opswatch.config import load_config
from sample_platform.backfill import backfill
from storage.replay import ReplayStore
from storage.sqlite import SQLiteStore

FOR_SECONDS = 120
WARMUP_MS = 30 * 60_000
RULE = """groups:
  - name: errors
    rules:
      - alert: ErrorRatioHigh
        expr: job:error_ratio > {threshold}
        for: {for_seconds}s
        labels: {{severity: critical, signal: error_ratio}}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("history")
    result = backfill(path, 2 / 24, seed=0, faults=1, surges="none")
    (fault,) = [r for r in result.records if r["fault"]]
    assert (fault["kind"], fault["target"]) == ("errors", "payment")  # the seed's draw, checked not assumed
    return path


@pytest.fixture(scope="module")
def fault(data_dir) -> dict:
    return json.loads((data_dir / "faults.jsonl").read_text().splitlines()[0])


def replay_end(fault: dict) -> int:
    """Shortly after the fault (the rest of the history would only cost time)."""
    return parse_rfc3339(fault["end"]) + 12 * 60_000


def rules(tmp_path: Path, threshold: float, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(RULE.format(threshold=threshold, for_seconds=FOR_SECONDS))
    return path


def run(data_dir: Path, files: list[Path], end_ms: int, silences=None):
    history = History.open(data_dir)
    try:
        start, end = replay_window(history, None, history.first_ms, end_ms)
        return backtest(load_config(None, data_dir=data_dir), files, history, start, end, silences=silences,
                        warmup_ms=WARMUP_MS)
    finally:
        history.store.close()


def test_replay_store_reads_what_the_store_holds(data_dir):
    history = History.open(data_dir)
    try:
        replay = ReplayStore(history.store, chunk_ms=45 * 60_000)  # the window crosses a chunk boundary
        for t in range(history.first_ms + 600_000, history.last_ms, 37 * 60_000):
            assert str(compute_golden_signals(replay, t, 240)) == str(compute_golden_signals(history.store, t, 240))
        assert replay.append([]) == 0
    finally:
        history.store.close()


@pytest.fixture(scope="module")
def against(data_dir, fault, tmp_path_factory) -> dict:
    """``--json`` of the command with a threshold of 0.2 against a stricter 0.9, on the same replay."""
    tmp = tmp_path_factory.mktemp("rules")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["rules", "backtest", str(rules(tmp, 0.2)), "--against", str(rules(tmp, 0.9, "strict.yaml")),
                       "--data-dir", str(data_dir), "--days", "1", "--end", rfc3339(replay_end(fault)),
                       "--warmup", "30m", "--json"])
    assert status == 0
    return json.loads(out.getvalue())


def test_threshold_rule_pages_on_the_fault_then_the_silence_removes_the_page(data_dir, fault, against, tmp_path):
    summary = against["base"]
    (outcome,) = summary["per_fault"]
    assert outcome["detected"] and outcome["seconds_to_page"] is not None
    # It cannot page before the rule's `for` has passed since the fault began; it pages within `for`, the
    # rate window filling with errors, the route's group_wait and one step of rounding.
    latest = FOR_SECONDS + summary["rate_window_seconds"] + GROUP_WAIT_SECONDS + summary["step_seconds"]
    assert FOR_SECONDS <= outcome["seconds_to_page"] <= latest, summary
    assert summary["pages"] >= 1 and summary["alerts_fired"] >= 1 and summary["notifications"] >= 1
    assert summary["false_pages"] == 0

    silence = tmp_path / "silences.yaml"
    silence.write_text(json.dumps([{
        "matchers": [{"name": "alertname", "value": "ErrorRatioHigh", "isRegex": False}],
        "startsAt": rfc3339(parse_rfc3339(fault["start"]) - 600_000),
        "endsAt": rfc3339(parse_rfc3339(fault["end"]) + 3_600_000),
        "createdBy": "test", "comment": "planned error test"}]))
    (silenced,) = run(data_dir, [rules(tmp_path, 0.2)], replay_end(fault), load_silences(silence))
    quiet = silenced.to_json()
    assert quiet["per_fault"][0]["detected"]  # the alerts still fire and form the incident ...
    assert quiet["per_fault"][0]["seconds_to_page"] is None and quiet["pages"] == 0  # ... but nobody is paged
    assert quiet["alerts_fired"] == summary["alerts_fired"]


def test_against_a_stricter_threshold_pages_less(against):
    out = against
    assert out["base"]["pages"] >= 1
    assert out["against"]["pages"] < out["base"]["pages"]
    assert out["difference"]["pages"] == out["against"]["pages"] - out["base"]["pages"]
    assert out["against"]["per_fault"][0]["seconds_to_page"] is None
    assert out["base"]["start"] == out["against"]["start"] and out["base"]["step_seconds"] == 60


@pytest.mark.parametrize("problem", ["missing rules", "bad yaml", "unknown data dir", "bad silences"])
def test_bad_input_is_refused_naming_the_file(data_dir, tmp_path, capsys, problem):
    args = ["rules", "backtest", str(rules(tmp_path, 0.2)), "--data-dir", str(data_dir)]
    if problem == "missing rules":
        named = tmp_path / "nope.yaml"
        args[2] = str(named)
    elif problem == "bad yaml":
        named = tmp_path / "broken.yaml"
        named.write_text("groups: [\n  - name: x\n    rules: {")
        args[2] = str(named)
    elif problem == "unknown data dir":
        named = tmp_path / "no-such-dir"
        args[4] = str(named)
    else:
        named = tmp_path / "silences.yaml"
        named.write_text("- matchers: [{name: job, value: payment, isRegex: false}]\n  endsAt: 2026-12-01T00:00:00Z\n")
        args += ["--silences", str(named)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(named) in err, err
    if problem == "unknown data dir":
        assert not named.exists()  # a typo does not create an empty store
    if problem == "bad silences":
        assert "silences.0" in err and "createdBy" in err, err


def test_rate_window_and_step_follow_the_history(data_dir):
    history = History.open(data_dir)
    try:
        assert history.interval_ms == 60_000
        start, end = replay_window(history, 1.0, None, None)
        assert (start, end) == (history.first_ms, history.last_ms)  # a day asked, two hours stored
        assert not math.isnan(compute_golden_signals(history.store, end, 240)["payment"]["request_rate"])
    finally:
        history.store.close()


def test_recorded_golden_signals_are_read_when_the_store_has_them(tmp_path):
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        t = 1_800_000_000_000
        store.append([Sample("job:error_ratio", {"job": "a"}, t - 30_000, 0.1),
                      Sample("job:error_ratio", {"job": "a"}, t - 5_000, 0.4),
                      Sample("job:request_rate", {"job": "b"}, t - 5_000, STALE_NAN)])
        got = recorded_signals(ReplayStore(store), t, 10_000)
        assert got["a"]["error_ratio"] == 0.4 and math.isnan(got["a"]["request_rate"])
        assert math.isnan(got["b"]["request_rate"])  # ended: a staleness marker
        assert recorded_signals(ReplayStore(store), t + 3_600_000, 10_000) is None  # none then: recompute
    finally:
        store.close()
