"""The standardized incident report: JSON (the schema in ``schemas/incident_report.schema.json``, JSON
Schema draft 2020-12), Markdown and self-contained HTML (charts as inline SVG).

The sections are the core that the Google SRE book's postmortem, PagerDuty's and Atlassian's postmortem
templates share: summary, severity, impact in numbers, a UTC timeline, root-cause candidates with evidence
and confidence, the changes that preceded the incident, time to detect/acknowledge/resolve, and follow-up
sections left for the review (what went well, what went badly, action items with owner and due date),
worded blamelessly: about what systems did, not who is at fault.
"""

from __future__ import annotations

import io
import json
import math
from functools import cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from opswatch.errors import StorageError
from storage.base import Store

from .incidents import Incident
from .model import Alert, rfc3339

REPORT_VERSION = 2
SCHEMA_PATH = Path(__file__).parent / "schemas" / "incident_report.schema.json"

CHART_CANDIDATES, CHART_EVIDENCE, CHART_POINTS = 3, 2, 240
CHART_BEFORE_MS, CHART_AFTER_MS = 10 * 60_000, 2 * 60_000
"""Evidence charts: the top 3 candidates, 2 series each, at most 240 points, from 10 min before the first
anomaly (the baseline) to 2 min after the end."""

SIGNAL_UNITS = {"request_rate": "requests/s", "error_ratio": "ratio", "latency_p99_seconds": "seconds",
                "saturation_ratio": "ratio", "cache_hit_ratio": "ratio", "consumer_lag_seconds": "seconds"}

_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=jinja2.select_autoescape(["html.j2"]), keep_trailing_newline=True,
                                undefined=jinja2.StrictUndefined)
_TEMPLATES.filters["oneline"] = lambda text: " ".join(str(text).split()).replace("|", "\\|")


def _clean(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _fmt(x: float | None) -> str:
    return "—" if _clean(x) is None else f"{x:.4g}"


def _seconds(start_ms: int | None, end_ms: int | None) -> float | None:
    return None if start_ms is None or end_ms is None else (end_ms - start_ms) / 1000


def _integral(series: pd.Series) -> float:
    """Trapezoid integral of a per-second rate over its ms-stamped index, i.e. the count it adds up to."""
    series = series.dropna()
    if len(series) < 2:
        return 0.0
    seconds = series.index.as_unit("ms").asi8 / 1000
    return float(np.trapezoid(series.to_numpy(), seconds))


def _select(store: Store, signal: str, node: str, start_ms: int, end_ms: int) -> pd.Series | None:
    found = store.select(f"job:{signal}", {"job": node}, start_ms, end_ms)
    return found[0].values if found else None


def _impact(incident: Incident, alerts: list[Alert], store: Store | None, end_ms: int) -> dict:
    """Requests served and failed at each alerting node while its alerts were active, from the recorded
    golden signals ``job:request_rate`` (requests/s) and ``job:error_ratio``."""
    start_ms = incident.first_anomaly_ms or incident.opened_at_ms
    impact = {"businesses": incident.impacted_businesses, "duration_seconds": _seconds(start_ms, end_ms),
              "requests_affected": None, "requests_failed": None, "users_affected": None, "per_node": [],
              "method": "requests/s (job:request_rate) and error ratio (job:error_ratio) integrated over each "
                        "alerting node's anomalous period; the headline is the busiest node's (a lower bound: "
                        "one user request crosses several nodes); users are not measured per request"}
    if store is None:
        return impact
    for node in incident.nodes:
        mine = [a for a in alerts if a.node == node]
        if not mine:
            continue
        node_start = min(a.active_at_ms for a in mine)
        node_end = max((a.resolved_at_ms or end_ms) for a in mine)
        try:
            rate = _select(store, "request_rate", node, node_start, node_end)
            errors = _select(store, "error_ratio", node, node_start, node_end)
        except StorageError:
            return impact
        if rate is None:
            continue
        # Both signals are recorded at the same evaluations; no error ratio at a point means no requests.
        failed = _integral((rate * errors.reindex(rate.index)).fillna(0.0)) if errors is not None else None
        impact["per_node"].append({"node": node, "from": rfc3339(node_start), "to": rfc3339(node_end),
                                   "requests": round(_integral(rate)),
                                   "failed_requests": None if failed is None else round(failed)})
    if impact["per_node"]:
        impact["requests_affected"] = max(n["requests"] for n in impact["per_node"])
        failed = [n["failed_requests"] for n in impact["per_node"] if n["failed_requests"] is not None]
        impact["requests_failed"] = max(failed) if failed else None
    return impact


def _charts(incident: Incident, store: Store | None, end_ms: int) -> list[dict]:
    """The evidence series of the top candidates, as ``[ms, value]`` points from the store."""
    if store is None or incident.first_anomaly_ms is None:
        return []
    start_ms, stop_ms = incident.first_anomaly_ms - CHART_BEFORE_MS, end_ms + CHART_AFTER_MS
    charts = []
    for candidate in incident.root_causes[:CHART_CANDIDATES]:
        for e in candidate.evidence[:CHART_EVIDENCE]:
            if not e.signal:
                continue
            try:
                values = _select(store, e.signal, e.node, start_ms, stop_ms)
            except StorageError:
                return charts
            if values is None:
                continue
            values = values.dropna()
            values = values.iloc[::max(1, math.ceil(len(values) / CHART_POINTS))]
            charts.append({"series": e.series, "node": e.node, "signal": e.signal,
                           "unit": SIGNAL_UNITS.get(e.signal, ""), "onset": rfc3339(e.onset_ms),
                           "baseline": _clean(e.baseline),
                           "points": [[int(t), float(v)] for t, v in zip(values.index.as_unit("ms").asi8, values)]})
    return charts


def build_report(incident: Incident, alerts: dict[str, Alert], store: Store | None = None,
                 now_ms: int | None = None) -> dict:
    """The report of ``incident`` as a JSON-ready dict valid against :data:`SCHEMA_PATH`.

    :param alerts: every known alert by fingerprint; the incident's are listed.
    :param store: where the impact and the evidence charts are read from (None: left empty/unknown).
    :param now_ms: the end of an incident still active (ms since the epoch; default its last timeline entry).
    Times are RFC 3339 UTC strings, durations seconds, values in the signal's unit.
    """
    mine = [alerts[fp] for fp in incident.alert_fingerprints if fp in alerts]
    last_ms = max([t.at_ms for t in incident.timeline] + [incident.opened_at_ms])
    end_ms = incident.resolved_at_ms or (now_ms if now_ms is not None else last_ms)
    first_anomaly = incident.first_anomaly_ms or min((a.active_at_ms for a in mine), default=None)
    first_alert = incident.first_alert_ms or min((a.fired_at_ms for a in mine if a.fired_at_ms), default=None)
    top = incident.root_causes[0].node if incident.root_causes else None
    businesses = ", ".join(incident.impacted_businesses) or "no business identified"
    timeline = [{"at": rfc3339(t.at_ms), "kind": t.kind, "by": t.by, "text": t.text} for t in incident.timeline]
    if first_anomaly is not None:
        evidence = incident.root_causes[0].evidence[0].series if top and incident.root_causes[0].evidence else ""
        timeline.append({"at": rfc3339(first_anomaly), "kind": "anomaly", "by": None,
                         "text": f"first departure from baseline {evidence}".strip()})
    timeline.sort(key=lambda t: t["at"])
    return {
        "report_version": REPORT_VERSION,
        "id": incident.id,
        "title": incident.title,
        "summary": f"likely root cause {top or 'not identified yet'}; impacts {businesses}",
        "severity": incident.severity,
        "status": incident.status,
        "generated_at": rfc3339(now_ms if now_ms is not None else last_ms),
        "opened_at": rfc3339(incident.opened_at_ms),
        "resolved_at": rfc3339(incident.resolved_at_ms),
        "nodes": incident.nodes,
        "impacted_businesses": incident.impacted_businesses,
        "impact": _impact(incident, mine, store, end_ms),
        "key_times": {"first_anomaly": rfc3339(first_anomaly), "first_alert": rfc3339(first_alert),
                      "opened": rfc3339(incident.opened_at_ms), "paged": rfc3339(incident.paged_at_ms),
                      "acknowledged": rfc3339(incident.acknowledged_at_ms),
                      "resolved": rfc3339(incident.resolved_at_ms)},
        "metrics": {"mttd_seconds": _seconds(first_anomaly, first_alert),
                    "mtta_seconds": _seconds(incident.opened_at_ms, incident.acknowledged_at_ms),
                    "mttr_seconds": _seconds(first_anomaly, incident.resolved_at_ms)},
        "people": {"acknowledged_by": incident.acknowledged_by, "assignee": incident.assignee,
                   "resolved_by": incident.resolved_by},
        "root_causes": [
            {
                "node": c.node,
                "score": c.score,
                "confidence": c.score,
                "reasons": c.reasons,
                "evidence": [
                    {"series": e.series, "signal": e.signal, "onset": rfc3339(e.onset_ms),
                     "baseline": _clean(e.baseline), "observed": _clean(e.observed), "score": _clean(e.score),
                     "baseline_text": _fmt(e.baseline), "observed_text": _fmt(e.observed), "score_text": _fmt(e.score)}
                    for e in c.evidence
                ],
            }
            for c in incident.root_causes
        ],
        "preceding_changes": incident.preceding_changes,
        "timeline": timeline,
        "alerts": [a.to_api() for a in mine],
        "charts": _charts(incident, store, end_ms),
        "follow_up": {"went_well": [], "went_badly": [], "action_items": []},
    }


@cache
def schema() -> dict:
    """The published JSON Schema of a report (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


def render_markdown(report: dict) -> str:
    """The Markdown form of a report built by :func:`build_report` (template ``templates/report.md.j2``)."""
    return _TEMPLATES.get_template("report.md.j2").render(r=report)


def render_html(report: dict) -> str:
    """A self-contained HTML page of a report (template ``templates/report.html.j2``): inline CSS, the
    evidence charts as inline SVG drawn with matplotlib, no external URL."""
    return _TEMPLATES.get_template("report.html.j2").render(r=report, charts=[_svg(c) for c in report["charts"]])


def _svg(chart: dict) -> str:
    """One evidence chart as an ``<svg>`` element: the series, its baseline and the onset."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    times = pd.to_datetime([p[0] for p in chart["points"]], unit="ms", utc=True)
    fig = Figure(figsize=(7, 2.2), dpi=96)
    ax = fig.add_subplot()
    ax.plot(times, [p[1] for p in chart["points"]], color="#1f5fa8", linewidth=1.4, label=chart["series"])
    if chart["baseline"] is not None:
        ax.axhline(chart["baseline"], color="#777777", linestyle="--", linewidth=1, label="baseline")
    if chart["onset"]:
        ax.axvline(pd.Timestamp(chart["onset"]), color="#c0392b", linewidth=1, label="departed from baseline")
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz="UTC"))
    ax.set_ylabel(chart["unit"])
    ax.set_xlabel("UTC")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = out.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the element is inlined in HTML


def write_report(report: dict, directory: Path) -> Path:
    """Write ``<id>.json`` and ``<id>.md`` into ``directory`` (atomically); returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{report['id']}.json"
    for path, text in ((json_path, json.dumps(report, indent=2)), (json_path.with_suffix(".md"), render_markdown(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path
