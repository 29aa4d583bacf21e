"""The Prometheus HTTP API as a source: import series from an existing Prometheus (or VictoriaMetrics).

OpsWatch normally scrapes exporters itself (:mod:`collectors.scrape`). When a Prometheus already
collects the data, :class:`PrometheusAPISource` reads it back through the HTTP query API so the
detection pipeline can run on it, without scraping the exporters a second time.

Endpoints used (https://prometheus.io/docs/prometheus/latest/querying/api/):

* ``GET /api/v1/series?match[]=<selector>&start=<t>&end=<t>`` -> :meth:`PrometheusAPISource.series`
* ``GET /api/v1/query_range?query=<expr>&start=<t>&end=<t>&step=<s>`` -> :meth:`PrometheusAPISource.query_range`

Every answer is the JSON envelope the API documents::

    {"status": "success" | "error", "data": ..., "errorType": "bad_data", "error": "...", "warnings": [...]}

Units: OpsWatch's timestamps are integer **milliseconds** since the Unix epoch (UTC), as in
:class:`collectors.samples.Sample`; the API takes and returns **seconds** (a decimal number with
millisecond precision), and this module converts exactly in both directions (no float rounding).
Steps and timeouts are **seconds**.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable, Iterable

import httpx

from opswatch.errors import ScrapeError

from .samples import Sample

log = logging.getLogger(__name__)

API_DOCS = "https://prometheus.io/docs/prometheus/latest/querying/api/"

#: Prometheus refuses a range query of more than 11,000 points per series ("exceeded maximum
#: resolution"); :meth:`PrometheusAPISource.import_range` splits longer ranges into chunks of this many.
MAX_POINTS_PER_QUERY = 11_000


def _seconds(ms: int) -> str:
    """Integer milliseconds -> the API's decimal seconds, exactly: ``1700000000123`` -> ``"1700000000.123"``."""
    return format(Decimal(int(ms)).scaleb(-3), "f")


def _ms(seconds: Any) -> int:
    """The API's timestamp (a JSON number of seconds, parsed as Decimal or int) -> integer milliseconds."""
    return int((Decimal(seconds) * 1000).to_integral_value())


def _float(text: Any) -> float:
    """A sample value as the API sends it: a string (``"1.5"``, ``"NaN"``, ``"+Inf"``, ``"-Inf"``)."""
    if not isinstance(text, str):
        raise ValueError(f"sample value {text!r} is not a string")
    return float(text)  # Python's float() reads Go's FormatFloat output exactly, NaN and ±Inf included


class PrometheusAPISource:
    """A read-only client of a Prometheus-compatible HTTP API (Prometheus, VictoriaMetrics, Thanos...).

    :param base_url: the server's root, e.g. ``http://prometheus:9090`` (no ``/api/v1``); a path prefix
        such as ``http://host/prometheus`` (``--web.route-prefix``) is kept.
    :param timeout_seconds: deadline of each HTTP call, in seconds (connect, read, write and pool).
    :param transport: an ``httpx.BaseTransport`` (e.g. ``httpx.MockTransport``), for tests.

    Every failure — connection refused, timeout, a non-2xx status, a body that is not the API's JSON
    envelope, or ``"status": "error"`` — raises :class:`opswatch.errors.ScrapeError` whose message names
    the URL and, when Prometheus gave them, its ``errorType`` and ``error``.

    Use it as a context manager, or call :meth:`close`, to release the HTTP connection pool.
    """

    def __init__(self, base_url: str, timeout_seconds: float = 10, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout_seconds)
        self._client = httpx.Client(timeout=self.timeout, transport=transport, headers={"Accept": "application/json"})

    # -- plumbing ---------------------------------------------------------------------------------------

    def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        """GET ``base_url + path`` and return the envelope's ``data``; every failure is a ScrapeError."""
        url = self.base_url + path
        shown = url + " (" + ", ".join(f"{k}={v!r}" for k, v in params) + ")"
        try:
            response = self._client.get(url, params=params, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise ScrapeError(f"GET {shown}: timeout after {self.timeout:g}s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise ScrapeError(f"GET {shown}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            status = f"HTTP status {response.status_code}"
            snippet = response.text[:200]
            raise ScrapeError(f"GET {shown}: {status}, not a Prometheus API JSON envelope: {snippet!r}")
        if body["status"] != "success" or response.status_code // 100 != 2:
            error_type = body.get("errorType") or "unknown"
            raise ScrapeError(
                f"GET {shown}: HTTP status {response.status_code}, errorType {error_type!r}: {body.get('error', '')}"
            )
        for warning in body.get("warnings") or ():
            log.warning("GET %s: Prometheus warns: %s", shown, warning)
        if "data" not in body:
            raise ScrapeError(f"GET {shown}: malformed answer: no 'data' in {str(body)[:200]!r}")
        return body["data"]

    # -- API --------------------------------------------------------------------------------------------

    def series(self, match: list[str], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """The series that have samples in ``[start_ms, end_ms]`` and match any of the selectors.

        ``GET /api/v1/series`` (see :data:`API_DOCS`, "Finding series by label matchers").

        :param match: series selectors, e.g. ``['up', 'node_cpu_seconds_total{mode="idle"}']``; at least one.
        :param start_ms: start of the range, milliseconds since the epoch (inclusive).
        :param end_ms: end of the range, milliseconds since the epoch (inclusive).
        :returns: one label set per series, **including** ``__name__``:
            ``[{"__name__": "up", "job": "node", "instance": "host:9100"}, ...]``, in the server's order.
        :raises ScrapeError: see the class.
        """
        if not match:
            raise ValueError("series() needs at least one selector in match")
        params = [("match[]", m) for m in match] + [("start", _seconds(start_ms)), ("end", _seconds(end_ms))]
        data = self._get("/api/v1/series", params)
        if not isinstance(data, list) or not all(
            isinstance(s, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in s.items()) for s in data
        ):
            raise ScrapeError(f"GET {self.base_url}/api/v1/series: malformed answer: data is not a list of label sets")
        return data

    def query_range(self, query: str, start_ms: int, end_ms: int, step_seconds: float) -> list[Sample]:
        """Evaluate a PromQL expression at ``start_ms``, ``start_ms + step``, ... up to ``end_ms``.

        ``GET /api/v1/query_range`` (see :data:`API_DOCS`, "Range queries"). The answer must be a
        ``matrix``: ``{"resultType": "matrix", "result": [{"metric": {labels}, "values": [[<seconds>,
        "<value>"], ...]}, ...]}``.

        Note the semantics of a range query: each point is stamped with the *evaluation* time (a multiple
        of the step after ``start_ms``), and for a plain selector its value is the latest raw sample at or
        before that time, within the lookback window (5 min by default); series that are stale or absent
        at an evaluation time have no point there. Native-histogram points (``"histograms"``) have no
        float value and are skipped.

        :param query: a PromQL expression, e.g. ``'node_cpu_seconds_total{mode="idle"}'``.
        :param start_ms: first evaluation time, milliseconds since the epoch.
        :param end_ms: last possible evaluation time, milliseconds since the epoch (inclusive).
        :param step_seconds: seconds between two evaluations (> 0; millisecond resolution).
        :returns: samples, series by series in the server's order and by time within a series. The
            result's ``__name__`` label becomes :attr:`Sample.name` and is removed from
            :attr:`Sample.labels`; an expression whose result has no metric name (``rate(x[1m])``,
            ``sum(x)``) gives ``name == ""``. Values are float64; ``"NaN"``, ``"+Inf"`` and ``"-Inf"``
            become ``nan``, ``inf`` and ``-inf``.
        :raises ScrapeError: see the class; also when the result is not a matrix.
        """
        step_ms = round(float(step_seconds) * 1000)
        if step_ms <= 0:
            raise ValueError(f"step_seconds must be at least 0.001, not {step_seconds!r}")
        params = [
            ("query", query),
            ("start", _seconds(start_ms)),
            ("end", _seconds(end_ms)),
            ("step", _seconds(step_ms)),
        ]
        data = self._get("/api/v1/query_range", params)
        where = f"GET {self.base_url}/api/v1/query_range (query={query!r})"
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise ScrapeError(f"{where}: malformed answer: expected a matrix result, got {kind!r}")
        samples: list[Sample] = []
        try:
            for series in data["result"]:
                labels = dict(series["metric"])
                if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                    raise ValueError(f"labels {labels!r} are not strings")
                name = labels.pop("__name__", "")
                for ts, value in series.get("values") or ():
                    samples.append(Sample(name, labels, _ms(ts), _float(value)))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ScrapeError(f"{where}: malformed answer: {type(exc).__name__}: {exc}") from exc
        return samples

    def import_range(
        self,
        store_append: Callable[[Iterable[Sample]], int],
        match: list[str],
        start_ms: int,
        end_ms: int,
        step_seconds: float,
    ) -> int:
        """Copy the series matching each selector, over ``[start_ms, end_ms]`` at ``step_seconds``, into a store.

        For each selector in turn: :meth:`query_range` (split into requests of at most
        :data:`MAX_POINTS_PER_QUERY` points, which evaluate at the same instants as one request would),
        then one ``store_append`` call with that selector's samples. Samples keep the labels Prometheus
        has (``job``, ``instance``...) and are stamped with the evaluation times (see :meth:`query_range`).
        A series matched by two selectors is written twice (the store replaces the point) and counted twice.

        :param store_append: a store's ``append`` (e.g. :meth:`storage.sqlite.SQLiteStore.append`): takes
            samples, returns how many it wrote.
        :param match: series selectors (``'up'``, ``'node_cpu_seconds_total{mode="idle"}'``); each must
            select named series, not compute new ones.
        :param start_ms: start of the range, milliseconds since the epoch.
        :param end_ms: end of the range, milliseconds since the epoch (inclusive).
        :param step_seconds: resolution of the import, in seconds.
        :returns: the number of samples written (the sum of ``store_append``'s results).
        :raises ScrapeError: when Prometheus fails (selectors imported before the failure stay written).
        :raises ValueError: when a selector's result has series without a metric name.
        :raises opswatch.errors.StorageError: from the store.
        """
        step_ms = round(float(step_seconds) * 1000)
        if step_ms <= 0:
            raise ValueError(f"step_seconds must be at least 0.001, not {step_seconds!r}")
        written = 0
        for selector in match:
            samples: list[Sample] = []
            chunk_start = int(start_ms)
            while chunk_start <= end_ms:
                chunk_end = min(int(end_ms), chunk_start + (MAX_POINTS_PER_QUERY - 1) * step_ms)
                samples += self.query_range(selector, chunk_start, chunk_end, step_ms / 1000)
                chunk_start = chunk_end + step_ms
            nameless = [s.labels for s in samples if not s.name]
            if nameless:
                raise ValueError(
                    f"selector {selector!r} gives series without a metric name (e.g. {dict(nameless[0])!r}); "
                    "import_range takes series selectors, not expressions that compute new series"
                )
            if samples:
                written += store_append(samples)
            log.info("imported %d samples of %s from %s", len(samples), selector, self.base_url)
        return written

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> "PrometheusAPISource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
