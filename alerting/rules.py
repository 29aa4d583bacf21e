"""Alerting rules in YAML, in the spirit of Prometheus alerting rules.

File format::

    groups:
      - name: golden-signals
        rules:
          - alert: HighErrorRatio
            expr: error_ratio > 0.25          # SIGNAL OP NUMBER
            for: 15s
            labels: {severity: critical}
            annotations:
              summary: "{{ $labels.job }}: {{ $value | humanizePercentage }} of requests fail"
          - alert: LatencyAnomaly
            expr: anomaly(latency_p99_seconds) > 5   # the detector's calibrated score

Expressions in this version are ``SIGNAL OP NUMBER`` or ``anomaly(SIGNAL) OP NUMBER``, evaluated for
every job, with SIGNAL one of :data:`detection.signals.SIGNALS` and OP one of ``== != > >= < <=``.
Annotations are templates: ``$labels`` and ``$value`` as in Prometheus, rendered with jinja2.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detection.base import Score
from detection.signals import SIGNALS
from opswatch.config_errors import describe_validation_error
from opswatch.durations import parse_duration
from opswatch.errors import ConfigError

DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_EXPR = re.compile(r"^\s*(?:anomaly\(\s*(?P<scored>\w+)\s*\)|(?P<signal>\w+))\s*(?P<op>==|!=|>=|<=|>|<)\s*"
                   r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    alert: str
    expr: str
    for_: str = Field("0s", alias="for")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("for_")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    rules: list[RuleSpec]


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[GroupSpec]


@dataclass(frozen=True)
class Condition:
    """A rule whose expression is true for one job now: the alert's labels, annotations and value."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    signal: str
    score: Score | None


_env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)
_env.filters["humanizePercentage"] = lambda v: f"{float(v) * 100:.3g}%"
_env.filters["humanizeDuration"] = lambda v: f"{float(v) * 1000:.3g}ms" if float(v) < 1 else f"{float(v):.3g}s"
_env.filters["humanize"] = lambda v: f"{float(v):.4g}"


@dataclass
class Rule:
    """One parsed alerting rule. ``for_ms``: how long the expression must hold before firing."""

    name: str
    signal: str
    anomaly: bool
    op: str
    threshold: float
    for_ms: int
    labels: dict[str, str]
    annotations: dict[str, jinja2.Template]

    def evaluate(self, signals: dict[str, dict[str, float]], scores: dict[tuple[str, str], Score]) -> list[Condition]:
        """The jobs for which the expression holds now, as conditions."""
        out = []
        for job, values in signals.items():
            score = scores.get((job, self.signal))
            value = (score.score if score else math.nan) if self.anomaly else values.get(self.signal, math.nan)
            if math.isnan(value) or not OPS[self.op](value, self.threshold):
                continue
            labels = {"alertname": self.name, "job": job, "signal": self.signal, **self.labels}
            context = {"labels": labels, "value": value}
            annotations = {k: t.render(context) for k, t in self.annotations.items()}
            out.append(Condition(labels, annotations, value, self.signal, score))
        return out


def _compile(spec: RuleSpec, where: str) -> Rule:
    m = _EXPR.match(spec.expr)
    if not m:
        raise ConfigError(
            f"{where}: expr {spec.expr!r} is not supported; write 'SIGNAL OP NUMBER' or "
            f"'anomaly(SIGNAL) OP NUMBER' with SIGNAL one of {', '.join(SIGNALS)}"
        )
    signal = m["scored"] or m["signal"]
    if signal not in SIGNALS:
        raise ConfigError(f"{where}: expr {spec.expr!r} names unknown signal '{signal}'; use one of {', '.join(SIGNALS)}")
    templates = {}
    for key, text in spec.annotations.items():
        try:
            templates[key] = _env.from_string(text.replace("$labels", "labels").replace("$value", "value"))
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{where}.annotations.{key}: bad template: {exc}") from exc
    return Rule(spec.alert, signal, bool(m["scored"]), m["op"], float(m["number"]),
                int(parse_duration(spec.for_) * 1000), spec.labels, templates)


def load_rules(path: str | Path = DEFAULT_RULES) -> list[Rule]:
    """Load and compile a rules file.

    :raises ConfigError: naming the file and the key (``groups.0.rules.2.expr``) for any problem.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        spec = RulesFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read rules: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, RulesFile)) from exc
    return [_compile(r, f"{path}: groups.{g}.rules.{i}") for g, group in enumerate(spec.groups)
            for i, r in enumerate(group.rules)]
