"""Label matchers in the JSON files of the detection settings (calendar, feedback).

A matcher is stored as ``{"name": "job", "op": "=~", "value": "gift|payment"}``: the fields of
:class:`storage.matchers.Matcher` (Prometheus semantics: regexes fully anchored, a missing label matches as "").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from storage.matchers import Matcher


def matchers_to_json(matchers: Iterable[Matcher]) -> list[dict]:
    """``[{"name", "op", "value"}, ...]``."""
    return [{"name": m.name, "op": m.op, "value": m.value} for m in matchers]


def matchers_from_json(items: Sequence[Mapping]) -> tuple[Matcher, ...]:
    """The inverse of :func:`matchers_to_json`.

    :raises ValueError: for an item without ``name``/``op``/``value``, an unknown operator or a bad regex.
    """
    try:
        return tuple(Matcher(str(m["name"]), str(m["op"]), str(m["value"])) for m in items)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"matchers {items!r}: each needs name, op and value") from exc


def select(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher holds (an empty list selects every series)."""
    return all(m.matches(labels) for m in matchers)


def labels_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable, order-free form of a label set."""
    return tuple(sorted(labels.items()))
