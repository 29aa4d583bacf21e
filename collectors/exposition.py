"""Parsing Prometheus text exposition format 0.0.4 into samples.

Uses prometheus-client's parser (``prometheus_client.parser.text_string_to_metric_families``), which
follows https://prometheus.io/docs/instrumenting/exposition_formats/ . Its errors are translated into
:class:`opswatch.errors.ParseError` naming the offending line.
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families

from opswatch.errors import ParseError

from .samples import Sample


def parse_text(
    text: str, scrape_timestamp_ms: int, extra_labels: Mapping[str, str] | None = None
) -> list[Sample]:
    """Parse one exposition page into samples.

    :param text: the page body (Prometheus text format 0.0.4).
    :param scrape_timestamp_ms: timestamp (ms since the epoch) for samples that carry none.
    :param extra_labels: labels added to every sample (``job``, ``instance``); like Prometheus without
        ``honor_labels``, a label already on the sample is kept as ``exported_<name>``.
    :returns: the samples, in page order.
    :raises ParseError: when the page is malformed; the message quotes the first bad line.
    """
    extra = dict(extra_labels or {})
    samples: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = dict(s.labels)
                for name, value in extra.items():
                    if name in labels:
                        labels["exported_" + name] = labels[name]
                    labels[name] = value
                ts = int(s.timestamp * 1000) if s.timestamp is not None else scrape_timestamp_ms
                samples.append(Sample(s.name, labels, ts, float(s.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise ParseError(f"malformed exposition page: {exc}") from exc
    return samples
