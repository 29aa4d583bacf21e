"""Parsing the Prometheus text exposition format (0.0.4) into samples: collectors/exposition.py, and its
hot path collectors/text_parser.py, which must agree with prometheus-client's parser on every page here."""

from __future__ import annotations

import math
import random
import struct

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors.exposition import PageSample, accept_header, is_openmetrics, parse_text, text_samples
from collectors.samples import Sample, labels_key
from collectors.text_parser import CachedTextParser
from opswatch.errors import ParseError

SCRAPE_MS = 1_700_000_000_000
TARGET = {"job": "feed", "instance": "10.0.0.7:9100"}


def with_target(**labels: str) -> dict[str, str]:
    return {**labels, **TARGET}


PAGE = """\
# HELP http_requests_total Requests handled.
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} 1027
http_requests_total{code="500",method="get"} 3 1700000000500
# HELP temperature_celsius Room temperature.
# TYPE temperature_celsius gauge
temperature_celsius -3.5
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 2
latency_seconds_bucket{le="0.5"} 5
latency_seconds_bucket{le="+Inf"} 6
latency_seconds_sum 1.75
latency_seconds_count 6
"""


def test_counter_gauge_histogram_parse_into_samples_in_page_order():
    assert parse_text(PAGE, SCRAPE_MS, TARGET) == [
        Sample("http_requests_total", with_target(code="200", method="get"), SCRAPE_MS, 1027.0),
        # an explicit timestamp (ms in the page) is kept instead of the scrape time
        Sample("http_requests_total", with_target(code="500", method="get"), 1_700_000_000_500, 3.0),
        Sample("temperature_celsius", with_target(), SCRAPE_MS, -3.5),
        Sample("latency_seconds_bucket", with_target(le="0.1"), SCRAPE_MS, 2.0),
        Sample("latency_seconds_bucket", with_target(le="0.5"), SCRAPE_MS, 5.0),
        Sample("latency_seconds_bucket", with_target(le="+Inf"), SCRAPE_MS, 6.0),
        Sample("latency_seconds_sum", with_target(), SCRAPE_MS, 1.75),
        Sample("latency_seconds_count", with_target(), SCRAPE_MS, 6.0),
    ]


def test_values_are_floats_and_timestamps_ints():
    [sample] = parse_text("up 1\n", SCRAPE_MS, TARGET)
    assert type(sample.value) is float and type(sample.timestamp_ms) is int


@pytest.mark.parametrize(
    "line, timestamp_ms",
    [
        ("m 1", SCRAPE_MS),  # no timestamp: the scrape time
        ("m 1 1700000000123", 1_700_000_000_123),  # ms precision survives the parser's seconds
        ("m 1 1712345678999", 1_712_345_678_999),  # ... also at the end of a second
        ("m 1 0", 0),  # the epoch itself is a timestamp, not "missing"
        ("m 1 1", 1),  # 1 ms after the epoch
    ],
)
def test_explicit_timestamps_are_kept_in_ms(line, timestamp_ms):
    [sample] = parse_text(line, SCRAPE_MS, TARGET)
    assert sample.timestamp_ms == timestamp_ms


@pytest.mark.parametrize(
    "line, expected_labels",
    [
        # no clash: job and instance are added
        ('m{code="200"} 1', {"code": "200", "job": "feed", "instance": "10.0.0.7:9100"}),
        # the page's own job is kept as exported_job (Prometheus without honor_labels)
        ('m{job="batch"} 1', {"exported_job": "batch", "job": "feed", "instance": "10.0.0.7:9100"}),
        # both clash
        ('m{job="batch",instance="pod-1"} 1',
         {"exported_job": "batch", "exported_instance": "pod-1", "job": "feed", "instance": "10.0.0.7:9100"}),
    ],
)
def test_target_labels_are_added_and_clashes_become_exported(line, expected_labels):
    [sample] = parse_text(line, SCRAPE_MS, TARGET)
    assert sample.labels == expected_labels


def test_existing_exported_label_is_not_overwritten():
    # Regression test (fixed bug): Prometheus resolves a clash with an existing exported_job by prefixing again
    # (exported_exported_job), so no value of the page is lost. parse_text overwrites exported_job="e".
    [sample] = parse_text('m{exported_job="e",job="orig"} 1', SCRAPE_MS, TARGET)
    assert sample.labels == {
        "exported_job": "e", "exported_exported_job": "orig", "job": "feed", "instance": "10.0.0.7:9100"
    }


def test_no_extra_labels_leaves_page_labels_alone():
    [sample] = parse_text('m{job="batch"} 2', SCRAPE_MS)
    assert sample.labels == {"job": "batch"}


@pytest.mark.parametrize(
    "token, check",
    [
        ("NaN", math.isnan),  # NaN is a legal value (e.g. a summary with no observations)
        ("+Inf", lambda v: v == math.inf),  # +Inf bucket-style values
        ("-Inf", lambda v: v == -math.inf),
        ("1e3", lambda v: v == 1000.0),  # scientific notation
        ("-0.25", lambda v: v == -0.25),
    ],
)
def test_special_float_values(token, check):
    [sample] = parse_text(f"m {token}\n", SCRAPE_MS, TARGET)
    assert check(sample.value)


@pytest.mark.parametrize(
    "escaped, raw",
    [
        (r'say \"hi\"', 'say "hi"'),  # double quotes
        (r"C:\\temp\\x", "C:\\temp\\x"),  # backslashes
        (r"line1\nline2", "line1\nline2"),  # newline
        (r'all\\\"\n', 'all\\"\n'),  # backslash, quote and newline together
    ],
)
def test_label_escaping_round_trips(escaped, raw):
    [sample] = parse_text(f'm{{path="{escaped}"}} 1\n', SCRAPE_MS)
    assert sample.labels == {"path": raw}
    # the canonical key escapes it back to exactly the text of the page
    assert labels_key(sample.labels) == f'{{path="{escaped}"}}'


def test_label_escaping_round_trips_through_prometheus_client():
    raw = 'q"uo\\te\nnew'
    registry = CollectorRegistry()
    Gauge("g", "doc", ["path"], registry=registry).labels(raw).set(1)
    [sample] = parse_text(generate_latest(registry).decode(), SCRAPE_MS)
    assert sample == Sample("g", {"path": raw}, SCRAPE_MS, 1.0)


@pytest.mark.parametrize(
    "page, token",
    [
        ('m{code="500"} notanumber\n', "notanumber"),  # value is not a number
        ("m{code=500} 1\n", "code=500"),  # label value without quotes
        ("1metric 1\n", "1metric"),  # metric name starts with a digit
        ('m{a="x",a="y"} 1\n', 'a="x",a="y"'),  # duplicate label name
        ('ok 1\nm{code="5"} one two\n', "one"),  # the bad line after a good one
    ],
)
def test_malformed_page_raises_parse_error_naming_the_bad_token(page, token):
    with pytest.raises(ParseError) as info:
        parse_text(page, SCRAPE_MS, TARGET)
    assert token in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)  # translated with raise ... from


@pytest.mark.parametrize(
    "page, token",
    [
        # Regression test (fixed bug): prometheus_client raises a bare ValueError() here, so the ParseError says only
        # "malformed exposition page: " and names neither line nor token.
        ("# TYPE foo\n", "TYPE foo"),  # TYPE line without a type
        ('{code="500"} 1\n', 'code="500"'),  # sample without a metric name
        # Regression test (fixed bug): int(inf) raises OverflowError, which parse_text does not translate; the scrape
        # loop then dies instead of recording up 0.
        ("m 1 +Inf\n", "Inf"),  # timestamp that is not an integer
    ],
    ids=["fixed-type-without-type", "fixed-no-metric-name", "fixed-inf-timestamp"],
)
def test_malformed_page_message_always_names_the_line(page, token):
    with pytest.raises(ParseError) as info:
        parse_text(page, SCRAPE_MS, TARGET)
    assert token in str(info.value)


def test_counter_without_total_suffix_keeps_its_name():
    # Regression test (fixed bug): Prometheus stores a counter under the name written on the page. prometheus_client's
    # parser munges text-format counters into the OpenMetrics model and appends "_total", so a counter
    # exposed as "http_requests" is stored as "http_requests_total".
    page = "# TYPE http_requests counter\nhttp_requests 5\n"
    assert [s.name for s in parse_text(page, SCRAPE_MS, TARGET)] == ["http_requests"]


def test_empty_page_has_no_samples():
    assert parse_text("", SCRAPE_MS, TARGET) == []
    assert parse_text("# just a comment\n\n", SCRAPE_MS, TARGET) == []


def _registry_page() -> str:
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests.", ["code"], registry=registry)
    requests.labels("200").inc(7)
    requests.labels("500").inc(2)
    Gauge("queue_depth", "Queue depth.", registry=registry).set(4.5)
    latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 0.5), registry=registry)
    for v in (0.05, 0.2, 0.3, 0.9):
        latency.observe(v)
    return generate_latest(registry).decode()


def test_matches_prometheus_client_parser_on_generate_latest_page():
    page = _registry_page()
    expected = []
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            ts = SCRAPE_MS if s.timestamp is None else round(s.timestamp * 1000)
            expected.append(Sample(s.name, {**s.labels, **TARGET}, ts, float(s.value)))
    assert parse_text(page, SCRAPE_MS, TARGET) == expected


def test_generate_latest_page_has_hand_computed_values():
    samples = parse_text(_registry_page(), SCRAPE_MS, TARGET)
    by_key = {(s.name, labels_key({k: v for k, v in s.labels.items() if k not in TARGET})): s.value for s in samples}
    assert by_key[("http_requests_total", '{code="200"}')] == 7.0
    assert by_key[("http_requests_total", '{code="500"}')] == 2.0
    assert by_key[("queue_depth", "{}")] == 4.5
    # observations 0.05 | 0.2, 0.3 | 0.9 -> cumulative 1, 3, 4
    assert by_key[("latency_seconds_bucket", '{le="0.1"}')] == 1.0
    assert by_key[("latency_seconds_bucket", '{le="0.5"}')] == 3.0
    assert by_key[("latency_seconds_bucket", '{le="+Inf"}')] == 4.0
    assert by_key[("latency_seconds_count", "{}")] == 4.0
    assert by_key[("latency_seconds_sum", "{}")] == pytest.approx(1.45)
    assert all(s.labels["job"] == "feed" and s.labels["instance"] == "10.0.0.7:9100" for s in samples)


def test_counter_type_does_not_rename_a_sample_of_another_family():
    # Regression test (fixed bug): "foo_total" under "# TYPE foo counter" is its own (untyped) family in the text
    # format, and Prometheus stores it as written; the old correction renamed it "foo".
    page = "# TYPE foo counter\nfoo_total 1\n# TYPE bar_total counter\nbar_total 2\n"
    assert [s.name for s in parse_text(page, SCRAPE_MS)] == ["foo_total", "bar_total"]


def test_accept_header_and_content_type():
    assert accept_header() == ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                               "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert accept_header(["PrometheusText0.0.4"]) == "text/plain;version=0.0.4,*/*;q=0.1"
    with pytest.raises(KeyError):
        accept_header(["PrometheusProto"])
    assert is_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert not is_openmetrics("text/plain; version=0.0.4") and not is_openmetrics(None) and not is_openmetrics("")


# -- the hot path agrees with prometheus-client ------------------------------------------------------------


def _key(s: PageSample) -> tuple:
    """A sample with its value as bits, so NaN == NaN and -0.0 != 0.0."""
    return s.name, labels_key(s.labels), struct.pack(">d", s.value), s.timestamp_ms


def _reference(page: str):
    try:
        return [_key(s) for s in text_samples(page)]
    except ParseError:
        return ParseError


def _fast(parser: CachedTextParser, page: str):
    try:
        return [_key(PageSample(*row[1:])) for row in parser.parse(page)]
    except ParseError:
        return ParseError


def _summary_page() -> str:
    registry = CollectorRegistry()
    summary = Summary("rpc_seconds", "RPC latency.", ["method"], registry=registry)
    summary.labels("get").observe(0.3)
    Gauge("temperature", "With a tricky value.", ["where"], registry=registry).labels('in "the" \\ room\n').set(-0.0)
    return generate_latest(registry).decode()


FIXED_PAGES = {
    "page": PAGE,
    "registry": _registry_page(),
    "summary": _summary_page(),
    "tricky": (
        'escapes{quote="q\\"b",backslash="a\\\\b",newline="l1\\nl2",brace="}{",comma="a,b"} 1\n'
        'specials{v="nan"} NaN\nspecials{v="pinf"} +Inf\nspecials{v="ninf"} -Inf\nspecials{v="negzero"} -0\n'
        'specials{v="2^53+1"} 9007199254740993\nspecials{v="huge"} 1e400\nspecials{v="exp"} 1.5E+3\n'
        'trailing_comma{a="1",} 7\nexplicit_ts 9 1700000000123\nexplicit_ts2{a="b"} 9 -5\n'
        'tabs{a="1"}\t3\t1700000000000\n  leading_space 4\nempty_label{x="",y="1"} 2\n'
        '# TYPE plain_counter counter\nplain_counter 5\n# HELP with_help Some \\n help.\nwith_help 1\n'
        'spaced { a = "1" } 2\n'
    ),
    "malformed-value": 'm{code="500"} notanumber\n',
    "malformed-underscore": "m 1_000\n",
    "malformed-label": "m{code=500} 1\n",
    "malformed-name": "1metric 1\n",
    "malformed-duplicate-label": 'm{a="x",a="y"} 1\n',
    "malformed-type": "# TYPE foo\n",
    "malformed-inf-timestamp": "m 1 +Inf\n",
    "malformed-huge-int": "m " + "9" * 400 + "\n",
    "malformed-after-good": 'ok 1\nm{code="5"} one two\n',
    "no-name": '{code="500"} 1\n',
    "name-in-labels": '{__name__="named", a="1"} 3\n',
    "crlf": "a 1\r\nb{c=\"d\"} 2\r\n",
    "empty": "",
}


@pytest.mark.parametrize("name", list(FIXED_PAGES))
def test_hot_path_agrees_with_prometheus_client_cold_and_warm(name):
    page = FIXED_PAGES[name]
    expected = _reference(page)
    parser = CachedTextParser()
    assert _fast(parser, page) == expected, "cold cache"
    assert _fast(parser, page) == expected, "warm cache"
    assert _fast(parser, "a 1\n") == _reference("a 1\n")  # and the cache stays usable after an error


# Tokens from usual to odd (the first half are the usual ones).
VALUES = ["1", "0", "-0", "12.5", "-3e-2", "1E3", "+Inf", "-Inf", "NaN", "9007199254740993", "1" * 330, ".5",
          "+0", "Inf", "nan", "infinity", "5.", "١٢", "1_0", "0x10", "1" * 400, "x", "", "1.5e400"]
STAMPS = ["", "", " 1700000000123", " -1", " 0", "\t17", "  17  ", " 1 2", " 1.5", " +Inf", " 1_0", " " + "9" * 25]
LABEL_SETS = ["", "{}", '{a="1"}', '{a="1",}', '{a="}"}', '{a="x\\"}"}', '{a="\\\\"}', '{a="1", b="2"}',
              '{a="é☃"}', '{a="{"}', '{ a="1" }', '{__name__="n"}', '{a="1"', '{a=1}', '{a="1"} }', '{a="1"}{b="2"}']
NAMES = ["m", "m_total", "a:b", "_x", "9m", ""]


def _pick(rng: random.Random, tokens: list[str]) -> str:
    """Mostly one of the first, usual tokens; sometimes any of them (the odd ones come last)."""
    return rng.choice(tokens[:len(tokens) // 2] if rng.random() < 0.8 else tokens)


def _random_page(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 8)):
        roll = rng.random()
        if roll < 0.1:
            lines.append(rng.choice(["# TYPE m counter", "# HELP m text", "# TYPE m", "# comment", "#", "# TYPE m bogus"]))
        elif roll < 0.15:
            lines.append(rng.choice(["", "   "]))
        else:
            sep = rng.choice([" ", " ", "\t", "  "])
            lines.append(f"{_pick(rng, NAMES)}{_pick(rng, LABEL_SETS)}{sep}{_pick(rng, VALUES)}{_pick(rng, STAMPS)}")
    return "\n".join(lines) + rng.choice(["\n", ""])


def test_hot_path_agrees_with_prometheus_client_on_random_pages():
    """Thousands of pages built from tricky tokens (values, timestamps, label texts, separators): every
    page, cold then warm then with other values, parses to exactly what prometheus-client gives, or fails
    as it does."""
    rng = random.Random(20260417)
    parser = CachedTextParser()
    failures, checked = [], 0
    for _ in range(3000):
        page = _random_page(rng)
        expected = _reference(page)
        checked += expected is not ParseError
        for attempt in ("shared cache", "again"):
            got = _fast(parser, page)
            if got != expected:
                failures.append((attempt, page, expected, got))
    assert not failures, failures[:3]
    assert checked > 1000  # enough pages that parse, not only errors


def test_hot_path_with_changing_values_matches_each_page():
    parser = CachedTextParser()
    for step in range(5):
        registry = CollectorRegistry()
        requests = Counter("http_requests", "Requests.", ["code"], registry=registry)
        requests.labels("200").inc(7 + step)
        Gauge("queue_depth", "Queue depth.", registry=registry).set(step * 0.1)
        page = generate_latest(registry).decode()
        assert _fast(parser, page) == _reference(page)
    assert len(parser) == 3  # only the series of the last page stay cached (counter, its _created, gauge)
