"""Label names Prometheus reserves for targets, and how target labels join a sample's labels.

Source: https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config
(``honor_labels``) and Prometheus's ``scrape/scrape.go`` (``mutateSampleLabels``).
"""

from __future__ import annotations

from typing import Mapping

ADDRESS_LABEL = "__address__"
SCHEME_LABEL = "__scheme__"
METRICS_PATH_LABEL = "__metrics_path__"
SCRAPE_INTERVAL_LABEL = "__scrape_interval__"
SCRAPE_TIMEOUT_LABEL = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
RESERVED_PREFIX = "__"
EXPORTED_PREFIX = "exported_"


def sample_labels(page_labels: Mapping[str, str], target_labels: Mapping[str, str], honor_labels: bool) -> dict[str, str]:
    """The labels of a scraped sample: its page labels joined with its target's labels.

    With ``honor_labels`` a label already on the page wins over the target's. Without it the target's
    wins and the page's value is kept as ``exported_<name>`` (more ``exported_`` prefixes while that name
    is taken, shorter names resolved first), so no value of the page is lost. Empty values are no label.

    :param page_labels: the sample's labels as written on the page (without ``__name__``).
    :param target_labels: the target's labels (``job``, ``instance``, ...), without ``__``-prefixed ones.
    :returns: a new dict.
    """
    labels = dict(page_labels)
    if honor_labels:
        for name, value in target_labels.items():
            if name not in page_labels and value != "":
                labels[name] = value
        return labels
    conflicts = []
    for name, value in target_labels.items():
        existing = page_labels.get(name, "")
        if existing != "":
            conflicts.append((name, existing))
        if value != "":
            labels[name] = value
        else:
            labels.pop(name, None)
    if conflicts:
        conflicts.sort(key=lambda c: len(c[0]))
        taken: set[str] = set()
        for name, value in conflicts:
            new = name
            while True:
                new = EXPORTED_PREFIX + new
                if new not in page_labels and new not in target_labels and new not in taken:
                    break
            taken.add(new)
            labels[new] = value
    return labels


def public_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` without the ones reserved for internal use (``__`` prefix), as a target exposes them."""
    return {k: v for k, v in labels.items() if not k.startswith(RESERVED_PREFIX)}
