"""Prometheus duration strings (``1h30m``, ``15s``, ``500ms``, ``2d`` -> seconds) and byte sizes
(``10MB``, ``512KiB`` -> bytes)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Prometheus duration (``"1m30s"`` -> 90.0); a bare number is seconds.

    :raises ValueError: naming the text and the accepted form.
    """
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return float(text)
    s = str(text).strip()
    if not s or _PART.sub("", s) != "":
        raise ValueError(f"duration {text!r} is not like 15s, 1m30s, 500ms, 2h (units ms s m h d w y)")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))


def format_duration(seconds: float) -> str:
    """A duration as Prometheus prints it (``model.Duration.String``): 90.0 -> ``"1m30s"``, 0.5 -> ``"500ms"``.

    Whole milliseconds; years and weeks only when they divide the duration exactly (``"90d"``, not ``"12w6d"``).
    """
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size, exact in (("y", 31536000000, True), ("w", 604800000, True), ("d", 86400000, False),
                              ("h", 3600000, False), ("m", 60000, False), ("s", 1000, False), ("ms", 1, False)):
        if exact and ms % size:
            continue
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# Prometheus parses sizes (body_size_limit) with alecthomas/units' ParseBase2Bytes: KB and KiB are both 1024.
_SIZE_UNITS = {"": 1, "B": 1, **{p + s: 1024 ** (i + 1) for i, p in enumerate("KMGTPE") for s in ("B", "iB")}}
_SIZE = re.compile(r"(\d+)([KMGTPE]i?B|B)?")


def parse_byte_size(text: str | int) -> int:
    """Bytes in a Prometheus size (``"10MB"`` -> 10485760, base 2 as Prometheus); a bare integer is bytes.

    :raises ValueError: naming the text and the accepted form.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size {text!r} is negative")
        return text
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"size {text!r} is not like 512KB, 10MB, 1GiB or a number of bytes (units B KB MB GB TB PB EB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or ""]
