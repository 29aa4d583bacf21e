"""The bounded history and refit schedule shared by the model-based detectors (STL, Holt-Winters,
isolation forest): they fit a library model on the last ``size`` points and refit it every ``every`` points,
so the state is bounded and the per-point cost is the model's prediction plus an amortised share of a fit.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class RefitWindow:
    """The last ``size`` (timestamp ms, value) points and the count since the last fit.

    :param size: points kept (>= 2). :param every: points between fits (>= 1).
    :param min_fit: points needed for the first fit (2 <= min_fit <= size).
    :raises ValueError: for parameters outside those ranges.
    """

    def __init__(self, size: int, every: int, min_fit: int):
        if not (size >= 2 and every >= 1 and 2 <= min_fit <= size):
            raise ValueError(
                f"RefitWindow(size={size}, every={every}, min_fit={min_fit}): need size >= 2, every >= 1, "
                "2 <= min_fit <= size"
            )
        self.size, self.every, self.min_fit = int(size), int(every), int(min_fit)
        self.reset()

    def reset(self) -> None:
        """Forget the points and the fit schedule."""
        self.stamps: deque[int] = deque(maxlen=self.size)
        self.values: deque[float] = deque(maxlen=self.size)
        self.since_fit = 0
        self.fitted = False

    def append(self, timestamp_ms: int, value: float) -> bool:
        """Keep one point; returns True when a (re)fit is due now: ``min_fit`` points and, after the
        first fit, ``every`` points since the last one. The caller fits, then calls :meth:`fitted_now`."""
        self.stamps.append(timestamp_ms)
        self.values.append(value)
        self.since_fit += 1
        if not self.fitted:
            return len(self.values) >= self.min_fit
        return self.since_fit >= self.every

    def fitted_now(self) -> None:
        """Record that the model was just fitted on the current window."""
        self.fitted, self.since_fit = True, 0

    def array(self) -> np.ndarray:
        """The kept values, oldest first, shape ``(n,)``."""
        return np.fromiter(self.values, dtype=float, count=len(self.values))

    def points_per(self, span_ms: int) -> int:
        """How many points of the window's median spacing fit in ``span_ms`` (>= 1; 1 with < 2 points)."""
        if len(self.stamps) < 2:
            return 1
        step = float(np.median(np.diff(np.fromiter(self.stamps, dtype=np.int64, count=len(self.stamps)))))
        return max(1, round(span_ms / step)) if step > 0 else 1
