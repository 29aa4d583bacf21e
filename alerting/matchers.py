"""Alertmanager's label matchers in their text and API forms, over :class:`storage.matchers.Matcher`.

Text form (Alertmanager's ``matchers:`` in routes and inhibit rules, and amtool's arguments):
``name="value"``, ``name!="value"``, ``name=~"regex"``, ``name!~"regex"``; the value may be unquoted when it
holds no space, quote or comma (``severity=critical``). Regexes are fully anchored and a missing label
matches as the empty string, as in Alertmanager.

API form (Alertmanager's API v2 ``matcher`` object): ``{"name", "value", "isRegex", "isEqual"}``;
``isEqual`` defaults to true.

Source: https://prometheus.io/docs/alerting/latest/configuration/#matcher
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Mapping

from storage.matchers import Matcher

_TEXT = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s",{}]*))\s*')


def parse_matcher(text: str) -> Matcher:
    """``'severity=~"warning|critical"'`` -> ``Matcher("severity", "=~", "warning|critical")``.

    :raises ValueError: naming the text and the accepted form, or a regex that does not compile.
    """
    found = _TEXT.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"matcher {text!r} is not like name=\"value\", name!=\"value\", name=~\"regex\" "
                         f"or name!~\"regex\"")
    name, op, quoted, bare = found.groups()
    value = json.loads(f'"{quoted}"') if quoted is not None else bare
    return Matcher(name, op, value)


def parse_matchers(texts: Iterable[str]) -> list[Matcher]:
    """:func:`parse_matcher` of each text. :raises ValueError: for the first bad one."""
    return [parse_matcher(t) for t in texts]


def format_matcher(matcher: Matcher) -> str:
    """The text form, always quoted: ``severity="critical"``."""
    return f"{matcher.name}{matcher.op}{json.dumps(matcher.value)}"


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher holds (so an empty list matches every label set)."""
    return all(m.matches(labels) for m in matchers)


def from_api(obj: Mapping) -> Matcher:
    """An API v2 matcher object -> :class:`Matcher`. :raises ValueError: on a bad regex."""
    regex, equal = bool(obj.get("isRegex", False)), bool(obj.get("isEqual", True))
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[(regex, equal)]
    return Matcher(str(obj["name"]), op, str(obj["value"]))


def to_api(matcher: Matcher) -> dict:
    """:class:`Matcher` -> an API v2 matcher object."""
    return {"name": matcher.name, "value": matcher.value, "isRegex": matcher.op in ("=~", "!~"),
            "isEqual": matcher.op in ("=", "=~")}
