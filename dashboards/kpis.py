"""The wall screen's key numbers: a declarative table (``kpis.yaml``) evaluated through the store.

Each KPI is a :mod:`dashboards.query` expression plus how to show it. Adding a platform metric to the wall
screen is one line in the YAML file; a KPI whose series does not exist yet is in state ``nodata``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opswatch.config_errors import describe_validation_error
from opswatch.errors import ConfigError
from storage.base import Store

from .query import Query, TailCache, parse_query, run_query

DEFAULT_KPIS = Path(__file__).with_name("kpis.yaml")


class KpiSpec(BaseModel):
    """One KPI of the YAML file (see its header)."""

    model_config = ConfigDict(extra="forbid")
    title: str
    expr: str
    format: str = "{:,.2f}"
    scale: float = 1.0
    warn_above: float | None = None
    crit_above: float | None = None

    @field_validator("expr")
    @classmethod
    def _parses(cls, v: str) -> str:
        parse_query(v)
        return v

    @field_validator("format")
    @classmethod
    def _formats(cls, v: str) -> str:
        try:
            v.format(1.5)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"{v!r} is not a format string for one number, like '{{:,.1f}} ms': {exc}") from None
        return v

    @property
    def query(self) -> Query:
        return parse_query(self.expr)


class KpiFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kpis: list[KpiSpec] = Field(min_length=1)


def load_kpis(path: str | Path = DEFAULT_KPIS) -> list[KpiSpec]:
    """Read and validate a KPI table.

    :raises ConfigError: naming the file and the key (``kpis.2.expr: ...``) when it is unreadable or invalid.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the KPI table: {exc}") from exc
    try:
        return KpiFile.model_validate(raw).kpis
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, KpiFile)) from exc


@dataclass(frozen=True)
class KpiValue:
    """A KPI evaluated at ``end_ms``: ``value`` (NaN without data), ``text`` as shown, ``state``
    (``ok``/``warning``/``critical``/``nodata``), ``points`` (the sparkline, oldest first, NaN gaps kept)
    and ``newest_ms`` (the newest sample it used; None without data)."""

    spec: KpiSpec
    value: float
    text: str
    state: str
    points: list[float]
    newest_ms: int | None


def evaluate_kpi(store: Store, spec: KpiSpec, start_ms: int, end_ms: int, points: int = 120,
                 cache: TailCache | None = None) -> KpiValue:
    """Evaluate one KPI over ``[start_ms, end_ms]`` (reading through ``cache`` when given). A KPI with
    more than one result series (no aggregation) shows their sum. Raises what the store raises."""
    results = run_query(store, spec.query, start_ms, end_ms, points, cache)
    if not results:
        return KpiValue(spec, math.nan, "no data", "nodata", [], None)
    line = results[0].values
    for r in results[1:]:
        line = line.add(r.values, fill_value=0)
    value = float(line.iloc[-1])
    newest = max(r.newest_ms for r in results)
    if math.isnan(value):
        return KpiValue(spec, value, "no data", "nodata", line.tolist(), newest)
    state = ("critical" if spec.crit_above is not None and value > spec.crit_above
             else "warning" if spec.warn_above is not None and value > spec.warn_above else "ok")
    return KpiValue(spec, value, spec.format.format(value * spec.scale), state, line.tolist(), newest)
