"""Point-adjusted precision / recall / F1 and mean time to detect.

Point adjustment follows H. Xu et al., "Unsupervised Anomaly Detection via Variational Auto-Encoder for
Seasonal KPIs in Web Applications" (Donut), WWW 2018: a true anomaly segment (a maximal run of labelled
points) counts as wholly detected as soon as any one of its points is detected; points outside segments are
scored as they are. The metrics are then ordinary point-wise precision, recall and F1.

Mean time to detect: for each anomaly window, the time from the window's start to its first detection
inside the window (seconds); windows never detected are reported separately, not averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def segments(labels: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of true values in ``labels`` (shape ``(n,)``): ``[(first, last), ...]``, inclusive."""
    flags = np.asarray(labels, dtype=bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def point_adjust(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray) -> np.ndarray:
    """Point-adjusted predictions (Xu et al. 2018), shape ``(n,)`` bool.

    ``labels`` and ``predictions`` are binary arrays of shape ``(n,)``. Every labelled segment that contains
    at least one predicted point becomes fully predicted; everything else is unchanged.
    """
    labels = np.asarray(labels, dtype=bool)
    adjusted = np.asarray(predictions, dtype=bool).copy()
    if labels.shape != adjusted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {adjusted.shape} differ in shape")
    for first, last in segments(labels):
        if adjusted[first : last + 1].any():
            adjusted[first : last + 1] = True
    return adjusted


def point_adjusted_prf(
    labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray
) -> dict[str, float]:
    """Point-adjusted precision, recall and F1 (Xu et al. 2018) of binary ``predictions`` against ``labels``.

    Both have shape ``(n,)``. Returns ``{"precision", "recall", "f1", "tp", "fp", "fn"}``, counts in points
    after adjustment. Precision is 0 when nothing is predicted, recall 0 when nothing is labelled, F1 0 when
    both are 0.
    """
    labels = np.asarray(labels, dtype=bool)
    adjusted = point_adjust(labels, predictions)
    tp = int(np.sum(adjusted & labels))
    fp = int(np.sum(adjusted & ~labels))
    fn = int(np.sum(~adjusted & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def detection_delays(
    timestamps: Sequence | pd.Series | pd.DatetimeIndex,
    detections: Sequence[int] | np.ndarray,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
) -> list[float | None]:
    """Per window, seconds from its start to the first detection inside it (``None`` if never detected).

    ``timestamps`` (increasing) and ``detections`` (binary) have shape ``(n,)``; ``windows`` are inclusive
    ``(start, end)`` timestamp pairs.
    """
    index = pd.DatetimeIndex(timestamps)
    detected = np.asarray(detections, dtype=bool)
    if len(index) != len(detected):
        raise ValueError(f"{len(index)} timestamps but {len(detected)} detections")
    delays: list[float | None] = []
    for start, end in windows:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        inside = np.flatnonzero(detected & (index >= start) & (index <= end))
        delays.append((index[inside[0]] - start).total_seconds() if len(inside) else None)
    return delays


def mean_time_to_detect(
    timestamps: Sequence | pd.Series | pd.DatetimeIndex,
    detections: Sequence[int] | np.ndarray,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
) -> float:
    """Mean, over the detected windows, of the time from window start to first detection, in seconds.

    Arguments as in :func:`detection_delays`. Missed windows are excluded (count them with
    :func:`detection_delays`); NaN when no window is detected.
    """
    found = [d for d in detection_delays(timestamps, detections, windows) if d is not None]
    return float(np.mean(found)) if found else float("nan")
