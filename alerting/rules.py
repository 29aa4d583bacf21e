"""Alerting and recording rules in Prometheus's rule-file format, with PromQL expressions.

Format (https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/ and
``recording_rules/``)::

    groups:
      - name: golden-signals
        interval: 5s                       # optional; default: every evaluation of the pipeline
        rules:
          - record: job:error_ratio:max5m
            expr: max_over_time(job:error_ratio[5m])
          - alert: HighErrorRatio
            expr: job:error_ratio > 0.25
            for: 15s
            keep_firing_for: 30s
            labels: {severity: critical, signal: error_ratio}
            annotations:
              summary: "{{ $labels.job }}: {{ $value | humanizePercentage }} of requests fail"

``expr`` is PromQL as :mod:`storage.promql` evaluates it, plus OpsWatch's ``anomaly(<expr>)``
(:class:`AnomalyFunction`): the calibrated anomaly score of each series ``<expr>`` returns. For a golden
signal it is the scoring engine's (the default ensemble: record-ratio units, 1 = as extreme as anything the
series has shown, rules fire above 1.1); for any other expression it is a robust z-score (~0 normal, 5 = five
robust standard deviations), as the class docstring explains.

Labels and annotations are templates over ``$labels`` and ``$value`` (rendered with jinja2), with
Prometheus's helpers written as pipes: ``{{ $value | humanize }}``, ``humanizePercentage``,
``humanizeDuration`` (same output as Prometheus's template functions of those names). Every problem in a file is a :class:`ConfigError` that
names the file, the group, the rule, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collectors.samples import STALE_NAN, Sample, labels_key
from detection.base import Score
from detection.engine import DEFAULT_POLICIES
from detection.robust_zscore import RobustZScore
from detection.signals import RECORDED_NAME
from opswatch.config_errors import describe_validation_error
from opswatch.durations import parse_duration
from opswatch.errors import ConfigError
from storage.base import Store
from storage.promql import (NAME, Aggregate, Binary, Call, CallContext, Engine, InstantSample, Number, PromQLError,
                            Selector, compile_query)

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")

_RECORDED = re.compile("^" + re.escape(RECORDED_NAME).replace(re.escape("{signal}"), r"(?P<signal>\w+)") + "$")


# ------------------------------------------------------------------------------------------- file schema

def _check_duration(v: str | None) -> str | None:
    if v is not None:
        parse_duration(v)
    return v


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    alert: str | None = None
    record: str | None = None
    expr: str
    for_: str | None = Field(None, alias="for")
    keep_firing_for: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        return _check_duration(v)

    @model_validator(mode="after")
    def _one_kind(self) -> "RuleSpec":
        if (self.alert is None) == (self.record is None):
            raise ValueError("a rule has either 'alert' (an alerting rule) or 'record' (a recording rule), "
                             "not both and not neither")
        if self.record is not None and (self.for_ or self.keep_firing_for or self.annotations):
            raise ValueError(f"recording rule {self.record!r}: 'for', 'keep_firing_for' and 'annotations' "
                             f"belong to alerting rules; remove them")
        return self


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    interval: str | None = None
    rules: list[RuleSpec]

    @field_validator("interval")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        return _check_duration(v)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[GroupSpec]


# ------------------------------------------------------------------------------------------------ templates

def humanize(v: float) -> str:
    """Prometheus's ``humanize``: 4 significant digits with an SI prefix (``1234567`` -> ``1.235M``)."""
    v = float(v)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return f"{v:.4g}"
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}"


def humanize_percentage(v: float) -> str:
    """Prometheus's ``humanizePercentage``: a ratio as a percentage (``0.1234`` -> ``12.34%``)."""
    return f"{float(v) * 100:.4g}%"


def humanize_duration(v: float) -> str:
    """Prometheus's ``humanizeDuration``: seconds as ``1d 2h 3m 4s``, ``1.5s`` or ``250ms``."""
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        return f"{v:.4g}"
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign, v = ("-", -v) if v < 0 else ("", v)
        whole = int(v)
        days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{v:.4g}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}s"


_env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)
_env.filters.update(humanize=humanize, humanizePercentage=humanize_percentage, humanizeDuration=humanize_duration)


def _template(text: str, where: str) -> jinja2.Template:
    try:
        return _env.from_string(text.replace("$labels", "labels").replace("$value", "value"))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: bad template {text!r}: {exc}; write e.g. "
                          f"'{{{{ $labels.job }}}} at {{{{ $value | humanize }}}}'") from exc


# ------------------------------------------------------------------------------------------------ anomaly()

class AnomalyFunction:
    """``anomaly(<expr>)``: for each series of ``<expr>``, its calibrated anomaly score now.

    * For a golden signal the pipeline records and scores (``<expr>`` is a plain selector of
      ``job:<signal>``, e.g. ``anomaly(job:error_ratio{job="gift"})``), the score is the recorded series
      ``opswatch_anomaly_score{signal="<signal>"}`` with the same labels: the very detector the dashboards show.
      The result has the series' labels plus ``signal``.
    * For any other expression, OpsWatch keeps one streaming :class:`~detection.robust_zscore.RobustZScore`
      per (expression text, series labels), fed one value per evaluation (policy: both directions, defaults
      of :class:`~detection.engine.ScoringEngine`); it scores NaN (no result) until ``min_points`` values,
      and is dropped after an hour without data. Its state lives in memory: after a restart it relearns.
      Not the ensemble: an arbitrary expression has no per-signal minimum-impact floor, and without one the
      record-ratio ensemble crosses 1.1 on about 5 in 1,000 points of Gaussian noise (robust z > 5: ~0).

    ``explanations`` keeps the latest :class:`~detection.base.Score` per result label set (baseline, value),
    for alert evidence.
    """

    def __init__(self, window: int = 120, min_points: int = 20, idle_ms: int = 3_600_000):
        self.window, self.min_points, self.idle_ms = window, min_points, idle_ms
        self._detectors: dict[tuple, tuple[RobustZScore, list]] = {}  # -> (detector, [last ms, last score])
        self.explanations: dict[tuple, Score] = {}

    def __call__(self, ctx: CallContext) -> list[InstantSample]:
        arg = ctx.arg
        recorded = _RECORDED.match(arg.name) if isinstance(arg, Selector) and arg.range_ms is None else None
        if recorded and recorded["signal"] in DEFAULT_POLICIES and arg.offset_ms == 0:
            return self._recorded(ctx, recorded["signal"])
        return self._streaming(ctx)

    @staticmethod
    def _recorded(ctx: CallContext, signal: str) -> list[InstantSample]:
        # One selector for every signal (filtered here), so the rules of all signals share one read.
        scores = {labels_key({k: v for k, v in s.labels.items() if k not in (NAME, "signal")}): s.value
                  for s in ctx.select("opswatch_anomaly_score", []) if s.labels.get("signal") == signal}
        out = []
        for s in ctx.vector:
            labels = {k: v for k, v in s.labels.items() if k != NAME}
            score = scores.get(labels_key(labels))
            if score is not None and not math.isnan(score):
                out.append(InstantSample({**labels, "signal": signal}, score))
        return out

    def _streaming(self, ctx: CallContext) -> list[InstantSample]:
        out = []
        for s in ctx.vector:
            labels = {k: v for k, v in s.labels.items() if k != NAME}
            key = (ctx.arg_text, labels_key(labels))
            if key not in self._detectors:
                self._detectors[key] = (RobustZScore(self.window, self.min_points, "both"), [None, None])
            detector, last = self._detectors[key]
            if last[0] != ctx.time_ms:  # two rules sharing the expression feed it once per evaluation
                last[:] = [ctx.time_ms, detector.update(ctx.time_ms, s.value) if not math.isnan(s.value) else None]
            score = last[1]
            if score is not None and not math.isnan(score.score):
                self.explanations[labels_key(labels)] = score
                out.append(InstantSample(labels, score.score))
        for key, (_, last) in list(self._detectors.items()):
            if last[0] is not None and ctx.time_ms - last[0] > self.idle_ms:
                del self._detectors[key]
        return out


# ---------------------------------------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Condition:
    """An alerting rule's expression holds for one series now: the alert's labels (``alertname`` included,
    ``__name__`` dropped), rendered annotations, the expression's value, the golden ``signal`` it is about
    (its ``signal`` label, else ""), the detector's explanation when there is one, and the rule's ``for`` and
    ``keep_firing_for`` in ms."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    signal: str
    score: Score | None
    for_ms: int = 0
    keep_firing_for_ms: int = 0


@dataclass
class AlertingRule:
    """A parsed alerting rule; ``where`` names it in its file for error messages."""

    name: str
    expr: str
    for_ms: int
    keep_firing_for_ms: int
    labels: dict[str, jinja2.Template]
    annotations: dict[str, jinja2.Template]
    where: str = ""
    reads_score: bool = False  # the expression's value is an anomaly score (see evaluate)

    def evaluate(self, engine: Engine, now_ms: int,
                 scores: Mapping[tuple[str, str], Score] | None = None) -> list[Condition]:
        """The series for which the expression holds at ``now_ms``, as conditions.

        A condition's evidence is the explanation of (its ``job``, its ``signal``) in ``scores``, else the
        streaming ``anomaly()`` explanation of its labels. When the expression reads an anomaly score
        (``opswatch_anomaly_score``, ``anomaly(...)``; e.g. ``max_over_time(...[30s]) > 1.1``), its value is
        the score: the explanation gives the observed value and the baseline, not its score now (which may
        have fallen back while the window still holds the peak); without one, baseline and observed are NaN.

        :param scores: detector explanations by (job, signal) (the pipeline's scoring engine), for evidence.
        :raises PromQLError: when the expression fails (e.g. duplicate series in a match), with the rule named.
        """
        result = _vector(engine, self.expr, now_ms, self.where)
        explanations = getattr(engine.functions.get("anomaly"), "explanations", {})
        out = []
        for s in result:
            if math.isnan(s.value):
                continue
            labels = {k: v for k, v in s.labels.items() if k != NAME}
            context = {"labels": labels, "value": s.value}
            labels = {**labels, **{k: t.render(context) for k, t in self.labels.items()}, "alertname": self.name}
            context["labels"] = labels
            annotations = {k: t.render(context) for k, t in self.annotations.items()}
            score = (scores or {}).get((labels.get("job", ""), labels.get("signal", "")))
            score = score or explanations.get(labels_key({k: v for k, v in s.labels.items() if k != NAME}))
            if self.reads_score:
                score = (dataclasses.replace(score, score=s.value) if score is not None
                         else Score(now_ms, math.nan, s.value, math.nan, math.nan))
            out.append(Condition(labels, annotations, s.value, labels.get("signal", ""), score,
                                 self.for_ms, self.keep_firing_for_ms))
        return out


@dataclass
class RecordingRule:
    """A parsed recording rule: ``expr`` is written back as ``name`` (with ``labels`` added) each evaluation;
    a series it stops returning gets a staleness marker, as Prometheus's rule manager writes."""

    name: str
    expr: str
    labels: dict[str, str]
    where: str = ""
    _previous: dict[tuple, dict] = field(default_factory=dict, repr=False)

    def evaluate(self, engine: Engine, now_ms: int) -> list[Sample]:
        """The samples to store for ``now_ms``. :raises PromQLError: as :meth:`AlertingRule.evaluate`."""
        current = {}
        for s in _vector(engine, self.expr, now_ms, self.where):
            labels = {**{k: v for k, v in s.labels.items() if k != NAME}, **self.labels}
            current[labels_key(labels)] = (labels, s.value)
        samples = [Sample(self.name, labels, now_ms, value) for labels, value in current.values()]
        samples += [Sample(self.name, labels, now_ms, STALE_NAN)
                    for key, labels in self._previous.items() if key not in current]
        self._previous = {key: labels for key, (labels, _) in current.items()}
        return samples


def _vector(engine: Engine, expr: str, now_ms: int, where: str) -> list[InstantSample]:
    try:
        result = engine.instant(expr, now_ms)
    except PromQLError as exc:
        raise PromQLError(f"{where}: {exc}") from exc
    if isinstance(result, float):
        return [InstantSample({}, result)]
    if isinstance(result, str):
        raise PromQLError(f"{where}: expr {expr!r} is a string, not a vector or a number")
    return result


@dataclass
class RuleGroup:
    """Rules evaluated together, in order, every ``interval_ms`` (None: every pipeline evaluation)."""

    name: str
    interval_ms: int | None
    rules: list[AlertingRule | RecordingRule]
    last_evaluated_ms: int | None = None

    def due(self, now_ms: int) -> bool:
        return (self.interval_ms is None or self.last_evaluated_ms is None
                or now_ms - self.last_evaluated_ms >= self.interval_ms)


@dataclass
class Evaluation:
    """What one :meth:`RuleEvaluator.evaluate` produced: conditions of the alerting rules that ran,
    ``evaluated`` (their names, whether or not they hold), recorded ``samples``, and ``errors`` by rule."""

    conditions: list[Condition] = field(default_factory=list)
    evaluated: set[str] = field(default_factory=set)
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


class RuleEvaluator:
    """Evaluates rule groups over a store (Prometheus's rule manager): each due group's rules in order, the
    samples of a recording rule visible to the rules after it.

    Evaluation times must not go back. Each selector's window is kept between evaluations and only its
    newest part read again (``late_samples_ms``, see :class:`storage.promql.Engine`), and series recorded by
    OpsWatch itself are handed over with :meth:`push` instead of being read back: a 5 m lookback read in
    full every evaluation costs seconds on a busy SQLite head.
    """

    def __init__(self, groups: list[RuleGroup], store: Store, anomaly: AnomalyFunction | None = None,
                 late_samples_ms: int = 30_000):
        self.groups, self.store = groups, store
        self.engine = Engine(store, functions={"anomaly": anomaly or AnomalyFunction()},
                             late_samples_ms=late_samples_ms)

    def push(self, samples: list[Sample]) -> None:
        """Series the caller records and has just stored (every sample of their names goes through here)."""
        self.engine.push(samples)

    @property
    def alerting_rules(self) -> list[AlertingRule]:
        return [r for g in self.groups for r in g.rules if isinstance(r, AlertingRule)]

    def evaluate(self, now_ms: int, scores: Mapping[tuple[str, str], Score] | None = None) -> Evaluation:
        """Evaluate every due group at ``now_ms``. A failing rule is logged and reported in ``errors``; the
        others still run (its alerts are left as they are, see :mod:`alerting.lifecycle`)."""
        out = Evaluation()
        for group in self.groups:
            if not group.due(now_ms):
                continue
            group.last_evaluated_ms = now_ms
            for rule in group.rules:
                try:
                    if isinstance(rule, RecordingRule):
                        samples = rule.evaluate(self.engine, now_ms)
                        self.store.append(samples)
                        self.engine.push(samples)
                        out.samples += samples
                    else:
                        out.conditions += rule.evaluate(self.engine, now_ms, scores)
                        out.evaluated.add(rule.name)
                except PromQLError as exc:
                    log.warning("rule evaluation failed: %s", exc)
                    out.errors[rule.name] = str(exc)
        return out


# ---------------------------------------------------------------------------------------------------- loading

_SCORE_KEEPING_CALLS = ("avg_over_time", "min_over_time", "max_over_time", "last_over_time", "clamp_min", "clamp_max")
_FILTERS = ("==", "!=", ">", "<", ">=", "<=")


def _reads_score(node: object) -> bool:
    """Whether a compiled expression's value is an anomaly score: ``opswatch_anomaly_score`` or ``anomaly()``,
    through functions, aggregations, filters and set operations that keep a sample's value (``max_over_time``,
    ``max by``, ``> 1.1``, ``and``), not through arithmetic or ``bool`` comparisons."""
    if isinstance(node, Selector):
        return node.name == "opswatch_anomaly_score"
    if isinstance(node, Call):
        return node.name == "anomaly" or (node.name in _SCORE_KEEPING_CALLS and _reads_score(node.args[0]))
    if isinstance(node, Aggregate):
        return node.op in ("max", "min", "avg") and _reads_score(node.expr)
    if isinstance(node, Binary):
        if node.op in ("and", "unless") or (node.op in _FILTERS and not node.return_bool):
            # a comparison with a number on the left keeps the right-hand side's values
            return _reads_score(node.rhs if isinstance(node.lhs, Number) else node.lhs)
        return node.op == "or" and _reads_score(node.lhs) and _reads_score(node.rhs)
    return False


def _compile(spec: RuleSpec, where: str) -> AlertingRule | RecordingRule:
    try:
        tree = compile_query(spec.expr, ("anomaly",))
    except PromQLError as exc:
        raise ConfigError(f"{where}, key 'expr': {exc}; write PromQL as storage/promql.py evaluates it, "
                          f"e.g. 'job:error_ratio > 0.25' or 'anomaly(job:latency_p99_seconds) > 5'") from exc
    if spec.record is not None:
        return RecordingRule(spec.record, spec.expr, dict(spec.labels), where)
    labels = {k: _template(v, f"{where}, key 'labels.{k}'") for k, v in spec.labels.items()}
    annotations = {k: _template(v, f"{where}, key 'annotations.{k}'") for k, v in spec.annotations.items()}
    return AlertingRule(spec.alert, spec.expr, int(parse_duration(spec.for_ or "0s") * 1000),
                        int(parse_duration(spec.keep_firing_for or "0s") * 1000), labels, annotations, where,
                        _reads_score(tree))


def _name_rules_in(message: str, raw: object) -> str:
    """Add the group's and rule's names after ``key 'groups.G.rules.R...'`` in a validation message."""
    def named(m: re.Match) -> str:
        try:
            group = raw["groups"][int(m["g"])]
            text = f" (group {group.get('name')!r}"
            if m["r"] is not None:
                rule = group["rules"][int(m["r"])]
                text += f", rule {rule.get('alert') or rule.get('record')!r}"
            return m[0] + text + ")"
        except (KeyError, IndexError, TypeError, AttributeError):
            return m[0]
    return re.sub(r"key 'groups\.(?P<g>\d+)(?:\.rules\.(?P<r>\d+))?[^']*'", named, message)


def load_rule_groups(path: str | Path = DEFAULT_RULES) -> list[RuleGroup]:
    """Load, validate and compile a rules file.

    :raises ConfigError: naming the file, group, rule and key (``groups.0.rules.2.expr``) and the fix.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        spec = RulesFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read rules: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(_name_rules_in(describe_validation_error(path, exc, RulesFile), raw)) from exc
    groups, names = [], set()
    for g, group in enumerate(spec.groups):
        if group.name in names:
            raise ConfigError(f"{path}: key 'groups.{g}.name': group {group.name!r} appears twice; rename one")
        names.add(group.name)
        rules = [_compile(r, f"{path}: group {group.name!r}, rule {r.alert or r.record!r} (groups.{g}.rules.{i})")
                 for i, r in enumerate(group.rules)]
        interval = int(parse_duration(group.interval) * 1000) if group.interval else None
        groups.append(RuleGroup(group.name, interval, rules))
    return groups


def load_rules(path: str | Path = DEFAULT_RULES) -> list[AlertingRule]:
    """The alerting rules of a rules file (see :func:`load_rule_groups`), in file order."""
    return [r for g in load_rule_groups(path) for r in g.rules if isinstance(r, AlertingRule)]
