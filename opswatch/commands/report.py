"""``opswatch report INCIDENT_ID --format md|html|json``: the standardized incident report.

From a data directory (``--data-dir``, default ``./data``: the report the pipeline wrote at the incident's
last change, ``reports/INCIDENT_ID.json``) or from a running OpsWatch (``--server URL``), to stdout or
``--output FILE``. Exit status: 0 written, 1 no such incident or the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser("report", help="an incident's standardized report (Markdown, HTML or JSON)")
    parser.add_argument("incident_id", metavar="INCIDENT_ID")
    parser.add_argument("--format", choices=("md", "html", "json"), default="md", help="default md")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="OpsWatch's data directory (default ./data)")
    source.add_argument("--server", help="a running OpsWatch's URL, e.g. http://127.0.0.1:8050")
    parser.add_argument("--timeout", type=float, default=30.0, help="with --server: seconds (default 30)")
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    text = _from_server(args) if args.server else _from_data_dir(args)
    if text is None:
        return 1
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _from_server(args: argparse.Namespace) -> str | None:
    import httpx

    url = f"{args.server.rstrip('/')}/api/v1/incidents/{args.incident_id}/report"
    try:
        response = httpx.get(url, params={"format": args.format}, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"opswatch report: cannot reach {args.server}: {exc}", file=sys.stderr)
        return None
    if response.status_code != 200:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        print(f"opswatch report: HTTP {response.status_code}: {message}", file=sys.stderr)
        return None
    return response.text


def _from_data_dir(args: argparse.Namespace) -> str | None:
    from alerting.report import render_html, render_markdown

    reports = args.data_dir / "reports"
    path = reports / f"{args.incident_id}.json"
    if not path.is_file():
        known = sorted(p.stem for p in reports.glob("INC-*.json")) if reports.is_dir() else []
        print(f"opswatch report: no report {path}; incidents there: {', '.join(known) or 'none'}", file=sys.stderr)
        return None
    text = path.read_text()
    if args.format == "json":
        return text
    try:
        report = json.loads(text)
    except ValueError as exc:
        print(f"opswatch report: {path} is not JSON: {exc}", file=sys.stderr)
        return None
    return render_markdown(report) if args.format == "md" else render_html(report)
