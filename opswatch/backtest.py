"""Rule backtests: stored history replayed through the live pipeline, to see how a rule, threshold or silence
change would have paged before it goes live (``opswatch rules backtest``).

For each rules file, one :class:`~opswatch.pipeline.Pipeline` (the live one: golden signals, detectors,
rules with ``for``/``keep_firing_for``, incidents along the topology, inhibition, silences, routing) runs
over a :class:`~storage.replay.ReplayStore` of the data directory's store, in a scratch data directory of
its own, and is evaluated at every step of ``[start, end]`` under an injected clock: nothing sleeps, nothing
is sent and the history is not written. The golden signals are read once per step from the ``job:*``
recordings a live pipeline stored, else (a backfill stores none) computed from the raw series with
:func:`~detection.signals.compute_golden_signals`, and handed to every pipeline; so ``anomaly(...)`` rules
run on the scores the live detector would have given, learnt in time order from the start of the warm-up.

The history's sample interval sets two things a live run takes from its configuration: the step (default:
the evaluation interval or the sample interval, whichever is longer; evaluating between samples adds
nothing) and the golden signals' rate window (at least four sample intervals, Prometheus's rule of thumb
for ``rate()``, so each window holds enough samples: 4 min on a 60 s backfill).

What happened is set against the ground truth in ``data_dir/faults.jsonl`` with
:func:`opswatch.scenarios.attribute` (an incident belongs to a fault when it opened during it, or within
the attribution time after it, on the fault's node), giving per fault whether it was detected and paged
and the seconds from its start to the page; the other incidents are false (on a legitimate surge or not).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from pydantic import ValidationError

from alerting.model import parse_rfc3339, rfc3339
from alerting.rules import load_rule_groups
from alerting.silences import PostableSilence, parse_silence
from detection.signals import RECORDED_NAME, SIGNALS, compute_golden_signals
from storage.replay import ReplayStore
from storage.sqlite import SQLiteStore

from .config import OpsWatchConfig
from .errors import ConfigError
from .pipeline import Pipeline
from .scenarios import attribute

RATE_WINDOW_SAMPLES = 4
"""The golden signals' rate window spans at least this many sample intervals of the history."""

COPIED_STATE = ("detection_calendar.json", "detection_feedback.jsonl", "changes.jsonl")
"""Files of the data directory a replay starts from (the detectors' calendar and feedback, the change log)."""


@dataclass
class History:
    """The stored history of a data directory: its store (open), ground truth, newest sample and sample
    interval (ms)."""

    data_dir: Path
    store: SQLiteStore
    truth: list[dict]
    first_ms: int
    last_ms: int
    interval_ms: int

    @classmethod
    def open(cls, data_dir: str | Path) -> "History":
        """Open ``data_dir/opswatch.db`` for reading and ``data_dir/faults.jsonl`` (empty when missing).

        :raises ConfigError: no such directory or store, a store without ``up`` samples, a bad ground-truth
            line (each naming the path).
        """
        data_dir = Path(data_dir)
        db = data_dir / "opswatch.db"
        if not db.is_file():
            raise ConfigError(f"{db}: no stored history (no such file); give the --data-dir of a run or of "
                              f"'opswatch platform backfill'")
        store = SQLiteStore(db)
        try:
            stamps = [ts.values.index.as_unit("ms").asi8 for ts in store.select("up")]
            stamps = [t for t in stamps if len(t) > 1]
            if not stamps:
                raise ConfigError(f"{db}: no target has two samples of 'up' stored: no history to replay")
            truth = _read_truth(data_dir / "faults.jsonl")
        except BaseException:
            store.close()
            raise
        # each target's own scrape interval: targets are scraped at different offsets within it
        interval = int(np.median([np.median(np.diff(t)) for t in stamps]))
        return cls(data_dir, store, truth, min(int(t[0]) for t in stamps), max(int(t[-1]) for t in stamps), interval)


def _read_truth(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                parse_rfc3339(record["start"]), parse_rfc3339(record["end"])
            except (ValueError, TypeError, KeyError):
                raise ConfigError(f"{path}:{number}: not a ground-truth record (a JSON object with start and "
                                  f"end): {line[:80]!r}") from None
            records.append(record)
    return records


def load_silences(path: str | Path) -> list[PostableSilence]:
    """Silences from a YAML or JSON file: a list of Alertmanager API v2 silences (``matchers``, ``startsAt``
    (default: the replay's start), ``endsAt``, ``createdBy``, ``comment``, OpsWatch's ``untilResolved`` and
    ``timeIntervals``), or a data directory's ``silences.json`` (``{"silences": [...]}``).

    :raises ConfigError: naming the file and the silence (``silences.N``) and what is wrong.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read silences: {exc}") from exc
    rows = raw.get("silences") if isinstance(raw, dict) else raw
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a list of silences (matchers, endsAt, createdBy, comment), "
                          f"got {type(raw).__name__}")
    out = []
    for i, row in enumerate(rows):
        body = {k: v for k, v in row.items() if k not in ("id", "status", "updatedAt", "matched")} \
            if isinstance(row, dict) else row
        try:
            out.append(parse_silence(body))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"{path}: silences.{i}: {exc}") from exc
    return out


@dataclass
class Side:
    """One rules file replayed: its pipeline and what it did from ``count_from_ms`` on."""

    rules_file: Path
    pipeline: Pipeline
    count_from_ms: int
    fired: set[tuple[str, int]] = field(default_factory=set)  # (fingerprint, fired at ms)
    notifications: int = 0

    def observe(self, now_ms: int) -> None:
        """Count the alerts that fired and the notifications the last evaluation would have sent."""
        self.fired.update((fp, a.fired_at_ms) for fp, a in self.pipeline.tracker.alerts.items()
                          if a.fired_at_ms is not None and a.fired_at_ms >= self.count_from_ms)
        if now_ms >= self.count_from_ms:
            self.notifications += sum(1 for out in self.pipeline.outbox if not out.repeat)
        self.pipeline.outbox.clear()


@dataclass
class BacktestResult:
    """What one rules file would have done over ``[start_ms, end_ms]`` (evaluated every ``step_ms``, after
    ``warmup_ms`` of evaluations before ``start_ms`` that count for nothing): ``alerts_fired``,
    ``notifications`` (payloads to receivers, firing and resolved), the ``incidents`` opened (API views), per
    fault that began in the window its outcome (:class:`opswatch.scenarios.Outcome`), the false incidents."""

    rules_file: str
    start_ms: int
    end_ms: int
    step_ms: int
    warmup_ms: int
    rate_window_seconds: float
    alerts_fired: int
    notifications: int
    incidents: list[dict]
    outcomes: list
    false_incidents: list[dict]
    seconds: float

    @property
    def days(self) -> float:
        return (self.end_ms - self.start_ms) / 86_400_000

    def to_json(self) -> dict:
        """The summary: counts, per-fault outcomes and false incidents (JSON-ready)."""
        paged = [o.seconds_to("paged") for o in self.outcomes]
        paged = [s for s in paged if s is not None]
        false_pages = [i for i in self.false_incidents if i.get("key_times", {}).get("paged")]
        return {
            "rules_file": self.rules_file, "start": rfc3339(self.start_ms), "end": rfc3339(self.end_ms),
            "step_seconds": self.step_ms / 1000, "warmup_seconds": self.warmup_ms / 1000,
            "rate_window_seconds": self.rate_window_seconds,
            "alerts_fired": self.alerts_fired, "notifications": self.notifications,
            "incidents": len(self.incidents),
            "pages": sum(1 for i in self.incidents if i.get("key_times", {}).get("paged")),
            "faults": len(self.outcomes), "faults_detected": sum(o.detected for o in self.outcomes),
            "faults_paged": len(paged), "faults_missed": sum(not o.detected for o in self.outcomes),
            "median_seconds_to_page": statistics.median(paged) if paged else None,
            "false_incidents": len(self.false_incidents),
            "false_incidents_on_surges": sum(i["on_surge"] for i in self.false_incidents),
            "false_pages": len(false_pages),
            "false_incidents_per_day": round(len(self.false_incidents) / self.days, 3) if self.days else None,
            "per_fault": [o.to_json() for o in self.outcomes],
            "false": [{"id": i["id"], "opened_at": i["opened_at"], "paged": bool(i.get("key_times", {}).get("paged")),
                       "on_surge": i["on_surge"], "root_causes": [c["node"] for c in i["root_causes"]][:3]}
                      for i in self.false_incidents],
            "seconds": round(self.seconds, 1),
        }


def recorded_signals(store, now_ms: int, step_ms: int) -> dict[str, dict[str, float]] | None:
    """The golden signals a live pipeline recorded (``job:<signal>``) in ``(now_ms - step_ms, now_ms]``, as
    :func:`~detection.signals.compute_golden_signals` returns them (``{job: {signal: value}}``, NaN where a
    signal has no sample), or None when it recorded none there (a backfill, or before OpsWatch ran): reading
    them costs a few series per step where recomputing them reads every raw series."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(SIGNALS, math.nan))
    found = False
    for signal in SIGNALS:
        for ts in store.select(RECORDED_NAME.format(signal=signal), None, now_ms - step_ms + 1, now_ms):
            out[ts.labels.get("job", "")][signal] = float(ts.values.iloc[-1])  # a staleness marker is NaN
            found = True
    return dict(out) if found else None


def replay_window(history: History, days: float | None, start_ms: int | None, end_ms: int | None
                  ) -> tuple[int, int]:
    """``[start, end]`` in ms: ``--start/--end`` when given, else the ``days`` before ``end`` (default: the
    newest stored sample), not before the first stored sample.

    :raises ConfigError: an empty window, or one outside the stored history (naming both ranges).
    """
    end = history.last_ms if end_ms is None else min(end_ms, history.last_ms)
    start = start_ms if start_ms is not None else end - int((days or 1) * 86_400_000)
    start = max(start, history.first_ms)
    if end <= start:
        raise ConfigError(f"{history.data_dir / 'opswatch.db'}: nothing stored between {rfc3339(start)} and "
                          f"{rfc3339(end)}; the history spans {rfc3339(history.first_ms)} to "
                          f"{rfc3339(history.last_ms)}")
    return start, end


def backtest(config: OpsWatchConfig, rules_files: list[Path], history: History, start_ms: int, end_ms: int,
             step_ms: int | None = None, silences: list[PostableSilence] | None = None,
             warmup_ms: int | None = None, attribution_seconds: float | None = None,
             progress: Callable[[int, int], None] | None = None) -> list[BacktestResult]:
    """Replay ``[start_ms, end_ms]`` of ``history`` once, through one pipeline per rules file (see the module
    docstring), and score each against the ground truth.

    :param config: the live configuration (topology, routing, inhibit rules, detection, ``resolve_after``);
        its ``data_dir`` and ``rules_file`` are replaced per rules file.
    :param step_ms: evaluation step (default: the longer of the evaluation and sample intervals).
    :param silences: the silences in force (default: those stored in the data directory).
    :param warmup_ms: evaluations before ``start_ms`` that count for nothing, so that the detectors have
        their baselines when the window begins (default: ``detection.window`` steps). When the history does
        not reach back that far, the window begins that much after its first sample instead.
    :param attribution_seconds: how long after a fault an incident is still its (default: the rate window
        plus two steps, the time the signals take to settle).
    :param progress: called with (steps done, steps in all) every 100 steps.
    :raises ConfigError: a rules file that does not load (naming it and the rule), or a window the warm-up
        leaves empty.
    """
    for path in rules_files:
        load_rule_groups(path)  # every file checked before the replay starts
    step_ms = int(step_ms or max(config.evaluation_seconds * 1000, history.interval_ms))
    warmup_ms = int(config.detection.window * step_ms if warmup_ms is None else warmup_ms)
    rate_window = max(config.rate_window, RATE_WINDOW_SAMPLES * history.interval_ms / 1000)
    attribution = rate_window + 2 * step_ms / 1000 if attribution_seconds is None else attribution_seconds
    first = math.ceil(max(start_ms - warmup_ms, history.first_ms) / step_ms) * step_ms  # on the history's grid
    count_from = max(start_ms, first + warmup_ms)
    if count_from >= end_ms:
        raise ConfigError(f"{history.data_dir / 'opswatch.db'}: the history from {rfc3339(history.first_ms)} "
                          f"leaves nothing to replay before {rfc3339(end_ms)} after a warm-up of "
                          f"{warmup_ms / 1000:g} s; replay fewer days or a shorter warm-up")
    steps = range(first, end_ms + 1, step_ms)
    now = [first / 1000]
    replay = ReplayStore(history.store)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="opswatch-backtest-") as scratch:
        sides = []
        for i, rules in enumerate(rules_files):
            side_dir = Path(scratch) / str(i)
            side_dir.mkdir()
            for name in COPIED_STATE + (() if silences is not None else ("silences.json",)):
                if (history.data_dir / name).exists():
                    shutil.copy(history.data_dir / name, side_dir / name)
            side_config = config.model_copy(update={
                "data_dir": side_dir, "rules_file": Path(rules), "rate_window": rate_window,
                "evaluation_interval": step_ms / 1000,
                "scrape_interval": max(config.scrape_interval, history.interval_ms / 1000)})
            pipeline = Pipeline(side_config, [], clock=lambda: now[0], store=replay, persist=False)
            for body in silences or []:
                pipeline.silences.upsert(body, first)
            sides.append(Side(Path(rules), pipeline, count_from))
        try:
            for done, t in enumerate(steps, 1):
                now[0] = t / 1000
                signals = recorded_signals(replay, t, step_ms) or compute_golden_signals(replay, t, rate_window)
                for side in sides:
                    side.pipeline.evaluate(t, signals)
                    side.observe(t)
                if progress and done % 100 == 0:
                    progress(done, len(steps))
        finally:
            for side in sides:
                side.pipeline.dispatcher.close()
    seconds = time.perf_counter() - began
    overlapping = [r for r in history.truth
                   if parse_rfc3339(r["start"]) <= end_ms and parse_rfc3339(r["end"]) >= first]
    faults = [r for r in overlapping if r.get("fault")]
    surges = [r for r in overlapping if not r.get("fault")]
    results = []
    for side in sides:
        incidents = side.pipeline.snapshot.incidents
        outcomes, false = attribute(faults, surges, incidents, attribution)  # warm-up faults take their incidents
        results.append(BacktestResult(
            str(side.rules_file), count_from, end_ms, step_ms, count_from - first, rate_window, len(side.fired),
            side.notifications, [i for i in incidents if parse_rfc3339(i["opened_at"]) >= count_from],
            [o for o in outcomes if parse_rfc3339(o.fault["start"]) >= count_from],
            [i for i in false if parse_rfc3339(i["opened_at"]) >= count_from], seconds))
    return results
