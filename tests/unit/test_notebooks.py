"""The analyst notebooks run top to bottom with nbclient (a real Jupyter kernel) on a small slice: of NAB, or of
the reference platform's backfilled history (6 hours, 3 faults, a fixed seed).

The cell tagged ``parameters`` is replaced by the slice, as papermill does; every other cell runs unchanged.
A missing NAB corpus fails the test (the data is a peer of the repository, ``../shared/datasets/nab``).
"""

from __future__ import annotations

from pathlib import Path

import re

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
    # Friday 16:00-22:00 UTC: the celebrity live at 20:00 and three faults
    "03_faults_in_backfilled_history.ipynb": ('DAYS = 0.25\nFAULTS = 3\nSEED = 4\nEND = "2026-11-20T22:00:00Z"\n'
                                              'DETECTORS = ["ensemble", "robust_zscore"]\nDATA_DIR = None'),
}
HEADLINE = re.compile(r"default detector ensemble: faults found (\d+)/(\d+), recall ([\d.]+), precision ([\d.]+), "
                      r"F1 ([\d.]+), mean time to detect (\S+) s, surge false detections (\d+) "
                      r"\(with the recurring calendar event: (\d+)\)")


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
    elif name.startswith("03"):
        [last] = [o["text"] for o in book.cells[-1].outputs if o.get("name") == "stdout"]
        headline = HEADLINE.search(last)
        assert headline, last
        found, scored, recall, precision, f1 = (float(g) for g in headline.groups()[:5])
        assert scored >= 1 and 0 < found <= scored, last  # the slice's faults were measured, and some found
        assert 0 < recall <= 1 and 0 < precision <= 1 and 0 < f1 <= 1, last
        assert "first_detection" in text and "surge_false_points" in text and "robust_zscore" in text
    else:
        assert "ensemble" in text and "reward_low_FN_rate" in text
