"""``opswatch rules backtest FILE``: how a rules file would have paged over stored history.

``opswatch rules backtest FILE [--days N | --start T --end T] [--data-dir DIR] [--config CFG] [--step 60s]
[--warmup 2h] [--silences FILE] [--against FILE2] [--json]`` replays the last N days (default 1) of the data directory's
store through the live pipeline with FILE's rules (:mod:`opswatch.backtest`) and prints the alerts fired,
notifications, incidents and pages, and against the ground truth in ``DIR/faults.jsonl`` the faults
detected, paged and missed, the seconds from each fault's start to its page, and the false incidents (on
legitimate surges or not, and per day). ``--silences FILE`` replaces the stored silences (a YAML/JSON list
of Alertmanager silences). ``--against FILE2`` replays FILE2 on the same history in the same pass and
prints both side by side with the difference. Exit status: 0 done, 2 bad arguments or input (the message
names the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = (("alerts fired", "alerts_fired"), ("notifications", "notifications"), ("incidents", "incidents"),
        ("pages (incidents paged)", "pages"), ("faults", "faults"), ("faults detected", "faults_detected"),
        ("faults paged", "faults_paged"), ("faults missed", "faults_missed"),
        ("median s to page", "median_seconds_to_page"), ("false incidents", "false_incidents"),
        ("  on surges", "false_incidents_on_surges"), ("  that paged", "false_pages"),
        ("false incidents / day", "false_incidents_per_day"))


def register(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser("rules", help="alerting rules: backtest over stored history")
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    bt = sub.add_parser("backtest", help="replay stored history and show how FILE's rules would have paged")
    bt.add_argument("file", type=Path, metavar="FILE", help="a rules file (e.g. alerting/default_rules.yaml)")
    bt.add_argument("--days", type=float, default=1.0, help="replay the last N days of the history (default 1)")
    bt.add_argument("--start", type=_rfc3339, help="replay from this time (RFC 3339) instead of --days")
    bt.add_argument("--end", type=_rfc3339, help="replay until this time (default: the newest stored sample)")
    bt.add_argument("--data-dir", type=Path, help="the data directory with the store and faults.jsonl "
                                                  "(default: data_dir of --config, else ./data)")
    bt.add_argument("--config", type=Path, help="YAML configuration (topology, routing, inhibition, detection)")
    bt.add_argument("--step", help="evaluation step, e.g. 60s (default: the longer of the evaluation "
                                   "interval and the history's sample interval)")
    bt.add_argument("--warmup", help="evaluations before the window that count for nothing, so the detectors "
                                     "start with baselines, e.g. 2h (default: detection.window steps)")
    bt.add_argument("--silences", type=Path, help="YAML/JSON list of silences to replay with, instead of "
                                                  "the stored ones")
    bt.add_argument("--against", type=Path, metavar="FILE2", help="a second rules file, replayed on the "
                                                                  "same history and shown side by side")
    bt.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    bt.set_defaults(func=_backtest)


def _rfc3339(text: str) -> int:
    from alerting.model import parse_rfc3339

    try:
        return parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 date-time, e.g. 2026-11-21T20:00:00Z") \
            from None


def _backtest(args: argparse.Namespace) -> int:
    from alerting.rules import load_rule_groups
    from opswatch.backtest import History, backtest, load_silences, replay_window
    from opswatch.config import load_config
    from opswatch.durations import parse_duration
    from opswatch.errors import ConfigError, StorageError

    files = [args.file] + ([args.against] if args.against else [])
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        step_ms = int(parse_duration(args.step) * 1000) if args.step else None
        if step_ms is not None and step_ms <= 0:
            raise ConfigError(f"--step {args.step!r}: give a positive duration, e.g. 60s")
        warmup_ms = int(parse_duration(args.warmup) * 1000) if args.warmup else None
        silences = load_silences(args.silences) if args.silences else None
        for path in files:  # before reading the history: a typo fails at once
            load_rule_groups(path)
        history = History.open(config.data_dir)
    except (ConfigError, ValueError, StorageError) as exc:
        print(f"opswatch rules backtest: {exc}", file=sys.stderr)
        return 2
    try:
        start, end = replay_window(history, args.days, args.start, args.end)
        progress = None if args.json or not sys.stderr.isatty() else (
            lambda done, total: print(f"\r{done}/{total} steps", end="", file=sys.stderr, flush=True))
        results = backtest(config, files, history, start, end, step_ms, silences, warmup_ms, progress=progress)
    except ConfigError as exc:
        print(f"opswatch rules backtest: {exc}", file=sys.stderr)
        return 2
    finally:
        history.store.close()
    summaries = [r.to_json() for r in results]
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else
                         {"base": summaries[0], "against": summaries[1], "difference": _difference(*summaries)},
                         indent=2))
        return 0
    if progress:
        print(file=sys.stderr)
    _print(summaries)
    return 0


def _difference(base: dict, other: dict) -> dict:
    """``other - base`` for every numeric row of :data:`ROWS` (None when either side has none)."""
    out = {}
    for _, key in ROWS:
        a, b = base[key], other[key]
        out[key] = None if a is None or b is None else round(b - a, 3)
    return out


def _print(summaries: list[dict]) -> None:
    s = summaries[0]
    days = (_ms(s["end"]) - _ms(s["start"])) / 86_400_000
    print(f"replayed {s['start']} .. {s['end']} ({days:.2f} days, step {s['step_seconds']:g} s, rate window "
          f"{s['rate_window_seconds']:g} s, after a {s['warmup_seconds']:g} s warm-up) in {s['seconds']:.1f} s")
    names = [Path(x["rules_file"]).name for x in summaries]
    width = max(12, *(len(n) for n in names))
    header = f"{'':<26}" + "".join(f"{n:>{width + 2}}" for n in names)
    print(header + (f"{'change':>{width + 2}}" if len(summaries) == 2 else ""))
    diff = _difference(*summaries) if len(summaries) == 2 else {}
    for label, key in ROWS:
        cells = [_cell(x[key]) for x in summaries]
        if diff:
            change = diff[key]
            cells.append("" if change is None else f"{change:+g}")
        print(f"{label:<26}" + "".join(f"{c:>{width + 2}}" for c in cells))
    print("\nper fault (seconds from its start to the page; - = not paged):")
    print(f"{'fault':<40} {'start':<25}" + "".join(f"{n:>{width + 2}}" for n in names))
    for i, fault in enumerate(s["per_fault"]):
        pages = [x["per_fault"][i]["seconds_to_page"] for x in summaries]
        print(f"{fault['kind'] + ':' + fault['target']:<40} {fault['start']:<25}"
              + "".join(f"{_cell(p):>{width + 2}}" for p in pages))


def _cell(value) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _ms(text: str) -> int:
    from alerting.model import parse_rfc3339

    return parse_rfc3339(text)
