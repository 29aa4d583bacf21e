"""``opswatch platform ...``: the reference platform's history and scenarios.

``opswatch platform backfill --days N --seed S --faults K --data-dir DIR [--step SECONDS] [--end RFC3339]
[--rate R]`` writes N days of the platform's metrics into ``DIR/opswatch.db`` (the store ``opswatch demo
--data-dir DIR`` reads) and their ground truth into ``DIR/faults.jsonl`` (see
:mod:`sample_platform.backfill`); records already in that log (a live run's) are kept. Run it before
``opswatch demo`` uses the directory, not while: one process owns a store. Exit status: 0 written, 1 the
store could not be written, 2 bad arguments (or a ground-truth log that is not one).

``opswatch platform scenario --fault KIND:TARGET [--fault ...] [--for S] [--gap S] [--baseline S]
[--data-dir DIR] [--config FILE] [--json]`` runs the platform and the whole pipeline headless, injects the
faults one after another and prints what OpsWatch reported for each against the ground truth
(:mod:`opswatch.scenarios`): detected, incidents, top root causes and the fault node's rank, seconds to
open and to page, and the incidents that matched no fault. Exit status: 0 done, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser("platform", help="the reference platform: history backfill (and scenarios)")
    sub = parser.add_subparsers(dest="platform_command", required=True, metavar="COMMAND")
    backfill = sub.add_parser("backfill", help="write N days of the platform's metrics and ground truth")
    backfill.add_argument("--days", type=float, required=True, help="days of history before --end")
    backfill.add_argument("--seed", type=int, required=True, help="seed of the traffic, faults and surges")
    backfill.add_argument("--faults", type=int, required=True, help="how many faults to draw from the catalogue")
    backfill.add_argument("--data-dir", type=Path, required=True, help="OpsWatch's data directory")
    backfill.add_argument("--step", type=float, default=60.0, help="seconds between samples (default 60)")
    backfill.add_argument("--end", type=_rfc3339, help="end of the history, RFC 3339 (default now, rounded down)")
    backfill.add_argument("--rate", type=float, default=20.0,
                          help="mean traffic in requests/s, as the live platform's --rate (default 20)")
    backfill.add_argument("--retention", type=_duration, default="15d",
                          help="the store's retention (default 15d, Prometheus's): a history ending longer ago than "
                               "this is dropped; raise it for a fixed --end in the past")
    backfill.add_argument("--surges", choices=("calendar", "none"), default="calendar",
                          help="the weekly calendar of legitimate surges, as the live platform's --surges "
                               "(default calendar)")
    backfill.set_defaults(func=_backfill)

    scenario = sub.add_parser("scenario", help="inject faults live, headless, and score what OpsWatch reported")
    scenario.add_argument("--fault", metavar="KIND:TARGET", action="append", required=True,
                          help="a fault to inject, e.g. latency:postgres (repeat for several, run in order)")
    scenario.add_argument("--for", dest="for_seconds", type=float, default=60.0, help="seconds each fault lasts")
    scenario.add_argument("--gap", type=float, default=60.0, help="quiet seconds after each fault (default 60)")
    scenario.add_argument("--baseline", type=float, default=60.0, help="fault-free seconds first (default 60)")
    scenario.add_argument("--resolve-after", type=float, default=30.0,
                          help="quiet seconds before an incident resolves (default 30, so scenarios stay apart)")
    scenario.add_argument("--config", type=Path, help="YAML configuration (rules, routing, detection...)")
    scenario.add_argument("--data-dir", type=Path, default=Path("data-scenario"),
                          help="store, ground truth and reports (default ./data-scenario)")
    scenario.add_argument("--scrape-interval", help="e.g. 5s (default) or 1s")
    scenario.add_argument("--rate", type=float, default=20.0, help="platform traffic, requests/s (default 20)")
    scenario.add_argument("--seed", type=int, default=1, help="seed of the platform's randomness")
    scenario.add_argument("--json", action="store_true", help="print the run as one JSON object")
    scenario.set_defaults(func=_scenario)


def _duration(text: str) -> float:
    from opswatch.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rfc3339(text: str) -> float:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 date-time, e.g. 2026-11-21T20:00:00Z") \
            from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _backfill(args: argparse.Namespace) -> int:
    from opswatch.errors import StorageError
    from sample_platform.backfill import backfill
    from opswatch.durations import format_duration
    from sample_platform.groundtruth import rfc3339

    try:
        result = backfill(args.data_dir, args.days, args.seed, args.faults, args.step, args.end, args.rate,
                          retention_ms=round(args.retention * 1000), surges=args.surges)
    except ValueError as exc:
        print(f"opswatch platform backfill: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"opswatch platform backfill: {exc}", file=sys.stderr)
        return 1
    faults = sum(1 for r in result.records if r["fault"])
    print(f"wrote {result.samples:,} samples of {result.series:,} series from {rfc3339(result.start)} to "
          f"{rfc3339(result.end)} into {args.data_dir / 'opswatch.db'} in {result.seconds:.1f} s; ground truth "
          f"({faults} faults, {len(result.records) - faults} surges): {result.truth_path}")
    if result.too_old:
        print(f"{result.too_old:,} samples older than the store's retention ({format_duration(args.retention)} "
              f"before now) were not written; see --retention")
    return 0


def _scenario(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from opswatch.config import load_config
    from opswatch.scenarios import Scenario, run_scenarios, scenario_config

    scenarios = [Scenario.parse(spec, args.for_seconds) for spec in args.fault]  # ValueError -> exit 2
    config = scenario_config(load_config(args.config, data_dir=args.data_dir, scrape_interval=args.scrape_interval),
                             args.resolve_after)
    run = asyncio.run(run_scenarios(config, scenarios, rate=args.rate, seed=args.seed,
                                    baseline_seconds=args.baseline, gap_seconds=args.gap))
    if args.json:
        print(json.dumps(run.to_json(), indent=2))
        return 0
    print(f"{'fault':<36} {'detected':<9} {'incidents':>9} {'rank':>5} {'open s':>7} {'page s':>7}  root causes")
    for o in run.to_json()["outcomes"]:
        name = f"{o['kind']}:{o['target']}"
        print(f"{name:<36} {str(o['detected']).lower():<9} {len(o['incidents']):>9} {o['rank'] or '-':>5} "
              f"{o['seconds_to_open'] if o['seconds_to_open'] is not None else '-':>7} "
              f"{o['seconds_to_page'] if o['seconds_to_page'] is not None else '-':>7}  {', '.join(o['root_causes'])}")
    for i in run.false_incidents:
        print(f"false incident {i['id']} opened {i['opened_at']}{' during a surge' if i['on_surge'] else ''}: "
              f"{', '.join(c['node'] for c in i['root_causes'][:3])}")
    return 0
