"""Prometheus relabeling: ``relabel_configs`` (targets, before a scrape) and ``metric_relabel_configs``
(samples, after it).

Semantics of https://prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config and
Prometheus's ``model/relabel``: the values of ``source_labels`` are joined with ``separator`` (default
``;``) and matched against ``regex`` (default ``(.*)``), which is anchored at both ends; ``replacement``
(default ``$1``) and, for ``replace``, ``target_label`` are expanded like Go's ``Regexp.Expand``
(``$1``, ``${1}``, ``$name``, ``$$``). Setting a label to the empty string removes it. The regular
expressions are Python's (``re``, ASCII classes), which read RE2's syntax the same way in all but exotic
cases (``\\pL``-style classes are rejected at load).
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

ACTIONS = ("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What a replace target_label with $-references may look like (Prometheus's relabelTarget).
_TARGET_TEMPLATE = re.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", re.ASCII)
_DEFAULT_REGEX = "(.*)"


def expand(template: str, match: re.Match) -> str:
    """``template`` with ``$1``, ``${1}``, ``$name``, ``${name}`` replaced by the groups of ``match`` and
    ``$$`` by ``$``, exactly as Go's ``Regexp.Expand``: a name is the longest run of letters, digits and
    ``_`` (so ``$1x`` is the group named ``1x``); a missing or unmatched group expands to nothing; a ``$``
    that starts no reference is kept."""
    out = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        k = i + 1 if brace else i
        start = k
        while k < n and (template[k].isalpha() or template[k].isdecimal() or template[k] == "_"):
            k += 1
        name = template[start:k]
        if not name or (brace and (k >= n or template[k] != "}")):
            out.append("$")  # malformed: the $ is plain text
            continue
        i = k + 1 if brace else k
        if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) <= 9:
            group = int(name)
            if group <= match.re.groups:
                out.append(match.group(group) or "")
        elif name in match.re.groupindex:
            out.append(match.group(name) or "")
    return "".join(out)


class RelabelConfig(BaseModel):
    """One ``relabel_config`` step. Field names and defaults are Prometheus's; validation follows
    Prometheus's ``Config.Validate`` and raises ``ValueError`` naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_labels: tuple[str, ...] | None = None
    separator: str = ";"
    regex: str = _DEFAULT_REGEX
    modulus: int = Field(0, ge=0)
    target_label: str = ""
    replacement: str = "$1"
    action: str = "replace"

    _pattern: re.Pattern = PrivateAttr()

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, v: object) -> object:
        if isinstance(v, str):
            if v.lower() not in ACTIONS:
                raise ValueError(f"unknown relabel action {v!r}; use one of {', '.join(ACTIONS)}")
            return v.lower()
        return v

    @field_validator("regex", mode="before")
    @classmethod
    def _compiles(cls, v: object) -> object:
        if v is None:
            return ""  # Prometheus: an explicit null regex is the empty regex
        if isinstance(v, str):
            try:
                re.compile(v, re.ASCII)
            except re.error as exc:
                raise ValueError(f"regex {v!r} does not compile: {exc}") from exc
        return v

    @field_validator("source_labels")
    @classmethod
    def _label_names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        bad = [name for name in v or () if not _LABEL_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a valid label name")
        return v

    @model_validator(mode="after")
    def _valid_for_action(self) -> "RelabelConfig":
        a = self.action
        if a == "hashmod" and self.modulus == 0:
            raise ValueError("relabel configuration for hashmod requires non-zero 'modulus'")
        if a in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") and not self.target_label:
            raise ValueError(f"relabel configuration for {a} action requires 'target_label'")
        if a == "replace":
            ok = (_TARGET_TEMPLATE.fullmatch(self.target_label) if "$" in self.target_label
                  else _LABEL_NAME.fullmatch(self.target_label))
            if not ok:
                raise ValueError(f"{self.target_label!r} is an invalid 'target_label' for {a} action")
        if a in ("hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
                and not _LABEL_NAME.fullmatch(self.target_label):
            raise ValueError(f"{self.target_label!r} is an invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal") and self.replacement != "$1":
            raise ValueError(f"'replacement' can not be set for {a} action")
        if a == "labelmap" and not _TARGET_TEMPLATE.fullmatch(self.replacement):
            raise ValueError(f"{self.replacement!r} is an invalid 'replacement' for {a} action")
        if a in ("keepequal", "dropequal") and ("regex" in self.model_fields_set or self.modulus
                                               or self.separator != ";"):
            raise ValueError(f"{a} action requires only 'source_labels' and 'target_label', and no other fields")
        if a in ("labeldrop", "labelkeep") and (self.source_labels is not None or self.target_label or self.modulus
                                               or self.separator != ";" or self.replacement != "$1"):
            raise ValueError(f"{a} action requires only 'regex', and no other fields")
        return self

    def model_post_init(self, __context: object) -> None:
        self._pattern = re.compile(self.regex, re.ASCII)

    def apply(self, labels: dict[str, str]) -> bool:
        """Apply this step to ``labels`` in place; False when the label set is to be dropped."""
        action, pattern = self.action, self._pattern
        value = self.separator.join(labels.get(name, "") for name in self.source_labels or ())
        if action == "replace":
            m = pattern.fullmatch(value)
            if m is not None:
                target = expand(self.target_label, m)
                if _LABEL_NAME.fullmatch(target):
                    _set(labels, target, expand(self.replacement, m))
        elif action == "keep":
            return pattern.fullmatch(value) is not None
        elif action == "drop":
            return pattern.fullmatch(value) is None
        elif action == "keepequal":
            return labels.get(self.target_label, "") == value
        elif action == "dropequal":
            return labels.get(self.target_label, "") != value
        elif action == "hashmod":
            # Prometheus: the last 8 bytes of the MD5 sum, big-endian, modulo the modulus.
            digest = hashlib.md5(value.encode()).digest()
            _set(labels, self.target_label, str(int.from_bytes(digest[8:], "big") % self.modulus))
        elif action == "lowercase":
            _set(labels, self.target_label, value.lower())
        elif action == "uppercase":
            _set(labels, self.target_label, value.upper())
        elif action == "labelmap":
            for name, label_value in list(labels.items()):
                m = pattern.fullmatch(name)
                if m is not None:
                    _set(labels, expand(self.replacement, m), label_value)
        elif action == "labeldrop":
            for name in [n for n in labels if pattern.fullmatch(n)]:
                del labels[name]
        elif action == "labelkeep":
            for name in [n for n in labels if not pattern.fullmatch(n)]:
                del labels[name]
        return True


def _set(labels: dict[str, str], name: str, value: str) -> None:
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def process(labels: Mapping[str, str], configs: Sequence[RelabelConfig]) -> dict[str, str] | None:
    """Apply ``configs`` in order to a copy of ``labels``.

    :returns: the relabeled labels (a new dict), or ``None`` when a step dropped the label set.
    """
    result = dict(labels)
    for config in configs:
        if not config.apply(result):
            return None
    return result
