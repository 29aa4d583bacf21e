"""OpenMetrics 1.0 text pages (collectors/exposition.py over prometheus-client's OpenMetrics parser):
every metric type, timestamps in seconds, escapes, special values, and the strictness of the format.
``tests/integration/test_prometheus_parity.py`` checks a page like these against a real Prometheus."""

from __future__ import annotations

import math

import pytest

from collectors.exposition import PageSample, openmetrics_samples, parse_openmetrics
from collectors.samples import Sample
from collectors.scrape_cache import ScrapeCache
from collectors.targets import ScrapeOptions
from opswatch.errors import ParseError

SCRAPE_MS = 1_700_000_100_000
TARGET = {"job": "app", "instance": "10.0.0.1:8000"}

PAGE = """\
# TYPE requests counter
# HELP requests Requests \\"served\\", by code.\\nSecond line.
requests_total{code="200"} 1027 1700000000.1239
requests_created{code="200"} 1699999000.5 1700000000.1239
# TYPE build info
build_info{version="1.2.3",revision="abc"} 1
# TYPE state stateset
state{state="ready"} 1
state{state="starting"} 0
# TYPE queue_size gaugehistogram
queue_size_bucket{le="10"} 4
queue_size_bucket{le="+Inf"} 6
queue_size_gcount 6
queue_size_gsum 33
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_bucket{le="0.1"} 2 # {trace_id="abc"} 0.05 1700000000.1
latency_seconds_bucket{le="+Inf"} 3
latency_seconds_count 3
latency_seconds_sum 1.5
latency_seconds_created 1699999000
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} NaN
rpc_seconds_count 0
rpc_seconds_sum 0
# TYPE temperature_celsius gauge
temperature_celsius{room="a\\\\b \\"c\\"\\nd"} -Inf
temperature_celsius{room="e"} +Inf
# TYPE mystery unknown
mystery 42
# EOF
"""


def test_every_type_parses_in_page_order_with_names_as_written():
    samples = openmetrics_samples(PAGE)
    assert [s.name for s in samples] == [
        "requests_total", "requests_created", "build_info", "state", "state",
        "queue_size_bucket", "queue_size_bucket", "queue_size_gcount", "queue_size_gsum",
        "latency_seconds_bucket", "latency_seconds_bucket", "latency_seconds_count", "latency_seconds_sum",
        "latency_seconds_created", "rpc_seconds", "rpc_seconds_count", "rpc_seconds_sum",
        "temperature_celsius", "temperature_celsius", "mystery"]
    by = {(s.name, tuple(sorted(s.labels.items()))): s for s in samples}
    assert by[("build_info", (("revision", "abc"), ("version", "1.2.3")))].value == 1.0  # info: value 1
    assert by[("state", (("state", "starting"),))].value == 0.0  # stateset: one sample per state
    assert by[("queue_size_gsum", ())].value == 33.0
    assert by[("latency_seconds_bucket", (("le", "0.1"),))].value == 2.0  # the exemplar is ignored
    assert by[("requests_created", (("code", "200"),))].value == 1699999000.5


def test_timestamps_are_seconds_truncated_to_milliseconds():
    first = openmetrics_samples(PAGE)[0]
    assert first == PageSample("requests_total", {"code": "200"}, 1027.0, 1_700_000_000_123)  # .1239 s -> 123 ms
    assert openmetrics_samples(PAGE)[2].timestamp_ms is None


def test_escapes_and_special_values():
    samples = {s.labels.get("room", s.name): s for s in openmetrics_samples(PAGE) if s.name == "temperature_celsius"}
    assert samples['a\\b "c"\nd'].value == -math.inf and samples["e"].value == math.inf
    [quantile] = [s for s in openmetrics_samples(PAGE) if s.name == "rpc_seconds"]
    assert math.isnan(quantile.value)


def test_target_labels_and_scrape_time_are_added():
    samples = parse_openmetrics(PAGE, SCRAPE_MS, TARGET)
    assert samples[0] == Sample("requests_total", {"code": "200", **TARGET}, 1_700_000_000_123, 1027.0)
    assert samples[-1] == Sample("mystery", TARGET, SCRAPE_MS, 42.0)


def test_scrape_cache_reads_openmetrics_by_content_type():
    cache = ScrapeCache(TARGET, ScrapeOptions())
    result = cache.ingest_page(PAGE, "application/openmetrics-text; version=1.0.0; charset=utf-8", SCRAPE_MS)
    assert result.scraped == 20 and len(result.samples) == 20
    assert result.samples[0].timestamp_ms == 1_700_000_000_123  # OpenMetrics timestamps are seconds
    # the Content-Type decides: read as text 0.0.4 (timestamps in ms), the same body means something else
    as_text = ScrapeCache(TARGET, ScrapeOptions()).ingest_page(PAGE, "text/plain; version=0.0.4", SCRAPE_MS)
    assert as_text.samples[0].timestamp_ms == 1_700_000_000


@pytest.mark.parametrize("page, message", [
    ("a 1\n", "Missing # EOF"),  # OpenMetrics must end with # EOF
    ("# EOF\na 1\n", "after # EOF"),
    ("# TYPE a counter\na_total -1\n# EOF\n", "cannot be negative"),
    ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\nh_sum 1\n# EOF\n', "+Inf bucket missing"),
    ("# TYPE s stateset\ns 1\n# EOF\n", "Stateset missing label"),
    ("# TYPE i info\ni_info 2\n# EOF\n", "Info samples can only have value one"),
    ('a{b="c"} 1\n\n# EOF\n', "blank line"),
    ("# TYPE h histogram\nh {count:1,sum:1,schema:0,zero_threshold:0,zero_count:0} \n# EOF\n", "histogram"),
])
def test_malformed_openmetrics_is_a_parse_error_quoting_the_problem(page, message):
    with pytest.raises(ParseError) as info:
        openmetrics_samples(page)
    assert message in str(info.value) and "malformed OpenMetrics page" in str(info.value)


def test_error_names_the_line_the_parser_quotes():
    with pytest.raises(ParseError, match=r"line 2: 'i_info 2'"):
        openmetrics_samples("# TYPE i info\ni_info 2\n# EOF\n")
