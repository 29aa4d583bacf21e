"""The streaming detectors vectorised across series: state as arrays indexed by series (one row each).

:class:`VectorEnsemble` is :class:`detection.ensemble.Ensemble` (range novelty, seasonal profile, level shift,
record-ratio calibration, onset filter) and :class:`VectorRobustZScore` is
:class:`detection.robust_zscore.RobustZScore`, each computing one scrape of every series with numpy operations
over all rows instead of one Python call per series. They give the per-series ``update`` scores (tested row by
row against the scalar detectors) for series that are scored at the same timestamp.

Rows: :meth:`VectorDetector.add` appends rows for new series (fresh state, per-row parameters such as the
minimum-impact floor), :meth:`VectorDetector.keep` compacts the arrays to the rows still wanted. The state is a
dict of arrays (``state``), so it is saved and restored as it is (:mod:`detection.engine`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .calibration import RecordRatio
from .changepoint import LevelShift
from .ensemble import RECORD_LEVEL, Ensemble
from .range_novelty import RangeNovelty
from .robust_zscore import DIRECTIONS, RobustZScore
from .seasonal import DAY_MS, WEEK_MS, SeasonalProfile

Rows = slice | np.ndarray
"""Which rows a step touches: ``slice(None)`` for all (no gather), else an int array of row numbers."""


@dataclass(frozen=True)
class Scores:
    """One step's output for the rows given, each of shape ``(n,)``: calibrated ``score`` (NaN: no baseline
    yet), ``baseline`` and ``scale`` (the explanation, value units) and, for the ensemble, ``agreed``: bit
    ``i`` set when member ``i`` of ``MEMBERS`` reached the record level."""

    score: np.ndarray
    baseline: np.ndarray
    scale: np.ndarray
    agreed: np.ndarray | None = None


class VectorDetector:
    """Rows of per-series state in ``state`` (arrays whose first axis is the series)."""

    state: dict[str, np.ndarray]

    def _fresh(self, n: int, **params: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def __len__(self) -> int:
        return len(next(iter(self.state.values())))

    def add(self, n: int, **params: np.ndarray | float) -> np.ndarray:
        """Append ``n`` rows of fresh state (per-row ``params`` broadcast to ``(n,)``); returns their numbers."""
        start = len(self)
        fresh = self._fresh(n, **{k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in params.items()})
        self.state = {k: np.concatenate([a, fresh[k]]) for k, a in self.state.items()}
        return np.arange(start, start + n)

    def keep(self, mask: np.ndarray) -> None:
        """Compact the state to the rows where ``mask`` (bool, shape ``(len(self),)``) is true, in order."""
        self.state = {k: a[mask] for k, a in self.state.items()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state with ``state`` (arrays as saved from ``state``).

        :raises ValueError: when array names or row counts do not match this detector's.
        """
        if set(state) != set(self.state) or len({len(a) for a in state.values()}) > 1:
            raise ValueError(
                f"{type(self).__name__} state has arrays {sorted(state)}, need {sorted(self.state)} of one length"
            )
        for k, a in state.items():
            if a.shape[1:] != self.state[k].shape[1:]:
                need = ("n", *self.state[k].shape[1:])
                raise ValueError(f"{type(self).__name__} state array {k!r} has shape {a.shape}, need {need}")
        self.state = {k: np.array(a, dtype=self.state[k].dtype) for k, a in state.items()}


def _record_ratio(st: dict, prefix: str, r: Rows, deviation: np.ndarray, memory_decay: float, growth: float,
                  min_points: int, settle: int) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`RecordRatio.update` on rows ``r``; returns (ratio, scale before the update)."""
    peak, seen, floor = st[prefix + "peak"][r], st[prefix + "seen"][r], st["min_scale"][r]
    settling = seen < settle
    warm = seen >= min_points
    scale = np.maximum(peak, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(warm & (scale > 0) & ~settling, deviation / scale, np.nan)
    decayed = peak * memory_decay
    grown = np.where(warm & (decayed > 0), np.minimum(deviation, decayed * growth), deviation)
    new_peak = np.where(deviation > decayed, grown, decayed)
    st[prefix + "peak"][r] = np.where(settling, peak, new_peak)
    st[prefix + "seen"][r] = seen + 1
    return ratio, scale


class VectorEnsemble(VectorDetector):
    """:class:`Ensemble` with its default members, for many series at once (see the module docstring).

    Per-row parameter: ``min_scale`` (value units, the members' floor). The other parameters are the scalar
    detectors' defaults, read from fresh instances so the two never drift apart. ``onset_decay`` set to 0
    switches the onset filter off (hold included): every calibrated score is reported, as
    ``Ensemble(onset_half_life=0)`` does.
    """

    MEMBERS = ("range", "seasonal", "level_shift")

    def __init__(self):
        self.range, self.seasonal, self.level = RangeNovelty(), SeasonalProfile(), LevelShift()
        onset = Ensemble().onset
        self.onset_decay, self.onset_hold = onset._decay, onset.hold
        ratio: RecordRatio = self.seasonal.ratio
        self.ratio_params = (ratio._decay, ratio.growth, ratio.min_points, ratio.settle)
        self.level_ratio_params = [(q._decay, q.growth, q.min_points, q.settle) for q in self.level.ratios]
        self.state = self._fresh(0, min_scale=np.zeros(0))

    def _fresh(self, n: int, min_scale: np.ndarray = None) -> dict[str, np.ndarray]:
        f = lambda v: np.full(n, v, dtype=float)  # noqa: E731 - a local shorthand
        st = {
            "min_scale": np.zeros(n) if min_scale is None else np.array(min_scale, dtype=float),
            "seen": np.zeros(n, dtype=np.int64),
            "onset_level": f(0.0), "onset_age": np.zeros(n, dtype=np.int64),
            "range_old_low": f(math.inf), "range_old_high": f(-math.inf),
            "range_new_low": f(math.inf), "range_new_high": f(-math.inf),
            "range_in_block": np.zeros(n, dtype=np.int64), "range_seen": np.zeros(n, dtype=np.int64),
            "daily": np.full((n, self.seasonal.daily_bins), np.nan),
            "weekly": np.full((n, self.seasonal.weekly_bins), np.nan),
            "daily_residual": f(0.0), "weekly_residual": f(0.0),
            "seasonal_peak": f(0.0), "seasonal_seen": np.zeros(n, dtype=np.int64),
            "level_first": f(math.nan),
        }
        for i, (short, _) in enumerate(self.level.spans):
            st[f"level{i}_short"], st[f"level{i}_long"] = f(0.0), f(0.0)
            st[f"level{i}_past"] = np.zeros((n, short))
            st[f"level{i}_peak"], st[f"level{i}_seen"] = f(0.0), np.zeros(n, dtype=np.int64)
        return st

    def _range(self, st: dict, r: Rows, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.range
        old_low, old_high = st["range_old_low"][r], st["range_old_high"][r]
        new_low, new_high = st["range_new_low"][r], st["range_new_high"][r]
        seen, in_block = st["range_seen"][r], st["range_in_block"][r]
        first = seen == 0
        low = np.where(first, value, np.minimum(old_low, new_low))
        high = np.where(first, value, np.maximum(old_high, new_high))
        width = np.maximum(high - low, st["min_scale"][r])
        above, below = value > high, value < low
        baseline = np.where(above, high, np.where(below, low, 0.5 * (low + high)))
        excess = np.where(above, value - high, np.where(below, low - value, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(excess > 0, 1.0 + d.gain * excess / width, 0.0)
        score = np.where((seen < d.min_points) | (width <= 0), np.nan, score)
        new_low, new_high = np.minimum(new_low, value), np.maximum(new_high, value)
        in_block = in_block + 1
        roll = in_block >= d.memory
        st["range_old_low"][r] = np.where(roll, new_low, old_low)
        st["range_old_high"][r] = np.where(roll, new_high, old_high)
        st["range_new_low"][r] = np.where(roll, math.inf, new_low)
        st["range_new_high"][r] = np.where(roll, -math.inf, new_high)
        st["range_in_block"][r] = np.where(roll, 0, in_block)
        st["range_seen"][r] = seen + 1
        return score, baseline, width

    def _seasonal(self, st: dict, r: Rows, ids: np.ndarray, t: int, value: np.ndarray):
        d = self.seasonal
        d_slot = (t % DAY_MS) * d.daily_bins // DAY_MS
        w_slot = (t % WEEK_MS) * d.weekly_bins // WEEK_MS
        daily, weekly = st["daily"][ids, d_slot], st["weekly"][ids, w_slot]
        d_res, w_res = st["daily_residual"][r], st["weekly_residual"][r]
        beta = d._beta
        d_new = np.isnan(daily)
        st["daily"][ids, d_slot] = np.where(d_new, value, daily + d.daily_alpha * (value - daily))
        d_res = np.where(d_new, d_res - beta * d_res, d_res + beta * (value - daily - d_res))
        w_new = np.isnan(weekly)
        st["weekly"][ids, w_slot] = np.where(w_new, value, weekly + d.weekly_alpha * (value - weekly))
        w_res = np.where(w_new, w_res - beta * w_res, w_res + beta * (value - weekly - w_res))
        st["daily_residual"][r], st["weekly_residual"][r] = d_res, w_res
        d_dev, w_dev = np.abs(d_res), np.abs(w_res)
        baseline = np.where(d_dev <= w_dev, daily, weekly)
        baseline = np.where(np.isnan(baseline), value, baseline)
        score, scale = _record_ratio(st, "seasonal_", r, np.minimum(d_dev, w_dev), *self.ratio_params)
        return score, baseline, scale

    def _level(self, st: dict, r: Rows, ids: np.ndarray, value: np.ndarray, seen: np.ndarray):
        first = np.where(seen == 0, value, st["level_first"][r])
        st["level_first"][r] = first
        best = baseline = scale = None
        for i, ((a_short, a_long), (span, _)) in enumerate(zip(self.level._alphas, self.level.spans)):
            short = np.where(seen == 0, value, st[f"level{i}_short"][r])
            long = np.where(seen == 0, value, st[f"level{i}_long"][r])
            short = short + a_short * (value - short)
            long = long + a_long * (value - long)
            st[f"level{i}_short"][r], st[f"level{i}_long"][r] = short, long
            slot = seen % span
            reference = np.where(seen >= span, st[f"level{i}_past"][ids, slot], first)
            st[f"level{i}_past"][ids, slot] = long
            score, sc = _record_ratio(st, f"level{i}_", r, np.abs(short - reference), *self.level_ratio_params[i])
            if best is None:
                best, baseline, scale = score, reference, sc
            else:
                won = score > best  # as the scalar detector: a NaN first pair is never replaced
                best, baseline, scale = np.where(won, score, best), np.where(won, reference, baseline), np.where(won, sc, scale)
        return best, baseline, scale

    def update(self, timestamp_ms: int, values: np.ndarray, rows: Rows = slice(None)) -> Scores:
        """Score one point per row of ``rows`` (values shape ``(n,)``, no NaN; all at ``timestamp_ms``) and
        learn it; the state of other rows is untouched."""
        st = self.state
        r = rows
        ids = np.arange(len(self)) if isinstance(r, slice) else r
        value = np.asarray(values, dtype=float)
        seen = st["seen"][r]
        members = (
            self._range(st, r, value),
            self._seasonal(st, r, ids, int(timestamp_ms), value),
            self._level(st, r, ids, value, seen),
        )
        best = np.full(len(value), -math.inf)
        baseline, scale = members[0][1], members[0][2]
        agreed = np.zeros(len(value), dtype=np.uint8)
        for bit, (score, base, sc) in enumerate(members):
            agreed |= (score >= RECORD_LEVEL).astype(np.uint8) << bit
            won = score > best
            best = np.where(won, score, best)
            baseline, scale = np.where(won, base, baseline), np.where(won, sc, scale)
        best = np.where(best == -math.inf, np.nan, best)
        st["seen"][r] = seen + 1
        if self.onset_decay <= 0:
            return Scores(best, baseline, scale, agreed)
        age = np.minimum(st["onset_age"][r] + 1, self.onset_hold + 1)  # as OnsetFilter.update
        level = st["onset_level"][r]
        level = np.where(age > self.onset_hold, level * self.onset_decay, level)
        rising = best > level
        st["onset_level"][r] = np.where(rising, best, level)
        st["onset_age"][r] = np.where(rising, 0, age)
        reported = np.where(np.isnan(best), np.nan, np.where(rising, best, 0.0))
        return Scores(reported, baseline, scale, agreed)


class VectorRobustZScore(VectorDetector):
    """:class:`RobustZScore` for many series at once: a ring of ``window`` accepted values per row.

    Per-row parameters: ``direction`` (index into ``DIRECTIONS``), ``min_scale``, ``min_relative_scale``.
    """

    def __init__(self, window: int = 120, min_points: int = 20, exclude_above: float = 5.0):
        RobustZScore(window, min_points)  # the same parameter checks
        self.window, self.min_points, self.exclude_above = window, min_points, exclude_above
        self.state = self._fresh(0, direction=np.zeros(0), min_scale=np.zeros(0), min_relative_scale=np.zeros(0))

    def _fresh(self, n: int, direction=None, min_scale=None, min_relative_scale=None) -> dict[str, np.ndarray]:
        return {
            "direction": np.full(n, 2, dtype=np.int64) if direction is None else np.asarray(direction, dtype=np.int64),
            "min_scale": np.full(n, 1e-9) if min_scale is None else np.array(min_scale, dtype=float),
            "min_relative_scale": np.zeros(n) if min_relative_scale is None else np.array(min_relative_scale, dtype=float),
            "history": np.full((n, self.window), np.nan),
            "count": np.zeros(n, dtype=np.int64),
            "next": np.zeros(n, dtype=np.int64),
        }

    def update(self, timestamp_ms: int, values: np.ndarray, rows: Rows = slice(None)) -> Scores:
        """Score one point per row of ``rows`` (no NaN) against each row's baseline, then learn the accepted ones."""
        st, r = self.state, rows
        ids = np.arange(len(self)) if isinstance(r, slice) else r
        value = np.asarray(values, dtype=float)
        history, count = st["history"][ids], st["count"][r]
        warm = count >= self.min_points
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows still warming up
            # np.median is several times faster than np.nanmedian and equal once every ring is full
            median_of = np.median if bool((count == self.window).all()) else np.nanmedian
            median = median_of(history, axis=1)
            mad = median_of(np.abs(history - median[:, None]), axis=1)
            scale = np.maximum(np.maximum(1.4826 * mad, st["min_scale"][r]), st["min_relative_scale"][r] * np.abs(median))
            deviation = value - median
            direction = st["direction"][r]
            directed = np.where(direction == 0, np.maximum(deviation, 0.0),
                                np.where(direction == 1, np.maximum(-deviation, 0.0), np.abs(deviation)))
            score = np.where(warm, directed / scale, np.nan)
        learn = ~warm | (score < self.exclude_above)
        slot = st["next"][r]
        learn_ids = ids[learn]
        st["history"][learn_ids, slot[learn]] = value[learn]
        st["next"][learn_ids] = (slot[learn] + 1) % self.window
        st["count"][learn_ids] = np.minimum(count[learn] + 1, self.window)
        nan = np.full(len(value), np.nan)
        return Scores(score, np.where(warm, median, nan), np.where(warm, scale, nan))


DIRECTION_CODES = {name: i for i, name in enumerate(DIRECTIONS)}
"""``direction`` per-row parameter of :class:`VectorRobustZScore`: up 0, down 1, both 2."""
