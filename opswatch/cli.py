"""The ``opswatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from .commands import bench_rca, register_all
from .config import load_config
from .errors import ConfigError


def _list_faults(as_json: bool) -> int:
    """Print every fault kind with its description, valid targets and default params
    (``--json``: ``{"kinds": {kind: [target, ...]}, "descriptions": {kind: text},
    "params": {kind: {param: default}}}``)."""
    from sample_platform.faults import FAULT_KINDS, valid_targets

    kinds = {k: valid_targets(k) for k in FAULT_KINDS}
    if as_json:
        print(json.dumps({"kinds": kinds, "descriptions": {k: v.description for k, v in FAULT_KINDS.items()},
                          "params": {k: v.defaults() for k, v in FAULT_KINDS.items()}}, indent=2))
        return 0
    for name, kind in FAULT_KINDS.items():
        params = ", ".join(f"{p}={v:g}" for p, v in kind.defaults().items())
        print(f"{name}\n    {kind.description}\n    params: {params}\n    targets: {', '.join(kinds[name])}")
    return 0


def _interrupt(signum, frame):
    # Re-raise as SIGINT: asyncio.run then cancels the demo's main task, whose clean-up stops the platform.
    os.kill(os.getpid(), signal.SIGINT)


def _demo(args: argparse.Namespace) -> int:
    from .demo import FaultPlan, run_demo

    if args.list_faults:
        return _list_faults(args.json)
    config = load_config(args.config, data_dir=args.data_dir, scrape_interval=args.scrape_interval)
    fault = FaultPlan.parse(args.fault, args.fault_at, args.fault_for) if args.fault else None
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the demo as cleanly as Ctrl-C
    try:
        summary = asyncio.run(run_demo(config, args.port, args.duration, fault, args.summary, args.rate, args.seed))
    except KeyboardInterrupt:
        return 0
    if args.duration:
        print(json.dumps(summary, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    from .monitor import run_monitor

    config = load_config(args.config, data_dir=args.data_dir)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(run_monitor(config, str(args.config), args.port, args.duration))
    except KeyboardInterrupt:
        pass
    return 0


def _bench(args: argparse.Namespace) -> int:
    from detection.evaluation import bench_nab

    return bench_nab.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opswatch", description="Observability and AIOps monitoring.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the reference platform monitored live, wall screen on :8050")
    demo.add_argument("--config", type=Path, help="YAML configuration (see opswatch/config.py)")
    demo.add_argument("--port", type=int, default=8050, help="wall screen and API port (default 8050)")
    demo.add_argument("--data-dir", type=Path, help="store, reports and fault log (default ./data)")
    demo.add_argument("--duration", type=float, help="run headless for this many seconds, then exit")
    demo.add_argument("--fault", metavar="KIND:TARGET", help="inject this fault, e.g. latency:postgres")
    demo.add_argument("--fault-at", type=float, default=120.0, metavar="SECONDS", help="offset of the fault")
    demo.add_argument("--fault-for", type=float, default=60.0, metavar="SECONDS", help="length of the fault")
    demo.add_argument("--summary", type=Path, metavar="PATH", help="write the JSON summary here on exit")
    demo.add_argument("--scrape-interval", help="e.g. 5s (default) or 1s for quick scripted runs")
    demo.add_argument("--rate", type=float, default=20.0, help="platform traffic, requests/s (default 20)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the platform's randomness")
    demo.add_argument("--list-faults", action="store_true", help="print fault kinds and their valid targets")
    demo.add_argument("--json", action="store_true", help="with --list-faults: JSON output")
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="monitor real targets from a configuration file (no sample platform)")
    run.add_argument("--config", type=Path, required=True, help="YAML with scrape_configs (see opswatch/config.py)")
    run.add_argument("--port", type=int, default=8050, help="wall screen and API port (default 8050)")
    run.add_argument("--data-dir", type=Path, help="store and reports (default: data_dir in the file, else ./data)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="benchmarks against ground truth")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    nab = bench_sub.add_parser("nab", help="score a detector on the NAB corpus (--detector, --results-dir, ...)",
                               add_help=False)
    nab.set_defaults(func=_bench)
    bench_rca.register(bench_sub)
    register_all(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "func", None) is not _bench:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest  # the NAB runner parses its own options
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:
        print(f"opswatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
