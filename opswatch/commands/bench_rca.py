"""``opswatch bench rca``: the root-cause benchmark over the platform's fault catalogue (:mod:`opswatch.bench_rca`).

``opswatch bench rca --scenarios N [--json] [--seed S] [--fault-seconds F] [--gap-seconds G]
[--fault-free-seconds T] [--baseline-seconds B] [--surge KIND ...] [--scrape-interval 5s] [--data-dir DIR]
[--config FILE]`` runs N live fault scenarios (round-robin over the kinds, seeded targets), a fault-free
stretch with legitimate surges, Prometheus + Alertmanager beside OpsWatch, BARO and n-sigma on the stored
signals, and prints the keys of issue 6 for OpsWatch and each baseline (a table, or one JSON object).
Takes about ``B + N * (F + G) + T`` seconds. Exit status: 0 done, 1 a peer or the platform failed to start,
2 bad arguments (or a data directory that is not empty), 130 interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(bench: "argparse._SubParsersAction") -> None:
    rca = bench.add_parser("rca", help="root-cause benchmark: live faults, OpsWatch vs BARO, n-sigma, "
                                       "Prometheus + Alertmanager")
    rca.add_argument("--scenarios", type=int, required=True, help="faults to inject (12 covers every kind)")
    rca.add_argument("--json", action="store_true", help="print the result as one JSON object")
    rca.add_argument("--seed", type=int, default=1, help="seed of the fault targets and the platform (default 1)")
    rca.add_argument("--fault-seconds", type=float, default=60.0, help="length of each fault (default 60)")
    rca.add_argument("--gap-seconds", type=float, default=60.0, help="quiet seconds after each fault (default 60)")
    rca.add_argument("--fault-free-seconds", type=float, default=240.0,
                     help="fault-free stretch after the faults, surges in its first half (default 240)")
    rca.add_argument("--baseline-seconds", type=float, default=240.0,
                     help="warm-up before the first fault, for the detectors' baselines (default 240)")
    rca.add_argument("--surge", action="append", metavar="KIND",
                     help="legitimate surge started at the fault-free stretch (repeat; default celebrity_live "
                          "and deploy)")
    rca.add_argument("--resolve-after", type=float, default=30.0,
                     help="quiet seconds before an incident resolves (default 30, so scenarios stay apart)")
    rca.add_argument("--scrape-interval", default="5s", help="e.g. 5s (default) or 1s")
    rca.add_argument("--rate", type=float, default=20.0, help="platform traffic, requests/s (default 20)")
    rca.add_argument("--data-dir", type=Path,
                     help="a new or empty directory for the store, ground truth and peers (default: a new temp dir)")
    rca.add_argument("--config", type=Path, help="OpsWatch YAML configuration (rules, route, detection...)")
    rca.set_defaults(func=_rca)


def _rca(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import signal
    import tempfile

    from opswatch.bench_rca import DEFAULT_SURGES, pick_scenarios, run_bench
    from opswatch.cli import _interrupt
    from opswatch.config import load_config
    from opswatch.scenarios import scenario_config
    from sample_platform.surges import SURGE_KINDS

    surges = tuple(args.surge or DEFAULT_SURGES)
    unknown = [s for s in surges if s not in SURGE_KINDS]
    if unknown:
        print(f"opswatch bench rca: --surge {unknown[0]!r}: use one of {', '.join(SURGE_KINDS)}", file=sys.stderr)
        return 2
    scenarios = pick_scenarios(args.scenarios, args.seed, args.fault_seconds)  # ValueError -> exit 2
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="opswatch-bench-rca-"))
    if data_dir.exists() and any(data_dir.iterdir()):
        print(f"opswatch bench rca: --data-dir {data_dir} is not empty; the benchmark needs a fresh store",
              file=sys.stderr)
        return 2
    config = scenario_config(load_config(args.config, data_dir=data_dir, scrape_interval=args.scrape_interval),
                             args.resolve_after)
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the platform and the peers are stopped
    try:
        result = asyncio.run(run_bench(config, scenarios, seed=args.seed, rate=args.rate,
                                       baseline_seconds=args.baseline_seconds, gap_seconds=args.gap_seconds,
                                       fault_free_seconds=args.fault_free_seconds, surges=surges))
    except RuntimeError as exc:
        print(f"opswatch bench rca: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("opswatch bench rca: interrupted; nothing measured", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _cell(value, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def _print_table(result: dict) -> None:
    from opswatch.bench_rca import KEYS

    headers = ("AC@1", "AC@3", "inc/fault", "noise red.", "purity", "false/h", "notify s")
    print(f"{'system':<24}" + "".join(f"{h:>11}" for h in headers))
    for name, row in [("opswatch", result), *result["baselines"].items()]:
        print(f"{name:<24}" + "".join(_cell(row[k], 11) for k in KEYS))
    print(f"\n{'fault':<36} {'rank':>5} {'baro':>5} {'nsig':>5} {'inc':>4} {'page s':>7} {'am inc':>7} {'am s':>6}"
          "  root causes")
    for s in result["scenarios"]:
        am = s["prometheus_alertmanager"]
        print(f"{s['kind'] + ':' + s['target']:<36} {_cell(s['rank'], 5)} {_cell(s['baro_rank'], 5)} "
              f"{_cell(s['n_sigma_rank'], 5)} {len(s['incidents']):>4} {_cell(s['seconds_to_page'], 7)} "
              f"{am['incidents']:>7} {_cell(am['seconds_to_notify'], 6)}  {', '.join(s['root_causes'])}")
    run = result["run"]
    print(f"\n{run['faults']} faults, surges {', '.join(run['surges']) or 'none'}, {run['seconds']} s "
          f"({run['fault_free_seconds']} s fault-free); data in {run['data_dir']}")
