"""Ablations and parameter sensitivity of the ensemble on NAB (``python -m detection.evaluation.sensitivity``).

Every variant is the default :class:`detection.ensemble.Ensemble` with one change — a member left out, the
onset filter off, or one parameter scaled by 0.5 and by 1.5 — run through the same NAB runner as ``opswatch
bench nab`` (:func:`detection.evaluation.bench_nab.run_detector`), one parameter set for the whole corpus.
It shows which parts earn the score and how flat the score is around the chosen round numbers.

Usage: ``python -m detection.evaluation.sensitivity --results-dir DIR [--only VARIANT ...] [--jobs N]
[--data-dir DIR --windows FILE --profiles FILE]``. Prints ``{variant: {"change", "seconds", "standard",
"reward_low_FP_rate", "reward_low_FN_rate"}}`` as JSON (normalised NAB scores).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from detection.changepoint import LevelShift
from detection.ensemble import Ensemble
from detection.evaluation.bench_nab import DEFAULT_DATA_DIR, DEFAULT_PROFILES, DEFAULT_WINDOWS, run_detector
from detection.range_novelty import RangeNovelty
from detection.seasonal import SeasonalProfile

MEMBERS = {"range": RangeNovelty, "seasonal": SeasonalProfile, "level_shift": LevelShift}
CALIBRATION = ("memory", "growth", "min_points")
"""Parameters of the record-ratio calibration, shared by the seasonal and level-shift members."""


def build(
    changes: Mapping[str, Mapping[str, object]] | None = None, drop: Sequence[str] = (), onset_half_life: float = 50
) -> Ensemble:
    """The default ensemble with ``changes`` (``{member: {param: value}}``; member ``"calibration"`` sets
    :data:`CALIBRATION` parameters of the seasonal and level-shift members), without the members in ``drop``.

    :raises KeyError: unknown member or calibration parameter. :raises TypeError: unknown member parameter.
    """
    changes = dict(changes or {})
    calibration = changes.pop("calibration", {})
    unknown = (set(changes) | set(drop)) - set(MEMBERS)
    if unknown:
        raise KeyError(f"unknown member(s) {sorted(unknown)}; members: {sorted(MEMBERS)}")
    if set(calibration) - set(CALIBRATION):
        raise KeyError(f"unknown calibration parameter(s) {sorted(set(calibration) - set(CALIBRATION))}; "
                       f"known: {list(CALIBRATION)}")
    members = []
    for name, cls in MEMBERS.items():
        if name in drop:
            continue
        params = dict(changes.get(name, {}))
        if name != "range":
            params = {**calibration, **params}
        members.append((name, cls(**params)))
    return Ensemble(members=members, onset_half_life=onset_half_life)


def _scaled(factor: float) -> dict[str, dict]:
    """One variant per parameter, that parameter multiplied by ``factor``."""
    defaults = {
        "range": {"gain": 10.0},
        "seasonal": {"daily_alpha": 0.1, "weekly_alpha": 0.3, "smoothing": 5.0, "daily_bins": 48, "weekly_bins": 168},
        "calibration": {"memory": 10_000, "growth": 3.0, "min_points": 50},
    }
    variants: dict[str, dict] = {}
    for member, params in defaults.items():
        for param, value in params.items():
            new = type(value)(value * factor) if isinstance(value, int) else value * factor
            variants[f"{member}.{param} x{factor}"] = {"changes": {member: {param: new}}}
    spans = tuple((round(s * factor), round(l * factor)) for s, l in ((40, 1000), (100, 4000)))
    variants[f"level_shift.spans x{factor}"] = {"changes": {"level_shift": {"spans": spans}}}
    variants[f"onset_half_life x{factor}"] = {"onset_half_life": 50 * factor}
    return variants


VARIANTS: dict[str, dict] = {
    "default": {},
    "without range": {"drop": ("range",)},
    "without seasonal": {"drop": ("seasonal",)},
    "without level_shift": {"drop": ("level_shift",)},
    "range only": {"drop": ("seasonal", "level_shift")},
    "seasonal only": {"drop": ("range", "level_shift")},
    "level_shift only": {"drop": ("range", "seasonal")},
    "no onset filter": {"onset_half_life": 0},
    **_scaled(0.5),
    **_scaled(1.5),
}
"""Variant name -> keyword arguments of :func:`build`."""


def run(
    results_dir: str | Path,
    only: Sequence[str] | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    windows: str | Path = DEFAULT_WINDOWS,
    profiles: str | Path = DEFAULT_PROFILES,
    jobs: int = 1,
) -> dict[str, dict]:
    """Run the variants (all, or those named in ``only``) and return their scores (see the module docstring).

    :raises KeyError: for an unknown variant name.
    """
    names = list(VARIANTS) if not only else list(only)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    out: dict[str, dict] = {}
    for i, name in enumerate(names):
        kwargs = VARIANTS[name]
        result = run_detector(f"variant{i}", data_dir, windows, results_dir, profiles, jobs,
                              factory=functools.partial(build, **kwargs))
        out[name] = {
            "change": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()},
            "seconds": result["seconds"],
            **{profile: round(v["normalized"], 2) for profile, v in result["scores"].items()},
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON result and returns 0 (2 for an unknown variant)."""
    parser = argparse.ArgumentParser(prog="python -m detection.evaluation.sensitivity", description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", type=Path, required=True, help="where the variants' result files go")
    parser.add_argument("--only", nargs="*", help=f"variants to run (default all): {list(VARIANTS)}")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--windows", type=Path, default=DEFAULT_WINDOWS)
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        result = run(args.results_dir, args.only, args.data_dir, args.windows, args.profiles, max(1, args.jobs))
    except KeyError as exc:
        print(f"sensitivity: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
