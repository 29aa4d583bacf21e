"""The incident page (``/incident/<id>``): status, impact, ranked root-cause candidates with evidence
charts, timeline, alerts, report links, and acknowledge/resolve with an API token (through the same
incident action as the REST API, :func:`opswatch.api.incident_action`); and the incident list (``/incidents``)."""

from __future__ import annotations

import time

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from alerting.incidents import ACTIVE_STATUSES
from alerting.model import parse_rfc3339

from .charts import SIGNAL_UNITS, evidence_figure
from .query import Query, parse_selector, run_query
from .sources import Sources
from .view import View
from .wallscreen import age_text

CANDIDATES_CHARTED = 3
EVIDENCE_PER_CANDIDATE = 2
BEFORE_ONSET_MS = 10 * 60_000
"""Evidence charts start this long before the incident opened, to show the baseline."""


def _find(sources: Sources, incident_id: str) -> dict | None:
    return next((i for i in sources.snapshot().incidents if i["id"] == incident_id), None)


class IncidentPage:
    def __init__(self, sources: Sources):
        self.sources = sources

    def layout(self, view: View, incident_id: str) -> html.Div:
        return html.Div(className="page doc incident-page", children=[
            dcc.Store(id="incident-view", data={"id": incident_id, "from": view.time_from, "to": view.time_to,
                                                "query": view.query()}),
            dcc.Interval(id="incident-tick", interval=5000),
            html.Div(id="incident-header"),
            html.Div(className="actions", children=[
                dcc.Input(id="action-by", placeholder="your name", className="text-input"),
                dcc.Input(id="action-token", type="password", placeholder="API token", className="text-input"),
                html.Button("Acknowledge", id="ack-button", className="button"),
                html.Button("Resolve", id="resolve-button", className="button danger"),
                html.Span(id="action-result", className="action-result"),
            ]),
            html.Div(className="incident-columns", children=[
                html.Div([html.H2("Root-cause candidates"), html.Div(id="incident-causes")]),
                html.Div([html.H2("Timeline"), html.Div(id="incident-timeline")]),
            ]),
            html.H2("Alerts"),
            html.Div(id="incident-alerts"),
        ])

    def header(self, incident: dict, now_ms: int, query: str) -> list:
        opened = parse_rfc3339(incident["opened_at"])
        end = parse_rfc3339(incident["resolved_at"]) if incident.get("resolved_at") else now_ms
        titles = self.sources.topology.graph.nodes
        impacts = [titles[b]["title"] if b in titles else b for b in incident["impacted_businesses"]]
        base = f"/api/v1/incidents/{incident['id']}/report"
        return [
            html.H1([f"{incident['id']} ", html.Span(incident["status"].upper(), id="incident-status",
                                                     className=f"badge {incident['status']}")]),
            html.P(incident.get("summary", ""), className="lead"),
            html.Div(className="facts", children=[
                html.Span(f"severity {incident['severity']}", className=f"badge {incident['severity']}"),
                html.Span(f"opened {incident['opened_at']}"),
                html.Span(f"{'lasted' if incident.get('resolved_at') else 'open for'} {age_text(opened, end)}"),
                html.Span(f"impacts: {', '.join(impacts) or 'none identified'}"),
                html.A("report (Markdown)", href=f"{base}?format=md", target="_blank"),
                html.A("report (JSON)", href=f"{base}?format=json", target="_blank"),
                html.A("report (HTML)", href=f"{base}?format=html", target="_blank"),
                dcc.Link("all incidents", href=f"/incidents{query}"),
            ]),
        ]

    def causes(self, incident: dict, now_ms: int, query: str) -> list:
        if not incident["root_causes"]:
            return [html.Div("No candidate yet.", className="muted")]
        opened = parse_rfc3339(incident["opened_at"])
        end = parse_rfc3339(incident["resolved_at"]) + 120_000 if incident.get("resolved_at") else now_ms
        out = []
        for rank, c in enumerate(incident["root_causes"], 1):
            charts = []
            if rank <= CANDIDATES_CHARTED:
                for e in c["evidence"][:EVIDENCE_PER_CANDIDATE]:
                    charts.append(self._evidence_chart(e, opened - BEFORE_ONSET_MS, end))
            out.append(html.Div(className=f"candidate rank-{rank}", children=[
                html.H3([f"{rank}. ", dcc.Link(c["node"], href=f"/service/{c['node']}{query}"),
                         html.Span(f" score {c['score']:.2f}", className="muted")]),
                html.Ul([html.Li(r) for r in c["reasons"]]),
                *charts,
            ]))
        return out

    def _evidence_chart(self, evidence: dict, start_ms: int, end_ms: int):
        try:
            metric, matchers = parse_selector(evidence["series"])
        except ValueError as exc:
            return html.Div(f"evidence series {evidence['series']!r} cannot be charted: {exc}", className="muted")
        found = run_query(self.sources.store, Query(evidence["series"], metric, matchers), start_ms, end_ms, points=300)
        if not found:
            return html.Div(f"{evidence['series']}: no data in this range", className="chart-empty")
        unit, factor = SIGNAL_UNITS.get(evidence.get("signal", ""), ("", 1.0))
        onset = parse_rfc3339(evidence["onset"]) if evidence.get("onset") else None
        fig = evidence_figure(evidence["series"], found[0].values, onset, evidence.get("baseline"),
                              evidence.get("observed"), unit, factor)
        return dcc.Graph(figure=fig, className="chart evidence", config={"displaylogo": False})

    @staticmethod
    def timeline(incident: dict) -> list:
        return [html.Div(className="timeline-entry", children=[html.Span(t["at"][11:19], className="muted"),
                                                                 html.Span(f" {t['text']}")])
                for t in incident["timeline"]]

    @staticmethod
    def alerts(incident: dict) -> html.Table:
        head = html.Tr([html.Th(h) for h in ("alert", "node", "state", "started", "ended", "summary")])
        rows = [html.Tr([html.Td(a["labels"].get("alertname", "")), html.Td(a["labels"].get("job", "")),
                         html.Td(a["state"]), html.Td(a["startsAt"]), html.Td(a.get("endsAt") or "—"),
                         html.Td(a["annotations"].get("summary", ""))]) for a in incident["alerts"]]
        return html.Table([html.Thead(head), html.Tbody(rows)], className="table")

    def refresh(self, data: dict, digest: str | None) -> tuple:
        started = time.perf_counter()
        incident = _find(self.sources, data["id"])
        now_ms = self.sources.now_ms()
        if incident is None:
            missing = html.Div([html.H1(f"No incident {data['id']}"),
                                dcc.Link("all incidents", href=f"/incidents{data.get('query', '')}")])
            return [missing], [], [], [], "missing"
        query = data.get("query", "")
        # Charts only when the incident changed (or every minute while open), not on every refresh.
        key = f"{incident.get('status')}|{len(incident['alerts'])}|{len(incident['timeline'])}|{now_ms // 60_000}"
        causes = self.causes(incident, now_ms, query) if key != digest else no_update
        self.sources.callback_seconds.labels("incident").observe(time.perf_counter() - started)
        return self.header(incident, now_ms, query), causes, self.timeline(incident), [self.alerts(incident)], key

    def act(self, action: str, incident_id: str, by: str | None, token: str | None) -> str:
        """Apply an action through the application's incident actions; the message to show."""
        if self.sources.incident_action is None:
            return "refused: this OpsWatch has no incident actions"
        try:
            done = self.sources.incident_action(incident_id, action, (by or "").strip() or "wall screen", token or "")
        except PermissionError as exc:
            return f"refused: {exc}"
        except (KeyError, ValueError) as exc:
            return f"not done: {exc.args[0] if exc.args else exc}"
        return f"done: {done['id']} is now {done['status']}"

    def register(self, app) -> None:
        @app.callback(
            Output("incident-header", "children"), Output("incident-causes", "children"),
            Output("incident-timeline", "children"), Output("incident-alerts", "children"),
            Output("incident-causes", "title"),
            Input("incident-tick", "n_intervals"), Input("incident-view", "data"), Input("action-result", "children"),
            State("incident-causes", "title"),
        )
        async def incident_refresh(_n, data, _result, digest):
            return await self.sources.run(self.refresh, data, digest)

        @app.callback(
            Output("action-result", "children"),
            Input("ack-button", "n_clicks"), Input("resolve-button", "n_clicks"),
            State("incident-view", "data"), State("action-by", "value"), State("action-token", "value"),
            prevent_initial_call=True,
        )
        async def incident_action(_ack, _resolve, data, by, token):
            action = {"ack-button": "acknowledge", "resolve-button": "resolve"}.get(ctx.triggered_id)
            if action is None:
                raise PreventUpdate
            return await self.sources.run(self.act, action, data["id"], by, token)


class IncidentsPage:
    """Every incident, newest first; ``var-business`` keeps those impacting that business."""

    def __init__(self, sources: Sources):
        self.sources = sources

    def layout(self, view: View) -> html.Div:
        return html.Div(className="page doc", children=[
            dcc.Store(id="incidents-view", data={"business": view.business, "query": view.query()}),
            dcc.Interval(id="incidents-tick", interval=5000),
            html.H1("Incidents"),
            html.Div(id="incident-list"),
        ])

    def refresh(self, data: dict) -> list:
        rows = sorted(self.sources.snapshot().incidents, key=lambda i: i["opened_at"], reverse=True)
        if data.get("business"):
            rows = [i for i in rows if data["business"] in i["impacted_businesses"]]
        if not rows:
            return [html.Div("No incidents.", className="muted")]
        head = html.Tr([html.Th(h) for h in ("incident", "status", "severity", "opened", "root cause", "impacts")])
        body = [html.Tr(className=f"status-{i['status']}" + (" active" if i["status"] in ACTIVE_STATUSES else ""), children=[
            html.Td(dcc.Link(i["id"], href=f"/incident/{i['id']}{data.get('query', '')}")), html.Td(i["status"]),
            html.Td(i["severity"]), html.Td(i["opened_at"]),
            html.Td(i["root_causes"][0]["node"] if i["root_causes"] else "?"),
            html.Td(", ".join(i["impacted_businesses"]))]) for i in rows]
        return [html.Table([html.Thead(head), html.Tbody(body)], className="table")]

    def register(self, app) -> None:
        @app.callback(Output("incident-list", "children"), Input("incidents-tick", "n_intervals"),
                      Input("incidents-view", "data"))
        def incidents_refresh(_n, data):
            return self.refresh(data)
