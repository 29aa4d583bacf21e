"""A PromQL subset for dashboard panels, evaluated over the :class:`storage.base.Store` on a time grid.

Grammar (PromQL's own syntax, https://prometheus.io/docs/prometheus/latest/querying/basics/)::

    QUERY    := [AGG "("] INNER [")"]            AGG: sum | avg | min | max (over every matching series)
    INNER    := SELECTOR | "rate(" SELECTOR "[" DURATION "]" ")"
    SELECTOR := METRIC ["{" LABEL OP "\\"" VALUE "\\"" ("," ...)* "}"]   OP: = != =~ !~

Semantics follow Prometheus: a selector's value at time ``t`` is its newest sample in ``(t - lookback, t]``
(lookback 5 m, Prometheus's default); ``rate`` is the per-second increase between the first and last
sample in ``(t - range, t]`` with counter resets counted from zero, without extrapolation (as
:func:`storage.functions.rate`). Series with no sample in the range are absent, so a query with no series
yields no result: panels show "no data" for it, never a healthy value.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opswatch.durations import parse_duration
from storage.base import Store, TimeSeries
from storage.matchers import Matcher

AGGREGATIONS = {"sum": np.nansum, "avg": np.nanmean, "min": np.nanmin, "max": np.nanmax}
LOOKBACK_MS = 300_000
"""Prometheus's default ``--query.lookback-delta``: how far back a selector looks for a sample."""

ROLLUP_STEP_MS = 300_000
"""Ranges read at a step of at least this use the store's downsampled rollups (``select(step_ms=...)``)."""

_METRIC = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\})|$)')
_AGG = re.compile(r"^\s*(sum|avg|min|max)\s*\((.*)\)\s*$", re.S)
_RATE = re.compile(r"^\s*rate\s*\((.*)\[\s*([^\]]+?)\s*\]\s*\)\s*$", re.S)


@dataclass(frozen=True)
class Query:
    """A parsed query: ``metric`` with ``matchers``; ``rate_seconds`` when wrapped in ``rate(...[range])``;
    ``aggregate`` (sum/avg/min/max) when aggregated over series."""

    text: str
    metric: str
    matchers: tuple[Matcher, ...] = ()
    rate_seconds: float | None = None
    aggregate: str | None = None


def parse_selector(text: str) -> tuple[str, tuple[Matcher, ...]]:
    """``'job:request_rate{job="gateway"}'`` -> ``("job:request_rate", (Matcher("job", "=", "gateway"),))``.

    :raises ValueError: naming the text and what is wrong at which character.
    """
    m = _METRIC.match(text)
    if not m:
        raise ValueError(f"{text!r}: a selector starts with a metric name, like job:request_rate{{job=\"feed\"}}")
    name, pos = m.group(1), m.end()
    matchers: list[Matcher] = []
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while pos < len(text) and text[pos] != "}":
            mm = _MATCHER.match(text, pos)
            if not mm:
                raise ValueError(f"{text!r}: expected label=\"value\" at character {pos + 1}")
            value = re.sub(r"\\(.)", r"\1", mm.group(3))
            matchers.append(Matcher(mm.group(1), mm.group(2), value))
            pos = mm.end()
        if pos >= len(text):
            raise ValueError(f"{text!r}: missing closing }}")
        pos += 1
    if text[pos:].strip():
        raise ValueError(f"{text!r}: unexpected {text[pos:].strip()!r} after the selector")
    return name, tuple(matchers)


def parse_query(text: str) -> Query:
    """Parse ``text`` (see the module docstring).

    :raises ValueError: naming the text and the part that is not in the subset.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty query: write a selector such as job:request_rate{job=\"gateway\"}")
    aggregate, inner = None, text
    m = _AGG.match(text)
    if m:
        aggregate, inner = m.group(1), m.group(2)
    rate_seconds = None
    r = _RATE.match(inner)
    if r:
        inner = r.group(1)
        try:
            rate_seconds = parse_duration(r.group(2))
        except ValueError as exc:
            raise ValueError(f"{text!r}: range [{r.group(2)}]: {exc}") from None
        if rate_seconds <= 0:
            raise ValueError(f"{text!r}: the range of rate() must be positive")
    elif "(" in inner:
        raise ValueError(f"{text!r}: only sum/avg/min/max(...) and rate(selector[range]) are supported")
    metric, matchers = parse_selector(inner)
    return Query(text.strip(), metric, matchers, rate_seconds, aggregate)


def grid(start_ms: int, end_ms: int, points: int = 180) -> tuple[np.ndarray, int]:
    """About ``points`` evaluation times ending exactly at ``end_ms``, and their step in ms (at least 1 s)."""
    span = max(0, end_ms - start_ms)
    step = max(1000, math.ceil(span / max(1, points - 1)))
    n = span // step + 1
    return end_ms - step * np.arange(n - 1, -1, -1, dtype=np.int64), step


def _instant(ts: np.ndarray, vals: np.ndarray, times: np.ndarray, lookback_ms: int) -> np.ndarray:
    i = np.searchsorted(ts, times, side="right") - 1
    ok = (i >= 0) & (times - ts[np.maximum(i, 0)] < lookback_ms)
    return np.where(ok, vals[np.maximum(i, 0)], np.nan)


def _rate(ts: np.ndarray, vals: np.ndarray, times: np.ndarray, range_ms: int) -> np.ndarray:
    increases = np.diff(vals, prepend=vals[:1])
    increases = np.where(increases >= 0, increases, vals)  # a decrease is a reset: count from zero
    increases[0] = 0.0
    cumulative = np.cumsum(increases)
    last = np.searchsorted(ts, times, side="right") - 1
    first = np.searchsorted(ts, times - range_ms, side="right")
    ok = (last > first) & (last >= 0)
    last_c, first_c = np.maximum(last, 0), np.minimum(first, len(ts) - 1)
    seconds = (ts[last_c] - ts[first_c]) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, (cumulative[last_c] - cumulative[first_c]) / seconds, np.nan)


@dataclass(frozen=True)
class Result:
    """One result series: its labels (``{}`` once aggregated) and values on the grid (a float ``pd.Series``
    with a UTC ``DatetimeIndex``, NaN where there is no sample), plus ``newest_ms``, the time of the newest
    stored sample it was computed from."""

    labels: dict
    values: pd.Series
    newest_ms: int


def run_query(store: Store, query: Query, start_ms: int, end_ms: int, points: int = 180,
              cache: "TailCache | None" = None) -> list[Result]:
    """Evaluate ``query`` at about ``points`` times from ``start_ms`` to ``end_ms`` (inclusive).

    Returns ``[]`` when no series matches (the caller shows "no data"). Reads the store's rollups
    (``step_ms``) when the grid step is at least :data:`ROLLUP_STEP_MS`; otherwise through ``cache``
    when given (for panels that refresh every few seconds).

    :raises StorageError: when the store fails.
    """
    times, step = grid(start_ms, end_ms, points)
    reach = int((query.rate_seconds or 0) * 1000) or LOOKBACK_MS
    read_step = step // ROLLUP_STEP_MS * ROLLUP_STEP_MS if step >= ROLLUP_STEP_MS else None
    if cache is not None and read_step is None:
        selected = cache.select(query.metric, query.matchers, start_ms - reach, end_ms)
    else:
        selected = store.select(query.metric, list(query.matchers), start_ms - reach, end_ms, step_ms=read_step)
    index = pd.to_datetime(times, unit="ms", utc=True)
    results = []
    for ts in selected:
        values = ts.values.dropna()
        if values.empty:
            continue
        stamps = values.index.as_unit("ms").asi8
        raw = values.to_numpy(dtype=float)
        if query.rate_seconds:
            on_grid = _rate(stamps, raw, times, int(query.rate_seconds * 1000))
        else:
            on_grid = _instant(stamps, raw, times, max(LOOKBACK_MS, 2 * (read_step or 0)))
        results.append(Result(dict(ts.labels), pd.Series(on_grid, index=index), int(stamps[-1])))
    if not results or query.aggregate is None:
        return results
    stacked = np.vstack([r.values.to_numpy() for r in results])
    present = ~np.isnan(stacked).all(axis=0)
    combined = np.full(len(times), np.nan)
    if present.any():
        combined[present] = AGGREGATIONS[query.aggregate](stacked[:, present], axis=0)
    return [Result({}, pd.Series(combined, index=index), max(r.newest_ms for r in results))]


class TailCache:
    """Raw samples of recently read selectors, kept so that a panel refreshing every few seconds reads
    only the newest samples instead of its whole window.

    The first read of a selector covers the requested range; later reads cover only the last
    ``overlap_ms`` before the previous read's end (scrapes stamp samples when they start and write them
    when they finish, so a sample can land a little in the past) up to the new end, and samples older
    than the new start are dropped. A request starting before what is held is read whole. At most
    ``max_entries`` selectors are held (least recently used dropped), each at most ``max_window_ms`` long;
    longer ranges are not cached. Thread-safe.
    """

    def __init__(self, store: Store, max_entries: int = 64, max_window_ms: int = 6 * 3_600_000,
                 overlap_ms: int = 15_000):
        self.store, self.max_entries, self.max_window_ms, self.overlap_ms = store, max_entries, max_window_ms, overlap_ms
        self._entries: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def select(self, metric: str, matchers: tuple[Matcher, ...], start_ms: int, end_ms: int) -> list[TimeSeries]:
        """Like :meth:`Store.select` (raw samples in ``[start_ms, end_ms]``)."""
        if end_ms - start_ms > self.max_window_ms:
            return self.store.select(metric, list(matchers), start_ms, end_ms)
        key = (metric, matchers)
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None or start_ms < entry["start"] or end_ms < entry["end"]:
            fresh = self.store.select(metric, list(matchers), start_ms, end_ms)
            series = {tuple(sorted(ts.labels.items())): ts.values for ts in fresh}
        else:
            newer = self.store.select(metric, list(matchers), max(start_ms, entry["end"] - self.overlap_ms), end_ms)
            series = dict(entry["series"])
            for ts in newer:
                k = tuple(sorted(ts.labels.items()))
                old = series.get(k)
                merged = ts.values if old is None else pd.concat([old[old.index < ts.values.index[0]], ts.values])
                series[k] = merged
            cut = pd.Timestamp(start_ms, unit="ms", tz="UTC")
            series = {k: v[v.index >= cut] for k, v in series.items()}
            series = {k: v for k, v in series.items() if len(v)}
        with self._lock:
            self._entries[key] = {"start": start_ms, "end": end_ms, "series": series}
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return [TimeSeries(metric, dict(k), v) for k, v in series.items()]
