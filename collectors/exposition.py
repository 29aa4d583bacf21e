"""Parsing Prometheus text exposition format 0.0.4 into samples.

Uses prometheus-client's parser (``prometheus_client.parser.text_string_to_metric_families``), which
follows https://prometheus.io/docs/instrumenting/exposition_formats/ , with two corrections so the result
is what Prometheus itself stores:

* the parser appends ``_total`` to a counter declared without it (OpenMetrics naming); Prometheus keeps
  the name written on the page, and so do we;
* labels with an empty value are dropped, as Prometheus does (an empty value is the same as no label);
* label clashes with the target labels are resolved as Prometheus does without ``honor_labels``: the
  page's value moves to ``exported_<name>`` (``exported_exported_<name>`` if that is taken, and so on).

Its errors are translated into :class:`opswatch.errors.ParseError` naming the offending line.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families

from opswatch.errors import ParseError

from .samples import Sample

_BARE_COUNTER = re.compile(r"^#\s*TYPE\s+(\S+)\s+counter\s*$", re.MULTILINE)
_MAX_MS = 2**63 - 1


def _first_bad_line(text: str) -> str:
    """The first line that fails to parse on its own, as ``line N: '...'``; empty when none does."""
    for number, line in enumerate(text.splitlines(), 1):
        try:
            for family in text_string_to_metric_families(line + "\n"):
                for sample in family.samples:
                    _timestamp_ms(sample.timestamp, 0)
        except Exception:  # noqa: BLE001 - the parser raises bare ValueError, IndexError, TypeError...
            return f"line {number}: {line!r}"
    return ""


def _timestamp_ms(seconds: float | None, default_ms: int) -> int:
    if seconds is None:
        return default_ms
    ms = float(seconds) * 1000
    if not math.isfinite(ms) or abs(ms) > _MAX_MS:
        raise ValueError(f"timestamp {seconds!r} is not a finite time in ms that fits in 64 bits")
    return round(ms)  # seconds came from ms / 1000; int() would truncate 1 ms off some of them


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
    bare_counters = {name for name in _BARE_COUNTER.findall(text) if not name.endswith("_total")}
    samples: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                name = s.name
                if name.endswith("_total") and name[:-6] in bare_counters:
                    name = name[:-6]
                # an empty label value is the same as no label (Prometheus data model)
                labels = {k: v for k, v in s.labels.items() if v != ""}
                for label, value in extra.items():
                    if label in labels:
                        exported = "exported_" + label
                        while exported in labels:
                            exported = "exported_" + exported
                        labels[exported] = labels[label]
                    if value != "":
                        labels[label] = value
                samples.append(Sample(name, labels, _timestamp_ms(s.timestamp, scrape_timestamp_ms), float(s.value)))
    except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed page, never a crash
        where = _first_bad_line(text)
        detail = str(exc) or type(exc).__name__
        raise ParseError(f"malformed exposition page: {where + ': ' if where else ''}{detail}") from exc
    return samples
