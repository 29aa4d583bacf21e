"""``opswatch silence add|list|expire``: silences over the REST API (``/api/v2/silences``), like amtool's.

Every command speaks HTTP (httpx) to a running OpsWatch (``--server``, default ``$OPSWATCH_URL`` or
http://127.0.0.1:8050); ``add`` and ``expire`` send ``--token`` (default ``$OPSWATCH_API_TOKEN``) as a bearer
token. Exit status: 0 done; 1 the server refused (its error is printed), could not be reached, or an
argument was wrong (named: a matcher, a time, a duration or a range); 2 argparse's usage errors.

    opswatch silence add 'job="postgres"' alertname=~"Latency.*" --duration 2h --comment "failover test"
    opswatch silence add 'incident="INC-20261123-0001"' --until-resolved --duration 1d --comment "known"
    opswatch silence add 'job="postgres"' --weekdays saturday --times 02:00-04:00 --duration 52w \
        --comment "weekly maintenance"
    opswatch silence list [--expired] [--json]
    opswatch silence expire ID [ID ...]
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timedelta, timezone

from . import add_server_options


def register(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser("silence", help="add, list and expire silences")
    commands = parser.add_subparsers(dest="silence_command", required=True)

    def add(name: str, help_text: str, write: bool) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        add_server_options(command, write)
        command.set_defaults(func=_run)
        return command

    new = add("add", "silence the alerts matching every MATCHER", write=True)
    new.add_argument("matchers", nargs="+", metavar="MATCHER",
                     help='name="value", name!="value", name=~"regex" or name!~"regex" (also incident="INC-...")')
    new.add_argument("--author", "-a", default=getpass.getuser(), help="createdBy (default: login name)")
    new.add_argument("--comment", "-c", required=True, help="why (required, as in Alertmanager)")
    new.add_argument("--start", help="RFC 3339 start (default: now)")
    new.add_argument("--end", help="RFC 3339 end (default: start + --duration)")
    new.add_argument("--duration", "-d", default="1h", help="length when --end is not given (default 1h)")
    new.add_argument("--until-resolved", action="store_true",
                     help="also expire once the alerts it silences are resolved and their incidents over")
    new.add_argument("--weekdays", action="append", default=[], metavar="DAYS",
                     help="recurring: only on these UTC days (monday, or monday:friday; repeatable)")
    new.add_argument("--times", action="append", default=[], metavar="HH:MM-HH:MM",
                     help="recurring: only in this UTC time range (repeatable)")
    listing = add("list", "active and pending silences (--expired: also the expired ones)", write=False)
    listing.add_argument("--expired", action="store_true", help="also list expired silences")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    expire = add("expire", "end silences now", write=True)
    expire.add_argument("ids", nargs="+", metavar="ID")


def _time(text: str, flag: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"opswatch silence: {flag} {text!r} is not an RFC 3339 time like 2026-11-23T18:00:00Z")
    if at.tzinfo is None:
        raise SystemExit(f"opswatch silence: {flag} {text!r} needs a time zone, e.g. 2026-11-23T18:00:00Z")
    return at


def silence_body(args: argparse.Namespace, now: datetime) -> dict:
    """The ``POST /api/v2/silences`` body of ``opswatch silence add``'s arguments.

    :raises SystemExit: naming the argument that is wrong (a matcher, a time, a duration or a range).
    """
    from alerting.matchers import parse_matcher, to_api
    from opswatch.durations import parse_duration

    try:
        matchers = [to_api(parse_matcher(m)) for m in args.matchers]
    except ValueError as exc:
        raise SystemExit(f"opswatch silence: {exc}")
    start = _time(args.start, "--start") if args.start else now
    if args.end:
        end = _time(args.end, "--end")
    else:
        try:
            end = start + timedelta(seconds=parse_duration(args.duration))
        except ValueError as exc:
            raise SystemExit(f"opswatch silence: --duration: {exc}")
    times = []
    for spec in args.times:
        first, sep, last = spec.partition("-")
        if not sep:
            raise SystemExit(f"opswatch silence: --times {spec!r} is not like 02:00-04:00")
        times.append({"start_time": first, "end_time": last})
    body = {"matchers": matchers, "startsAt": start.isoformat(), "endsAt": end.isoformat(),
            "createdBy": args.author, "comment": args.comment, "untilResolved": args.until_resolved}
    if args.weekdays or times:
        body["timeIntervals"] = [{"weekdays": args.weekdays, "times": times}]
    return body


def _run(args: argparse.Namespace) -> int:
    import httpx

    base = args.server.rstrip("/") + "/api/v2"
    headers = {"Authorization": f"Bearer {args.token}"} if getattr(args, "token", None) else {}
    body = silence_body(args, datetime.now(timezone.utc)) if args.silence_command == "add" else None
    try:
        with httpx.Client(timeout=args.timeout) as client:
            if args.silence_command == "add":
                response = client.post(f"{base}/silences", json=body, headers=headers)
                if _failed(response):
                    return 1
                print(response.json()["silenceID"])
            elif args.silence_command == "list":
                response = client.get(f"{base}/silences")
                if _failed(response):
                    return 1
                rows = [s for s in response.json() if args.expired or s["status"]["state"] != "expired"]
                print(json.dumps(rows, indent=2) if args.json else _table(rows))
            else:
                for silence_id in args.ids:
                    response = client.delete(f"{base}/silence/{silence_id}", headers=headers)
                    if _failed(response):
                        return 1
    except httpx.HTTPError as exc:
        print(f"opswatch silence: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    return 0


def _failed(response) -> bool:
    if response.status_code < 400:
        return False
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    print(f"opswatch silence: HTTP {response.status_code}: {message}", file=sys.stderr)
    return True


def _table(rows: list[dict]) -> str:
    """amtool's columns: ID, matchers, state, ends at, created by, comment (plus recurrence/until resolved)."""
    from alerting.matchers import format_matcher, from_api

    lines = [f"{'ID':36}  {'STATE':8}  {'ENDS AT':24}  {'CREATED BY':12}  MATCHERS / COMMENT"]
    for s in rows:
        matchers = " ".join(format_matcher(from_api(m)) for m in s["matchers"])
        extra = (" [until resolved]" if s.get("untilResolved") else "") + (
            f" [windows {json.dumps(s['timeIntervals'])}]" if s.get("timeIntervals") else "")
        lines.append(f"{s['id']:36}  {s['status']['state']:8}  {s['endsAt']:24}  {s['createdBy'][:12]:12}  "
                     f"{matchers}  \"{s['comment']}\"{extra}")
    return "\n".join(lines)
