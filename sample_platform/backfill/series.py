"""From flows to stored series: the names, labels and shapes the scrape loop stores from the live platform.

Every series of a node carries ``job`` (the node) and ``instance``; counters are cumulative totals that
restart from 0 when the node restarts (a deploy surge), histograms are ``_bucket{le}`` (cumulative
counts, ``le`` rendered as prometheus-client does) / ``_sum`` / ``_count``, gauges are values, and each
node gets the scrape's own ``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``,
``scrape_samples_post_metric_relabeling`` and ``scrape_series_added``.  Counts are Poisson draws around
the flow rates (seeded per time slice), latencies fall into buckets by binomial draws from a lognormal
with the flow's mean; series the live registries create on first use (status codes, downstreams,
commands, query operations) start at their first increment, as they appear in a live scrape.

:class:`Emitter` turns :class:`Spec` lists into ``(series, values, present)`` matrices one time slice at
a time, carrying each counter's total from slice to slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from prometheus_client.utils import floatToGoString
from scipy.special import ndtr

from collectors.samples import STALE_NAN

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Spec:
    """One family member of one node.  ``kind``: ``counter`` (``values`` is a rate per second; ``counts``
    True draws Poisson counts, else a smooth total), ``gauge`` (``values`` as is) or ``histogram``
    (``values`` observations per second, ``mean`` their mean in the family's unit, ``sigma`` the log-space
    spread, ``buckets`` the upper bounds).  ``lazy``: the series exists from its first increment on."""

    node: str
    name: str
    labels: tuple[tuple[str, str], ...]
    kind: str
    values: np.ndarray
    counts: bool = True
    lazy: bool = False
    mean: np.ndarray | None = None
    sigma: float = 0.45
    buckets: tuple[float, ...] = ()
    alive: np.ndarray | None = None  # bool per step: where the series can exist at all (None: everywhere)


class Emitter:
    """Series values slice by slice.  ``resets``: node -> sorted step indexes where the node restarted
    (its counters start again from 0); ``instance``: node -> instance label; ``step``: seconds."""

    def __init__(self, specs: list[Spec], resets: dict[str, list[int]], instance: dict[str, str], step: float,
                 seed: int) -> None:
        self.specs, self.resets, self.instance, self.step, self.seed = specs, resets, instance, step, seed
        self._totals: dict[SeriesKey, float] = {}
        self._seen: set[SeriesKey] = set()

    def _labels(self, spec: Spec, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
        return {**dict(spec.labels), **dict(extra), "job": spec.node, "instance": self.instance[spec.node]}

    def _cumulate(self, key: SeriesKey, inc: np.ndarray, node: str, lo: int) -> np.ndarray:
        """Running total of ``inc`` from the carried total, restarting at the node's resets."""
        total = np.cumsum(inc) + self._totals.get(key, 0.0)
        for r in self.resets.get(node, ()):
            if lo <= r < lo + len(inc):
                i = r - lo
                total[i:] -= total[i] - inc[i]
        self._totals[key] = float(total[-1]) if len(total) else self._totals.get(key, 0.0)
        return total

    def slice(self, lo: int, hi: int, index: int) -> tuple[list[tuple[str, dict[str, str]]], np.ndarray, np.ndarray]:
        """Series of steps ``[lo, hi)``: ``(name, labels)`` per row, values and presence ``(rows, hi - lo)``.
        ``index`` seeds this slice's draws."""
        rng = np.random.default_rng([self.seed, index])
        names: list[tuple[str, dict[str, str]]] = []
        rows: list[np.ndarray] = []
        present: list[np.ndarray] = []

        def add(spec: Spec, name: str, labels: dict[str, str], values: np.ndarray, lazy_from: np.ndarray | None
                ) -> None:
            key = (name, tuple(sorted(labels.items())))
            mask = np.ones(len(values), bool) if spec.alive is None else spec.alive[lo:hi].copy()
            if lazy_from is not None and key not in self._seen:
                mask &= np.cumsum(lazy_from) > 0
            if mask.any():
                self._seen.add(key)
            names.append((name, labels))
            rows.append(values)
            present.append(mask)

        for spec in self.specs:
            v = spec.values[lo:hi]
            if spec.kind == "gauge":
                add(spec, spec.name, self._labels(spec), v.astype(float), None)
                continue
            expected = np.maximum(v, 0.0) * self.step
            count = rng.poisson(expected).astype(float) if spec.counts else expected
            if spec.kind == "counter":
                labels = self._labels(spec)
                total = self._cumulate((spec.name, tuple(sorted(labels.items()))), count, spec.node, lo)
                add(spec, spec.name, labels, total, count if spec.lazy else None)
                continue
            mean = spec.mean[lo:hi]
            median = np.maximum(mean, 1e-9) / math.exp(spec.sigma**2 / 2)
            left = count.astype(np.int64)
            prob_left = np.ones(len(v))
            cumulative = np.zeros(len(v))
            lazy = count if spec.lazy else None
            for le in spec.buckets:
                p = ndtr((math.log(le) - np.log(median)) / spec.sigma)
                share = np.clip((p - (1 - prob_left)) / np.maximum(prob_left, 1e-12), 0.0, 1.0)
                drawn = rng.binomial(left, share)
                left -= drawn
                prob_left = 1 - p
                cumulative = cumulative + drawn
                labels = self._labels(spec, (("le", floatToGoString(le)),))
                add(spec, spec.name + "_bucket", labels,
                    self._cumulate((spec.name + "_bucket", tuple(sorted(labels.items()))), cumulative, spec.node, lo),
                    lazy)
            for name, inc, extra in ((spec.name + "_bucket", count, (("le", "+Inf"),)),
                                     (spec.name + "_count", count, ()), (spec.name + "_sum", count * mean, ())):
                labels = self._labels(spec, extra)
                add(spec, name, labels, self._cumulate((name, tuple(sorted(labels.items()))), inc, spec.node, lo),
                    lazy)
        return names, np.vstack(rows), np.vstack(present)


def scrape_series(names: list[tuple[str, dict[str, str]]], present: np.ndarray, seen_before: set[SeriesKey],
                  nodes: list[str], instance: dict[str, str], seconds: tuple[float, float]
                  ) -> tuple[list[tuple[str, dict[str, str]]], np.ndarray]:
    """The scrape loop's own series per node for one slice: ``up`` 1, ``scrape_samples_scraped`` and
    ``scrape_samples_post_metric_relabeling`` (the node's series present at the step),
    ``scrape_series_added`` (its series present for the first time) and ``scrape_duration_seconds``
    (``seconds``: fixed, and per sample scraped).  ``seen_before`` is updated."""
    jobs = np.array([labels["job"] for _, labels in names])
    first = np.zeros(present.shape, bool)
    for i, (name, labels) in enumerate(names):
        key = (name, tuple(sorted(labels.items())))
        if key not in seen_before and present[i].any():
            first[i, int(np.argmax(present[i]))] = True
            seen_before.add(key)
    out_names, out_rows = [], []
    for node in nodes:
        mine = jobs == node
        scraped = present[mine].sum(axis=0).astype(float)
        added = first[mine].sum(axis=0).astype(float)
        labels = {"job": node, "instance": instance[node]}
        for name, values in (("up", np.ones(present.shape[1])),
                             ("scrape_duration_seconds", seconds[0] + scraped * seconds[1]),
                             ("scrape_samples_scraped", scraped), ("scrape_samples_post_metric_relabeling", scraped),
                             ("scrape_series_added", added)):
            out_names.append((name, dict(labels)))
            out_rows.append(values)
    return out_names, np.vstack(out_rows)


def stale_after(values: np.ndarray, present: np.ndarray) -> None:
    """Write a staleness marker at the first absent step after each present run (in place), as a scrape
    does for a series that left the page."""
    ends = present[:, :-1] & ~present[:, 1:]
    rows, cols = np.nonzero(ends)
    values[rows, cols + 1] = STALE_NAN
    present[rows, cols + 1] = True
