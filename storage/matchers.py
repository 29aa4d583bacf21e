"""Label matchers with Prometheus semantics: ``=``, ``!=``, ``=~``, ``!~`` (regexes fully anchored).

See https://prometheus.io/docs/prometheus/latest/querying/basics/#time-series-selectors .
A label that is absent matches as the empty string, as in Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

OPERATORS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    """One label matcher, e.g. ``Matcher("code", "=~", "5..")``.

    :raises ValueError: for an unknown operator or an invalid regular expression.
    """

    name: str
    op: str
    value: str
    _regex: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: operator must be one of {OPERATORS}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(f"(?:{self.value})\\Z"))
            except re.error as exc:
                raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: bad regex: {exc}") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._regex.match(actual) is not None
        return hit if self.op == "=~" else not hit


def to_matchers(matchers: Mapping[str, str] | list[Matcher] | None) -> list[Matcher]:
    """Accept ``{"job": "feed"}`` (equality) or a list of :class:`Matcher`."""
    if matchers is None:
        return []
    if isinstance(matchers, Mapping):
        return [Matcher(k, "=", v) for k, v in matchers.items()]
    return list(matchers)
