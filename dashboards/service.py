"""The service page (``/service/<node>``): golden signals with anomaly scores and expected bands, what the
node depends on and what depends on it, and the incidents it is part of.

Reads the recorded series the pipeline writes back every evaluation: ``job:<signal>{job}``,
``opswatch_anomaly_score{job, signal}``, and the detector's explanation ``opswatch_anomaly_baseline`` /
``opswatch_anomaly_scale`` (band = baseline ± threshold × scale).
"""

from __future__ import annotations

import time

from dash import Input, Output, dcc, html

from detection.ensemble import SUGGESTED_THRESHOLD
from detection.signals import OPTIONAL_SIGNALS, SIGNALS
from storage.matchers import Matcher

from .charts import SIGNAL_UNITS, anomaly_figure
from .health import active_incidents, node_health
from .query import Query, run_query
from .sources import Sources
from .view import View

ANOMALY_THRESHOLD = SUGGESTED_THRESHOLD
"""The score at which the default rules fire (``> 1.1`` on the default ensemble's record-ratio scale in
alerting/default_rules.yaml)."""

REFRESH_SECONDS = 10.0


def _series(sources: Sources, metric: str, labels: dict, start_ms: int, end_ms: int):
    """One series on a 300-point grid, or None without data."""
    q = Query(metric, metric, tuple(Matcher(k, "=", v) for k, v in labels.items()))
    found = run_query(sources.store, q, start_ms, end_ms, points=300)
    return found[0].values if found else None


class ServicePage:
    def __init__(self, sources: Sources):
        self.sources = sources

    def layout(self, view: View, node: str) -> html.Div:
        topo = self.sources.topology
        known = node in topo.graph or node in self.sources.snapshot().signals
        if not known:
            return html.Div(className="page doc", children=[
                html.H1(f"Unknown service {node!r}"),
                html.P("Known nodes: "),
                html.Div([dcc.Link(n, href=view.href(f"/service/{n}"), className="chip") for n in topo.nodes()]),
            ])

        def chips(names: list[str]) -> list:
            return [dcc.Link(topo.graph.nodes[n]["title"], href=view.href(f"/service/{n}"), className="chip")
                    for n in names] or [html.Span("none", className="muted")]

        in_graph = node in topo.graph
        kind = topo.kind(node) if in_graph else "job (not in the topology)"
        return html.Div(className="page doc service-page", children=[
            dcc.Store(id="service-view", data={"node": node, "from": view.time_from, "to": view.time_to}),
            dcc.Interval(id="service-tick", interval=int(REFRESH_SECONDS * 1000), disabled=not view.is_live()),
            html.Div(className="doc-header", children=[
                html.H1(topo.graph.nodes[node]["title"] if in_graph else node),
                html.Span(kind, className="muted"),
                html.Span(id="service-state", className="badge"),
                html.Span(id="service-asof", className="muted asof"),
            ]),
            html.Div(className="relations", children=[
                html.Div([html.B("Depends on: "), *chips(topo.dependencies(node) if in_graph else [])]),
                html.Div([html.B("Depended on by: "), *chips(topo.dependants(node) if in_graph else [])]),
            ]),
            html.Div(id="service-charts", className="chart-grid"),
            html.H2("Incidents involving this node"),
            html.Div(id="service-incidents"),
        ])

    def refresh(self, data: dict) -> tuple:
        started = time.perf_counter()
        s, node = self.sources, data["node"]
        view = View(time_from=data.get("from"), time_to=data.get("to"))
        now_ms = s.now_ms()
        try:
            start_ms, end_ms = view.window(now_ms, "1h")
        except ValueError:
            start_ms, end_ms = now_ms - 3_600_000, now_ms
        charts = []
        for signal in SIGNALS:
            if signal == "up":
                continue
            values = _series(s, f"job:{signal}", {"job": node}, start_ms, end_ms)
            unit, factor = SIGNAL_UNITS.get(signal, ("", 1.0))
            if values is None:
                if signal not in OPTIONAL_SIGNALS:  # a cache's or a consumer's signal: other jobs never have it
                    charts.append(html.Div(f"{signal}: no data in this range", className="chart-empty"))
                continue
            labels = {"job": node, "signal": signal}
            fig = anomaly_figure(signal, values, _series(s, "opswatch_anomaly_score", labels, start_ms, end_ms),
                                 _series(s, "opswatch_anomaly_baseline", labels, start_ms, end_ms),
                                 _series(s, "opswatch_anomaly_scale", labels, start_ms, end_ms),
                                 ANOMALY_THRESHOLD, unit, factor)
            charts.append(dcc.Graph(figure=fig, id=f"chart-{signal}", className="chart",
                                    config={"displaylogo": False}))
        snap = s.snapshot()
        stale = snap.evaluated_at_ms is None or now_ms - snap.evaluated_at_ms > s.stale_after_seconds * 1000
        state = node_health(snap, stale).get(node, "nodata")
        mine = [i for i in snap.incidents if node in i["nodes"]]
        mine.sort(key=lambda i: i["opened_at"], reverse=True)
        active = {i["id"] for i in active_incidents(snap)}
        rows = [html.Div(className="row-link", children=[
            dcc.Link(i["id"], href=f"/incident/{i['id']}"),
            html.Span(f" {i['status']}{' (active)' if i['id'] in active else ''} · {i['severity']} · opened {i['opened_at']}"
                      f" · root cause {i['root_causes'][0]['node'] if i['root_causes'] else '?'}")])
            for i in mine[:20]] or [html.Div("none", className="muted")]
        asof = time.strftime("as of %H:%M:%S UTC", time.gmtime(now_ms / 1000))
        s.callback_seconds.labels("service").observe(time.perf_counter() - started)
        return charts, rows, state.upper(), f"badge {state}", asof

    def register(self, app) -> None:
        @app.callback(
            Output("service-charts", "children"), Output("service-incidents", "children"),
            Output("service-state", "children"), Output("service-state", "className"), Output("service-asof", "children"),
            Input("service-tick", "n_intervals"), Input("service-view", "data"),
        )
        async def service_refresh(_n, data):
            return await self.sources.run(self.refresh, data)
