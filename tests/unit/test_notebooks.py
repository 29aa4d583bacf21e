"""The analyst notebooks run top to bottom with nbclient (a real Jupyter kernel) on a small slice of NAB.

The cell tagged ``parameters`` is replaced by the slice, as papermill does; every other cell runs unchanged.
A missing NAB corpus fails the test (the data is a peer of the repository, ``../shared/datasets/nab``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from detection.evaluation.bench_nab import DEFAULT_DATA_DIR

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

SLICES = {
    "01_detect_nab_series.ipynb": 'FILE = "artificialWithAnomaly/art_daily_jumpsup.csv"\nTHRESHOLD = None',
    "02_compare_detectors_nab.ipynb": ('FILES = ["artificialWithAnomaly/art_daily_jumpsup.csv", '
                                       '"realKnownCause/ec2_request_latency_system_failure.csv"]\n'
                                       'DETECTORS = ["ensemble", "cusum", "null"]'),
}


def run(name: str) -> nbformat.NotebookNode:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    [cell] = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = SLICES[name]
    NotebookClient(book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return book


def outputs_text(book: nbformat.NotebookNode) -> str:
    parts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_the_nab_corpus_is_there():
    assert (DEFAULT_DATA_DIR / "artificialWithAnomaly" / "art_daily_jumpsup.csv").exists(), \
        f"the NAB corpus is missing: {DEFAULT_DATA_DIR} (see ../shared/datasets/nab/README.md)"


@pytest.mark.parametrize("name", sorted(SLICES))
def test_notebook_runs_top_to_bottom(name):
    book = run(name)
    text = outputs_text(book)
    images = [o for c in book.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
    if name.startswith("01"):
        assert "windows with a detection: 1 of 1" in text, text[-2000:]
        assert "deviation_sigmas" in text
    else:
        assert "ensemble" in text and "reward_low_FN_rate" in text
