"""The detection benchmarks run end to end on small inputs: benchmarks/detection_throughput.py and
benchmarks/nab_peers.py (the latter on the tiny NAB-layout corpus of test_bench_nab, with PyOD installed: the
``peers`` optional dependencies; a missing peer fails the test)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np

from benchmarks import detection_throughput, nab_peers
from benchmarks.nab_peers import PyODPeer, probation
from tests.unit.test_bench_nab import profiles, write_corpus  # noqa: F401 - the fixture is used by name


def run_json(module, argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main(argv) == 0
    return json.loads(out.getvalue())


def test_throughput_prints_updates_per_second_per_core():
    result = run_json(detection_throughput, ["--json", "--series", "300", "--scrapes", "5", "--warmup", "2",
                                             "--repeats", "3", "--skip-nab"])
    assert result["detector"] == "ensemble" and result["series"] == 300
    assert len(result["runs_updates_per_second_per_core"]) == 3
    assert result["updates_per_second_per_core"] == sorted(result["runs_updates_per_second_per_core"])[1] > 0


def test_peers_run_through_the_same_runner_next_to_ours(tmp_path, profiles):  # noqa: F811
    data_dir, windows = write_corpus(tmp_path)
    table = run_json(nab_peers, ["--json", "--ours", "ensemble", "--peers", "pyod_knn", "--data-dir", str(data_dir),
                                 "--windows", str(windows), "--profiles", str(profiles)])
    assert table["ensemble"]["kind"] == "ours, streaming" and table["pyod_knn"]["kind"] == "peer, batch"
    for row in table.values():
        assert "error" not in row, row
        assert {"standard", "reward_low_FP_rate", "reward_low_FN_rate", "seconds"} <= set(row)
    assert table["ensemble"]["standard"] > 0


def test_pyod_peer_fits_on_the_probationary_rows_only():
    from pyod.models.knn import KNN

    values = np.random.default_rng(0).normal(0, 1, 1000)
    scores = PyODPeer(KNN).scores([], values)
    changed = values.copy()
    changed[probation(1000) + 50 :] += 100  # the future after the probationary period ...
    again = PyODPeer(KNN).scores([], changed)
    np.testing.assert_array_equal(scores[: probation(1000) + 50], again[: probation(1000) + 50])  # ... changes nothing before
    assert np.isnan(scores[:7]).all() and not np.isnan(scores[7:]).any()
