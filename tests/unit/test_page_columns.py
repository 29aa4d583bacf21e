"""The columnar scrape path (collectors/page_columns.py and its use in collectors/scrape_cache.py): values
read in bulk as prometheus-client reads them, and a page laid out as the last one labeled exactly as the
exact path labels it."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from collectors.page_columns import page_layout, read_page, read_values
from collectors.relabel import RelabelConfig
from collectors.samples import SampleBatch, is_stale_nan
from collectors.scrape_cache import ScrapeCache
from collectors.targets import ScrapeOptions
from collectors.text_parser import parse_value
from opswatch.errors import ParseError
from tests.unit.test_exposition import FIXED_PAGES, STAMPS, VALUES, _random_page

TEXT = "text/plain; version=0.0.4"
TARGET = {"job": "j", "instance": "h:1"}


def _bits(value: float) -> bytes:
    return struct.pack(">d", value)


def _read_one(token: str):
    page = f"m {token}\n".encode()
    try:
        return _bits(read_values(np.frombuffer(page, np.uint8), np.array([2]), np.array([2 + len(page) - 3]))[0])
    except (ValueError, OverflowError):
        return ValueError


def _reference(token: str):
    try:
        return _bits(parse_value(token))
    except (ValueError, OverflowError):
        return ValueError


@pytest.mark.parametrize("token", VALUES + ["-0.0", "+0", "00012", "-.5", "1.", ".", "-", "+-1", "1.2.3",
                                            "123456789012345", "1234567890123456", "0.000000000000001",
                                            "99999999999999.9", "1e5", "\x01", "1\t2"])
def test_bulk_values_read_as_prometheus_client_reads_them(token):
    if all(33 <= ord(c) <= 126 for c in token):
        assert _read_one(token) == _reference(token)
    else:  # left to the exact parser, which reads the whole line (Arabic-Indic digits are digits to float())
        assert _read_one(token) is ValueError


def test_bulk_values_agree_on_random_decimals():
    rng = random.Random(7)
    tokens = []
    for _ in range(5000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 17)))
        if rng.random() < 0.6:
            cut = rng.randint(0, len(digits))
            digits = digits[:cut] + "." + digits[cut:]
        tokens.append(rng.choice(["", "", "-", "+"]) + digits)
    page = "".join(f"m{i} {t}\n" for i, t in enumerate(tokens)).encode()
    layout = page_layout(np.frombuffer(page, np.uint8))
    got = read_values(np.frombuffer(page, np.uint8), layout.value_starts, layout.value_ends)
    assert [_bits(v) for v in got.tolist()] == [_reference(t) for t in tokens]


def test_layout_cuts_the_value_of_each_sample_line_only():
    page = b'# HELP a x y\n# TYPE a gauge\na{b="c d"} 1.5\n\nb 2'
    layout = page_layout(np.frombuffer(page, np.uint8))
    assert layout.layout == b'# HELP a x y\n# TYPE a gauge\na{b="c d"} \n\nb '
    assert read_page(page, layout.layout).tolist() == [1.5, 2.0]
    assert read_page(page.replace(b"1.5", b"7"), layout.layout).tolist() == [7.0, 2.0]
    assert read_page(page.replace(b"c d", b"c e"), layout.layout) is None  # other series text
    assert read_page(page.replace(b"1.5", b"x"), layout.layout) is None  # not a value: the exact path judges
    assert page_layout(np.frombuffer(b"a 1\nb\n", np.uint8)) is None  # a sample line without a value
    assert page_layout(np.frombuffer(b"a 1 \n", np.uint8)) is None  # ends with a space


PLAIN_VALUES = ["2.5", "-7", "0.0", "-0.0", "0", "-0", "1e3", "NaN", "+Inf", "123456789.123456", "00012"]


def _plain_page(rng: random.Random) -> str:
    """A page of usual lines: names, labels (without duplicates) and values as exporters write them."""
    lines = ["# TYPE m gauge"] if rng.random() < 0.5 else []
    for i in range(rng.randint(1, 8)):
        name, extra = rng.choice(["m", "m_total", "a:b"]), rng.choice(["", 'a="1"'])
        lines.append(f'{name}{{i="{i}",{extra}}} {rng.choice(PLAIN_VALUES)}')
    return "\n".join(lines) + "\n"


def _vary(page: str, rng: random.Random) -> str:
    """``page`` with the last token of some lines replaced by another token: mostly a usual value,
    sometimes an odd one or a timestamp."""
    odd = VALUES + [s.strip() for s in STAMPS]
    lines = page.split("\n")
    for i, line in enumerate(lines):
        if " " in line and not line.startswith("#") and rng.random() < 0.7:
            head, _, _ = line.rpartition(" ")
            lines[i] = f"{head} {rng.choice(PLAIN_VALUES if rng.random() < 0.8 else odd)}"
    return "\n".join(lines)


def _page_samples(result) -> list:
    """The page's samples (staleness markers of the series the page left are not the page's)."""
    samples = SampleBatch([result.columns] if result.columns is not None else [result.samples])
    return [(s.name, sorted(s.labels.items()), _bits(s.value), s.timestamp_ms) for s in samples
            if not is_stale_nan(s.value)]


def _outcome(cache: ScrapeCache, page: str, ts: int):
    try:
        result = cache.ingest_page(page.encode(), TEXT, ts)
    except ParseError:
        return ParseError, None
    return (_page_samples(result), result.scraped, result.post_relabeling, result.duplicates), result


@pytest.mark.parametrize("options", [
    ScrapeOptions(),
    ScrapeOptions(honor_labels=True, metric_relabel_configs=(
        RelabelConfig.model_validate({"source_labels": ["__name__"], "regex": "m_total", "action": "drop"}),
        RelabelConfig.model_validate({"regex": "a", "action": "labeldrop"}))),
], ids=["default", "relabeled"])
def test_a_page_laid_out_as_the_last_one_reads_as_the_exact_path_reads_it(options):
    """Thousands of random pages, each followed by variants with other value (and timestamp) tokens:
    whether a variant is read as columns or not, its samples and counts are what a cache that never saw
    the first page makes of it (the exact path), or it fails as that does."""
    rng = random.Random(20261123)
    columnar = checked = 0
    for n in range(1500):
        page = _random_page(rng) if n % 2 else _plain_page(rng)
        cache = ScrapeCache(TARGET, options)
        if _outcome(cache, page, 1)[0] is ParseError:
            continue
        for step in range(3):
            variant = _vary(page, rng) if step else page
            got, result = _outcome(cache, variant, 2 + step)
            expected, _ = _outcome(ScrapeCache(TARGET, options), variant, 2 + step)
            assert got == expected, (page, variant)
            checked += 1
            if result is not None and result.columns is not None:
                columnar += 1
                assert result.series_added == 0 and result.samples == []
            if got is ParseError:
                break
    assert checked > 2000 and columnar > 1000, (checked, columnar)  # the columnar path was taken often


@pytest.mark.parametrize("name", [n for n in FIXED_PAGES if not n.startswith("malformed")])
def test_fixed_pages_read_the_same_on_every_path(name):
    page = FIXED_PAGES[name]
    cache = ScrapeCache(TARGET, ScrapeOptions())
    first = _outcome(cache, page, 1)[0]
    expected = _outcome(ScrapeCache(TARGET, ScrapeOptions()), page, 2)[0]
    assert _outcome(cache, page, 2)[0] == expected and first is not None


def test_columns_keep_duplicates_dropped_and_counted():
    cache = ScrapeCache(TARGET, ScrapeOptions())
    page = 'a{x="1"} 1\na{x="1"} 2\nb 3\n'
    cache.ingest_page(page.encode(), TEXT, 1)
    result = cache.ingest_page(page.replace(" 3", " 4").encode(), TEXT, 2)
    assert result.columns is not None
    assert [(s.name, s.value) for s in result.columns.samples()] == [("a", 1.0), ("b", 4.0)]
    assert (result.scraped, result.post_relabeling, result.duplicates) == (3, 3, 1)


def test_a_failed_scrape_forgets_the_layout():
    cache = ScrapeCache(TARGET, ScrapeOptions())
    cache.ingest_page(b"a 1\n", TEXT, 1)
    cache.fail(2)
    result = cache.ingest_page(b"a 2\n", TEXT, 3)
    assert result.columns is None and result.series_added == 1  # new again after the failure, as before
    assert cache.ingest_page(b"a 3\n", TEXT, 4).columns is not None


def test_a_page_that_is_not_utf8_is_a_parse_error_naming_it():
    with pytest.raises(ParseError, match="not UTF-8"):
        ScrapeCache(TARGET, ScrapeOptions()).ingest_page(b'm{path="\xff"} 1\n', TEXT, 1)
