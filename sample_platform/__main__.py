"""Command line: ``python -m sample_platform run --ports-file PATH --faults-log PATH [--rate 20] [--seed 1]``.

Starts every node, the control server and the traffic generator in this
process; once all servers listen, writes the ports file
``{"control": url, "nodes": {name: url}, "pid": pid}`` atomically, then runs
until SIGINT/SIGTERM and exits 0.  ``_created`` series are disabled in this
process to keep the exposition small.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the requested command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sample_platform",
                                     description="OpsWatch reference social/media platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the platform until SIGINT/SIGTERM")
    run_p.add_argument("--ports-file", required=True, help="JSON file written once all servers listen")
    run_p.add_argument("--faults-log", required=True, help="JSONL file receiving fault ground truth")
    run_p.add_argument("--rate", type=float, default=20.0, help="traffic in requests/s (0 = none; default 20)")
    run_p.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    run_p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    run_p.add_argument("--exit-with-parent", action="store_true",
                       help="stop when the parent process exits (for platforms started by opswatch demo)")
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error("--rate must be >= 0")

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sample_platform").setLevel(args.log_level.upper())

    from prometheus_client import disable_created_metrics

    from .runner import run

    disable_created_metrics()
    return run(args.ports_file, args.faults_log, rate=args.rate, seed=args.seed, exit_with_parent=args.exit_with_parent)


if __name__ == "__main__":
    sys.exit(main())
