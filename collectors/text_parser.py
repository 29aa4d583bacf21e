"""The text format 0.0.4 hot path: a per-target cache of series text, as Prometheus's scrape cache.

prometheus-client parses the ingest benchmark's 10,000-series page at about 13 µs per sample on this
project's 2-core machine, several times Prometheus's whole ingest budget (about 2.2 µs per sample).
Between two scrapes of a target most lines differ only in their value, so, like Prometheus, this parser
keys each line by its series text (``name{labels}``) and parses that text once: a line whose series
text is cached costs a split and a ``float()``, about 0.7 µs per sample (``python -m benchmarks.parse``).

Lines it has not seen are parsed by prometheus-client (:func:`collectors.exposition.text_samples`; a
first page whole, later lines one at a time), so names, labels, escapes and errors are
prometheus-client's; only the value and timestamp after a cached series text are read here, with
prometheus-client's rules. ``tests/unit/test_exposition.py`` checks that both agree on every test page
and on thousands of random ones. Lines whose shape the split cannot vouch for (quotes or braces after
the labels, quoted names, no value) always go to prometheus-client, and a page this parser rejects is
judged again whole by prometheus-client.
"""

from __future__ import annotations

import re

from opswatch.errors import ParseError

from .exposition import PageSample, text_samples, text_timestamp_ms

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SLOW = None  # cache value of a series text that always goes through prometheus-client
_MISSING = object()
_INF, _NINF = float("inf"), float("-inf")
_INFINITIES = (_INF, _NINF)


# One parsed line: (series text or None, name, labels, value, timestamp ms or None). A plain tuple, not a
# NamedTuple: it is built once per sample on the hot path.
Row = tuple[str | None, str, dict[str, str], float, int | None]


def _number(token: str) -> float:
    """A token as prometheus-client reads it: int() first, then float(); no ``_`` nor spaces."""
    if token != token.strip() or "_" in token:
        raise ValueError(f"Invalid value: {token!r}")
    try:
        return int(token)
    except ValueError:
        return float(token)


def parse_value(token: str) -> float:
    """A value token as prometheus-client reads it: ``float(_number(token))`` without int()'s exception
    for the usual decimal value (float() of an integer literal is the same double, except for -0 and
    integers too large for a double).

    :raises ValueError: when prometheus-client would reject the token.
    :raises OverflowError: for an integer literal too large for a double.
    """
    if "_" in token:
        raise ValueError(f"Invalid value: {token!r}")
    value = float(token)
    if value == 0.0 or value in _INFINITIES:
        return float(_number(token))
    return value


def _value_and_timestamp(rest: str) -> tuple[float, int | None]:
    """Value and timestamp (ms) of the text after the series, with prometheus-client's rules: split on
    spaces (tabs when there is no space), the first token is the value and the last, if any, the time."""
    s = rest.lstrip()
    if " " not in s and "\t" not in s and s:  # the usual "name{...} value": one token, already stripped
        return parse_value(s.strip()), None
    separator = " " if " " in s else "\t"
    tokens = [t.strip() for t in s.split(separator) if t.strip()]
    if not tokens:
        return float(s), None
    value = parse_value(tokens[0])
    return value, text_timestamp_ms(_number(tokens[-1]) / 1000) if len(tokens) > 1 else None


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos > backslashes and text[pos - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _labels_close_at_end(key: str) -> bool:
    """Whether ``name{...}`` has a plain metric name and its first unquoted ``}`` is its last character,
    i.e. prometheus-client would end the labels exactly where this parser cut the line."""
    start = key.find("{")
    if start < 0 or not _METRIC_NAME.fullmatch(key[:start]):
        return False
    quoted = False
    for i in range(start, len(key)):
        c = key[i]
        if c == '"' and not _escaped(key, i):
            quoted = not quoted
        if not quoted and c == "}":
            return i == len(key) - 1
    return False


def _split(line: str) -> tuple[str, str] | None:
    """``(series text, rest)`` of a stripped sample line, or None when only prometheus-client may read it."""
    close = line.rfind("}")
    if close >= 0:
        rest = line[close + 1:]
        if '"' in rest or "{" in rest:
            return None
        return line[:close + 1], rest
    if '"' in line or "{" in line:
        return None
    space, tab = line.find(" "), line.find("\t")
    end = min(i for i in (space, tab) if i >= 0) if space >= 0 or tab >= 0 else -1
    if end <= 0:
        return None
    return line[:end], line[end + 1:]


class CachedTextParser:
    """Parses successive text-format pages of one target, remembering their series text.

    The cache holds the series of the last page only (bounded by the page size); comment lines are
    remembered the same way, since they are validated once by prometheus-client too.
    """

    def __init__(self) -> None:
        # series text -> (name, labels), or _SLOW for text only prometheus-client may read
        self._series: dict[str, tuple[str, dict[str, str]] | None] = {}
        self._comments: set[str] = set()

    def __len__(self) -> int:
        return len(self._series)

    def reads_all(self, keys: list[str]) -> bool:
        """Whether every series text of ``keys`` (of the last page) is read here rather than by
        prometheus-client."""
        return None not in map(self._series.get, keys)

    @staticmethod
    def _reference(line: str, number: int) -> PageSample:
        """``line`` parsed by prometheus-client; errors name the line's number on the page."""
        try:
            samples = text_samples(line)
        except ParseError as exc:
            raise ParseError(f"malformed exposition page: line {number}: {line!r}: {exc.__cause__ or exc}") \
                from exc.__cause__
        if len(samples) != 1:
            raise ParseError(f"malformed exposition page: line {number}: {line!r} is not one sample")
        return samples[0]

    def _remember(self, key: str, rest: str, sample: PageSample) -> None:
        """Cache ``key`` -> ``sample``'s name and labels if the fast split reads its line as
        prometheus-client did (``sample``); otherwise mark it for prometheus-client."""
        cacheable = _labels_close_at_end(key) if "{" in key else bool(_METRIC_NAME.fullmatch(key))
        if cacheable:
            try:
                value, ts = _value_and_timestamp(rest)
                same_value = value == sample.value or (value != value and sample.value != sample.value)
                cacheable = same_value and ts == sample.timestamp_ms
            except (ValueError, OverflowError):
                cacheable = False
        self._series[key] = (sample.name, sample.labels) if cacheable else _SLOW

    def _first_sight(self, key: str, rest: str, line: str, number: int) -> PageSample:
        """Parse ``line`` with prometheus-client and remember its series text."""
        sample = self._reference(line, number)
        self._remember(key, rest, sample)
        return sample

    def _parse_cold(self, text: str) -> list[Row] | None:
        """A first page: parsed whole by prometheus-client (faster than line by line), its series text
        remembered. None if its samples do not match its lines one to one (then the page goes line by line)."""
        samples = text_samples(text)
        lines = [line for line in (raw.strip() for raw in text.split("\n")) if line and line[0] != "#"]
        if len(lines) != len(samples):
            return None
        out: list[Row] = []
        for line, sample in zip(lines, samples):
            split = _split(line)
            if split is None:
                out.append((None, *sample))
                continue
            if split[0] not in self._series:
                self._remember(split[0], split[1], sample)
            out.append((split[0], *sample))
        return out  # comment lines are checked one by one at the next page, as they are not cached here

    def parse(self, text: str) -> list[Row]:
        """The samples of a page in page order, as :data:`Row` tuples whose first item is the line's
        series text (``None`` for a line only prometheus-client could split).

        A page this parser rejects is parsed again whole by prometheus-client, whose verdict stands: a
        few errors depend on context (a ``TYPE`` line with an unknown type is harmless when another
        ``TYPE`` line for that name follows before any sample).

        :raises ParseError: when the page is malformed (the message quotes the first bad line).
        """
        if not self._series:
            cold = self._parse_cold(text)
            if cold is not None:
                return cold
        try:
            return self._parse(text)
        except ParseError:
            return [(None, *s) for s in text_samples(text)]

    def _parse(self, text: str) -> list[Row]:
        out: list[Row] = []
        series = self._series
        seen: set[str] = set()
        comments: set[str] = set()
        lines = text.split("\n")
        for index, raw in enumerate(lines):
            line = raw.strip()
            if not line:
                continue
            # The usual line, "<cached series text> <value>": only the value is read. A series text in the
            # cache was split off a line like this one by _split, and float() rejects any token that
            # _split would have cut elsewhere (quotes, braces, spaces); "_" it accepts, so it is excluded.
            key, _, token = line.rpartition(" ")
            entry = series.get(key)
            if entry is not None and "_" not in token:
                try:
                    value = float(token)
                except ValueError:
                    value = 0.0
                if value and value != _INF and value != _NINF:  # 0 and ±Inf: int() may read them otherwise
                    seen.add(key)
                    out.append((key, entry[0], entry[1], value, None))
                    continue
            if line[0] == "#":
                if line not in self._comments and line not in comments:
                    self._reference_comment(line, index + 1)
                comments.add(line)
                continue
            split = _split(line)
            if split is None:
                out.append((None, *self._reference(line, index + 1)))
                continue
            key, rest = split
            seen.add(key)
            entry = series.get(key, _MISSING)
            if entry is _MISSING:
                out.append((key, *self._first_sight(key, rest, line, index + 1)))
            elif entry is _SLOW:
                out.append((key, *self._reference(line, index + 1)))
            else:
                try:
                    value, ts = _value_and_timestamp(rest)
                except (ValueError, OverflowError) as exc:
                    raise ParseError(f"malformed exposition page: line {index + 1}: {line!r}: {exc}") from exc
                out.append((key, entry[0], entry[1], value, ts))
        for gone in [k for k in series if k not in seen]:
            del series[gone]
        self._comments = comments
        return out

    @staticmethod
    def _reference_comment(line: str, number: int) -> None:
        try:
            text_samples(line)
        except ParseError as exc:
            raise ParseError(f"malformed exposition page: line {number}: {line!r}: {exc.__cause__ or exc}") \
                from exc.__cause__
