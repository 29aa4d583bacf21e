"""The NOC wall screen: business tiles, key numbers, the dependency graph, active incidents, a ticker of
recent anomalies, and the freshness of every panel.

Regions (stable ids for tests and users' own checks): ``business-tiles`` (green/amber/red/grey per
business), ``kpis`` (the KPI table with sparklines), ``topology`` (the dependency graph coloured by health,
incident nodes ringed, the root cause starred), ``incidents`` (active incidents: age, severity, top root
cause), ``freshness`` (age of the data and target health), plus ``ticker`` and ``clock``.

Each refresh builds a plain model per region and sends only the regions whose model changed (Dash
``no_update`` for the others), so a wall screen left on for days re-renders little. Panel freshness
badges are driven in the browser (``assets/opswatch.js``) from the data's timestamps, so they keep
ageing, and turn red, when the server or the network is gone.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from typing import Any
from urllib.parse import quote

import dash_cytoscape as cyto
from dash import ClientsideFunction, Input, Output, State, dcc, html, no_update

from alerting.model import parse_rfc3339

from . import theme
from .graph_layout import layered_layout
from .health import HealthModel, active_incidents, flashing, node_health, top_cause, track_changes
from .kpis import evaluate_kpi
from .query import TailCache
from .sources import Sources
from .view import View

FLASH_SECONDS = 10.0
"""How long a tile flashes after its state changed."""

PANELS = ("tiles", "kpis", "topology", "incidents", "ticker", "data")
"""Panels with a freshness badge (``fresh-<panel>``), in the order of the ``wall-fresh`` store."""

FILL = {"position": "absolute", "top": 0, "left": 0, "right": 0, "bottom": 0}
"""Charts fill a ``.fill`` box absolutely, so they size to the panel, not the panel to them."""

INCIDENT_ROWS = 4
TICKER_ITEMS = 6


def age_text(ms: int, now_ms: int) -> str:
    """``"45s"``, ``"12m"``, ``"3h"``, ``"2d"`` for the time since ``ms``."""
    s = max(0, (now_ms - ms) // 1000)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"


def _digest(model: Any) -> str:
    return hashlib.blake2b(json.dumps(model, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def panel(name: str, title: str, body: Any, region_class: str = "") -> html.Section:
    """A titled panel with its freshness badge."""
    return html.Section(className=f"panel panel-{name} {region_class}", children=[
        html.Div(className="panel-title", children=[html.Span(title), html.Span(id=f"fresh-{name}", className="fresh")]),
        body,
    ])


def sparkline(points: list, color: str) -> html.Img:
    """A sparkline as an inline SVG image (``None`` points are gaps): the wall screen needs no charting
    library, so it loads fast and stays light when left on for days."""
    present = [p for p in points if p is not None]
    low, high = min(present), max(present)
    low = min(low, 0.0) if low >= 0 else low  # a non-negative series is drawn from zero
    span = (high - low) or 1.0
    n = max(1, len(points) - 1)
    runs, run = [], []
    for i, p in enumerate(points):
        if p is None:
            runs, run = (runs + [run] if run else runs), []
            continue
        run.append(f"{i / n * 100:.2f},{(1 - (p - low) / span) * 38 + 1:.2f}")
    runs += [run] if run else []
    paths = "".join(
        f'<polygon points="{r[0].split(",")[0]},40 {" ".join(r)} {r[-1].split(",")[0]},40" fill="{theme.fill(color, 0.22)}"/>'
        f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" stroke-width="2.5" '
        f'vector-effect="non-scaling-stroke" stroke-linejoin="round"/>' for r in runs)
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 40" preserveAspectRatio="none">{paths}</svg>'
    return html.Img(src="data:image/svg+xml;utf8," + quote(svg), className="sparkline", alt="")


class WallScreen:
    """Layout, models and callbacks of the wall screen page (path ``/``)."""

    def __init__(self, sources: Sources):
        self.sources = sources
        self.health = HealthModel(sources.topology)
        self.graph = layered_layout(sources.topology)
        self.cache = TailCache(sources.store)
        self._lock = threading.Lock()
        self._memo: dict[tuple, dict] = {}
        self.stylesheet = theme.cytoscape_stylesheet(self.graph.font_size)

    # -- layout ---------------------------------------------------------------------------------------
    def layout(self, view: View) -> html.Div:
        """The page, already filled from the latest snapshot: the first complete frame needs no second
        round trip, and the refresh that follows sends only what changed since."""
        s = self.sources
        scope = s.topology.graph.nodes[view.business]["title"] if view.business in s.topology.graph else "all businesses"
        data = {"from": view.time_from, "to": view.time_to, "business": view.business, "kiosk": view.kiosk}
        tiles, kpis, elements, incidents, ticker, targets, fresh, state = self.refresh(data, None)
        return html.Div(className="page wall", children=[
            dcc.Store(id="wall-view", data=data),
            dcc.Store(id="wall-state", data=state),
            dcc.Store(id="wall-fresh", data=fresh),
            dcc.Interval(id="wall-tick", interval=int(s.refresh_seconds * 1000)),
            html.Header(className="wall-header", children=[
                html.Div(className="wall-title", children=[html.Span(s.title, className="brand"),
                                                           html.Span(scope, className="scope")]),
                html.Div(id="freshness", className="freshness", children=[
                    html.Span(id="fresh-data", className="fresh"),
                    html.Span(targets, id="targets-health", className="targets")]),
                html.Div(id="clock", className="clock"),
            ]),
            panel("tiles", "Businesses", html.Div(tiles, id="business-tiles", className="tiles")),
            panel("kpis", "Key numbers", html.Div(kpis, id="kpis", className="kpis")),
            html.Div(className="wall-main", children=[
                panel("topology", "Dependency graph · ★ root cause", html.Div(className="fill", children=cyto.Cytoscape(
                    id="topology", elements=elements, layout={"name": "preset", "fit": True, "padding": 12},
                    stylesheet=self.stylesheet, className="graph", style=FILL,
                    userZoomingEnabled=False, userPanningEnabled=False, autoungrabify=True, boxSelectionEnabled=False))),
                panel("incidents", "Active incidents", html.Div(incidents, id="incidents", className="incidents")),
            ]),
            panel("ticker", "Recent anomalies", html.Div(ticker, id="ticker", className="ticker"), "ticker-panel"),
            dcc.Store(id="topology-fit"),
        ])

    # -- models (plain data, hashed to skip unchanged regions) ---------------------------------------
    def _kpis_model(self, start_ms: int, end_ms: int, now_ms: int) -> tuple[list, int | None]:
        stale_ms = int(self.sources.stale_after_seconds * 1000)
        model, newest = [], None
        for spec in self.sources.kpis:
            try:
                k = evaluate_kpi(self.sources.store, spec, start_ms, end_ms, cache=self.cache)
            except Exception as exc:  # one broken KPI must not blank the wall screen
                model.append({"title": spec.title, "text": "error", "state": "nodata", "points": [],
                              "note": f"{type(exc).__name__}"})
                continue
            state, text = k.state, k.text
            if k.newest_ms is not None:
                newest = max(newest or 0, k.newest_ms)
                if now_ms - k.newest_ms > stale_ms:
                    state, text = "nodata", "stale"
            points = [None if math.isnan(p) else round(p, 6) for p in k.points]
            model.append({"title": spec.title, "text": text, "state": state, "points": points, "note": ""})
        return model, newest

    def _topology_model(self, snap: Any, stale: bool, tiles: list, view: View) -> list[dict]:
        g = self.sources.topology.graph
        health = node_health(snap, stale)
        health.update({t["name"]: t["state"] for t in tiles})
        incidents = active_incidents(snap)
        causes = {top_cause(i) for i in incidents} - {None}
        involved = {n for i in incidents for n in i["nodes"]}
        scope = self.health.scope(view.business)
        nodes = []
        for n in g.nodes:
            if scope is not None and n not in scope:
                continue
            x, y = self.graph.positions[n]
            classes = [g.nodes[n]["kind"], health.get(n, "nodata")]
            classes += ["label-above"] if n in self.graph.label_above else []
            classes += ["incident"] if n in involved else []
            classes += ["rootcause"] if n in causes else []
            label = ("★ " if n in causes else "") + g.nodes[n]["title"]
            nodes.append({"data": {"id": n, "label": label}, "position": {"x": round(x, 1), "y": round(y, 1)},
                          "classes": " ".join(classes), "grabbable": False})
        shown = {e["data"]["id"] for e in nodes}
        edges = [{"data": {"id": f"{a}->{b}", "source": a, "target": b},
                  "classes": "incident" if a in involved and b in involved else ""}
                 for a, b in g.edges if a in shown and b in shown]
        return nodes + edges

    def _incidents_model(self, snap: Any, now_ms: int) -> dict:
        order = {"critical": 0, "warning": 1, "info": 2}
        rows = sorted(active_incidents(snap), key=lambda i: (order.get(i["severity"], 3), i["opened_at"]))
        titles = self.sources.topology.graph.nodes
        out = []
        for i in rows[:INCIDENT_ROWS]:
            impacts = [titles[b]["title"] if b in titles else b for b in i["impacted_businesses"]]
            out.append({"id": i["id"], "cause": top_cause(i) or "unknown", "severity": i["severity"],
                        "status": i["status"], "age": age_text(parse_rfc3339(i["opened_at"]), now_ms),
                        "alerts": len(i["alerts"]), "impacts": ", ".join(impacts) or "no business identified"})
        return {"rows": out, "more": max(0, len(rows) - INCIDENT_ROWS)}

    def _ticker_model(self, snap: Any, now_ms: int) -> list[dict]:
        recent = [a for a in snap.alerts if a.get("activeAt")]
        recent.sort(key=lambda a: a["activeAt"], reverse=True)
        out = []
        for a in recent[:TICKER_ITEMS]:
            score = (a.get("evidence") or {}).get("score")
            out.append({"at": a["activeAt"][11:19], "alert": a["labels"].get("alertname", ""),
                        "job": a["labels"].get("job", ""), "state": a["state"],
                        "score": None if score is None else round(score, 1),
                        "age": age_text(parse_rfc3339(a["activeAt"]), now_ms)})
        return out

    def _freshness_model(self, snap: Any) -> str:
        targets = snap.targets or []
        up = sum(1 for t in targets if t.get("health") == "up")
        return f"{up}/{len(targets)} targets up" if targets else "no targets"

    # -- rendering ------------------------------------------------------------------------------------
    @staticmethod
    def _render_tiles(model: list, view: View) -> list:
        if not model:
            return [html.Div("No businesses in the topology", className="empty")]
        cols = len(model) if len(model) <= 6 else math.ceil(len(model) / 2)
        tiles = [dcc.Link(className=f"tile {t['state']}" + (" flash" if t["flash"] else ""), id=f"tile-{t['name']}",
                          href=f"/incident/{t['incident']}{view.query()}" if t["incident"]
                          else view.href("/", business=t["name"]),
                          children=[html.Div(t["title"], className="tile-name"), html.Div(t["note"], className="tile-note")])
                 for t in model]
        return [html.Div(tiles, className=f"tile-grid rows-{1 if len(model) <= 6 else 2}",
                         style={"gridTemplateColumns": f"repeat({cols}, minmax(0, 1fr))"})]

    @staticmethod
    def _render_kpis(model: list) -> list:
        cards = []
        for k in model:
            color = theme.STATE_COLORS["nodata"] if k["state"] == "nodata" else theme.ACCENT
            cards.append(html.Div(className=f"kpi {k['state']}", children=[
                html.Div(k["title"], className="kpi-title"),
                html.Div(k["text"], className="kpi-value"),
                sparkline(k["points"], color) if any(p is not None for p in k["points"]) else html.Div(className="sparkline"),
            ]))
        return cards

    @staticmethod
    def _render_incidents(model: dict, view: View) -> list:
        if not model["rows"]:
            return [html.Div("No active incidents", className="all-clear")]
        rows = [dcc.Link(className=f"incident {i['severity']} {i['status']}", href=f"/incident/{i['id']}{view.query()}",
                         children=[
                             html.Div(className="incident-cause", children=[
                                 html.Span("★ ", className="star"), html.Span(i["cause"])]),
                             html.Div(f"{i['severity'].upper()} · {i['age']} · {i['alerts']} alerts"
                                      + (" · ACKNOWLEDGED" if i["status"] == "acknowledged" else ""),
                                      className="incident-meta"),
                             html.Div(f"impacts {i['impacts']}", className="incident-impacts"),
                             html.Div(i["id"], className="incident-id"),
                         ]) for i in model["rows"]]
        if model["more"]:
            rows.append(html.Div(f"+ {model['more']} more active incidents", className="incident-more"))
        return rows

    @staticmethod
    def _render_ticker(model: list) -> list:
        if not model:
            return [html.Span("No anomalies in the last evaluations", className="ticker-empty")]
        return [html.Span(className=f"ticker-item {a['state']}", children=[
            html.B(a["job"]), f" {a['alert']}", f" · score {a['score']}" if a["score"] is not None else "",
            html.Span(f" {a['age']} ago", className="ticker-age")]) for a in model]

    # -- the refresh callback ------------------------------------------------------------------------
    def shared(self, view: View) -> dict:
        """The models every client of ``view`` shares, computed at most once per ``share_seconds`` whatever
        the number of wall screens (one computation at a time; the others wait for it and reuse it)."""
        s = self.sources
        key = (view.time_from, view.time_to, view.business)
        with self._lock:
            now_ms = s.now_ms()
            hit = self._memo.get(key)
            if hit is not None and 0 <= now_ms - hit["at"] < s.share_seconds * 1000:
                return hit
            snap = s.snapshot()
            evaluated = snap.evaluated_at_ms
            stale = evaluated is None or now_ms - evaluated > s.stale_after_seconds * 1000
            try:
                start_ms, end_ms = view.window(now_ms, "15m")
            except ValueError:
                start_ms, end_ms = now_ms - 900_000, now_ms
            tiles = self.health.businesses(snap, stale, only=view.business)
            kpis, kpi_newest = self._kpis_model(start_ms, end_ms, now_ms)
            result = {
                "at": now_ms, "tiles": tiles, "kpis": kpis,
                "topology": self._topology_model(snap, stale, [{"name": t.name, "state": t.state} for t in tiles], view),
                "incidents": self._incidents_model(snap, now_ms), "ticker": self._ticker_model(snap, now_ms),
                "targets": self._freshness_model(snap),
                "fresh": {"panels": [evaluated, kpi_newest, evaluated, evaluated, evaluated, evaluated],
                          "stale_ms": int(s.stale_after_seconds * 1000)},
            }
            if len(self._memo) >= 16:
                self._memo.clear()
            self._memo[key] = result
            return result

    def refresh(self, view_data: dict | None, state: dict | None) -> tuple:
        """Every region from the latest snapshot; ``no_update`` for regions whose model is unchanged since
        this client's previous refresh (``state``: its digests and tile changes).

        Returns ``(tiles, kpis, elements, incidents, ticker, targets, fresh, state)``.
        """
        started = time.perf_counter()
        state, data = state or {}, view_data or {}
        view = View(time_from=data.get("from"), time_to=data.get("to"), business=data.get("business"),
                    kiosk=bool(data.get("kiosk")))
        shared = self.shared(view)
        now_ms = shared["at"]
        track = track_changes(state.get("track", {}), {t.name: t.state for t in shared["tiles"]}, now_ms)
        flash = flashing(track, now_ms, int(FLASH_SECONDS * 1000))
        models = {
            "tiles": [{"name": t.name, "title": t.title, "state": t.state, "note": t.note, "incident": t.incident,
                       "flash": t.name in flash} for t in shared["tiles"]],
            **{k: shared[k] for k in ("kpis", "topology", "incidents", "ticker", "targets")},
        }
        renderers = {
            "tiles": lambda m: self._render_tiles(m, view), "kpis": self._render_kpis, "topology": lambda m: m,
            "incidents": lambda m: self._render_incidents(m, view), "ticker": self._render_ticker, "targets": lambda m: m,
        }
        previous = state.get("digests", {})
        digests = {k: _digest(m) for k, m in models.items()}
        outputs = [renderers[k](m) if digests[k] != previous.get(k) else no_update for k, m in models.items()]
        self.sources.callback_seconds.labels("wallscreen").observe(time.perf_counter() - started)
        return (*outputs, shared["fresh"], {"digests": digests, "track": track})

    def register(self, app) -> None:
        """Register the page's callbacks on ``app``."""

        @app.callback(
            Output("business-tiles", "children"), Output("kpis", "children"), Output("topology", "elements"),
            Output("incidents", "children"), Output("ticker", "children"), Output("targets-health", "children"),
            Output("wall-fresh", "data"), Output("wall-state", "data"),
            Input("wall-tick", "n_intervals"), Input("wall-view", "data"), State("wall-state", "data"),
        )
        async def wall_refresh(_n, view_data, state):
            # Off the event loop: the same loop scrapes and serves the API.
            return await self.sources.run(self.refresh, view_data, state)

        app.clientside_callback(ClientsideFunction("opswatch", "clock"), Output("clock", "children"),
                                Input("clock-tick", "n_intervals"), State("heartbeat-local", "data"))
        app.clientside_callback(ClientsideFunction("opswatch", "fitGraph"), Output("topology-fit", "data"),
                                Input("clock-tick", "n_intervals"), Input("topology", "elements"))
        app.clientside_callback(
            ClientsideFunction("opswatch", "freshness"),
            [Output(f"fresh-{p}", "children") for p in PANELS] + [Output(f"fresh-{p}", "className") for p in PANELS],
            Input("clock-tick", "n_intervals"), Input("wall-fresh", "data"), State("heartbeat-local", "data"),
        )
