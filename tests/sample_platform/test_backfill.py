"""History backfill (sample_platform/backfill): determinism, ground truth, fault effects, the store it
writes, and the same series as a live scrape of the real platform."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from collectors.scrape import ScrapeManager, Target
from detection.signals import compute_golden_signals
from sample_platform.backfill import backfill
from sample_platform.backfill.effects import EFFECTS, Knobs, effect_of
from sample_platform.backfill.families import build_specs
from sample_platform.backfill.model import run
from sample_platform.faults import FAULT_KINDS, valid_targets
from sample_platform.graph import NODES
from sample_platform.surges import calendar
from storage.sqlite import SQLiteStore

END = 1_795_046_400.0  # 2026-11-19T00:00:00Z, a Thursday: the day before has deploys, a push, maybe a celebrity
RETENTION_MS = 10 * 365 * 86_400_000  # the store keeps the fixed range however long ago it ends
DAY = 86_400.0


def _dump(data_dir: Path) -> list[tuple]:
    """Every stored sample, as the chunks' bytes by series (identical samples <=> identical rows)."""
    db = sqlite3.connect(data_dir / "opswatch.db")
    return db.execute("SELECT s.name, s.labels, c.block, c.level, c.timestamps, c.vals FROM chunks c "
                      "JOIN series s ON s.id = c.series_id ORDER BY s.name, s.labels, c.block").fetchall()


def test_same_seed_same_history_and_ground_truth(tmp_path):
    """The same history in another process (another string-hash seed, through the command line)."""
    a = backfill(tmp_path / "a", 0.5, seed=7, faults=4, end=END, retention_ms=RETENTION_MS)
    subprocess.run([sys.executable, "-m", "opswatch.cli", "platform", "backfill", "--days", "0.5", "--seed", "7",
                    "--faults", "4", "--end", "2026-11-19T00:00:00Z", "--retention", "10y",
                    "--data-dir", str(tmp_path / "b")],
                   check=True, capture_output=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "12345"})
    c = backfill(tmp_path / "c", 0.5, seed=8, faults=4, end=END, retention_ms=RETENTION_MS)
    assert a.truth_path.read_bytes() == (tmp_path / "b" / "faults.jsonl").read_bytes()
    assert a.samples > 0
    assert _dump(tmp_path / "a") == _dump(tmp_path / "b")
    assert a.truth_path.read_bytes() != c.truth_path.read_bytes()
    assert _dump(tmp_path / "a") != _dump(tmp_path / "c")


def test_ground_truth_holds_the_calendar_surges_and_k_labelled_faults(tmp_path):
    result = backfill(tmp_path, 1, seed=3, faults=5, end=END, retention_ms=RETENTION_MS)
    lines = result.truth_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert lines == [json.dumps(r, sort_keys=True) for r in records]  # the live log's format
    assert [r["start"] for r in records] == sorted(r["start"] for r in records)
    surges = [r for r in records if not r["fault"]]
    planned = calendar(END - DAY, END, 3)
    assert [(r["kind"], r["target"]) for r in surges] == [("surge:" + p.kind, p.target) for p in planned]
    assert {r["kind"] for r in surges} >= {"surge:marketing_push", "surge:deploy"}
    faults = [r for r in records if r["fault"]]
    assert len(faults) == 5 and len({r["id"] for r in records}) == len(records)
    for f in faults:
        assert f["kind"] in FAULT_KINDS and f["kind"] in EFFECTS
        assert f["target"] in valid_targets(f["kind"])
        assert f["params"] == FAULT_KINDS[f["kind"]].defaults()
        assert isinstance(f["expected_impact"], list) and f["expected_impact"]
        assert result.start <= _epoch(f["start"]) < _epoch(f["end"]) <= result.end + 3600


def test_an_existing_ground_truth_log_is_kept_and_a_bad_one_stops_the_backfill(tmp_path):
    live = {"id": "live-1", "kind": "latency", "target": "postgres", "start": "2026-11-18T23:00:00.000Z",
            "end": "2026-11-18T23:01:00.000Z", "params": {"latency_seconds": 0.25}, "fault": True,
            "expected_impact": ["user_profile"]}
    log = tmp_path / "faults.jsonl"
    log.write_text(json.dumps(live) + "\n")
    first = backfill(tmp_path, 0.1, seed=1, faults=2, end=END, retention_ms=RETENTION_MS)
    # the same records replace themselves
    again = backfill(tmp_path, 0.1, seed=1, faults=2, end=END, retention_ms=RETENTION_MS)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert live in records and len(records) == len(first.records) + 1 == len(again.records) + 1
    log.write_text(log.read_text() + "not json\n")
    before = _dump(tmp_path)
    with pytest.raises(ValueError, match=rf"faults.jsonl:{len(records) + 1}: not a ground-truth record"):
        backfill(tmp_path, 0.1, seed=2, faults=2, end=END, retention_ms=RETENTION_MS)
    assert _dump(tmp_path) == before


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_store_is_the_demos_with_rollups_and_golden_signals(tmp_path):
    backfill(tmp_path, 0.5, seed=1, faults=0, end=END, retention_ms=RETENTION_MS)
    store = SQLiteStore(tmp_path / "opswatch.db")  # what `opswatch demo --data-dir` opens
    try:
        hourly = store.select("up", step_ms=3_600_000)
        assert len(hourly) == len(NODES) and all(s.rollup["count"].iloc[1] == 60 for s in hourly)
        signals = compute_golden_signals(store, int(END * 1000), 300)  # the live pipeline's signals
        assert set(signals) == set(NODES)
        assert all(signals[job]["request_rate"] > 0 for job in ("gateway", "feed", "postgres", "redis", "cdn-a"))
        assert all(signals[job]["error_ratio"] < 0.05 for job in signals if not np.isnan(signals[job]["error_ratio"]))
    finally:
        store.close()


# -- fault effects ----------------------------------------------------------------------------------------

STEPS = 120
ON = slice(40, 80)


def _flows(fault=None):
    t = END + 60.0 * np.arange(STEPS)
    knobs = Knobs(t)
    if fault is not None:
        kind, target, params = fault
        active = np.zeros(STEPS, bool)
        active[ON] = True
        effect_of(kind)(knobs, active, _Fault(kind, target, t[ON.start], t[ON.stop], params))
    flows = run(t, 20.0, 1, np.ones(STEPS), np.ones(STEPS), knobs)
    return flows, knobs


class _Fault:
    def __init__(self, kind, target, start, end, params):
        self.kind, self.target, self.start, self.end = kind, target, start, end
        self.params = {**FAULT_KINDS[kind].defaults(), **params} if kind in FAULT_KINDS else params


def _during(x):
    return float(np.mean(x[ON]))


def _before(x):
    return float(np.mean(x[:ON.start]))


def _bad(flows, op, codes=("500", "502", "503", "504")):
    return sum(flows.codes[op].get(c, 0) for c in codes)


def _gauge(flows, knobs, node, name):
    specs = build_specs(flows, knobs, {n: np.zeros(STEPS, np.int64) for n in NODES},
                        {n: np.full(STEPS, END) for n in NODES}, 20.0)
    return next(s.values for s in specs if s.node == node and s.name == name)


#: kind -> (target, check(flows, knobs, baseline flows)): the effect shows where it should, not elsewhere.
CHECKS = {
    "latency": ("postgres", lambda f, k, b: (
        # the mean: 6% of profile reads miss both caches and reach postgres, 0.25 s slower
        _during(f.latency["user /users"]) > 3 * _before(f.latency["user /users"])  # the caller, and its callers
        and _during(f.latency["gateway /api/profile"]) > 3 * _before(f.latency["gateway /api/profile"])
        and np.allclose(f.latency["cdn-a /live/{room_id}/{seq}"], b.latency["cdn-a /live/{room_id}/{seq}"]))),
    "errors": ("post", lambda f, k, b: (
        _during(f.codes["post /likes"]["500"]) > 0.3 and _during(f.codes["gateway /api/like"]["502"]) > 0.3
        and _during(_bad(f, "gateway /api/profile")) < 0.01)),
    "cpu_saturation": ("search", lambda f, k, b: (
        _during(f.latency["search /search"]) > _before(f.latency["search /search"]) + 0.3
        and _during(_bad(f, "gateway /api/search")) > _before(_bad(f, "gateway /api/search"))
        and np.allclose(f.latency["feed /feed"], b.latency["feed /feed"]))),
    "memory_leak": ("user", lambda f, k, b: (
        _gauge(f, k, "user", "process_resident_memory_bytes")[ON.stop - 1]
        > _gauge(f, k, "user", "process_resident_memory_bytes")[ON.start] + 1e8
        and _gauge(f, k, "post", "process_resident_memory_bytes")[ON.stop - 1]
        == _gauge(f, k, "post", "process_resident_memory_bytes")[0])),
    "slow_queries": ("giftdb-1", lambda f, k, b: (
        _during(f.latency["giftdb-1 /query insert"]) > 10 * _before(f.latency["giftdb-1 /query insert"])
        and np.allclose(f.latency["giftdb-0 /query insert"], b.latency["giftdb-0 /query insert"]))),
    "cache_outage": ("redis", lambda f, k, b: (
        _during(f.rate["postgres /query select"]) > 3 * _before(f.rate["postgres /query select"]))),
    "consumer_lag": ("search", lambda f, k, b: (
        f.drivers["lag posts"][ON.stop - 1] > 10 * f.drivers["lag posts"][ON.start - 1]
        and np.allclose(f.drivers["lag gifts"], b.drivers["lag gifts"]))),
    "cdn_degradation": ("cdn-b", lambda f, k, b: (
        _during(f.drivers["stall cdn-b"]) > 0.1 and _before(f.drivers["stall cdn-b"]) == 0
        and np.allclose(f.drivers["stall cdn-a"], b.drivers["stall cdn-a"]))),
    "network_partition": ("live~user", lambda f, k, b: (
        _during(f.call_timeouts["live /join", "user /users"]) > 0.9
        and _during(f.call_timeouts["gift /orders", "user /users"]) < 0.01
        and _during(f.codes["live /join"]["504"]) > 0.9)),
    "bad_deploy": ("gift", lambda f, k, b: (
        _during(f.codes["gift /orders"]["500"]) > 0.2 and _before(f.codes["gift /orders"]["500"]) == 0)),
    "connection_pool_exhaustion": ("giftdb-0", lambda f, k, b: (
        _during(f.codes["giftdb-0 /query insert"]["503"]) == 1.0 and _during(f.codes["gift /orders"]["502"]) > 0.4
        and _during(f.codes["giftdb-1 /query insert"]["503"]) == 0)),
    "timeout_cascade": ("user", lambda f, k, b: (
        _during(f.call_timeouts["feed /feed", "user /following"]) > 0.9
        and _during(f.codes["gateway /api/feed"]["502"] + f.codes["gateway /api/feed"]["504"]) > 0.9
        and _during(f.rate["user /users"]) > 2 * _before(f.rate["user /users"]))),
}


@pytest.mark.parametrize("kind", sorted(set(FAULT_KINDS) & set(EFFECTS)))
def test_each_fault_kind_of_the_catalogue_shows_in_the_expected_series(kind):
    target, check = CHECKS[kind]
    assert target in valid_targets(kind)
    baseline, _ = _flows()
    flows, knobs = _flows((kind, target, {}))
    assert check(flows, knobs, baseline), f"{kind} on {target}"


def test_every_kind_of_the_catalogue_has_an_effect_and_a_check():
    assert set(FAULT_KINDS) <= set(EFFECTS), "kinds the backfill cannot model"
    assert set(FAULT_KINDS) <= set(CHECKS)
    with pytest.raises(ValueError, match="no model of fault kind 'meteor'"):
        effect_of("meteor")


def test_cli_writes_the_backfill_and_refuses_bad_arguments(tmp_path):
    cli = [sys.executable, "-m", "opswatch.cli", "platform", "backfill", "--seed", "1", "--faults", "1",
           "--data-dir", str(tmp_path)]
    ok = subprocess.run(cli + ["--days", "0.05", "--end", "2026-11-19T00:00:00Z"], check=False, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "ground truth (1 faults" in ok.stdout and (tmp_path / "faults.jsonl").exists()
    bad = subprocess.run(cli + ["--days", "1", "--step", "7"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "step_seconds must be a whole number of seconds dividing 7200" in bad.stderr
    bad = subprocess.run(cli + ["--days", "1", "--end", "yesterday"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "'yesterday' is not an RFC 3339 date-time" in bad.stderr


# -- the same series as the live platform -------------------------------------------------------------------

WARMUP_SECONDS = 50.0  # live players and IM clients start from none: measure after they came
WINDOW_SECONDS = 40.0


@pytest.mark.integration
def test_backfill_has_the_live_scrapes_series_and_rates(tmp_path, spawn):
    """A live run of the real platform (its own process, scraped over HTTP by the scrape loop into a
    SQLite store) and a backfill ending now: the same (metric name, label names), and each job's request
    rate within a factor 2 of the live one at the same --rate."""
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    ports = live_dir / "ports.json"
    spawn([sys.executable, "-m", "sample_platform", "run", "--ports-file", str(ports), "--faults-log",
           str(live_dir / "truth.jsonl"), "--rate", "20", "--seed", "1", "--exit-with-parent"])
    deadline = time.monotonic() + 60
    while not ports.exists():
        assert time.monotonic() < deadline, "the platform did not start"
        time.sleep(0.1)
    nodes = json.loads(ports.read_text())["nodes"]
    store = SQLiteStore(live_dir / "opswatch.db")
    scraper = ScrapeManager([Target(job, url + "/metrics") for job, url in nodes.items()], store.append, 2.0)

    async def scrape() -> None:
        task = asyncio.create_task(scraper.run())
        await asyncio.sleep(WARMUP_SECONDS + WINDOW_SECONDS)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scrape())
    end = time.time()
    live = _signature(store)
    live_rates = _rates(store, end - WINDOW_SECONDS)
    store.close()

    # the live platform runs without the surge calendar (its default), so the backfill does too: a
    # celebrity live stream in the calendar would triple gift traffic in one of them only
    backfill(tmp_path / "backfill", 0.1, seed=1, faults=0, end=end, rate=20, surges="none")
    history = SQLiteStore(tmp_path / "backfill" / "opswatch.db")
    try:
        assert _signature(history) == live
        rates = _rates(history, end - 1800)
    finally:
        history.close()
    assert set(rates) == set(live_rates) == set(NODES)
    far = {job: (live_rates[job], rates[job]) for job in NODES if not 0.5 <= rates[job] / live_rates[job] <= 2}
    assert not far, f"request rates (live, backfill) off by more than 2x: {far}"


def _signature(store: SQLiteStore) -> set[tuple[str, tuple[str, ...]]]:
    return {(name, tuple(sorted(labels))) for name in store.metric_names() for labels in store.series(name)}


def _rates(store: SQLiteStore, since: float) -> dict[str, float]:
    """Requests/s per job from ``http_requests_total`` since ``since`` (epoch seconds), resets handled."""
    out: dict[str, float] = defaultdict(float)
    for ts in store.select("http_requests_total", start_ms=int(since * 1000)):
        v = ts.values.dropna()
        if len(v) > 1:
            seconds = (v.index[-1] - v.index[0]).total_seconds()
            out[ts.labels["job"]] += float(np.clip(np.diff(v.to_numpy()), 0, None).sum()) / seconds
    return dict(out)
