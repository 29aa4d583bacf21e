"""The detection explorer (``/explore``): pick a series (a :mod:`dashboards.query` expression), a
detector and its parameters, a threshold and a time range; see the scores and detections.

Everything is in the URL (``expr``, ``detector``, ``threshold``, ``p-<parameter>``, ``from``, ``to``), so a
link reproduces the analysis. Each series is scored in time order through the detector's streaming
``update`` (no look-ahead, as live), which also gives the baseline and spread of the expected band.
Detector parameters are the keyword arguments of its constructor, found by introspection, so adding a
detector to :data:`DETECTORS` is one line.
"""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import pandas as pd
from dash import ALL, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from detection.robust_zscore import RobustZScore
from detection.signals import SIGNALS

from .charts import anomaly_figure
from .query import parse_query, run_query
from .sources import Sources
from .view import View, parse_view

DETECTORS: dict[str, type] = {"robust_zscore": RobustZScore}
"""Detectors offered, by name (classes following :mod:`detection.base`'s contract)."""

MAX_SERIES = 5
MAX_POINTS = 2000


def detector_parameters(cls: type) -> dict[str, object]:
    """``{name: default}`` for the constructor's keyword arguments with a number or string default."""
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if p.default is not inspect.Parameter.empty and isinstance(p.default, (int, float, str)):
            out[name] = p.default
    return out


def build_detector(name: str, given: dict[str, str]):
    """An instance of detector ``name`` with ``given`` parameters (strings, converted to the type of
    each default).

    :raises ValueError: naming the detector or the parameter that is unknown or of the wrong type, or
        what the detector's constructor rejected.
    """
    if name not in DETECTORS:
        raise ValueError(f"detector {name!r} is unknown; choose one of {', '.join(DETECTORS)}")
    defaults = detector_parameters(DETECTORS[name])
    kwargs = {}
    for key, text in given.items():
        if key not in defaults:
            raise ValueError(f"{name} has no parameter {key!r} (it has {', '.join(defaults)})")
        if text in (None, ""):
            continue
        kind = type(defaults[key])
        try:
            kwargs[key] = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: parameter {key}={text!r} is not a {kind.__name__}") from None
    return DETECTORS[name](**kwargs)


def score_series(detector, values: pd.Series) -> pd.DataFrame:
    """Stream ``values`` through ``detector.update``: a frame with columns ``value``, ``score``,
    ``baseline``, ``scale`` on the same index (NaN values stay NaN and are not learned)."""
    rows = []
    stamps = values.index.as_unit("ms").asi8
    for t, v in zip(stamps, values.to_numpy(dtype=float)):
        if math.isnan(v):
            rows.append((v, math.nan, math.nan, math.nan))
            continue
        s = detector.update(int(t), float(v))
        rows.append((v, s.score, s.baseline, s.scale))
    return pd.DataFrame(rows, index=values.index, columns=["value", "score", "baseline", "scale"])


class Explorer:
    def __init__(self, sources: Sources):
        self.sources = sources

    def suggestions(self) -> list[str]:
        nodes = self.sources.topology.nodes() or sorted(self.sources.snapshot().signals)
        return [f'job:{s}{{job="{n}"}}' for n in nodes for s in SIGNALS if s != "up"]

    def defaults(self, view: View) -> dict:
        service = view.service or next(iter(self.sources.topology.nodes("service")), "gateway")
        return {"expr": view.extra.get("expr") or f'job:latency_p99_seconds{{job="{service}"}}',
                "detector": view.extra.get("detector") or next(iter(DETECTORS)),
                "threshold": view.extra.get("threshold") or "5",
                "params": {k[2:]: v for k, v in view.extra.items() if k.startswith("p-")}}

    def param_inputs(self, detector: str, given: dict) -> list:
        cls = DETECTORS.get(detector)
        if cls is None:
            return [html.Span(f"unknown detector {detector!r}", className="error")]
        return [html.Label(className="param", children=[
            html.Span(name), dcc.Input(id={"type": "explore-param", "name": name}, value=str(given.get(name, default)),
                                       className="text-input small", debounce=True)])
            for name, default in detector_parameters(cls).items()]

    def layout(self, view: View) -> html.Div:
        d = self.defaults(view)
        return html.Div(className="page doc explorer", children=[
            dcc.Store(id="explore-view", data={"from": view.time_from, "to": view.time_to, **d}),
            html.H1("Detection explorer"),
            html.Div(className="explore-controls", children=[
                html.Label(className="param wide", children=[
                    html.Span("series"),
                    dcc.Input(id="explore-expr", value=d["expr"], list="explore-suggestions", className="text-input wide",
                              debounce=True),
                ]),
                html.Datalist(id="explore-suggestions", children=[html.Option(value=v) for v in self.suggestions()]),
                html.Label(className="param", children=[
                    html.Span("detector"),
                    dcc.Dropdown(id="explore-detector", options=list(DETECTORS), value=d["detector"], clearable=False,
                                 className="picker"),
                ]),
                html.Label(className="param", children=[
                    html.Span("threshold"),
                    dcc.Input(id="explore-threshold", value=d["threshold"], className="text-input small", debounce=True),
                ]),
                html.Div(id="explore-params", className="params", children=self.param_inputs(d["detector"], d["params"])),
                html.Button("Run", id="explore-run", className="button"),
            ]),
            dcc.Loading(html.Div(id="explore-result")),
        ])

    def run(self, data: dict) -> list:
        started = time.perf_counter()
        view = View(time_from=data.get("from"), time_to=data.get("to"))
        now_ms = self.sources.now_ms()
        try:
            start_ms, end_ms = view.window(now_ms, "1h")
            query = parse_query(data["expr"])
            threshold = float(data["threshold"])
            build_detector(data["detector"], data["params"])  # validate before reading the store
        except (ValueError, KeyError) as exc:
            return [html.Div(f"Cannot run: {exc}", className="error", id="explore-error")]
        points = int(min(MAX_POINTS, max(2, (end_ms - start_ms) // 1000 + 1)))
        results = run_query(self.sources.store, query, start_ms, end_ms, points)
        if not results:
            return [html.Div(f"No series matches {query.text} between the chosen times.", className="muted",
                             id="explore-error")]
        out, summary = [], []
        for r in results[:MAX_SERIES]:
            frame = score_series(build_detector(data["detector"], data["params"]), r.values)
            hot = frame["score"] >= threshold
            name = query.text if not r.labels else "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(r.labels.items())) + "}"
            first = frame.index[hot.to_numpy()][0].strftime("%H:%M:%S") if hot.any() else "—"
            summary.append(html.Tr([html.Td(name), html.Td(int(frame["value"].notna().sum())),
                                    html.Td(int(hot.sum()), className="detections"), html.Td(first),
                                    html.Td(f"{np.nanmax(frame['score']):.1f}" if frame["score"].notna().any() else "—")]))
            out.append(dcc.Graph(className="chart", config={"displaylogo": False}, figure=anomaly_figure(
                name, frame["value"], frame["score"], frame["baseline"], frame["scale"], threshold, height=380)))
        head = html.Tr([html.Th(h) for h in ("series", "points", "detections", "first detection", "max score")])
        note = (f"showing {MAX_SERIES} of {len(results)} series" if len(results) > MAX_SERIES else "")
        self.sources.callback_seconds.labels("explorer").observe(time.perf_counter() - started)
        return [html.Table([html.Thead(head), html.Tbody(summary)], className="table", id="explore-summary"),
                html.Div(note, className="muted"), *out]

    def register(self, app) -> None:
        @app.callback(Output("explore-result", "children"), Input("explore-view", "data"))
        async def explore_run(data):
            return await self.sources.run(self.run, data)

        @app.callback(Output("explore-params", "children"), Input("explore-detector", "value"),
                      State("explore-view", "data"), prevent_initial_call=True)
        def explore_params(detector, data):
            return self.param_inputs(detector, data["params"] if detector == data["detector"] else {})

        @app.callback(
            Output("url", "search", allow_duplicate=True),
            Input("explore-run", "n_clicks"),
            State("explore-expr", "value"), State("explore-detector", "value"), State("explore-threshold", "value"),
            State({"type": "explore-param", "name": ALL}, "value"), State({"type": "explore-param", "name": ALL}, "id"),
            State("url", "pathname"), State("url", "search"),
            prevent_initial_call=True,
        )
        def explore_submit(_n, expr, detector, threshold, values, ids, pathname, search):
            view = parse_view(pathname, search)
            keep = {k: v for k, v in view.extra.items() if not k.startswith("p-")}
            params = {f"p-{i['name']}": v for i, v in zip(ids, values)}
            new = View(view.path, view.time_from, view.time_to, view.business, view.service, view.kiosk,
                       {**keep, "expr": expr, "detector": detector, "threshold": threshold, **params})
            query = new.query()
            if query == (search or ""):
                raise PreventUpdate
            return query
