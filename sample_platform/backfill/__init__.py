"""History backfill: N days of the reference platform's metrics, written straight into the store.

``backfill(data_dir, days, seed, faults, step_seconds=60, end=None, rate=20)`` writes into
``data_dir/opswatch.db`` (the store ``opswatch demo --data-dir`` uses) the series the scrape loop would
have stored from the live platform at ``rate`` requests/s, one sample per ``step_seconds``, over the
``days`` before ``end`` (epoch seconds; default now, rounded down to the step), and the ground truth
beside it in ``data_dir/faults.jsonl``: the legitimate surges of ``surges.calendar(start, end, seed)``
(``"fault": false``) and ``faults`` faults drawn (seeded) from the kinds of the catalogue the backfill
models (:mod:`.effects`), each in the live record format (``expected_impact`` included), sorted by start.
Same seed and arguments: byte-identical ground truth and identical samples.

How (each module one job): :mod:`.calls` the operations and their fan-out, :mod:`.effects` what each
fault kind changes, :mod:`.model` rates, latencies and outcomes along the call graph, :mod:`.families`
the series of each node, :mod:`.series` counts, totals and histograms slice by slice, written with
:meth:`storage.sqlite.SQLiteStore.append_block`.  The store keeps ``retention`` (default 15 days): a
longer backfill keeps its newest part.  Sources: ``sample_platform/params.py`` (service times, ratios,
pool sizes), ``shape.multiplier`` (the traffic shape), ``graph.CALL_GRAPH`` and the service modules (the
fan-out), ``traffic`` (the mix and the clients).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage.sqlite import BLOCK_MS, DEFAULT_RETENTION_MS, SQLiteStore

from ..faults import FAULT_KINDS, FaultInjector, valid_targets
from ..graph import NODES
from ..surges import SURGE_MODES, Surge, calendar
from .effects import EFFECTS, Knobs, effect_of
from .families import build_specs, version_names
from .model import run
from .series import Emitter, scrape_series, stale_after

#: Fault durations are drawn uniformly in this range (seconds), then rounded to the step.
FAULT_SECONDS = (10 * 60.0, 60 * 60.0)
#: ``scrape_duration_seconds`` = base + per sample scraped: a line through the medians of a live run
#: scraped every 2 s on this machine (3.4 ms fixed, 18 µs per sample: 4.5 ms for 60 samples, 10.8 ms
#: for the gateway's 409).
SCRAPE_SECONDS = (3.4e-3, 1.8e-5)
#: 2 h blocks generated and written per store transaction (bounds memory: ~2,500 series x 720 steps).
SLICE_BLOCKS = 6


@dataclass
class BackfillResult:
    """What :func:`backfill` wrote: ``samples`` (stored), ``series`` (generated), ``start``/``end``
    (epoch seconds), ``too_old`` (samples not written: older than the store's retention), the
    ground-truth ``records`` and their ``truth_path``, and ``seconds`` it took."""

    samples: int
    series: int
    start: float
    end: float
    too_old: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    truth_path: Path | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class PlannedFault:
    """A fault of the backfill: ``kind``, ``target``, ``start``/``end`` epoch seconds, full ``params``."""

    kind: str
    target: str
    start: float
    end: float
    params: dict[str, Any]


def instance_of(node: str) -> str:
    """The ``instance`` label of a backfilled node (no live port exists: the node name, port 80)."""
    return f"{node}:80"


def _id(seed: int, what: str) -> str:
    return hashlib.sha256(f"{seed}:{what}".encode()).hexdigest()[:16]


def plan_faults(count: int, start: float, end: float, step: float, seed: int) -> list[tuple[PlannedFault, dict]]:
    """``count`` faults drawn with ``seed``: kind among the catalogue's kinds the backfill models, target
    among ``valid_targets(kind)``, default params, a duration in :data:`FAULT_SECONDS`, a start in
    ``[start, end)``; with each its ground-truth record (the live injector's, with a seeded id)."""
    kinds = [k for k in FAULT_KINDS if k in EFFECTS]
    rng = random.Random(f"{seed}:backfill-faults")
    planned = []
    for i in range(count):
        kind = rng.choice(kinds)
        target = rng.choice(sorted(valid_targets(kind)))
        seconds = max(step, round(rng.uniform(*FAULT_SECONDS) / step) * step)
        at = start + math.floor(rng.uniform(0, max(step, end - start - seconds)) / step) * step
        record = FaultInjector(clock=lambda at=at: at).inject(kind, target, seconds)
        record["id"] = _id(seed, f"{start:.0f}:{end:.0f}:fault:{i}")
        planned.append((PlannedFault(kind, target, at, at + seconds, dict(record["params"])), record))
    return planned


def backfill(data_dir: str | Path, days: float, seed: int, faults: int, step_seconds: float = 60.0,
             end: float | None = None, rate: float = 20.0, retention_ms: int = DEFAULT_RETENTION_MS,
             surges: str = "calendar") -> BackfillResult:
    """Write the backfill (see the module docstring) and return what was written. ``surges`` is the live
    platform's ``--surges``: ``"calendar"`` (the weekly legitimate surges) or ``"none"``.

    :raises ValueError: for ``days``/``step_seconds``/``rate`` not positive, ``faults`` negative, or a
        step that does not divide a 2 h block.
    :raises opswatch.errors.StorageError: when the store cannot be written.
    """
    if not days > 0 or not step_seconds > 0 or not rate > 0:
        raise ValueError(f"days, step_seconds and rate must be positive, got {days!r}, {step_seconds!r}, {rate!r}")
    if faults < 0:
        raise ValueError(f"faults must be >= 0, got {faults!r}")
    if surges not in SURGE_MODES:
        raise ValueError(f"surges must be one of {', '.join(SURGE_MODES)}, got {surges!r}")
    if BLOCK_MS % int(step_seconds * 1000) or step_seconds != int(step_seconds):
        raise ValueError(f"step_seconds must be a whole number of seconds dividing 7200, got {step_seconds!r}")
    began = time.perf_counter()
    step = float(step_seconds)
    end = math.floor((time.time() if end is None else end) / step) * step
    n = round(days * 86400 / step)
    start = end - n * step
    t = start + step * np.arange(1, n + 1)
    knobs = Knobs(t)
    celebrity, push = np.ones(n), np.ones(n)
    resets: dict[str, list[int]] = {}
    versions = {node: np.zeros(n, np.int64) for node in NODES}
    started = {node: np.full(n, start) for node in NODES}
    records: list[dict[str, Any]] = []
    for i, plan in enumerate(calendar(start, end, seed) if surges == "calendar" else []):
        on = (t >= plan.start) & (t < plan.start + plan.seconds)
        params = dict(plan.params)
        if plan.kind == "celebrity_live":
            celebrity[on] = np.maximum(celebrity[on], params["factor"])
        elif plan.kind == "marketing_push":
            push[on] = np.maximum(push[on], params["factor"])
        elif plan.kind == "deploy":  # a restart: counters from 0, the next version, a new start time
            at = int(np.searchsorted(t, plan.start))
            if at < n:
                resets.setdefault(plan.target, []).append(at)
                versions[plan.target][at:] += 1
                started[plan.target][at:] = t[at]
            names = version_names(plan.target, versions[plan.target])
            index = int(versions[plan.target][min(at, n - 1)])
            params.update(from_version=names[max(index - 1, 0)], to_version=names[index])
        surge = Surge(_id(seed, f"{start:.0f}:{end:.0f}:surge:{i}"), plan.kind, plan.target, plan.start,
                      plan.start + plan.seconds, params)
        records.append(surge.record())
    for fault, record in plan_faults(faults, start, end, step, seed):
        effect_of(fault.kind)(knobs, (t >= fault.start) & (t < fault.end), fault)
        records.append(record)
    flows = run(t, rate, seed, celebrity, push, knobs)
    specs = build_specs(flows, knobs, versions, started, rate)
    instance = {node: instance_of(node) for node in NODES}
    emitter = Emitter(specs, resets, instance, step, seed)
    data_dir = Path(data_dir)
    truth_path = data_dir / "faults.jsonl"
    kept = _read_truth(truth_path)  # before anything is written: a bad log stops the backfill
    store = SQLiteStore(data_dir / "opswatch.db", retention_ms=retention_ms)
    written, generated, seen, series_seen = 0, 0, set(), set()
    ts_ms = (t * 1000).astype(np.int64)
    bounds = [0, *(np.flatnonzero(np.diff(ts_ms // (SLICE_BLOCKS * BLOCK_MS))) + 1).tolist(), n]
    try:  # slices of whole blocks, so that each block is written at once
        for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            names, values, present = emitter.slice(lo, hi, index)
            names, values, present = _with_build_info(names, values, present, versions, instance, lo, hi)
            scrape_names, scrape_values = scrape_series(names, present, seen, list(NODES), instance, SCRAPE_SECONDS)
            stale_after(values, present)  # after counting the samples scraped: a marker is not one
            all_names = names + scrape_names
            all_values = np.vstack((values, scrape_values))
            all_present = np.vstack((present, np.ones(scrape_values.shape, bool)))
            written += store.append_block(all_names, ts_ms[lo:hi], all_values, all_present)
            generated += int(all_present.sum())
            series_seen.update((name, tuple(sorted(labels.items()))) for (name, labels), p in
                               zip(all_names, all_present) if p.any())
    finally:
        store.close()
    _write_truth(truth_path, kept, records)
    return BackfillResult(written, len(series_seen), start, end, generated - written, records, truth_path,
                          time.perf_counter() - began)


def _read_truth(path: Path) -> list[dict[str, Any]]:
    """The records already in the ground-truth log ``path`` (a live run's, an earlier backfill's), if any.

    :raises ValueError: naming the file and line that is not a JSON object with an ``id``.
    """
    kept = []
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record["id"]
            except (ValueError, TypeError, KeyError):
                raise ValueError(f"{path}:{number}: not a ground-truth record (a JSON object with an id): "
                                 f"{line[:80]!r}") from None
            kept.append(record)
    return kept


def _write_truth(path: Path, kept: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Write ``records`` and the ``kept`` ones whose ids are not among them, sorted by start, atomically."""
    ours = {r["id"] for r in records}
    merged = sorted([r for r in kept if r["id"] not in ours] + records,
                    key=lambda r: (str(r.get("start")), str(r.get("kind")), str(r.get("target")), r["id"]))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in merged), encoding="utf-8")
    os.replace(tmp, path)


def _with_build_info(names: list, values: np.ndarray, present: np.ndarray, versions: dict[str, np.ndarray],
                     instance: dict[str, str], lo: int, hi: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Add ``platform_build_info{version}`` 1 per node and version, present while that version runs."""
    rows, masks = [], []
    for node in NODES:
        idx = versions[node][lo:hi]
        for k, version in enumerate(version_names(node, versions[node])):
            if (idx == k).any():
                names.append(("platform_build_info", {"version": version, "job": node, "instance": instance[node]}))
                rows.append(np.ones(hi - lo))
                masks.append(idx == k)
    return names, np.vstack((values, *rows)), np.vstack((present, *masks))
