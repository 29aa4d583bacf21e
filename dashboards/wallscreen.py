"""The NOC wall screen: a Dash app on OpsWatch's FastAPI server, refreshing itself.

Regions (stable ids for tests and users' own checks): ``business-tiles`` (green/amber/red per business),
``kpis`` (platform key numbers with sparklines), ``topology`` (the dependency graph coloured by health,
root cause marked), ``incidents`` (active incidents with age, severity, top root cause), ``freshness``
(age of the data; stale data is shown as stale, never as healthy).

The app reads a snapshot callable (the pipeline's latest evaluation), the store (for sparklines) and the
topology; it never writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import dash_cytoscape as cyto
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from alerting.model import parse_rfc3339
from storage.base import Store
from storage.functions import rate
from topology.graph import Topology

from . import theme

REFRESH_SECONDS = 2.0
SPARKLINE_SECONDS = 900


def _age(ms: int | None, now: float) -> str:
    if ms is None:
        return "—"
    seconds = max(0, int(now - ms / 1000))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def _node_health(snapshot: Any) -> dict[str, str]:
    """``{node: "critical" | "warning" | "ok" | "down"}`` from the snapshot's alerts and ``up``."""
    health: dict[str, str] = {}
    for job, values in snapshot.signals.items():
        health[job] = "down" if values.get("up") == 0 else "ok"
    for alert in snapshot.alerts:
        job = alert["labels"].get("job", "")
        if alert["state"] == "firing":
            health[job] = "critical"
        elif alert["state"] == "pending" and health.get(job) == "ok":
            health[job] = "warning"
    return health


def _sparkline(values: list[float], color: str) -> dcc.Graph:
    fig = go.Figure(go.Scatter(y=values, mode="lines", line={"color": color, "width": 3},
                               fill="tozeroy", fillcolor=theme.fill(color)))
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), height=60, paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", xaxis={"visible": False}, yaxis={"visible": False},
                      showlegend=False)
    return dcc.Graph(figure=fig, config={"displayModeBar": False, "staticPlot": True}, style={"height": "60px"})


@dataclass(frozen=True)
class Kpi:
    """One key number: summed over the series of ``metric`` matching ``matchers``; a ``counter`` is shown
    as its per-second rate; the value is multiplied by ``scale`` before ``fmt``."""

    title: str
    metric: str
    matchers: dict
    fmt: str
    scale: float = 1.0
    counter: bool = False


class WallScreen:
    """Builds the layout and callbacks of the wall screen.

    :param snapshot: returns the latest pipeline snapshot (attributes ``evaluated_at_ms``, ``signals``,
        ``alerts``, ``incidents``); :param store: for sparklines; :param topology: the dependency graph;
    :param stale_after_seconds: data older than this is shown as stale.
    """

    KPIS = (
        Kpi("Requests/s", "job:request_rate", {"job": "gateway"}, "{:.1f}"),
        Kpi("Error ratio", "job:error_ratio", {"job": "gateway"}, "{:.2%}"),
        Kpi("p99 latency", "job:latency_p99_seconds", {"job": "gateway"}, "{:.0f} ms", scale=1000),
        Kpi("Online users", "platform_online_users", {}, "{:.0f}"),
        Kpi("Live viewers", "live_viewers", {}, "{:.0f}"),
        Kpi("Gift orders/s", "gift_orders_total", {}, "{:.1f}", counter=True),
    )

    def __init__(self, snapshot: Callable[[], Any], store: Store, topology: Topology,
                 stale_after_seconds: float = 30.0, clock: Callable[[], float] = time.time):
        self.snapshot, self.store, self.topology = snapshot, store, topology
        self.stale_after, self.clock = stale_after_seconds, clock

    def layout(self) -> html.Div:
        return html.Div(id="wallscreen", style=theme.PAGE, children=[
            html.Div(style=theme.HEADER, children=[
                html.Div("OpsWatch · reference platform", style=theme.TITLE),
                html.Div(id="freshness", style=theme.FRESHNESS),
                html.Div(id="clock", style=theme.CLOCK),
            ]),
            html.Div(id="business-tiles", style=theme.TILES),
            html.Div(id="kpis", style=theme.KPIS),
            html.Div(style=theme.MAIN, children=[
                html.Div(style=theme.PANEL, children=[
                    html.Div("Dependency graph", style=theme.PANEL_TITLE),
                    cyto.Cytoscape(id="topology", elements=self._elements({}, set()), layout={"name": "preset"},
                                   stylesheet=theme.CYTOSCAPE, style={"width": "100%", "height": "100%"},
                                   userZoomingEnabled=False, userPanningEnabled=False, autoungrabify=True),
                ]),
                html.Div(style=theme.PANEL, children=[
                    html.Div("Active incidents", style=theme.PANEL_TITLE),
                    html.Div(id="incidents"),
                ]),
            ]),
            dcc.Interval(id="tick", interval=int(REFRESH_SECONDS * 1000)),
        ])

    def _positions(self) -> dict[str, tuple[float, float]]:
        layers = [self.topology.nodes("business"),
                  [n for n in self.topology.nodes("service") if self.topology.graph.nodes[n]["router"]],
                  [n for n in self.topology.nodes("service") if not self.topology.graph.nodes[n]["router"]],
                  self.topology.nodes("infra")]
        pos = {}
        for row, names in enumerate(layers):
            for col, name in enumerate(names):
                pos[name] = ((col + 0.5) / max(1, len(names)) * 1000, row * 160)
        return pos

    def _elements(self, health: dict[str, str], root_causes: set[str]) -> list[dict]:
        pos = self._positions()
        g = self.topology.graph
        nodes = [{"data": {"id": n, "label": ("★ " if n in root_causes else "") + g.nodes[n]["title"]},
                  "position": {"x": pos[n][0], "y": pos[n][1]},
                  "classes": " ".join([g.nodes[n]["kind"], health.get(n, "nodata")]
                                      + (["rootcause"] if n in root_causes else []))}
                 for n in g.nodes]
        edges = [{"data": {"source": a, "target": b}} for a, b in g.edges]
        return nodes + edges

    def _business_states(self, incidents: list[dict], health: dict[str, str], stale: bool) -> dict[str, tuple[str, str]]:
        """``{business: (state, note)}``: red when an open incident impacts it, amber when one of its
        direct dependencies has alerts, grey when the data is stale."""
        states = {}
        for b in self.topology.nodes("business"):
            hit = [i for i in incidents if b in i["impacted_businesses"]]
            if stale:
                states[b] = ("nodata", "NO FRESH DATA")
            elif hit:
                cause = hit[0]["root_causes"][0]["node"] if hit[0]["root_causes"] else "?"
                states[b] = ("critical", f"incident · cause {cause}")
            elif any(health.get(d) in ("warning", "critical") for d in self.topology.dependencies(b)):
                states[b] = ("warning", "degraded")
            else:
                states[b] = ("ok", "healthy")
        return states

    def _business_tiles(self, states: dict[str, tuple[str, str]]) -> list[html.Div]:
        return [html.Div(className=f"tile {state}", id=f"tile-{b}", style=theme.tile(state), children=[
                    html.Div(self.topology.graph.nodes[b]["title"], style=theme.TILE_NAME),
                    html.Div(note, style=theme.TILE_NOTE),
                ]) for b, (state, note) in states.items()]

    def _kpis(self, now_ms: int) -> list[html.Div]:
        cards = []
        for kpi in self.KPIS:
            total = None
            for ts in self.store.select(kpi.metric, kpi.matchers, now_ms - SPARKLINE_SECONDS * 1000, now_ms):
                total = ts.values if total is None else total.add(ts.values, fill_value=0)
            if total is None:
                points = []
            elif kpi.counter:  # rate over each three consecutive samples
                points = [max(0.0, rate(total.iloc[i - 2:i + 1])) for i in range(2, len(total))]
            else:
                points = list(total.dropna())
            value = points[-1] if points else math.nan
            shown = "—" if math.isnan(value) else kpi.fmt.format(value * kpi.scale)
            cards.append(html.Div(style=theme.KPI, children=[
                html.Div(kpi.title, style=theme.KPI_TITLE),
                html.Div(shown, style=theme.KPI_VALUE),
                _sparkline(points[-180:], theme.ACCENT),
            ]))
        return cards

    def _incidents(self, incidents: list[dict], now: float) -> list[html.Div]:
        if not incidents:
            return [html.Div("No active incidents", style=theme.ALL_CLEAR)]
        rows = []
        for i in sorted(incidents, key=lambda i: i["opened_at"], reverse=True)[:6]:
            top = i["root_causes"][0]["node"] if i["root_causes"] else "?"
            rows.append(html.Div(className="incident", style=theme.incident(i["severity"]), children=[
                html.Div(f"{i['id']}", style=theme.INCIDENT_ID),
                html.Div(f"root cause: {top}", style=theme.INCIDENT_CAUSE),
                html.Div(f"{i['severity']} · open {_age(parse_rfc3339(i['opened_at']), now)} · "
                         f"{len(i['alerts'])} alerts · impacts {', '.join(i['impacted_businesses'])}",
                         style=theme.INCIDENT_META),
            ]))
        return rows

    def refresh(self, _n: Any) -> tuple:
        """Everything on the screen, from the latest snapshot."""
        now = self.clock()
        snap = self.snapshot()
        stale = snap.evaluated_at_ms is None or now - snap.evaluated_at_ms / 1000 > self.stale_after
        health = {} if stale else _node_health(snap)
        open_incidents = [i for i in snap.incidents if i["status"] == "open"]
        causes = {i["root_causes"][0]["node"] for i in open_incidents if i["root_causes"]}
        states = self._business_states(open_incidents, health, stale)
        health.update({b: state for b, (state, _) in states.items()})
        fresh_text = ("waiting for the first evaluation" if snap.evaluated_at_ms is None
                      else f"data {_age(snap.evaluated_at_ms, now)} old" + (" · STALE" if stale else ""))
        return (
            self._business_tiles(states),
            self._kpis(int(now * 1000)),
            self._elements(health, causes),
            self._incidents(open_incidents, now),
            html.Span(fresh_text, style=theme.stale(stale)),
            time.strftime("%H:%M:%S UTC", time.gmtime(now)),
        )


def mount_wallscreen(server: Any, screen: WallScreen) -> Dash:
    """Mount the wall screen at ``/`` on a FastAPI ``server`` (Dash's FastAPI backend)."""
    app = Dash(__name__, server=server, title="OpsWatch wall screen", update_title=None)
    app.layout = screen.layout
    app.callback(
        Output("business-tiles", "children"), Output("kpis", "children"), Output("topology", "elements"),
        Output("incidents", "children"), Output("freshness", "children"), Output("clock", "children"),
        Input("tick", "n_intervals"),
    )(screen.refresh)
    return app
