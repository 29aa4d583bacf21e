"""The dashboards as one Dash app on OpsWatch's FastAPI server: a shell (navigation bar, time picker,
variables, kiosk mode, playlists, connection watchdog) and the pages it routes to.

==============================  ===========================================================================
``/``                           the NOC wall screen (:mod:`dashboards.wallscreen`)
``/service/<node>``             a service: golden signals with anomaly scores and bands, its dependencies
``/incident/<id>``              an incident: timeline, root-cause candidates with evidence, acknowledge
``/incidents``                  every incident, newest first
``/explore``                    the detection explorer for analysts
``/playlist?screen=...``        screens in rotation (see :func:`dashboards.view.parse_playlist`)
==============================  ===========================================================================

Every page takes the URL variables of :mod:`dashboards.view` (``from``, ``to``, ``var-business``,
``var-service``, ``kiosk``), so a link reproduces the view. Navigation happens in the browser (Dash's
``dcc.Location``), so a playlist rotates without reloading and keeps kiosk mode. Nothing expires: there is
no session and no login on the read-only pages.
"""

from __future__ import annotations

import time
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from . import theme
from .explorer import Explorer
from .incident import IncidentPage, IncidentsPage
from .service import ServicePage
from .sources import Sources
from .view import RELATIVE_RANGES, View, parse_playlist, parse_view
from .wallscreen import WallScreen

DEFAULT_RANGES = {"wall": "15m", "drill": "1h"}
"""The range a page shows when the URL gives none (its time picker's placeholder)."""

RANGE_LABELS = {"15m": "Last 15 minutes", "1h": "Last 1 hour", "6h": "Last 6 hours", "24h": "Last 24 hours",
                "7d": "Last 7 days"}


class Dashboards:
    """The shell and its pages over one :class:`Sources`."""

    def __init__(self, sources: Sources):
        self.sources = sources
        self.wall = WallScreen(sources)
        self.service = ServicePage(sources)
        self.incident = IncidentPage(sources)
        self.incidents = IncidentsPage(sources)
        self.explorer = Explorer(sources)

    def layout(self) -> html.Div:
        s = self.sources
        nodes = [{"label": s.topology.graph.nodes[n]["title"], "value": n} for n in s.topology.nodes()
                 if s.topology.kind(n) != "business"]
        businesses = [{"label": s.topology.graph.nodes[n]["title"], "value": n} for n in s.topology.nodes("business")]
        lost_ms = int(max(10.0, 3 * s.refresh_seconds + 2) * 1000)
        return html.Div(id="shell", className="shell", style=theme.css_variables(), children=[
            dcc.Location(id="url", refresh="callback-nav"),
            dcc.Store(id="shell-config", data={"lost_ms": lost_ms}),
            dcc.Store(id="heartbeat"),
            dcc.Store(id="heartbeat-local"),
            dcc.Store(id="playlist"),
            dcc.Store(id="playlist-index"),
            dcc.Interval(id="clock-tick", interval=1000),
            dcc.Interval(id="beat-tick", interval=int(s.refresh_seconds * 1000)),
            html.Div(id="connection", className="connection ok"),
            html.Nav(id="navbar", className="navbar", children=[
                html.Span(s.title, className="nav-brand"),
                dcc.Link("Wall screen", id="nav-wall", href="/"),
                dcc.Link("Incidents", id="nav-incidents", href="/incidents"),
                dcc.Link("Explore", id="nav-explore", href="/explore"),
                html.Span(className="nav-spacer"),
                dcc.Dropdown(id="business-picker", options=businesses, placeholder="All businesses",
                             className="picker picker-business"),
                dcc.Dropdown(id="service-picker", options=nodes, placeholder="Go to service…",
                             className="picker picker-service"),
                dcc.Dropdown(id="range-picker", className="picker picker-range", clearable=False,
                             options=[{"label": RANGE_LABELS[r], "value": r} for r in RELATIVE_RANGES]
                             + [{"label": "Absolute range", "value": "absolute"}]),
                dcc.Input(id="time-from", className="time-input", placeholder="from: now-1h",
                          debounce=True),
                dcc.Input(id="time-to", className="time-input", placeholder="to: now", debounce=True),
                html.Button("Apply", id="time-apply", className="button"),
            ]),
            html.Div(id="page-error", className="page-error"),
            html.Main(id="page", className="page-container"),
        ])

    # -- routing ------------------------------------------------------------------------------------------
    def resolve(self, pathname: str | None, search: str | None, playlist_index: int | None) -> tuple[View, Any, str, dict | None]:
        """``(view, page layout, error text, playlist store)`` for a URL."""
        pathname = pathname or "/"
        playlist = None
        if pathname.rstrip("/") == "/playlist":
            try:
                plist = parse_playlist(search)
            except ValueError as exc:
                return parse_view(pathname, search), html.Div(str(exc), className="empty"), str(exc), None
            index, view = plist.current(self.sources.clock())
            if playlist_index is not None and 0 <= playlist_index < len(plist.screens):
                index = playlist_index
                path, _, query = plist.screens[index].partition("?")
                view = parse_view(path, query)
                view = View(view.path, view.time_from, view.time_to, view.business, view.service,
                            view.kiosk or plist.kiosk, view.extra)
            playlist = {"screens": len(plist.screens), "interval_ms": int(plist.interval_seconds * 1000)}
        else:
            view = parse_view(pathname, search)
        error = ""
        try:
            view.window(self.sources.now_ms())
        except ValueError as exc:
            error = f"{exc}; showing the default range"
        return view, self.page(view), error, playlist

    def page(self, view: View) -> Any:
        path = view.path.rstrip("/") or "/"
        if path == "/":
            return self.wall.layout(view)
        if path.startswith("/service/"):
            return self.service.layout(view, path.removeprefix("/service/"))
        if path.startswith("/incident/"):
            return self.incident.layout(view, path.removeprefix("/incident/"))
        if path == "/incidents":
            return self.incidents.layout(view)
        if path == "/explore":
            return self.explorer.layout(view)
        return html.Div(className="page doc", children=[
            html.H1("Not found"), html.P(f"There is no page at {view.path}."),
            dcc.Link("Back to the wall screen", href=view.href("/"))])

    def register(self, app: Dash) -> None:
        s = self.sources

        @app.callback(
            Output("page", "children"), Output("page-error", "children"), Output("shell", "className"),
            Output("playlist", "data"),
            Output("nav-wall", "href"), Output("nav-incidents", "href"), Output("nav-explore", "href"),
            Output("range-picker", "value"), Output("range-picker", "placeholder"),
            Output("time-from", "value"), Output("time-to", "value"),
            Output("business-picker", "value"), Output("service-picker", "value"),
            Input("url", "pathname"), Input("url", "search"), Input("playlist-index", "data"),
        )
        async def route(pathname, search, playlist_index):
            started = time.perf_counter()
            # Off the event loop: building the wall screen reads the store.
            view, page, error, playlist = await s.run(self.resolve, pathname, search, playlist_index)
            path = view.path.rstrip("/") or "/"
            kind = "wall" if path == "/" else "drill"
            relative = None
            if (view.time_to or "now") == "now" and (view.time_from or "").startswith("now-"):
                relative = view.time_from[4:] if view.time_from[4:] in RELATIVE_RANGES else None
            range_value = relative or ("absolute" if view.time_from else None)
            s.callback_seconds.labels("route").observe(time.perf_counter() - started)
            return (page, error, f"shell {kind}" + (" kiosk" if view.kiosk else ""), playlist,
                    view.href("/"), view.href("/incidents"), view.href("/explore"),
                    range_value, RANGE_LABELS[DEFAULT_RANGES[kind]],
                    view.time_from or "", view.time_to or "", view.business,
                    path.removeprefix("/service/") if path.startswith("/service/") else None)

        @app.callback(
            Output("url", "search"),
            Input("range-picker", "value"), Input("time-apply", "n_clicks"), Input("business-picker", "value"),
            State("time-from", "value"), State("time-to", "value"), State("url", "pathname"), State("url", "search"),
            prevent_initial_call=True,
        )
        def pick(range_value, _apply, business, time_from, time_to, pathname, search):
            if (pathname or "").rstrip("/") == "/playlist":
                raise PreventUpdate
            view = parse_view(pathname, search)
            if ctx.triggered_id == "range-picker" and range_value in RELATIVE_RANGES:
                time_from, time_to = f"now-{range_value}", None
            elif ctx.triggered_id != "time-apply":
                time_from, time_to = view.time_from, view.time_to
            new = view.query(time_from=time_from or None, time_to=time_to or None, business=business or None)
            if parse_view(pathname, new) == view:  # the router echoing the URL into the pickers
                raise PreventUpdate
            return new

        @app.callback(Output("url", "pathname"), Input("service-picker", "value"), State("url", "pathname"),
                      prevent_initial_call=True)
        def go_to_service(service, pathname):
            if not service or pathname == f"/service/{service}":
                raise PreventUpdate
            return f"/service/{service}"

        @app.callback(Output("heartbeat", "data"), Input("beat-tick", "n_intervals"))
        def heartbeat(_n):
            return {"now_ms": s.now_ms()}

        app.clientside_callback(ClientsideFunction("opswatch", "heartbeat"), Output("heartbeat-local", "data"),
                                Input("heartbeat", "data"))
        app.clientside_callback(ClientsideFunction("opswatch", "connection"),
                                Output("connection", "children"), Output("connection", "className"),
                                Input("clock-tick", "n_intervals"), State("heartbeat-local", "data"),
                                State("shell-config", "data"))
        app.clientside_callback(ClientsideFunction("opswatch", "playlist"), Output("playlist-index", "data"),
                                Input("clock-tick", "n_intervals"), State("playlist", "data"),
                                State("playlist-index", "data"), State("heartbeat-local", "data"))
        for page in (self.wall, self.service, self.incident, self.incidents, self.explorer):
            page.register(app)


def mount_dashboards(server: Any, sources: Sources) -> Dash:
    """Mount the dashboards on a FastAPI ``server`` (Dash's FastAPI backend); its catch-all route serves
    every path the API does not, so mount after the API routes."""
    dashboards = Dashboards(sources)
    app = Dash(__name__, server=server, title=f"{sources.title} wall screen", update_title=None,
               suppress_callback_exceptions=True)
    app.layout = dashboards.layout
    dashboards.register(app)
    # Dash adds the assets (opswatch.js, opswatch.css) to its pages in a one-time setup that its FastAPI
    # middleware runs only for "/" and "/_dash-*" requests, not for the catch-all that serves every other
    # page: a first page opened at /service/... came without them and its clientside callbacks failed.
    # Run that setup now, with every callback registered, so every page has them from the first request.
    app._setup_server()
    return app
