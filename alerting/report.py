"""The standardized incident report, as JSON and Markdown.

Sections, in order: summary, severity and status, impacted businesses, root-cause candidates with their
evidence (which series, when it departed from baseline, baseline vs observed), timeline, alerts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2

from .incidents import Incident
from .model import Alert, rfc3339

REPORT_VERSION = 1

_MARKDOWN = jinja2.Template(
    """# Incident {{ r.id }}: {{ r.summary }}

| | |
|---|---|
| Severity | {{ r.severity }} |
| Status | {{ r.status }} |
| Opened | {{ r.opened_at }} |
| Resolved | {{ r.resolved_at or "—" }} |
| Alerts | {{ r.alerts | length }} on {{ r.nodes | length }} nodes ({{ r.nodes | join(", ") }}) |

## Impacted businesses
{% for b in r.impacted_businesses %}- {{ b }}
{% else %}- none identified
{% endfor %}
## Root-cause candidates
{% for c in r.root_causes %}
### {{ loop.index }}. `{{ c.node }}` (score {{ "%.2f" | format(c.score) }})
{% for reason in c.reasons %}- {{ reason }}
{% endfor %}
| series | departed at | baseline | observed | peak score |
|---|---|---|---|---|
{% for e in c.evidence %}| `{{ e.series }}` | {{ e.onset }} | {{ e.baseline_text }} | {{ e.observed_text }} | {{ e.score_text }} |
{% endfor %}{% else %}
No candidate yet.
{% endfor %}
## Timeline
{% for t in r.timeline %}- {{ t.at }} {{ t.text }}
{% endfor %}
## Alerts
| alert | node | state | started | ended | summary |
|---|---|---|---|---|---|
{% for a in r.alerts %}| {{ a.labels.alertname }} | {{ a.labels.job }} | {{ a.state }} | {{ a.startsAt }} | {{ a.endsAt or "—" }} | {{ a.annotations.summary }} |
{% endfor %}""",
    trim_blocks=False,
)


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def build_report(incident: Incident, alerts: dict[str, Alert]) -> dict:
    """The report of ``incident`` as a JSON-ready dict (times RFC 3339 UTC, values in the signal's unit)."""
    mine = [alerts[fp].to_api() for fp in incident.alert_fingerprints if fp in alerts]
    top = incident.root_causes[0].node if incident.root_causes else "unknown"
    businesses = ", ".join(incident.impacted_businesses) or "no business"
    return {
        "report_version": REPORT_VERSION,
        "id": incident.id,
        "summary": f"likely root cause {top}; impacts {businesses}",
        "severity": incident.severity,
        "status": incident.status,
        "opened_at": rfc3339(incident.opened_at_ms),
        "resolved_at": rfc3339(incident.resolved_at_ms),
        "nodes": incident.nodes,
        "impacted_businesses": incident.impacted_businesses,
        "root_causes": [
            {
                "node": c.node,
                "score": c.score,
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
        "timeline": [{"at": rfc3339(t.at_ms), "text": t.text} for t in incident.timeline],
        "alerts": mine,
    }


def render_markdown(report: dict) -> str:
    """The Markdown form of a report built by :func:`build_report`."""
    return _MARKDOWN.render(r=report)


def write_report(report: dict, directory: Path) -> Path:
    """Write ``<id>.json`` and ``<id>.md`` into ``directory`` (atomically); returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{report['id']}.json"
    for path, text in ((json_path, json.dumps(report, indent=2)), (json_path.with_suffix(".md"), render_markdown(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path
