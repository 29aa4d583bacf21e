"""The held-out split of detection/evaluation/sensitivity.py (halves A/B and per-category scores), on the tiny
NAB-layout corpus of test_bench_nab."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detection.evaluation.bench_nab import run_detector
from detection.evaluation.nab import load_profiles, load_windows
from detection.evaluation.sensitivity import halves, main, split_scores
from tests.unit.test_bench_nab import NAB_PROFILES, PROFILES, SPEC, write_corpus


@pytest.fixture
def profiles() -> Path:
    """NAB's profiles.json of the shared corpus (read only)."""
    if not NAB_PROFILES.is_file():
        pytest.fail(f"NAB profiles not found at {NAB_PROFILES}: the shared NAB corpus must sit next to the repository")
    return NAB_PROFILES


def test_halves_are_sorted_even_and_odd_positions():
    keys = ["b/2.csv", "a/1.csv", "c/3.csv", "a/0.csv", "b/1.csv"]
    split = halves(keys)
    assert split == {"A": ["a/0.csv", "b/1.csv", "c/3.csv"], "B": ["a/1.csv", "b/2.csv"]}
    assert halves(reversed(keys)) == split


def test_each_half_scores_as_a_corpus_of_its_own_files(tmp_path, profiles):
    data_dir, windows_path = write_corpus(tmp_path)
    windows, profile_map = load_windows(windows_path), load_profiles(profiles)
    full = run_detector("ensemble", data_dir, windows_path, tmp_path / "full", profiles)
    threshold = full["scores"]["standard"]["threshold"]
    split = split_scores(tmp_path / "full", "ensemble", windows, profile_map, threshold)

    assert halves(SPEC)["A"] == ["artificialTiny/shift.csv", "realTiny/dip.csv"]
    half_dir = tmp_path / "half_a"
    for key in halves(SPEC)["A"]:
        (half_dir / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / key, half_dir / key)
    alone = run_detector("ensemble", half_dir, {k: windows[k] for k in halves(SPEC)["A"]}, tmp_path / "alone", profiles)
    assert split["A"] == {p: round(alone["scores"][p]["normalized"], 2) for p in PROFILES}

    # the categories partition the corpus: their raw scores at the corpus threshold add up to the corpus's
    categories = split["categories"]
    assert set(categories) == {"artificialTiny", "realTiny"}
    assert sum(c["raw"] for c in categories.values()) == pytest.approx(full["scores"]["standard"]["raw"], abs=2e-3)
    never = split_scores(tmp_path / "full", "ensemble", windows, profile_map, threshold=2.0)["categories"]
    assert {c: v["standard"] for c, v in never.items()} == {"artificialTiny": 0.0, "realTiny": 0.0}


def test_command_line_prints_the_split(tmp_path, profiles, capsys):
    data_dir, windows_path = write_corpus(tmp_path)
    args = ["--results-dir", str(tmp_path / "r"), "--only", "default", "--split", "--data-dir", str(data_dir),
            "--windows", str(windows_path), "--profiles", str(profiles)]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)["default"]
    assert set(out["split"]) == {"A", "B", "categories"} and set(out["split"]["B"]) == set(PROFILES)
