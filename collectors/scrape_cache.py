"""Per-target memory between scrapes: final labels of each series, and staleness.

As Prometheus's ``scrapeCache`` (``scrape/scrape.go``):

* each series text of a page maps to its final name and labels (target labels joined as
  ``honor_labels`` says, then ``metric_relabel_configs``), or to "dropped", so an unchanged series is
  neither parsed nor relabeled again;
* the series of the last successful scrape are remembered; a series missing from the next scrape, or
  every series when a scrape fails, gets a staleness marker (:data:`collectors.samples.STALE_NAN`) at
  that scrape's timestamp. Samples with their own timestamp on the page are left out of staleness, as
  Prometheus does;
* a series twice in one scrape keeps its first sample (the others are counted as duplicates).

Memory is bounded by one page: after each scrape only that scrape's series stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from opswatch.errors import ParseError

from .exposition import PageSample, is_openmetrics, openmetrics_samples
from .relabel import process
from .samples import STALE_NAN, Sample, labels_key
from .target_labels import sample_labels
from .targets import ScrapeOptions
from .text_parser import CachedTextParser

_NAME = "__name__"
_DROPPED = None
_MISSING = object()


@dataclass
class ScrapeResult:
    """What one scrape produced: ``samples`` to store (staleness markers included); ``scraped``, the
    samples on the page (``scrape_samples_scraped``); ``post_relabeling``, those left after
    ``metric_relabel_configs`` (``scrape_samples_post_metric_relabeling``); ``series_added``, series this
    target's cache had not seen in its last scrape (``scrape_series_added``); ``duplicates``, samples
    dropped because their series was already in the scrape."""

    samples: list[Sample] = field(default_factory=list)
    scraped: int = 0
    post_relabeling: int = 0
    series_added: int = 0
    duplicates: int = 0


class ScrapeCache:
    """The cache of one target.

    :param target_labels: the target's labels (``job``, ``instance``, ...), attached to every sample.
    :param options: the job's ``honor_labels``, ``honor_timestamps`` and ``metric_relabel_configs``.
    """

    def __init__(self, target_labels: Mapping[str, str], options: ScrapeOptions):
        self.target_labels = dict(target_labels)
        self.options = options
        self.text = CachedTextParser()
        # series text -> (name, labels, series key) or _DROPPED; the series of the last scrape by key
        self._final: dict[str, tuple[str, Mapping[str, str], str] | None] = {}
        self._last: dict[str, tuple[str, Mapping[str, str], str]] = {}

    def _finalize(self, name: str, page_labels: Mapping[str, str]) -> tuple[str, Mapping[str, str], str] | None:
        labels = sample_labels(page_labels, self.target_labels, self.options.honor_labels)
        if self.options.metric_relabel_configs:
            labels[_NAME] = name
            relabeled = process(labels, self.options.metric_relabel_configs)
            if relabeled is None:
                return _DROPPED
            name = relabeled.pop(_NAME, "")
            if not name:
                raise ParseError(f"metric_relabel_configs left {labels_key(labels)} without a metric name (__name__)")
            labels = relabeled
        return name, labels, name + labels_key(labels)

    def ingest_page(self, body: str, content_type: str | None, timestamp_ms: int) -> ScrapeResult:
        """Parse a page (OpenMetrics or text 0.0.4 by ``content_type``) and label its samples.

        :raises ParseError: when the page is malformed; nothing is remembered from it then.
        """
        if is_openmetrics(content_type):
            return self.ingest([(None, *s) for s in openmetrics_samples(body)], timestamp_ms)
        return self.ingest(self.text.parse(body), timestamp_ms)

    def ingest_samples(self, page: Iterable[PageSample], timestamp_ms: int) -> ScrapeResult:
        """Label samples that come from elsewhere than a page (synthetic probes)."""
        return self.ingest([(None, *s) for s in page], timestamp_ms)

    def ingest(self, rows: Iterable[tuple], timestamp_ms: int) -> ScrapeResult:
        """Label ``(series text or None, name, labels, value, timestamp ms or None)`` rows of one scrape.

        :raises ParseError: when metric relabeling leaves a sample without a name.
        """
        honor_timestamps = self.options.honor_timestamps
        final, last = self._final, self._last
        kept: dict[str, tuple[str, Mapping[str, str], str] | None] = {}
        seen: dict[str, tuple[str, Mapping[str, str], str]] = {}
        samples: list[Sample] = []
        scraped = duplicates = added = 0
        for key, name, labels, value, ts in rows:
            scraped += 1
            if key is None:
                key = name + labels_key(labels)
            entry = final.get(key, _MISSING)
            if entry is _MISSING:
                entry = kept.get(key, _MISSING)
                if entry is _MISSING:  # a series text new to this target
                    entry = self._finalize(name, labels)
            kept[key] = entry
            if entry is _DROPPED:
                continue
            final_name, final_labels, series = entry
            if ts is None or not honor_timestamps:
                if series in seen:
                    duplicates += 1
                    continue
                seen[series] = entry
                if series not in last:
                    added += 1
                ts = timestamp_ms
            samples.append(Sample(final_name, final_labels, ts, value))
        post = len(samples) + duplicates
        stale = [Sample(e[0], e[1], timestamp_ms, STALE_NAN) for s, e in last.items() if s not in seen]
        self._final, self._last = kept, seen
        return ScrapeResult(samples + stale, scraped, post, added, duplicates)

    def fail(self, timestamp_ms: int) -> ScrapeResult:
        """A failed scrape: staleness markers for every series of the last one, which are forgotten."""
        stale = [Sample(e[0], e[1], timestamp_ms, STALE_NAN) for e in self._last.values()]
        self._last = {}
        return ScrapeResult(stale)
