"""The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0 text, parsed by prometheus-client.

Specs: https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4) and
https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md (OpenMetrics 1.0).
The parsers are prometheus-client's (``prometheus_client.parser`` and
``prometheus_client.openmetrics.parser``); what this module adds makes the result what Prometheus stores:

* text format: the parser appends ``_total`` to a counter declared without it (the OpenMetrics naming
  it uses internally); Prometheus keeps the name written on the page, and so do we;
* labels with an empty value are dropped (an empty value is the same as no label);
* timestamps become integer milliseconds: text-format timestamps are already ms, OpenMetrics ones are
  seconds, truncated to ms as Prometheus does;
* exemplars are ignored, as Prometheus does without exemplar storage.

A scrape asks for a format with the ``Accept`` header (:func:`accept_header`) and parses the answer by
its ``Content-Type`` (:func:`is_openmetrics`). Errors become :class:`opswatch.errors.ParseError` naming
the offending line.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, NamedTuple

from prometheus_client.openmetrics.parser import text_string_to_metric_families as _openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as _text_families

from opswatch.errors import ParseError

from .samples import Sample
from .target_labels import sample_labels

# Prometheus's names for the formats (``scrape_protocols``) and their media types.
SCRAPE_PROTOCOLS = {
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
}
DEFAULT_SCRAPE_PROTOCOLS = ("OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4")

_MAX_MS = 2**63 - 1
# A text-format counter TYPE line; handed to the parser as a gauge, which has the same sample grammar,
# so that it keeps the names written on the page. The whitespace is the parser's (string.whitespace).
_COUNTER_TYPE = re.compile(r"^([ \t\r\x0b\x0c]*#[ \t\r\x0b\x0c]+TYPE[ \t\r\x0b\x0c]+\S+[ \t\r\x0b\x0c]+)counter"
                           r"(?=[ \t\r\x0b\x0c]*$)", re.MULTILINE)


class PageSample(NamedTuple):
    """One sample as written on a page: ``name``, ``labels`` (no empty values), ``value`` (float64) and
    ``timestamp_ms`` (``None`` when the page gives none)."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int | None


def accept_header(protocols: Iterable[str] = DEFAULT_SCRAPE_PROTOCOLS) -> str:
    """The ``Accept`` header asking for ``protocols`` in order of preference (names of
    :data:`SCRAPE_PROTOCOLS`), then anything. The default is Prometheus 2.42's header.

    :raises KeyError: for a protocol name not in :data:`SCRAPE_PROTOCOLS`.
    """
    parts = []
    for i, name in enumerate(protocols):
        media = SCRAPE_PROTOCOLS[name]
        parts.append(media if i == 0 else f"{media};q={max(0.2, 1 - 0.25 * i):g}")
    return ",".join(parts + ["*/*;q=0.1"])


def is_openmetrics(content_type: str | None) -> bool:
    """Whether a response's ``Content-Type`` is OpenMetrics text; anything else is read as text 0.0.4,
    as Prometheus does."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/openmetrics-text"


def text_timestamp_ms(seconds: float | None) -> int | None:
    """A text-format timestamp as prometheus-client returns it (ms / 1000) back in integer ms.

    :raises ValueError: when it is not a finite time that fits in 64 bits.
    """
    if seconds is None:
        return None
    ms = float(seconds) * 1000
    if not math.isfinite(ms) or abs(ms) > _MAX_MS:
        raise ValueError(f"timestamp {seconds!r} is not a finite time in ms that fits in 64 bits")
    return round(ms)  # seconds came from ms / 1000; int() would truncate 1 ms off some of them


def _openmetrics_timestamp_ms(timestamp) -> int | None:
    if timestamp is None:
        return None
    ms = float(str(timestamp)) * 1000  # str() of a Timestamp is its exact decimal "sec.nsec"
    if not math.isfinite(ms) or abs(ms) > _MAX_MS:
        raise ValueError(f"timestamp {timestamp} is not a finite time in ms that fits in 64 bits")
    return int(ms)  # Prometheus truncates: int64(ts * 1000)


def _without_empty(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v != ""}


def _first_bad_text_line(text: str) -> str:
    """The first line that fails to parse on its own, as ``line N: '...'``; empty when none does."""
    for number, line in enumerate(text.split("\n"), 1):
        try:
            for family in _text_families(line + "\n"):
                for sample in family.samples:
                    text_timestamp_ms(sample.timestamp)
        except Exception:  # noqa: BLE001 - the parser raises bare ValueError, IndexError, TypeError...
            return f"line {number}: {line!r}"
    return ""


def _quoted_line(text: str, message: str) -> str:
    """``line N: '...'`` for the page line the parser's message quotes; empty when it quotes none."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() and line in message:
            return f"line {number}: {line!r}"
    return ""


def text_samples(text: str) -> list[PageSample]:
    """The samples of a Prometheus text format 0.0.4 page, in page order.

    :raises ParseError: when the page is malformed; the message quotes the first bad line.
    """
    try:
        return [PageSample(s.name, _without_empty(s.labels), float(s.value), text_timestamp_ms(s.timestamp))
                for family in _text_families(_COUNTER_TYPE.sub(r"\1gauge", text)) for s in family.samples]
    except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed page, never a crash
        where = _first_bad_text_line(text)
        detail = str(exc) or type(exc).__name__
        raise ParseError(f"malformed exposition page: {where + ': ' if where else ''}{detail}") from exc


def openmetrics_samples(text: str) -> list[PageSample]:
    """The samples of an OpenMetrics 1.0 text page (counters' ``_total`` and ``_created``, info, stateset,
    gauge histograms, units...), in page order.

    :raises ParseError: when the page is malformed (OpenMetrics is strict: ``# EOF`` must end it, a
        histogram needs its ``+Inf`` bucket...) or holds native histograms, which Prometheus 2.x's
        OpenMetrics parser does not read either.
    """
    try:
        samples = []
        for family in _openmetrics_families(text):
            for s in family.samples:
                if s.native_histogram is not None:
                    raise ValueError(f"native histogram samples are not supported: {s.name}")
                samples.append(PageSample(s.name, _without_empty(s.labels), float(s.value),
                                          _openmetrics_timestamp_ms(s.timestamp)))
        return samples
    except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed page, never a crash
        detail = str(exc) or type(exc).__name__
        where = _quoted_line(text, detail)
        raise ParseError(f"malformed OpenMetrics page: {where + ': ' if where else ''}{detail}") from exc


def _to_samples(page: list[PageSample], scrape_timestamp_ms: int,
                extra_labels: Mapping[str, str] | None) -> list[Sample]:
    extra = dict(extra_labels or {})
    return [Sample(s.name, sample_labels(s.labels, extra, honor_labels=False) if extra else s.labels,
                   scrape_timestamp_ms if s.timestamp_ms is None else s.timestamp_ms, s.value) for s in page]


def parse_text(
    text: str, scrape_timestamp_ms: int, extra_labels: Mapping[str, str] | None = None
) -> list[Sample]:
    """Parse one text format 0.0.4 page into samples.

    :param text: the page body.
    :param scrape_timestamp_ms: timestamp (ms since the epoch) for samples that carry none.
    :param extra_labels: target labels added to every sample (``job``, ``instance``); like Prometheus
        without ``honor_labels``, a label already on the sample is kept as ``exported_<name>``.
    :returns: the samples, in page order.
    :raises ParseError: when the page is malformed; the message quotes the first bad line.
    """
    return _to_samples(text_samples(text), scrape_timestamp_ms, extra_labels)


def parse_openmetrics(
    text: str, scrape_timestamp_ms: int, extra_labels: Mapping[str, str] | None = None
) -> list[Sample]:
    """Like :func:`parse_text`, for an OpenMetrics 1.0 text page (see :func:`openmetrics_samples`)."""
    return _to_samples(openmetrics_samples(text), scrape_timestamp_ms, extra_labels)
