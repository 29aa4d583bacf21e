"""A PromQL query engine over any :class:`storage.base.Store` (instant and range queries).

Queries are parsed with ``promql-parser`` (https://pypi.org/project/promql-parser/, the Rust PromQL parser,
compatible with Prometheus 2.45's grammar) and compiled once into a small tree; unsupported constructs are
rejected at compile time with the construct and its character position. Evaluation follows Prometheus 2.42's
``promql/engine.go`` (https://prometheus.io/docs/prometheus/latest/querying/basics/):

* an **instant vector selector** at time ``t`` takes each series' latest sample in ``[t - 5m, t]`` (the
  lookback delta); a staleness marker (:data:`collectors.samples.STALE_NAN`) as that sample ends the series;
* a **range vector selector** ``[r]`` takes the samples in ``[t - r, t]``, staleness markers left out;
* ``offset d`` moves both back by ``d``;
* functions and arithmetic drop ``__name__``; comparisons without ``bool`` filter and keep it (and the
  vector's value); ``bool`` returns 0/1 and drops it;
* vector/vector operations match one-to-one on all labels but ``__name__``, or ``on (...)``/``ignoring (...)``.

Supported: selectors with ``= != =~ !~``; ``rate irate increase delta idelta``, ``avg/min/max/sum/count/
last_over_time``, ``histogram_quantile``, ``abs ceil floor exp ln log2 log10 sqrt``, ``clamp_min clamp_max``,
``time vector scalar``; aggregations ``sum avg max min count group`` with ``by``/``without``; arithmetic
``+ - * / % ^ atan2``, comparisons ``== != > < >= <=`` (with ``bool``), set operators ``and or unless``, unary
minus, parentheses. Extra functions (OpsWatch's ``anomaly``) are passed to :class:`Engine`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import promql_parser as pp

from collectors.samples import STALE_NAN, Sample

from .base import Store, TimeSeries
from .functions import extrapolated_rate, histogram_quantile, instant_rate
from .matchers import Matcher

LOOKBACK_DELTA_MS = 300_000
"""How far back an instant vector selector looks for a sample (Prometheus's ``--query.lookback-delta``)."""

NAME = "__name__"
STALE_BITS = np.array([STALE_NAN]).view(np.uint64)[0]

Labels = dict  # label name -> value, ``__name__`` included when present


class PromQLError(ValueError):
    """A query that cannot be parsed, uses a construct OpsWatch does not evaluate, or fails at evaluation
    (e.g. duplicate series in a one-to-one match). The message names the construct and where it is."""


@dataclass(frozen=True)
class InstantSample:
    """One element of an instant vector: ``labels`` (``__name__`` included when kept) and ``value``."""

    labels: Mapping[str, str]
    value: float


@dataclass
class _Series:
    """Raw samples of one series: ``ts`` (int64 ms, ascending) and ``values`` (float64)."""

    labels: dict
    ts: np.ndarray
    values: np.ndarray


@dataclass
class CallContext:
    """What an extra function receives: its evaluated first argument ``vector`` at ``time_ms``, the compiled
    argument ``arg`` (``arg.name``/``arg.matchers`` tell a plain selector), the argument's PromQL text, and
    ``select(name, matchers)`` to read other series at the same time (an instant vector)."""

    vector: list[InstantSample]
    arg: object
    arg_text: str
    time_ms: int
    select: Callable[[str, list[Matcher]], list[InstantSample]]


ExtraFunction = Callable[[CallContext], list[InstantSample]]


# ---------------------------------------------------------------------------------------------- compiled tree

@dataclass
class Number:
    value: float


@dataclass
class String:
    value: str


@dataclass
class Selector:
    name: str
    matchers: list[Matcher]
    offset_ms: int
    range_ms: int | None = None  # set for a range vector selector
    text: str = ""


@dataclass
class Call:
    name: str
    args: list
    text: str = ""


@dataclass
class Aggregate:
    op: str
    expr: object
    without: bool
    labels: list[str]


@dataclass
class Binary:
    op: str
    lhs: object
    rhs: object
    return_bool: bool = False
    on: bool = False  # True: on(labels); False: ignoring(labels) (empty = all labels but __name__)
    labels: list[str] = field(default_factory=list)


@dataclass
class Negate:
    expr: object


_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": np.divide, "%": np.fmod,
               "^": np.power, "atan2": np.arctan2}
_COMPARISON = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
               ">=": operator.ge, "<=": operator.le}
_SET = ("and", "or", "unless")
_AGGREGATIONS = ("sum", "avg", "max", "min", "count", "group")
_RANGE_FUNCTIONS = ("rate", "irate", "increase", "delta", "idelta", "avg_over_time", "min_over_time",
                    "max_over_time", "sum_over_time", "count_over_time", "last_over_time")
_MATH = {"abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "ln": np.log, "log2": np.log2,
         "log10": np.log10, "sqrt": np.sqrt}
_OTHER_FUNCTIONS = ("histogram_quantile", "clamp_min", "clamp_max", "time", "vector", "scalar")
_MATCH_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def _position(query: str, token: str) -> str:
    at = query.find(token)
    return f"at character {at + 1}" if at >= 0 else "in the query"


def _ms(delta) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


def register_functions(names: Sequence[str]) -> None:
    """Make the parser accept ``name(instant vector) -> instant vector`` for each of ``names`` (process-wide)."""
    missing = [n for n in names if not _parses(f"{n}(x)")]
    if missing:
        pp.register_extra_functions([pp.Function(n, [pp.ValueType.Vector], pp.ValueType.Vector) for n in missing])


def _parses(query: str) -> bool:
    try:
        pp.parse(query)
    except ValueError:
        return False
    return True


def compile_query(query: str, extra_functions: Sequence[str] = ()) -> object:
    """Parse and compile ``query``; ``extra_functions`` are names of functions handled by the caller.

    :raises PromQLError: ``cannot parse 'QUERY': REASON`` or ``'QUERY': CONSTRUCT at character N is not
        supported (...)``.
    """
    if extra_functions:
        register_functions(extra_functions)
    try:
        tree = pp.parse(query)
    except ValueError as exc:
        raise PromQLError(f"cannot parse {query!r}: {exc}") from exc
    return _Compiler(query, set(extra_functions)).compile(tree)


class _Compiler:
    def __init__(self, query: str, extra: set[str]):
        self.query, self.extra = query, extra

    def unsupported(self, what: str, token: str) -> PromQLError:
        return PromQLError(f"{self.query!r}: {what} {_position(self.query, token)} is not supported; "
                           f"see storage/promql.py for what OpsWatch evaluates")

    def compile(self, node) -> object:  # noqa: C901 - one branch per node type
        if isinstance(node, pp.ParenExpr):
            return self.compile(node.expr)
        if isinstance(node, pp.NumberLiteral):
            return Number(float(node.val))
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.UnaryExpr):
            return Negate(self.compile(node.expr))
        if isinstance(node, pp.VectorSelector):
            return self.selector(node, None)
        if isinstance(node, pp.MatrixSelector):
            return self.selector(node.vector_selector, _ms(node.range))
        if isinstance(node, pp.SubqueryExpr):
            raise self.unsupported("a subquery", ":")
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.AggregateExpr):
            op = str(node.op)
            if op not in _AGGREGATIONS:
                raise self.unsupported(f"the aggregation '{op}'", op)
            without = node.modifier is not None and node.modifier.type == pp.AggModifierType.Without
            labels = list(node.modifier.labels) if node.modifier is not None else []
            return Aggregate(op, self.compile(node.expr), without, labels)
        if isinstance(node, pp.BinaryExpr):
            op = str(node.op)
            if op not in _ARITHMETIC and op not in _COMPARISON and op not in _SET:
                raise self.unsupported(f"the operator '{op}'", op)
            out = Binary(op, self.compile(node.lhs), self.compile(node.rhs))
            mod = node.modifier
            if mod is not None:
                out.return_bool = bool(mod.return_bool)
                if mod.card in (pp.VectorMatchCardinality.ManyToOne, pp.VectorMatchCardinality.OneToMany):
                    raise self.unsupported("group_left/group_right", "group_")
                if mod.matching is not None:
                    out.on = mod.matching.type == pp.LabelModifierType.Include
                    out.labels = list(mod.matching.labels)
            return out
        raise self.unsupported(f"the expression {type(node).__name__}", "")

    def selector(self, node, range_ms: int | None) -> Selector:
        text = str(node)
        if node.at is not None:
            raise self.unsupported("the @ modifier", "@")
        if node.matchers.or_matchers:
            raise self.unsupported("'or' inside a selector's braces", " or ")
        name, matchers = node.name, []
        for m in node.matchers.matchers:
            op = _MATCH_OPS[str(m.op)]
            if m.name == NAME and op == "=" and name is None:
                name = m.value
            elif m.name == NAME:
                raise self.unsupported(f"a {NAME} matcher with '{op}'", NAME)
            else:
                try:
                    matchers.append(Matcher(m.name, op, m.value))
                except ValueError as exc:
                    raise PromQLError(f"{self.query!r}: {exc}") from exc
        if name is None:
            raise self.unsupported("a selector without a metric name", "{")
        return Selector(name, matchers, _ms(node.offset), range_ms, text)

    def call(self, node) -> Call:
        name = node.func.name
        known = name in _RANGE_FUNCTIONS or name in _MATH or name in _OTHER_FUNCTIONS or name in self.extra
        if not known:
            raise self.unsupported(f"the function '{name}'", f"{name}(")
        args = [self.compile(a) for a in node.args]
        text = node.args[0].prettify() if node.args else ""
        return Call(name, args, text)


# ------------------------------------------------------------------------------------------------ evaluation

class Engine:
    """Evaluates PromQL over ``store``.

    :param lookback_delta_ms: how far an instant selector looks back (Prometheus's default 5 m).
    :param functions: extra functions by name (e.g. ``{"anomaly": ...}``): each takes ``name(instant vector)``
        and receives a :class:`CallContext`.
    :param late_samples_ms: for instant queries at times that only move forward (rule evaluation): keep each
        selector's samples between queries and read from the store only what is newer than the last query,
        minus this margin for samples stored late (a scrape's samples carry its start time). A sample
        stored more than this late is not seen. None (the default) reads the whole window every query.
    """

    def __init__(self, store: Store, lookback_delta_ms: int = LOOKBACK_DELTA_MS,
                 functions: Mapping[str, ExtraFunction] | None = None, late_samples_ms: int | None = None):
        self.store, self.lookback_ms = store, lookback_delta_ms
        self.functions = dict(functions or {})
        self._compiled: dict[str, object] = {}
        self._windows = _Windows(store, late_samples_ms) if late_samples_ms is not None else None

    def push(self, samples: Iterable[Sample]) -> None:
        """Samples the caller has just stored, of metric names that only it writes (recorded series). With
        ``late_samples_ms`` set, kept windows of those names take them directly and are not read from the
        store again; the caller must push every later sample of those names (staleness markers included)."""
        if self._windows is not None:
            self._windows.push(samples)

    def compile(self, query: str) -> object:
        """Parse and compile once (cached). :raises PromQLError: see :func:`compile_query`."""
        if query not in self._compiled:
            self._compiled[query] = compile_query(query, tuple(self.functions))
        return self._compiled[query]

    def instant(self, query: str, time_ms: int) -> list[InstantSample] | float | str:
        """Evaluate ``query`` at ``time_ms``: an instant vector (a list of :class:`InstantSample`), a scalar
        (float) or a string.

        :raises PromQLError: a parse/compile error, a range vector as the result, or a matching error.
        """
        tree = self.compile(query)
        if isinstance(tree, Selector) and tree.range_ms is not None:
            raise PromQLError(f"{query!r}: a range vector cannot be the result of an instant query here; "
                              f"wrap it in a function such as rate()")
        return _Evaluation(self, time_ms, time_ms).eval(tree, time_ms)

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[TimeSeries]:
        """Evaluate ``query`` at ``start_ms, start_ms + step_ms, ... <= end_ms`` (Prometheus's ``query_range``).

        :returns: one :class:`TimeSeries` per label set (``name`` is its ``__name__`` or ""), with the values
            at the steps where it had one; a scalar result is one series with no labels.
        :raises PromQLError: as :meth:`instant`; ``step_ms`` must be positive.
        """
        if step_ms <= 0:
            raise PromQLError(f"step must be positive, got {step_ms} ms")
        tree = self.compile(query)
        evaluation = _Evaluation(self, start_ms, end_ms)
        points: dict[tuple, tuple[dict, list[int], list[float]]] = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            result = evaluation.eval(tree, t)
            samples = [InstantSample({}, result)] if isinstance(result, float) else result
            for s in samples:
                key = tuple(sorted(s.labels.items()))
                entry = points.setdefault(key, (dict(s.labels), [], []))
                entry[1].append(t)
                entry[2].append(s.value)
        out = []
        for labels, ts, values in points.values():
            index = pd.to_datetime(ts, unit="ms", utc=True).as_unit("ms")
            name = labels.pop(NAME, "")
            out.append(TimeSeries(name, labels, pd.Series(values, index=index, dtype=float)))
        return out


def _read(store: Store, sel: Selector, lo: int, hi: int) -> list[_Series]:
    out = []
    for ts in store.select(sel.name, sel.matchers, lo, hi):
        labels = {NAME: ts.name or sel.name, **ts.labels}
        out.append(_Series(labels, ts.values.index.as_unit("ms").asi8, ts.values.to_numpy(dtype=float)))
    return out


class _Windows:
    """Each selector's samples over its last window ``[lo, hi]``, extended forward by reading only
    ``[hi - late_ms, new hi]`` from the store (see ``late_samples_ms`` of :class:`Engine`), or for pushed
    names (see :meth:`Engine.push`) not read again at all."""

    def __init__(self, store: Store, late_ms: int):
        self.store, self.late_ms = store, late_ms
        self._kept: dict[tuple, tuple[int, int, dict[tuple, _Series]]] = {}
        self._pushed: set[str] = set()

    def read(self, key: tuple, sel: Selector, lo: int, hi: int) -> list[_Series]:
        kept = self._kept.get(key)
        if kept is None or lo < kept[0] or hi < kept[1]:  # a first read, or back in time: read it all
            series = {_key(s.labels): s for s in _read(self.store, sel, lo, hi)}
        else:
            _, kept_hi, series = kept
            since = max(lo, kept_hi - self.late_ms)
            if hi > kept_hi and not (sel.name in self._pushed and sel.offset_ms == 0):
                fresh = {_key(s.labels): s for s in _read(self.store, sel, since, hi)}
                merged = {}
                for k in series.keys() | fresh.keys():
                    old, new = series.get(k), fresh.get(k)
                    if old is None:
                        merged[k] = new
                        continue
                    keep = old.ts < since  # what the fresh read covers comes from the fresh read
                    if new is None:
                        merged[k] = _Series(old.labels, old.ts[keep], old.values[keep])
                    else:
                        merged[k] = _Series(old.labels, np.concatenate((old.ts[keep], new.ts)),
                                            np.concatenate((old.values[keep], new.values)))
                series = merged
            series = {k: s for k, s in ((k, _trim(s, lo)) for k, s in series.items()) if len(s.ts)}
        self._kept[key] = (lo, hi, series)
        return list(series.values())

    def push(self, samples: Iterable[Sample]) -> None:
        by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            by_name.setdefault(sample.name, []).append(sample)
        self._pushed |= by_name.keys()
        for (name, matchers, offset, _), (_, _, series) in self._kept.items():
            if name not in by_name or offset:
                continue  # an offset window lags behind the pushes: it keeps reading the store
            for sample in by_name[name]:
                if not all(m.matches(sample.labels) for m in matchers):
                    continue
                labels = {NAME: name, **sample.labels}
                k, ts, value = _key(labels), np.array([sample.timestamp_ms]), np.array([float(sample.value)])
                old = series.get(k)
                if old is None:
                    series[k] = _Series(labels, ts, value)
                elif old.ts[-1] < sample.timestamp_ms:  # not already read from the store
                    series[k] = _Series(old.labels, np.append(old.ts, ts), np.append(old.values, value))


def _trim(s: _Series, lo: int) -> _Series:
    first = int(np.searchsorted(s.ts, lo, side="left"))
    return s if first == 0 else _Series(s.labels, s.ts[first:], s.values[first:])


def _key(labels: Mapping[str, str]) -> tuple:
    return tuple(sorted(labels.items()))


def _drop_name(labels: Mapping[str, str]) -> dict:
    return {k: v for k, v in labels.items() if k != NAME}


class _Evaluation:
    """One query over ``[start_ms, end_ms]``: each selector is read from the store once for the whole range."""

    def __init__(self, engine: Engine, start_ms: int, end_ms: int):
        self.engine, self.start_ms, self.end_ms = engine, start_ms, end_ms
        self._data: dict[tuple, list[_Series]] = {}

    def fetch(self, sel: Selector) -> list[_Series]:
        key = (sel.name, tuple(sel.matchers), sel.offset_ms, sel.range_ms)
        if key not in self._data:
            window = sel.range_ms if sel.range_ms is not None else self.engine.lookback_ms
            lo, hi = self.start_ms - sel.offset_ms - window, self.end_ms - sel.offset_ms
            windows = self.engine._windows
            if windows is not None and self.start_ms == self.end_ms:
                self._data[key] = windows.read(key, sel, lo, hi)
            else:
                self._data[key] = _read(self.engine.store, sel, lo, hi)
        return self._data[key]

    def eval(self, node, t: int):  # noqa: C901 - one branch per node type
        if isinstance(node, Number):
            return node.value
        if isinstance(node, String):
            return node.value
        if isinstance(node, Selector):
            if node.range_ms is not None:
                raise PromQLError(f"{node.text}: a range vector is only valid as a function argument")
            return self.instant_selector(node, t)
        if isinstance(node, Negate):
            value = self.eval(node.expr, t)
            if isinstance(value, float):
                return -value
            return [InstantSample(_drop_name(s.labels), -s.value) for s in value]
        if isinstance(node, Call):
            return self.call(node, t)
        if isinstance(node, Aggregate):
            return self.aggregate(node, self.eval(node.expr, t))
        if isinstance(node, Binary):
            return self.binary(node, self.eval(node.lhs, t), self.eval(node.rhs, t))
        raise PromQLError(f"cannot evaluate {node!r}")

    def instant_selector(self, sel: Selector, t: int) -> list[InstantSample]:
        ref = t - sel.offset_ms
        out = []
        for s in self.fetch(sel):
            i = int(np.searchsorted(s.ts, ref, side="right")) - 1
            if i < 0 or s.ts[i] < ref - self.engine.lookback_ms or s.values[i:i + 1].view(np.uint64)[0] == STALE_BITS:
                continue
            out.append(InstantSample(s.labels, float(s.values[i])))
        return out

    def range_selector(self, sel: Selector, t: int) -> list[tuple[dict, np.ndarray, np.ndarray]]:
        ref = t - sel.offset_ms
        out = []
        for s in self.fetch(sel):
            lo = int(np.searchsorted(s.ts, ref - sel.range_ms, side="left"))
            hi = int(np.searchsorted(s.ts, ref, side="right"))
            ts, values = s.ts[lo:hi], s.values[lo:hi]
            fresh = values.view(np.uint64) != STALE_BITS
            if fresh.any():
                out.append((s.labels, ts[fresh], values[fresh]))
        return out

    def call(self, node: Call, t: int):  # noqa: C901
        name = node.name
        if name in _RANGE_FUNCTIONS:
            sel = node.args[0]
            if not isinstance(sel, Selector) or sel.range_ms is None:
                raise PromQLError(f"{name}(): expected a range vector selector such as x[5m]")
            end = t - sel.offset_ms
            start = end - sel.range_ms
            out = []
            for labels, ts, values in self.range_selector(sel, t):
                value = _over_range(name, ts, values, start, end)
                if not math.isnan(value) or name.endswith("_over_time"):
                    out.append(InstantSample(_drop_name(labels) if name != "last_over_time" else labels, value))
            return out
        if name in self.engine.functions:
            vector = self.eval(node.args[0], t)
            ctx = CallContext(vector, node.args[0], node.text, t,
                              lambda n, m: self.instant_selector(Selector(n, list(m), 0), t))
            return self.engine.functions[name](ctx)
        if name == "time":
            return t / 1000
        if name == "vector":
            return [InstantSample({}, float(self.eval(node.args[0], t)))]
        if name == "scalar":
            vector = self.eval(node.args[0], t)
            return vector[0].value if len(vector) == 1 else math.nan
        if name in _MATH:
            with np.errstate(all="ignore"):
                return [InstantSample(_drop_name(s.labels), float(_MATH[name](np.float64(s.value))))
                        for s in self.eval(node.args[0], t)]
        if name in ("clamp_min", "clamp_max"):
            bound = float(self.eval(node.args[1], t))
            pick = max if name == "clamp_min" else min
            return [InstantSample(_drop_name(s.labels), pick(s.value, bound) if not math.isnan(s.value) else s.value)
                    for s in self.eval(node.args[0], t)]
        if name == "histogram_quantile":
            return self.histogram_quantile(float(self.eval(node.args[0], t)), self.eval(node.args[1], t))
        raise PromQLError(f"function {name}() is not supported")

    @staticmethod
    def histogram_quantile(q: float, vector: list[InstantSample]) -> list[InstantSample]:
        groups: dict[tuple, tuple[dict, list[tuple[float, float]]]] = {}
        for s in vector:
            try:
                le = float(s.labels["le"])
            except (KeyError, ValueError):
                continue  # Prometheus ignores series without a parsable le
            labels = {k: v for k, v in s.labels.items() if k not in (NAME, "le")}
            groups.setdefault(_key(labels), (labels, []))[1].append((le, s.value))
        return [InstantSample(labels, histogram_quantile(q, buckets)) for labels, buckets in groups.values()]

    @staticmethod
    def aggregate(node: Aggregate, vector) -> list[InstantSample]:
        if not isinstance(vector, list):
            raise PromQLError(f"{node.op}(): expected an instant vector")
        groups: dict[tuple, tuple[dict, list[float]]] = {}
        for s in vector:
            if node.without:
                labels = {k: v for k, v in s.labels.items() if k != NAME and k not in node.labels}
            else:
                labels = {k: v for k, v in s.labels.items() if k in node.labels}
            groups.setdefault(_key(labels), (labels, []))[1].append(s.value)
        return [InstantSample(labels, _aggregate(node.op, values)) for labels, values in groups.values()]

    def binary(self, node: Binary, lhs, rhs):
        op = node.op
        scalar_l, scalar_r = isinstance(lhs, float), isinstance(rhs, float)
        if scalar_l and scalar_r:
            value, keep = _apply(op, lhs, rhs)
            if op in _ARITHMETIC:
                return value
            if not node.return_bool:
                raise PromQLError(f"comparisons between scalars must use the bool modifier: '{op} bool'")
            return float(keep)
        if scalar_l or scalar_r:
            if op in _SET:
                raise PromQLError(f"set operator '{op}' needs instant vectors on both sides")
            vector, scalar = (rhs, lhs) if scalar_l else (lhs, rhs)
            out = []
            for s in vector:
                a, b = (scalar, s.value) if scalar_l else (s.value, scalar)
                value, keep = _apply(op, a, b)
                if op in _COMPARISON:
                    if node.return_bool:
                        out.append(InstantSample(_drop_name(s.labels), float(keep)))
                    elif keep:
                        out.append(InstantSample(s.labels, s.value))  # the vector's value, on either side
                else:
                    out.append(InstantSample(_drop_name(s.labels), value))
            return out
        return self.vector_binary(node, lhs, rhs)

    @staticmethod
    def signature(node: Binary, labels: Mapping[str, str]) -> tuple:
        if node.on:
            return tuple(sorted((k, v) for k, v in labels.items() if k in node.labels))
        return tuple(sorted((k, v) for k, v in labels.items() if k != NAME and k not in node.labels))

    def vector_binary(self, node: Binary, lhs: list[InstantSample], rhs: list[InstantSample]) -> list[InstantSample]:
        op = node.op
        if op in _SET:
            return self.set_operation(node, lhs, rhs)
        right: dict[tuple, InstantSample] = {}
        for s in rhs:
            sig = self.signature(node, s.labels)
            if sig in right:
                raise PromQLError(f"found duplicate series for the match group {dict(sig)} on the right hand-side "
                                  f"of '{op}'; many-to-many matching is not allowed")
            right[sig] = s
        seen: set[tuple] = set()
        out = []
        for s in lhs:
            sig = self.signature(node, s.labels)
            other = right.get(sig)
            if other is None:
                continue
            if sig in seen:
                raise PromQLError(f"multiple matches for labels {dict(sig)} on the left hand-side of '{op}': "
                                  f"many-to-one matching (group_left) is not supported")
            seen.add(sig)
            value, keep = _apply(op, s.value, other.value)
            if op in _COMPARISON and not node.return_bool and not keep:
                continue
            labels = dict(s.labels)
            if op in _ARITHMETIC or node.return_bool:
                labels.pop(NAME, None)
            if node.on:
                labels = {k: v for k, v in labels.items() if k in node.labels}
            else:
                labels = {k: v for k, v in labels.items() if k not in node.labels}
            if op in _COMPARISON:
                value = float(keep) if node.return_bool else s.value
            out.append(InstantSample(labels, value))
        return out

    def set_operation(self, node: Binary, lhs: list[InstantSample], rhs: list[InstantSample]) -> list[InstantSample]:
        right = {self.signature(node, s.labels) for s in rhs}
        if node.op == "and":
            return [s for s in lhs if self.signature(node, s.labels) in right]
        if node.op == "unless":
            return [s for s in lhs if self.signature(node, s.labels) not in right]
        left = {self.signature(node, s.labels) for s in lhs}
        return lhs + [s for s in rhs if self.signature(node, s.labels) not in left]


def _apply(op: str, a: float, b: float) -> tuple[float, bool]:
    """``(value, keep)``: the arithmetic result, or for a comparison its truth."""
    if op in _COMPARISON:
        return a, bool(_COMPARISON[op](a, b))
    with np.errstate(all="ignore"):
        return float(_ARITHMETIC[op](np.float64(a), np.float64(b))), True


def _aggregate(op: str, values: list[float]) -> float:
    if op == "sum":
        return float(sum(values))
    if op == "count":
        return float(len(values))
    if op == "group":
        return 1.0
    if op == "avg":
        mean = 0.0
        for count, v in enumerate(values, 1):  # Prometheus's incremental mean
            mean += v / count - mean / count
        return mean
    best = values[0]
    for v in values[1:]:  # a NaN is replaced by any number, as Prometheus does
        if (v > best if op == "max" else v < best) or math.isnan(best):
            best = v
    return best


def _over_range(name: str, ts: np.ndarray, values: np.ndarray, start: int, end: int) -> float:
    if name in ("rate", "increase", "delta"):
        return extrapolated_rate(ts, values, start, end, name != "delta", name == "rate")
    if name in ("irate", "idelta"):
        return instant_rate(ts, values, name == "irate")
    if name == "count_over_time":
        return float(len(values))
    if name == "sum_over_time":
        return float(sum(values))
    if name == "last_over_time":
        return float(values[-1])
    if name == "avg_over_time":
        mean = 0.0
        for count, v in enumerate(values, 1):
            mean += v / count - mean / count
        return mean
    return _aggregate("max" if name == "max_over_time" else "min", list(values))
