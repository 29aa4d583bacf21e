"""Ablations and parameter sensitivity of the ensemble on NAB (``python -m detection.evaluation.sensitivity``).

Every variant is the default :class:`detection.ensemble.Ensemble` with one change — a member left out, the
onset filter off or without its hold, or one parameter scaled by 0.5 and by 1.5 — run through the same NAB
runner as ``opswatch bench nab`` (:func:`detection.evaluation.bench_nab.run_detector`), one parameter set for
the whole corpus.
It shows which parts earn the score and how flat the score is around the chosen round numbers.

Held-out check (``--split``): the corpus's files, sorted by ``<category>/<file>.csv``, are split into half
``A`` (even positions) and half ``B`` (odd positions) by :func:`halves` — deterministic and label-free. Each
variant is then also scored on each half alone (NAB's threshold optimisation over that half) and per category
(standard profile at the whole corpus's optimal threshold), so a change can be designed on ``A`` and accepted
only if it also holds on ``B`` and costs no category much (:func:`split_scores`). Measured on NAB v1.1 with
``--split`` over all variants: the default scores A 74.99 / B 75.15 standard; the halves agree on what the
ablations cost (r = 0.88 over the 33 variants) but hardly on the +-50 % parameter changes (r = 0.17 over the
28 variants scoring above 70 on the corpus: e.g. ``calibration.memory x1.5`` A 75.01, B 71.82), so a gain of a
point or two on one half is within the split's noise.

Usage: ``python -m detection.evaluation.sensitivity --results-dir DIR [--only VARIANT ...] [--jobs N] [--split]
[--data-dir DIR --windows FILE --profiles FILE]``. Prints ``{variant: {"change", "seconds", "standard",
"reward_low_FP_rate", "reward_low_FN_rate"[, "split"]}}`` as JSON (normalised NAB scores).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from detection.calibration import ONSET_HALF_LIFE, ONSET_HOLD
from detection.changepoint import LevelShift
from detection.ensemble import Ensemble
from detection.evaluation.bench_nab import DEFAULT_DATA_DIR, DEFAULT_PROFILES, DEFAULT_WINDOWS, run_detector
from detection.evaluation import nab
from detection.range_novelty import RangeNovelty
from detection.seasonal import SeasonalProfile

MEMBERS = {"range": RangeNovelty, "seasonal": SeasonalProfile, "level_shift": LevelShift}
CALIBRATION = ("memory", "growth", "min_points")
"""Parameters of the record-ratio calibration, shared by the seasonal and level-shift members."""


def build(
    changes: Mapping[str, Mapping[str, object]] | None = None,
    drop: Sequence[str] = (),
    onset_half_life: float = ONSET_HALF_LIFE,
    onset_hold: int = ONSET_HOLD,
) -> Ensemble:
    """The default ensemble with ``changes`` (``{member: {param: value}}``; member ``"calibration"`` sets
    :data:`CALIBRATION` parameters of the seasonal and level-shift members), without the members in ``drop``,
    with the given onset filter.

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
    return Ensemble(members=members, onset_half_life=onset_half_life, onset_hold=onset_hold)


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
    variants[f"onset_half_life x{factor}"] = {"onset_half_life": ONSET_HALF_LIFE * factor}
    variants[f"onset_hold x{factor}"] = {"onset_hold": int(ONSET_HOLD * factor)}
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
    "onset filter without hold (half-life 50)": {"onset_half_life": 50, "onset_hold": 0},
    **_scaled(0.5),
    **_scaled(1.5),
}
"""Variant name -> keyword arguments of :func:`build`."""


def halves(keys: Iterable[str]) -> dict[str, list[str]]:
    """The held-out split of a corpus: ``keys`` (``<category>/<file>.csv``) sorted, even positions in ``"A"``,
    odd positions in ``"B"``. Deterministic and blind to labels and data."""
    ordered = sorted(keys)
    return {"A": ordered[0::2], "B": ordered[1::2]}


def split_scores(
    results_dir: str | Path,
    detector: str,
    windows: Mapping[str, Sequence[nab.Window]],
    profiles: Mapping[str, nab.Profile],
    threshold: float,
) -> dict[str, dict]:
    """Score a detector's written results on each half of :func:`halves` and per category.

    ``windows``/``profiles`` as from :func:`~detection.evaluation.nab.load_windows` and
    :func:`~detection.evaluation.nab.load_profiles` (``profiles`` must hold ``"standard"``); ``threshold`` is
    the whole corpus's optimal standard threshold (anomaly-score units).

    Returns ``{"A": {profile: normalised}, "B": {...}, "categories": {category: {"standard", "raw"}}}``: each
    half with NAB's threshold optimised over that half alone; each category's raw standard score at
    ``threshold`` and its normalised score (``None`` for a category without windows, whose raw score is
    its false-positive cost). Scores rounded to 2 decimals (raw to 3).
    """
    results = nab.load_results(results_dir, detector)
    out: dict[str, dict] = {}
    for half, keys in halves(windows).items():
        files = nab.prepare_corpus(results, {k: windows[k] for k in keys})
        events = nab.build_sweep_events(files)
        out[half] = {}
        for name, p in profiles.items():
            raw = nab.optimize_threshold(events, p)[1]
            out[half][name] = round(nab.normalize(raw, nab.null_score(files, p), nab.perfect_score(files, p)), 2)
    standard, categories = profiles["standard"], {}
    for category in sorted({k.split("/")[0] for k in windows}):
        files = nab.prepare_corpus(results, {k: w for k, w in windows.items() if k.split("/")[0] == category})
        raw = sum(nab.score_prepared(f, standard, threshold) for f in files)
        null, perfect = nab.null_score(files, standard), nab.perfect_score(files, standard)
        categories[category] = {
            "standard": round(nab.normalize(raw, null, perfect), 2) if perfect != null else None,
            "raw": round(raw, 3),
        }
    out["categories"] = categories
    return out


def run(
    results_dir: str | Path,
    only: Sequence[str] | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    windows: str | Path = DEFAULT_WINDOWS,
    profiles: str | Path = DEFAULT_PROFILES,
    jobs: int = 1,
    split: bool = False,
) -> dict[str, dict]:
    """Run the variants (all, or those named in ``only``) and return their scores (see the module docstring);
    with ``split``, each variant also gets ``"split"``: its :func:`split_scores`.

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
        if split:
            out[name]["split"] = split_scores(results_dir, f"variant{i}", nab.load_windows(windows),
                                              nab.load_profiles(profiles), result["scores"]["standard"]["threshold"])
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
    parser.add_argument("--split", action="store_true",
                        help="also score halves A and B of the corpus and each category (held-out check)")
    args = parser.parse_args(argv)
    try:
        result = run(args.results_dir, args.only, args.data_dir, args.windows, args.profiles, max(1, args.jobs),
                     split=args.split)
    except KeyError as exc:
        print(f"sensitivity: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
