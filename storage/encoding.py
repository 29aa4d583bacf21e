"""Packing columns of samples (timestamps, series ids, float values) into compact, lossless blobs.

The transforms are those of Facebook's Gorilla paper (Pelkonen et al., VLDB 2015), which Prometheus's
chunks also use, done column-wise with numpy instead of bit by bit:

* integers (timestamps in ms, series ids): delta-of-delta, so a regular scrape interval becomes zeros;
* floats: each value XOR the previous one, so unchanged values and high bits become zeros.

The 8 bytes of each word are then transposed (byte shuffle, as in Blosc/HDF5) so zeros line up, and
compressed: with LZ4 (block format) for short-lived data that must be written fast, or with Zstandard
(RFC 8878) for data kept long, ~3x smaller on metric values. LZ4 and decompression come from
``cramjam``; Zstandard compression from ``zstandard``, whose compressor context is reused per thread
(cramjam builds one per call: ~15 µs against ~6 µs for a chunk of 120 samples). For data kept long,
floats that are all decimals with at most 6 digits after the point (counters, most gauges) are stored
as the deltas of the integers ``value * 10**k`` instead, as VictoriaMetrics does, when dividing back
gives every value bit for bit. The first byte of a blob names its codec. Decoding reverses each step
exactly: NaN payloads, ``-0.0`` and ±Inf come back bit for bit.

Many short columns are transformed at once (one numpy pass over a sorted array) by giving ``starts``,
the index where each column begins; each column's words are then packed on their own.
:func:`pack_float_rows` does the same for equal-length columns given as the rows of a matrix.
"""

from __future__ import annotations

import threading
from typing import Sequence

import cramjam
import numpy as np
import zstandard

_LZ4, _ZSTD, _DECIMAL = b"\x01", b"\x02", b"\x03"
_ZSTD_LEVEL = 3  # zstd's default; within 5% of level 19's size on metric data, 10x faster
_local = threading.local()  # one zstd compressor per thread: a context must not be shared between threads


def int_words(values: np.ndarray, starts: Sequence[int] | np.ndarray = (0,)) -> np.ndarray:
    """Delta-of-delta of int64 ``values``, restarted at each index in ``starts`` (uint64 words)."""
    a = np.asarray(values, dtype=np.int64)
    if not len(a):
        return a.view(np.uint64)
    starts = np.asarray(starts, dtype=np.intp)
    d = np.diff(a, prepend=0)
    d[starts] = a[starts]
    dd = np.diff(d, prepend=0)  # wraps modulo 2**64, undone exactly by cumsum
    dd[starts] = d[starts]
    return dd.view(np.uint64)


def float_words(values: np.ndarray, starts: Sequence[int] | np.ndarray = (0,)) -> np.ndarray:
    """Each float64 of ``values`` XOR the previous one, restarted at each index in ``starts`` (uint64 words)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    if not len(bits):
        return bits
    starts = np.asarray(starts, dtype=np.intp)
    words = np.empty_like(bits)
    words[0] = bits[0]
    np.bitwise_xor(bits[1:], bits[:-1], out=words[1:])
    words[starts] = bits[starts]
    return words


def pack(words: np.ndarray, small: bool = False) -> bytes:
    """Byte-shuffle and compress uint64 ``words``: Zstandard when ``small``, else LZ4."""
    if small:
        return _ZSTD + _zstd_words(words)
    return _LZ4 + bytes(cramjam.lz4.compress_block(_shuffled(words)))


def _shuffled(words: np.ndarray) -> bytes:
    return np.ascontiguousarray(words).view(np.uint8).reshape(-1, 8).T.tobytes()


def _zstd_words(words: np.ndarray) -> bytes:
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return compressor.compress(_shuffled(words))


def _decimal(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``(k, integers)`` with ``integers / 10**k`` equal to ``values`` bit for bit, smallest k in 0..6."""
    if not len(values) or not np.all(np.isfinite(values)):
        return None
    largest = np.abs(values).max()
    for k in range(7):
        scale = 10.0**k
        if largest * scale >= 2**53:  # beyond this, integers are no longer exact in a float64
            return None
        ints = np.round(values * scale).astype(np.int64)
        if np.array_equal((ints / scale).view(np.uint64), values.view(np.uint64)):  # -0.0 fails: not a decimal
            return k, ints
    return None


def _unpack(blob: bytes) -> np.ndarray:
    codec, body = blob[:1], blob[1:]
    if codec == _LZ4:
        raw = cramjam.lz4.decompress_block(body)
    elif codec == _ZSTD:
        raw = cramjam.zstd.decompress(body)
    else:
        raise ValueError(f"unknown column codec {codec!r}")
    return np.frombuffer(bytes(raw), dtype=np.uint8).reshape(8, -1).T.copy().view(np.uint64).ravel()


def pack_ints(values: np.ndarray, small: bool = False) -> bytes:
    """int64 array -> blob."""
    return pack(int_words(values), small)


def unpack_ints(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack_ints` (and of :func:`pack` of :func:`int_words`): an int64 array.

    :raises ValueError: for a blob that was not made here.
    """
    return np.cumsum(np.cumsum(_unpack(blob).view(np.int64), dtype=np.int64), dtype=np.int64)


def pack_floats(values: np.ndarray, small: bool = False) -> bytes:
    """float64 array -> blob (as decimals when ``small`` and they all are)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if small and (decimal := _decimal(values)) is not None:
        k, ints = decimal
        return _DECIMAL + bytes([k]) + _zstd_words(np.diff(ints, prepend=0).view(np.uint64))
    return pack(float_words(values), small)


def unpack_floats(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack_floats`: a float64 array, bit-identical to what was packed.

    :raises ValueError: for a blob that was not made here.
    """
    if blob[:1] == _DECIMAL:
        words = np.frombuffer(bytes(cramjam.zstd.decompress(blob[2:])), dtype=np.uint8)
        ints = np.cumsum(words.reshape(8, -1).T.copy().view(np.int64).ravel(), dtype=np.int64)
        return ints / 10.0 ** blob[1]
    return np.bitwise_xor.accumulate(_unpack(blob)).view(np.float64)


def pack_float_rows(rows: np.ndarray, small: bool = False) -> list[bytes]:
    """:func:`pack_floats` of each row of the 2-D float64 array ``rows`` (shape ``(n_columns, length)``),
    with every transform done for all rows at once: the blobs are byte-identical to packing row by row,
    only the compressor runs per row. Used by bulk appends, where thousands of columns share one time
    range.

    :raises ValueError: when ``rows`` is not 2-D.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be a 2-D array, got shape {rows.shape}")
    n, length = rows.shape
    if not length:
        return [pack_floats(r, small) for r in rows]
    bits = rows.view(np.uint64)
    words = np.empty(rows.shape, dtype=np.uint64)  # each value XOR the previous one, along each row
    words[:, 0] = bits[:, 0]
    np.bitwise_xor(bits[:, 1:], bits[:, :-1], out=words[:, 1:])
    heads = [_LZ4] * n
    if small:
        heads = [_ZSTD] * n
        for k, idx, ints in _decimal_rows(rows):
            words[idx] = np.diff(ints, axis=1, prepend=0).view(np.uint64)
            for i in idx.tolist():
                heads[i] = _DECIMAL + bytes([k])
    shuffled = np.ascontiguousarray(words.view(np.uint8).reshape(n, length, 8).transpose(0, 2, 1)).reshape(n, -1)
    if not small:
        return [_LZ4 + bytes(cramjam.lz4.compress_block(row.tobytes())) for row in shuffled]
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return [head + compressor.compress(row) for head, row in zip(heads, shuffled)]


def _decimal_rows(rows: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """:func:`_decimal` of every row at once: ``(k, row indexes, their integers)`` for each k that some
    rows take (each row at its smallest k); rows that are not decimals are in none."""
    finite = np.all(np.isfinite(rows), axis=1)
    largest = np.abs(np.where(finite[:, None], rows, 0.0)).max(axis=1)
    todo = finite.copy()
    bits = rows.view(np.uint64)
    found = []
    for k in range(7):
        scale = 10.0**k
        todo &= largest * scale < 2**53  # beyond this, integers are no longer exact in a float64
        if not todo.any():
            break
        idx = np.flatnonzero(todo)
        ints = np.round(rows[idx] * scale).astype(np.int64)
        exact = np.all((ints / scale).view(np.uint64) == bits[idx], axis=1)  # -0.0 fails: not a decimal
        if exact.any():
            found.append((k, idx[exact], ints[exact]))
            todo[idx[exact]] = False
    return found
