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

The columnar path: after a text-format page whose every sample line is ``<series text> <value>`` with
a series text the cached parser reads itself, the cache keeps that page's layout
(:mod:`collectors.page_columns`) with what labeling made of it: which lines became samples and their
final series, as one :class:`~collectors.samples.SeriesRefs`. A next page with the same layout has the
same series, so labeling, duplicates and staleness would come out the same: only its values are read,
and the scrape is one :class:`~collectors.samples.ColumnBatch` (no series added, none stale). Any other
page goes through the exact path above, which sets or clears the kept layout.

Memory is bounded by one page: after each scrape only that scrape's series (and layout) stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from opswatch.errors import ParseError, ScrapeLimitError

from .exposition import PageSample, is_openmetrics, openmetrics_samples
from .page_columns import page_layout, read_page
from .relabel import process
from .samples import STALE_NAN, ColumnBatch, Sample, SeriesRefs, labels_key
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
    dropped because their series was already in the scrape; ``columns``, the page's samples as columns
    when the columnar path read it (``samples`` then holds no sample of the page)."""

    samples: list[Sample] = field(default_factory=list)
    scraped: int = 0
    post_relabeling: int = 0
    series_added: int = 0
    duplicates: int = 0
    columns: ColumnBatch | None = None


@dataclass(frozen=True)
class _KnownLayout:
    """A page layout the columnar path may read: the page's ``layout`` bytes, ``kept`` (indexes of its
    sample lines that became samples, in order) and their final ``series``; the counts are the page's."""

    layout: bytes
    kept: np.ndarray
    series: SeriesRefs
    scraped: int
    post_relabeling: int
    duplicates: int


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
        self._layout: _KnownLayout | None = None  # of the last page, when the columnar path may read the next

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

    def ingest_page(self, body: bytes | str, content_type: str | None, timestamp_ms: int) -> ScrapeResult:
        """Parse a page (OpenMetrics or text 0.0.4 by ``content_type``; bytes are UTF-8) and label its
        samples; a text page laid out as the last one is read as columns (see the module's docstring).

        :raises ParseError: when the page is malformed or not UTF-8; nothing is remembered from it then.
        :raises ScrapeLimitError: see :meth:`ingest`.
        """
        if is_openmetrics(content_type):
            self._layout = None
            return self.ingest([(None, *s) for s in openmetrics_samples(_text(body))], timestamp_ms)
        raw = body.encode() if isinstance(body, str) else body
        known = self._layout
        if known is not None:
            values = read_page(raw, known.layout)
            if values is not None:
                return ScrapeResult([], known.scraped, known.post_relabeling, 0, known.duplicates,
                                    ColumnBatch(known.series, timestamp_ms, values[known.kept]))
        self._layout = None  # the exact path changes the caches: a layout is valid again only if it succeeds
        rows = self.text.parse(_text(body))
        result, kept = self._label(rows, timestamp_ms)
        self._layout = self._readable_layout(raw, rows, kept, result)
        return result

    def _readable_layout(self, raw: bytes, rows: list[tuple], kept: list[int] | None,
                         result: ScrapeResult) -> _KnownLayout | None:
        """The layout of a page just read by the exact path if the columnar path reads its next pages as
        the exact path would: every sample line is the parser's cached series text, one space and the
        value (no timestamp); else None."""
        if kept is None:
            return None
        page = np.frombuffer(raw, np.uint8)
        found = page_layout(page)
        if found is None or len(found.line_starts) != len(rows):
            return None
        keys = [row[0] for row in rows]
        if not self.text.reads_all(keys) or found.series_texts(page) != ("\n".join(keys) + "\n").encode():
            return None
        page_samples = result.samples[:len(kept)]
        series = SeriesRefs([s.name for s in page_samples], [s.labels for s in page_samples])  # no tuple per series
        return _KnownLayout(found.layout, np.array(kept, dtype=np.intp), series, result.scraped,
                            result.post_relabeling, result.duplicates)

    def ingest_samples(self, page: Iterable[PageSample], timestamp_ms: int) -> ScrapeResult:
        """Label samples that come from elsewhere than a page (synthetic probes)."""
        return self.ingest([(None, *s) for s in page], timestamp_ms)

    def ingest(self, rows: Iterable[tuple], timestamp_ms: int) -> ScrapeResult:
        """Label ``(series text or None, name, labels, value, timestamp ms or None)`` rows of one scrape.

        :raises ParseError: when metric relabeling leaves a sample without a name.
        :raises ScrapeLimitError: when more samples than ``options.sample_limit`` are left after metric
            relabeling; as in Prometheus the whole scrape fails and nothing is remembered from it.
        """
        self._layout = None
        return self._label(rows, timestamp_ms)[0]

    def _label(self, rows: Iterable[tuple], timestamp_ms: int) -> tuple[ScrapeResult, list[int] | None]:
        """:meth:`ingest`, and the indexes of the rows that became samples, in order; None for those when
        a row has no series text or its own timestamp."""
        honor_timestamps = self.options.honor_timestamps
        final, last = self._final, self._last
        kept: dict[str, tuple[str, Mapping[str, str], str] | None] = {}
        seen: dict[str, tuple[str, Mapping[str, str], str]] = {}
        samples: list[Sample] = []
        kept_rows: list[int] | None = []
        scraped = duplicates = added = 0
        for key, name, labels, value, ts in rows:
            scraped += 1
            if key is None or ts is not None:
                kept_rows = None
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
            if kept_rows is not None:
                kept_rows.append(scraped - 1)
            samples.append(Sample(final_name, final_labels, ts, value))
        post = len(samples) + duplicates
        limit = self.options.sample_limit
        if limit and len(samples) > limit:
            raise ScrapeLimitError(f"sample limit exceeded: {len(samples)} samples after metric relabeling, "
                                   f"sample_limit is {limit}", "sample_limit")
        stale = [Sample(e[0], e[1], timestamp_ms, STALE_NAN) for s, e in last.items() if s not in seen]
        self._final, self._last = kept, seen
        return ScrapeResult(samples + stale, scraped, post, added, duplicates), kept_rows

    def fail(self, timestamp_ms: int) -> ScrapeResult:
        """A failed scrape: staleness markers for every series of the last one, which are forgotten."""
        stale = [Sample(e[0], e[1], timestamp_ms, STALE_NAN) for e in self._last.values()]
        self._last, self._layout = {}, None
        return ScrapeResult(stale)


def _text(body: bytes | str) -> str:
    """A page as text. :raises ParseError: when its bytes are not UTF-8 (the text formats' encoding)."""
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the page is not UTF-8: {exc}") from exc
