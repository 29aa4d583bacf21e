"""The columnar read of a text-format page whose series text is that of the target's last page.

Prometheus's scrape cache (``scrape/scrape.go``) skips the parsing of a line whose series text it has
seen; this module skips the line itself. A page's *layout* is its bytes with the value token of every
sample line cut out: its series text, separators, HELP/TYPE and empty lines. Two pages with equal
layouts hold the same lines in the same order, each differing at most in its value (tokens hold no
space nor newline, so cutting them moves no line boundary). So once a page's layout is known to read
exactly as :class:`collectors.text_parser.CachedTextParser` reads it (see
:class:`collectors.scrape_cache.ScrapeCache`), a later page with the same layout needs only its values:
numpy finds the line ends and spaces of the raw bytes in bulk, the token after each sample line's last
space is its value, and no Python object is made per sample.

Values read as prometheus-client reads them (int() first, then float(); no ``_``): a plain decimal (an
optional sign, 1 to 15 digits, at most one point) is computed in bulk as ``mantissa / 10**k``, which is
the correctly rounded double of the decimal (both operands are exact doubles and IEEE division rounds
once: Clinger's fast path, PLDI 1990); an integer literal that is zero is ``+0.0``, as ``int()`` reads
``-0``. Any other token (exponents, NaN, ±Inf, longer mantissas) is read on its own by
:func:`collectors.text_parser.parse_value`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .text_parser import parse_value

_NEWLINE, _SPACE, _HASH, _MINUS, _PLUS, _POINT, _ZERO = b"\n #-+.0"
_MAX_DIGITS = 15  # every integer of 15 digits is an exact double (< 2**53), and so is 10**15


@dataclass(frozen=True)
class PageLayout:
    """Where a page's sample lines and value tokens are: ``line_starts``, ``value_starts`` and
    ``value_ends`` (int64 byte offsets, one per sample line, in page order; a value token is
    ``[value_start, value_end)`` and its series text ``[line_start, value_start - 1)``); ``layout`` is
    the page without its value tokens."""

    layout: bytes
    line_starts: np.ndarray
    value_starts: np.ndarray
    value_ends: np.ndarray

    def series_texts(self, page: np.ndarray) -> bytes:
        """The series text of every sample line of ``page`` (its uint8 bytes), each followed by a newline."""
        texts = page.copy()
        texts[self.value_starts - 1] = _NEWLINE  # the space before each value
        return texts[_spans(len(page), self.line_starts, self.value_starts)].tobytes()


def page_layout(page: np.ndarray) -> PageLayout | None:
    """The layout of a text-format page given as a uint8 array of its bytes, or None when a sample line
    (one that is not empty and does not start with ``#``) has no space or ends with one: such a page is
    left to the exact parser."""
    size = len(page)
    newlines = np.flatnonzero(page == _NEWLINE)
    ends = newlines if size and page[-1] == _NEWLINE else np.append(newlines, size)
    starts = np.concatenate(([0], newlines + 1))[:len(ends)]
    filled = ends > starts
    samples = filled & (page[np.minimum(starts, max(size - 1, 0))] != _HASH) if size else filled
    line_starts, value_ends = starts[samples], ends[samples]
    spaces = np.flatnonzero(page == _SPACE)
    last = np.searchsorted(spaces, value_ends) - 1
    if len(last) and last.min() < 0:
        return None
    value_starts = spaces[last] + 1
    if np.any(value_starts <= line_starts) or np.any(value_starts >= value_ends):
        return None
    layout = page[~_spans(size, value_starts, value_ends)].tobytes()
    return PageLayout(layout, line_starts, value_starts, value_ends)


def _spans(size: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A mask of ``size`` bytes, True in ``[starts[i], ends[i])`` (sorted spans that do not overlap)."""
    bounds = np.empty(2 * len(starts) + 2, np.int64)  # out, in, out, ... : [0, s0) [s0, e0) [e0, s1) ...
    bounds[0], bounds[-1] = 0, size
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    inside = np.zeros(len(bounds) - 1, dtype=bool)
    inside[1::2] = True
    return np.repeat(inside, np.diff(bounds))


def read_values(page: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The values of the tokens ``page[starts[i]:ends[i]]`` (float64), as prometheus-client reads them.

    :raises ValueError: for a token prometheus-client rejects, or one holding a byte that is not
        printable ASCII (whitespace would make the exact parser split the line otherwise).
    :raises OverflowError: for an integer literal too large for a double.
    """
    n = len(starts)
    if not n:
        return np.empty(0, np.float64)
    last = len(page) - 1
    first = page[starts]
    position = starts + ((first == _MINUS) | (first == _PLUS))
    mantissa = np.zeros(n, np.int64)
    decimals = np.zeros(n, np.int64)  # digits after the point
    digits = np.zeros(n, np.int64)
    point = np.zeros(n, dtype=bool)
    plain = np.ones(n, dtype=bool)
    for offset in range(int((ends - position).max(initial=0))):
        at = position + offset
        inside = at < ends
        char = page[np.minimum(at, last)]
        digit = char - np.uint8(_ZERO)  # wraps around below "0", so one comparison tests for a digit
        is_digit = inside & (digit <= 9)
        is_point = inside & (char == _POINT)
        plain &= ~inside | is_digit | (is_point & ~point)
        mantissa = np.where(is_digit, mantissa * 10 + digit, mantissa)
        decimals += is_digit & point
        point |= is_point
        digits += is_digit
    plain &= (digits >= 1) & (digits <= _MAX_DIGITS)
    values = mantissa / np.power(10.0, decimals)
    np.negative(values, out=values, where=(first == _MINUS) & ((mantissa != 0) | point))
    for i in np.flatnonzero(~plain).tolist():
        token = page[starts[i]:ends[i]]
        if token.min() <= _SPACE or token.max() > 126:
            raise ValueError(f"value token {token.tobytes()!r} is not printable ASCII")
        values[i] = parse_value(token.tobytes().decode("ascii"))
    return values


def read_page(page: bytes, layout: bytes) -> np.ndarray | None:
    """The values of ``page``'s sample lines in page order when its layout is ``layout``; None when it
    is not, or when a value does not read (the exact parser then judges the page)."""
    buffer = np.frombuffer(page, np.uint8)
    found = page_layout(buffer)
    if found is None or found.layout != layout:
        return None
    try:
        return read_values(buffer, found.value_starts, found.value_ends)
    except (ValueError, OverflowError):
        return None
