"""``opswatch template render``: what a notification would look like, before it goes live.

It rebuilds the notification of one stored incident (``DATA_DIR/alerts.json``, its report in
``DATA_DIR/reports/``) as the pipeline would, and prints what each integration of the receiver would
send (webhook body and headers, Slack message, email with its headers), or only ``--template FILE``
rendered over it. Without ``--config`` it renders the default title and text.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("template", help="preview notification templates against stored alerts")
    sub = parser.add_subparsers(dest="template_command", required=True)
    render = sub.add_parser("render", help="render the notification of a stored incident as it would be sent")
    render.add_argument("--data-dir", required=True, type=Path, help="the data directory holding alerts.json")
    render.add_argument("--incident", help="incident id (default: the most recently opened)")
    render.add_argument("--receiver", help="receiver name from --config (default: every receiver)")
    render.add_argument("--config", type=Path, help="OpsWatch configuration with the receivers")
    render.add_argument("--template", type=Path, help="a jinja2 template file to render instead of the receivers'")
    render.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from alerting.incidents import IncidentManager
    from alerting.lifecycle import AlertStateFile, AlertTracker
    from alerting.notifiers.base import NotifyError
    from alerting.notifiers.build import integrations
    from alerting.notify import LOG_RECEIVER, webhook_payload
    from alerting.templates import compile_template, default_template, render
    from topology.graph import REFERENCE_PLATFORM, Topology

    from ..config import load_config

    config = load_config(args.config)
    state = args.data_dir / "alerts.json"
    if not state.exists():
        raise ValueError(f"{state}: no stored alerts; run `opswatch demo` or `opswatch run` with this data "
                         f"directory first, or pass the right --data-dir")
    tracker = AlertTracker()
    incidents = IncidentManager(Topology.load(config.topology_file or REFERENCE_PLATFORM))
    AlertStateFile(state).load(tracker, incidents)
    incident = _choose(incidents.incidents, args.incident, state)

    receivers = config.receivers
    if args.receiver is not None:
        receivers = [r for r in receivers if r.name == args.receiver]
        if not receivers:
            known = ", ".join(r.name for r in config.receivers) or "none; pass --config"
            raise ValueError(f"--receiver {args.receiver!r} is not a receiver of the configuration "
                             f"(receivers: {known})")
    report = args.data_dir / "reports" / f"{incident.id}.json"
    report_path = str(report) if report.exists() else ""

    def payload_for(receiver: str) -> dict:
        return webhook_payload(incident, tracker.alerts, receiver, config.external_url, report_path)

    if args.template is not None:
        try:
            source = args.template.read_text()
        except OSError as exc:
            raise ValueError(f"--template {args.template}: cannot read: {exc.strerror}") from exc
        name = receivers[0].name if receivers else LOG_RECEIVER
        print(render(compile_template(source, str(args.template)), payload_for(name), str(args.template)))
        return 0
    if not receivers:
        payload = payload_for(LOG_RECEIVER)
        print(f"== default title ==\n{render(default_template('title'), payload, 'title.j2')}\n")
        print(f"== default text ==\n{render(default_template('text'), payload, 'text.j2')}")
        return 0
    for receiver in receivers:
        payload = payload_for(receiver.name)
        found = integrations(receiver)
        if not found:
            print(f"== receiver {receiver.name!r}: no integrations; the notification is only logged ==\n")
        for integration in found:
            print(f"== receiver {receiver.name!r}: {integration.integration}_configs[{integration.index}] ==")
            if payload["status"] == "resolved" and not integration.send_resolved:
                print("(not sent: the incident is resolved and send_resolved is false)")
            try:
                print(integration.preview(payload) + "\n")
            except NotifyError as exc:  # a template that compiles but fails on this data
                raise ValueError(f"receiver {receiver.name!r}: {exc}") from exc
    return 0


def _choose(incidents: dict, incident_id: str | None, state: Path):
    """The incident named ``incident_id``, else the most recently opened one not merged into another."""
    candidates = [i for i in incidents.values() if i.status != "merged"]
    if not candidates:
        raise ValueError(f"{state}: holds no incidents to render")
    if incident_id is None:
        return max(candidates, key=lambda i: i.opened_at_ms)
    if incident_id not in incidents:
        newest = sorted(incidents.values(), key=lambda i: i.opened_at_ms)[-5:]
        raise ValueError(f"--incident {incident_id!r} is not in {state} (latest: {', '.join(i.id for i in newest)})")
    return incidents[incident_id]
