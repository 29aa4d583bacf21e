"""Encoding a block of many series that share one time range into chunk and rollup rows, column-wise.

What :meth:`storage.sqlite.SQLiteStore.append_block` writes for the series present at every timestamp
of one 2 h block: one chunk per series (the timestamps blob is the same for all of them, so it is
packed once) and, for a closed block (level 2), its 5 m and 1 h rollups. The rows are exactly those the
store's compaction would write for the same samples (:mod:`storage.encoding`, :mod:`storage.rollups`);
only the work is done for all series at once with numpy instead of series by series.
"""

from __future__ import annotations

import numpy as np

from . import rollups
from .encoding import int_words, pack, pack_float_rows, pack_ints


def check_block(n_series: int, ts: np.ndarray, vals: np.ndarray, present: np.ndarray) -> None:
    """Check the shapes of a bulk append.

    :raises ValueError: naming the argument: ``timestamps_ms`` not 1-D integers strictly increasing,
        ``values`` or ``present`` not of shape ``(n_series, len(timestamps_ms))``.
    """
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timestamps_ms must be a 1-D array of integer milliseconds, got {ts.dtype} {ts.shape}")
    if len(ts) > 1 and not bool(np.all(np.diff(ts) > 0)):
        bad = int(np.flatnonzero(np.diff(ts) <= 0)[0])
        raise ValueError(f"timestamps_ms must be strictly increasing; index {bad + 1} ({int(ts[bad + 1])}) "
                         f"follows {int(ts[bad])}")
    want = (n_series, len(ts))
    for name, array in (("values", vals), ("present", present)):
        if array.shape != want:
            raise ValueError(f"{name} must have shape (series, timestamps) = {want}, got {array.shape}")


def encode_block(sids: np.ndarray, ts: np.ndarray, vals: np.ndarray, block: int, level: int
                 ) -> tuple[list[tuple], list[tuple]]:
    """Chunk rows ``(series_id, block, level, min_ts, max_ts, n, timestamps, vals)`` and, for level 2,
    rollup rows ``(series_id, step_ms, block, ints, floats)`` of series ``sids`` (int64, shape ``(S,)``)
    with samples ``vals`` (float64, ``(S, T)``) at every timestamp ``ts`` (int64 ms, ``(T,)``, inside
    ``block``). Level 2 is packed small (Zstandard, decimals), level 1 fast (LZ4), as the store does."""
    if not len(sids):
        return [], []
    small = level == 2
    t_blob = pack(int_words(ts), small)
    lo, hi, n = int(ts[0]), int(ts[-1]), len(ts)
    chunk_rows = [(sid, block, level, lo, hi, n, t_blob, v_blob)
                  for sid, v_blob in zip(sids.tolist(), pack_float_rows(vals, small))]
    if not small:
        return chunk_rows, []
    rollup_rows = []
    nan = np.isnan(vals)
    quiet = np.where(nan, np.nan, vals)  # as rollups.from_samples: fmin/fmax mishandle signalling NaNs (staleness)
    for step in rollups.ROLLUP_STEPS_MS:
        starts = ts // step * step
        firsts = np.flatnonzero(np.diff(starts, prepend=starts[0] - 1))
        mins = np.fmin.reduceat(quiet, firsts, axis=1)  # fmin/fmax skip NaN unless all are NaN
        maxs = np.fmax.reduceat(quiet, firsts, axis=1)
        sums = np.add.reduceat(np.where(nan, 0.0, vals), firsts, axis=1)
        counts = np.add.reduceat((~nan).astype(np.int64), firsts, axis=1)
        floats = pack_float_rows(np.hstack((mins, maxs, sums)), small=True)
        ints: dict[bytes, bytes] = {}  # the counts are the same for most series: pack each kind once
        for sid, row, f_blob in zip(sids.tolist(), counts, floats):
            key = row.tobytes()
            if key not in ints:
                ints[key] = pack_ints(np.concatenate((starts[firsts], row)), small=True)
            rollup_rows.append((sid, step, block, ints[key], f_blob))
    return chunk_rows, rollup_rows
