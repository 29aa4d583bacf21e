"""Command line: ``python -m sample_platform run --ports-file PATH --faults-log PATH [--rate 20] [--seed 1]
[--time-scale 1] [--sim-start ISO8601] [--surges none|calendar] [--exit-with-parent]``.

Starts every node, the control server and the traffic generators in this
process; once all servers listen, writes the ports file
``{"control": url, "nodes": {name: url}, "pid": pid}`` atomically, then runs
until SIGINT/SIGTERM and exits 0.  ``_created`` series are disabled in this
process to keep the exposition small.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from datetime import datetime, timezone


def _sim_start(text: str) -> float:
    """ISO 8601 date-time (UTC when no offset is given) -> epoch seconds."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time, e.g. 2026-11-21T20:00:00Z") \
            from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the requested command; returns the exit code."""
    from .surges import SURGE_MODES

    parser = argparse.ArgumentParser(prog="python -m sample_platform",
                                     description="OpsWatch reference social/media platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the platform until SIGINT/SIGTERM")
    run_p.add_argument("--ports-file", required=True, help="JSON file written once all servers listen")
    run_p.add_argument("--faults-log", required=True,
                       help="JSONL file receiving the ground truth (faults and legitimate surges)")
    run_p.add_argument("--rate", type=float, default=20.0,
                       help="mean traffic over a day in requests/s on the gateway (0 = none; default 20)")
    run_p.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    run_p.add_argument("--time-scale", type=float, default=1.0,
                       help="simulated time runs K times faster, e.g. 1440 = a day per minute (default 1)")
    run_p.add_argument("--sim-start", type=_sim_start,
                       help="simulated date-time at start, ISO 8601 (default: now)")
    run_p.add_argument("--surges", choices=SURGE_MODES, default="none",
                       help="'calendar' starts the weekly calendar of legitimate surges (default none)")
    run_p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    run_p.add_argument("--exit-with-parent", action="store_true",
                       help="stop when the parent process exits (for platforms started by opswatch demo)")
    args = parser.parse_args(argv)
    if args.rate < 0 or not math.isfinite(args.rate):
        parser.error("--rate must be a number >= 0")
    if not math.isfinite(args.time_scale) or args.time_scale <= 0:
        parser.error("--time-scale must be a number > 0")

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sample_platform").setLevel(args.log_level.upper())

    from prometheus_client import disable_created_metrics

    from .runner import run

    disable_created_metrics()
    return run(args.ports_file, args.faults_log, exit_with_parent=args.exit_with_parent, rate=args.rate,
               seed=args.seed, time_scale=args.time_scale, sim_start=args.sim_start, surges=args.surges)


if __name__ == "__main__":
    sys.exit(main())
