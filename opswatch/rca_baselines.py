"""Ranking-only root-cause baselines from RCAEval, run on the golden signals OpsWatch stored: BARO and n-sigma.

Both read, for a window around one fault, every job's recorded golden signals (``job:error_ratio``,
``job:latency_p99_seconds``, ... written by :class:`opswatch.pipeline.Pipeline` each evaluation, see
:mod:`detection.signals`) through the storage API, as a frame with one column per ``(job, signal)``; the
benchmark's window is the fault plus the ten minutes before it, without the rows of earlier faults and their
recovery (:func:`opswatch.bench_rca.baseline_windows`), so the normal data is minutes of quiet traffic. Then:

1. **Change point** (the anomaly-detection half of BARO). BARO (Pham, Ha, Zhang, "BARO: Robust Root Cause
   Analysis for Microservices via Multivariate Bayesian Online Change Point Detection", FSE 2024) runs a
   multivariate Bayesian online change point detector over the window. This module uses a simpler,
   offline stand-in and says so: the single change point that best splits the window in two, i.e. the row
   ``t`` maximising the summed squared mean shift of the standardised columns, ``sum_c t (n - t) / n *
   (mean_c[:t] - mean_c[t:])**2`` (least-squares single change point, one step of binary segmentation).
   Both baselines use the same change point, so they differ only in how they score.
2. **Ranking.** Each column is scaled on the rows before the change point and scored by its largest
   absolute scaled value from the change point on; a node's score is its largest column's. BARO's robust
   scaling is ``(x - median) / IQR`` (scikit-learn's ``RobustScaler``, as RCAEval's ``baro`` uses);
   n-sigma's is ``(x - mean) / std`` (``StandardScaler``). A column constant before the change point gets
   scale 1, as scikit-learn does. RCAEval takes the maximum of the signed score; the absolute value is
   taken here so that a drop (request rate, ``up``) counts as much as a rise.

Neither reads labels: the window comes from the ground truth (as RCAEval's cases do), the rest from data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import RobustScaler, StandardScaler

from detection.signals import RECORDED_NAME, SIGNALS
from storage.base import Store

SCALERS = {"baro": RobustScaler, "n_sigma": StandardScaler}
"""Baseline name -> the scikit-learn scaler fitted on the data before the change point."""

MIN_SEGMENT_ROWS = 3
"""Rows each side of a change point, at least: a mean of fewer is noise."""


def signal_frame(store: Store, start_ms: int, end_ms: int, signals: tuple[str, ...] = SIGNALS) -> pd.DataFrame:
    """Every job's recorded ``signals`` in ``[start_ms, end_ms]`` as one frame: a UTC ``DatetimeIndex`` (the
    evaluation times), columns ``(job, signal)``; gaps (NaN, no traffic) carried forward then backward, columns
    with no value at all dropped. Empty when nothing was stored in the range."""
    columns = {}
    for signal in signals:
        for ts in store.select(RECORDED_NAME.format(signal=signal), None, start_ms, end_ms):
            columns[(ts.labels.get("job", ""), signal)] = ts.values
    if not columns:
        return pd.DataFrame()
    frame = pd.DataFrame(columns).sort_index().ffill().bfill()
    return frame.dropna(axis=1, how="all")


def change_point(frame: pd.DataFrame, min_rows: int = MIN_SEGMENT_ROWS) -> int:
    """Row index of the single multivariate change point of ``frame`` (see the module docstring): rows before
    it are the normal data. :raises ValueError: when ``frame`` has fewer than ``2 * min_rows`` rows."""
    n = len(frame)
    if n < 2 * min_rows:
        raise ValueError(f"the window holds {n} evaluations; a change point needs at least {2 * min_rows}")
    x = frame.to_numpy(dtype=float)
    spread = x.std(axis=0)
    x = (x[:, spread > 0] - x[:, spread > 0].mean(axis=0)) / spread[spread > 0]
    if x.shape[1] == 0:
        return n // 2
    cumulative = np.vstack([np.zeros(x.shape[1]), np.cumsum(x, axis=0)])
    t = np.arange(min_rows, n - min_rows + 1)
    before = cumulative[t] / t[:, None]
    after = (cumulative[n] - cumulative[t]) / (n - t)[:, None]
    gain = (t * (n - t) / n) * ((before - after) ** 2).sum(axis=1)
    return int(t[np.argmax(gain)])


def rank_nodes(frame: pd.DataFrame, method: str, at: int | None = None) -> list[tuple[str, float]]:
    """Nodes (the frame's jobs) ranked by ``method`` (``"baro"`` or ``"n_sigma"``) with the change point at row
    ``at`` (default :func:`change_point`): ``[(node, score), ...]``, highest score first, ties by name.

    :raises ValueError: for an unknown method, or a frame too short for a change point.
    """
    if method not in SCALERS:
        raise ValueError(f"method {method!r}: use one of {', '.join(SCALERS)}")
    at = change_point(frame) if at is None else at
    x = frame.to_numpy(dtype=float)
    scaled = SCALERS[method]().fit(x[:at]).transform(x[at:])
    column_scores = np.abs(scaled).max(axis=0)
    nodes: dict[str, float] = {}
    for (job, _), score in zip(frame.columns, column_scores):
        nodes[job] = max(nodes.get(job, 0.0), float(score))
    return sorted(nodes.items(), key=lambda item: (-item[1], item[0]))


def rank_fault(store: Store, start_ms: int, end_ms: int, excluded: list[tuple[int, int]] = (),
               methods: tuple[str, ...] = tuple(SCALERS)) -> dict[str, list[str]]:
    """``{method: [node, ...]}`` ranked on the stored signals of ``[start_ms, end_ms]`` (a fault's window with
    normal data before it) without the rows inside the ``excluded`` ms intervals (other faults); empty lists
    when too little is left."""
    frame = signal_frame(store, start_ms, end_ms)
    if len(frame):
        ms = frame.index.as_unit("ms").asi8
        keep = np.ones(len(frame), dtype=bool)
        for low, high in excluded:
            keep &= (ms < low) | (ms > high)
        frame = frame[keep]
    if len(frame) < 2 * MIN_SEGMENT_ROWS:
        return {m: [] for m in methods}
    at = change_point(frame)
    return {m: [node for node, _ in rank_nodes(frame, m, at)] for m in methods}
