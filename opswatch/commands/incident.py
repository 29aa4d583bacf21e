"""``opswatch incident list|show|ack|assign|comment|resolve``: the incident lifecycle over the REST API.

Every command speaks HTTP (httpx) to a running OpsWatch (``--server``, default ``$OPSWATCH_URL`` or
http://127.0.0.1:8050); the write commands send ``--token`` (default ``$OPSWATCH_API_TOKEN``) as a bearer
token and ``--by`` (default: the login name) for the incident's timeline. Exit status: 0 done, 1 the server
refused (its error is printed) or could not be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from . import add_server_options

ACTIONS = {"ack": "acknowledge", "assign": "assign", "comment": "comment", "resolve": "resolve"}


def register(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser("incident", help="list, show, acknowledge, assign, comment on, resolve incidents")
    commands = parser.add_subparsers(dest="incident_command", required=True)

    def add(name: str, help_text: str, write: bool) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        add_server_options(command, write)
        if write:
            command.add_argument("--by", help="your name, for the timeline (default: the login name)")
        command.set_defaults(func=_run)
        return command

    listing = add("list", "incidents, newest first", write=False)
    listing.add_argument("--status", choices=("open", "acknowledged", "resolved"), help="only these")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    show = add("show", "one incident's report (Markdown, or --json)", write=False)
    show.add_argument("incident_id")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    for name, help_text in (("ack", "acknowledge an open incident"), ("resolve", "resolve an active incident")):
        add(name, help_text, write=True).add_argument("incident_id")
    assign = add("assign", "make a person the incident's owner", write=True)
    assign.add_argument("incident_id")
    assign.add_argument("assignee")
    comment = add("comment", "add a comment to the timeline", write=True)
    comment.add_argument("incident_id")
    comment.add_argument("text")


def _run(args: argparse.Namespace) -> int:
    import httpx

    base = args.server.rstrip("/") + "/api/v1/incidents"
    try:
        with httpx.Client(timeout=args.timeout) as client:
            if args.incident_command == "list":
                response = client.get(base, params={"status": args.status} if args.status else None)
            elif args.incident_command == "show":
                response = client.get(f"{base}/{args.incident_id}" if args.json
                                      else f"{base}/{args.incident_id}/report", params=None if args.json else {"format": "md"})
            else:
                body = {"by": args.by or _login()}
                if args.incident_command == "assign":
                    body["assignee"] = args.assignee
                if args.incident_command == "comment":
                    body["text"] = args.text
                headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
                response = client.post(f"{base}/{args.incident_id}/{ACTIONS[args.incident_command]}",
                                       json=body, headers=headers)
    except httpx.HTTPError as exc:
        print(f"opswatch incident: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"opswatch incident: HTTP {response.status_code}: {_error_text(response)}", file=sys.stderr)
        return 1
    data = None if args.incident_command == "show" and not args.json else response.json()["data"]
    if data is None:
        print(response.text, end="")  # the report in Markdown
    elif args.incident_command in ("list", "show") and args.json:
        print(json.dumps(data, indent=2))
    elif args.incident_command == "list":
        for i in data:
            cause = i["root_causes"][0]["node"] if i["root_causes"] else "?"
            owner = (i.get("people") or {}).get("assignee") or "-"
            print(f"{i['id']}  {i['status']:<12} {i['severity']:<8} opened {i['opened_at']}  "
                  f"root cause {cause}  assignee {owner}")
    else:
        last = data["timeline"][-1] if data["timeline"] else {"at": "", "text": ""}
        print(f"{data['id']} is {data['status']}: {last['at']} {last['text']}")
    return 0


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "cli"


def _error_text(response) -> str:
    """The API's error message (its JSON envelope), else the start of the body."""
    try:
        return response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
