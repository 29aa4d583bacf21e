"""A :class:`storage.base.Store` on a Prometheus-compatible remote: VictoriaMetrics, Prometheus (with
``--web.enable-remote-write-receiver``), Thanos Receive, Mimir, Cortex.

Writing follows the Prometheus remote write specification 1.0
(https://prometheus.io/docs/specs/remote_write_spec/): a ``WriteRequest`` protobuf (:mod:`storage.prompb`),
snappy block-compressed (``cramjam.snappy.compress_raw``), POSTed with ``Content-Encoding: snappy``,
``Content-Type: application/x-protobuf`` and ``X-Prometheus-Remote-Write-Version: 0.1.0``. Each series'
labels are sent sorted by name with ``__name__`` first among them, empty values left out, and its samples
in timestamp order. As the spec asks, 5xx and 429 answers and connection failures are retried with
exponential backoff; other 4xx answers are not (the data is refused, retrying cannot help).

Samples not yet accepted wait in a bounded queue (``capacity`` samples, oldest dropped first), sent
again before the next batch. Every outcome is counted in OpsWatch's own metrics:
``opswatch_remote_storage_samples_total`` (accepted), ``..._samples_retried_total``,
``..._samples_failed_total`` (refused with a 4xx), ``..._samples_dropped_total`` (queue full), and the
gauge ``..._samples_pending``.

Reading uses the HTTP query API (https://prometheus.io/docs/prometheus/latest/querying/api/) through
:class:`collectors.prometheus_api.PrometheusAPISource`: raw samples come from an instant query of a range
selector (``/api/v1/query?query=name{...}[Nms]``), downsampled buckets from ``/api/v1/query_range`` of
``min_over_time``/``max_over_time``/``avg_over_time``/``count_over_time``, label sets from
``/api/v1/series``.

Differences from :class:`storage.sqlite.SQLiteStore` that callers may notice: data written becomes
visible to queries when the remote makes it so (VictoriaMetrics: within a few seconds); a second sample
at an existing (series, timestamp) is refused by Prometheus and kept beside the first by
VictoriaMetrics (no replacement); VictoriaMetrics drops NaN samples and keeps about 15 significant
digits of a value; in downsampled buckets NaN samples propagate (PromQL) instead of being skipped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from decimal import Decimal
from typing import Callable, Iterable, Mapping

import cramjam
import httpx
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge

from collectors.prometheus_api import PrometheusAPISource
from collectors.samples import Sample
from opswatch.errors import ScrapeError, StorageError

from .base import TimeSeries
from .matchers import Matcher, to_matchers
from .prompb import WriteRequest

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "opswatch-remote-write/0.1",
}


def promql_selector(name: str, matchers: list[Matcher]) -> str:
    """``name{label="value",...}`` with each value as a PromQL double-quoted string literal."""
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return name + "{" + ",".join(f"{m.name}{m.op}{quoted(m.value)}" for m in matchers) + "}"


class RemoteWriteMetrics:
    """OpsWatch's own metrics of remote writing, on ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=registry)  # exposed with the _total suffix
        self.sent = counter("opswatch_remote_storage_samples", "Samples the remote storage accepted.")
        self.retried = counter("opswatch_remote_storage_samples_retried",
                               "Samples sent again after a retryable failure (5xx, 429, network).")
        self.failed = counter("opswatch_remote_storage_samples_failed",
                              "Samples the remote storage refused with a non-retryable 4xx answer.")
        self.dropped = counter("opswatch_remote_storage_samples_dropped",
                               "Samples dropped from the full retry queue (oldest first), or left at close.")
        self.pending = Gauge("opswatch_remote_storage_samples_pending", "Samples waiting in the retry queue.",
                             registry=registry)


class _Retryable(Exception):
    """A send that may succeed later (5xx, 429, connection failure, timeout)."""


class RemoteStore:
    """A store whose samples live on a remote server.

    :param write_url: the remote-write endpoint, e.g. ``http://127.0.0.1:8428/api/v1/write``.
    :param query_url: the query API root (no ``/api/v1``), e.g. ``http://127.0.0.1:8428``.
    :param timeout_seconds: deadline of each HTTP request.
    :param max_samples_per_send: samples per remote-write request at most.
    :param capacity: bound of the retry queue, in samples.
    :param max_retries: retries of a request after a retryable failure, before it waits for the next append.
    :param backoff_seconds: first retry delay, doubled at each retry.
    :param registry: where OpsWatch's own metrics go (:class:`RemoteWriteMetrics`).
    :param clock: seconds since the epoch (the end of an unbounded select); :param sleep: for the backoff.
    :param transport: an httpx transport, for tests that need a fault a real server cannot make.
    """

    def __init__(self, write_url: str, query_url: str, timeout_seconds: float = 30.0,
                 max_samples_per_send: int = 2000, capacity: int = 100_000, max_retries: int = 3,
                 backoff_seconds: float = 0.1, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None):
        self.write_url, self.query_url = write_url, query_url.rstrip("/")
        self.max_samples_per_send, self.capacity = max_samples_per_send, capacity
        self.max_retries, self.backoff_seconds = max_retries, backoff_seconds
        self.clock, self.sleep = clock, sleep
        self.metrics = RemoteWriteMetrics(registry or CollectorRegistry())
        self._client = httpx.Client(timeout=timeout_seconds, transport=transport, headers=HEADERS)
        self._api = _QueryAPI(self.query_url, timeout_seconds, transport)
        self._pending: deque[Sample] = deque()
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------------------

    @staticmethod
    def encode(samples: list[Sample]) -> bytes:
        """The snappy-compressed ``WriteRequest`` body for ``samples`` (any order, any series)."""
        by_series: dict[tuple, list[tuple[int, float]]] = {}
        for name, labels, ts, value in samples:
            key = (("__name__", name), *sorted((k, v) for k, v in labels.items() if v != ""))
            by_series.setdefault(key, []).append((int(ts), float(value)))
        request = WriteRequest()
        for key, points in by_series.items():
            series = request.timeseries.add()
            for label, value in key:
                series.labels.add(name=label, value=value)
            for ts, value in sorted(points, key=lambda p: p[0]):
                series.samples.add(value=value, timestamp=ts)
        return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))

    def _post(self, body: bytes) -> None:
        try:
            response = self._client.post(self.write_url, content=body)
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code // 100 == 2:
            return
        detail = f"HTTP status {response.status_code}: {response.text[:300].strip()}"
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retryable(detail)
        raise StorageError(f"remote write to {self.write_url} refused {{n}} samples: {detail}")

    def _send(self, batch: list[Sample]) -> None:
        """One request, retried with backoff; raises _Retryable once the retries are spent."""
        body = self.encode(batch)
        for attempt in range(self.max_retries + 1):
            try:
                self._post(body)
                return
            except _Retryable:
                if attempt == self.max_retries:
                    raise
                self.metrics.retried.inc(len(batch))
                self.sleep(self.backoff_seconds * 2**attempt)

    def append(self, samples: Iterable[Sample]) -> int:
        """Queue ``samples`` behind any that wait for a retry and send the queue, in order, in requests of
        at most ``max_samples_per_send``.

        :returns: how many samples the remote accepted during this call (queued ones included).
        :raises StorageError: when a request was refused (its samples are dropped and counted as failed),
            or still failed after the retries (its samples and the rest stay queued for the next append).
        """
        with self._lock:
            self._pending.extend(samples)
            overflow = len(self._pending) - self.capacity
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            if overflow > 0:
                self.metrics.dropped.inc(overflow)
            sent, refused = 0, []
            try:
                while self._pending:
                    batch = [self._pending[i] for i in range(min(self.max_samples_per_send, len(self._pending)))]
                    try:
                        self._send(batch)
                        self.metrics.sent.inc(len(batch))
                        sent += len(batch)
                    except StorageError as exc:
                        self.metrics.failed.inc(len(batch))
                        refused.append(str(exc).replace("{n}", str(len(batch))))
                    for _ in batch:
                        self._pending.popleft()
            except _Retryable as exc:
                raise StorageError(
                    f"remote write to {self.write_url} failed after {self.max_retries} retries: {exc}; "
                    f"{len(self._pending)} samples wait for the next append"
                    + (f" (queue full: {overflow} oldest dropped)" if overflow > 0 else "")) from exc
            finally:
                self.metrics.pending.set(len(self._pending))
            if refused:
                raise StorageError("; ".join(refused))
            return sent

    # -- reading -----------------------------------------------------------------------------------------

    def select(
        self,
        name: str,
        matchers: Mapping[str, str] | list[Matcher] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        step_ms: int | None = None,
    ) -> list[TimeSeries]:
        """See :meth:`storage.base.Store.select`; an unbounded start is the epoch, an unbounded end now.

        :raises StorageError: when the remote cannot be queried.
        :raises ValueError: when ``step_ms`` is not positive.
        """
        if step_ms is not None and step_ms <= 0:
            raise ValueError(f"step_ms must be a positive number of milliseconds, not {step_ms!r}")
        selector = promql_selector(name, to_matchers(matchers))
        lo = 0 if start_ms is None else max(0, int(start_ms))
        hi = int(self.clock() * 1000) if end_ms is None else int(end_ms)
        if hi < lo:
            return []
        try:
            if step_ms is None:
                return self._raw(name, selector, lo, hi)
            return self._buckets(name, selector, lo, hi, int(step_ms))
        except ScrapeError as exc:
            raise StorageError(f"reading {selector} from {self.query_url}: {exc}") from exc

    def _raw(self, name: str, selector: str, lo: int, hi: int) -> list[TimeSeries]:
        # Prometheus 2 takes [t - range, t], VictoriaMetrics (t - range, t]: ask one ms more, cut at lo
        result = self._api.matrix("/api/v1/query", [("query", f"{selector}[{hi - lo + 1}ms]"), ("time", _sec(hi))])
        out = []
        for labels, points in result:
            points = [(t, v) for t, v in points if lo <= t <= hi]
            if points:
                out.append(TimeSeries(name, labels, _series(name, points)))
        return sorted(out, key=lambda ts: sorted(ts.labels.items()))

    def _buckets(self, name: str, selector: str, lo: int, hi: int, step: int) -> list[TimeSeries]:
        # evaluated at each bucket's last ms over `step - 1` ms, both servers take exactly [start, end]
        first, last = lo // step * step, hi // step * step
        params = [("start", _sec(first + step - 1)), ("end", _sec(last + step - 1)), ("step", _sec(step))]
        columns: dict[str, dict[tuple, dict[int, float]]] = {}
        for column in ("min", "max", "avg", "count"):
            query = f"{column}_over_time({selector}[{step - 1}ms])"
            columns[column] = {tuple(sorted(labels.items())): {t - step + 1: v for t, v in points}
                               for labels, points in self._api.matrix("/api/v1/query_range",
                                                                      [("query", query), *params])}
        out = []
        for key, counts in sorted(columns["count"].items()):
            frame = pd.DataFrame({c: pd.Series(columns[c].get(key, {}), dtype=float) for c in ("min", "max", "avg")}
                                 | {"count": pd.Series(counts, dtype=float)}).sort_index()
            frame["count"] = frame["count"].fillna(0).astype("int64")
            frame.index = pd.to_datetime(frame.index.to_numpy(dtype="int64"), unit="ms", utc=True).as_unit("ms")
            out.append(TimeSeries(name, dict(key), frame["avg"].rename(name), frame))
        return out

    def series(self, name: str, matchers: Mapping[str, str] | list[Matcher] | None = None) -> list[dict[str, str]]:
        """Label sets (without ``__name__``) of the series named ``name`` that satisfy ``matchers``.

        :raises StorageError: when the remote cannot be queried.
        """
        selector = promql_selector(name, to_matchers(matchers))
        try:
            found = self._api.series([selector], 0, int(self.clock() * 1000))
        except ScrapeError as exc:
            raise StorageError(f"listing {selector} on {self.query_url}: {exc}") from exc
        return [{k: v for k, v in labels.items() if k != "__name__"} for labels in found]

    def close(self) -> None:
        """Close the HTTP connection pools; samples still queued are dropped (and counted)."""
        with self._lock:
            self.metrics.dropped.inc(len(self._pending))
            self._pending.clear()
            self.metrics.pending.set(0)
        self._client.close()
        self._api.close()


class _QueryAPI(PrometheusAPISource):
    """The query API client, plus the raw ``matrix`` answers of instant range-selector queries."""

    def matrix(self, path: str, params: list[tuple[str, str]]) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        """``[(labels without __name__, [(ms, value), ...]), ...]`` of a matrix answer.

        ``nocache=1`` asks VictoriaMetrics for the newest data (its cache and ``-search.latencyOffset``
        would hide the last 30 s); Prometheus ignores it.
        :raises ScrapeError: on any failure, or when the answer is not a matrix.
        """
        data = self._get(path, [*params, ("nocache", "1")])
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise ScrapeError(f"GET {self.base_url}{path}: expected a matrix, got {str(data)[:200]!r}")
        try:
            return [({k: v for k, v in series["metric"].items() if k != "__name__"},
                     [(int(Decimal(t) * 1000), float(v)) for t, v in series.get("values") or ()])
                    for series in data["result"]]
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ScrapeError(f"GET {self.base_url}{path}: malformed matrix: {type(exc).__name__}: {exc}") from exc


def _sec(ms: int) -> str:
    """Milliseconds -> the API's decimal seconds, exactly."""
    return format(Decimal(int(ms)).scaleb(-3), "f")


def _series(name: str, points: list[tuple[int, float]]) -> pd.Series:
    ts, values = zip(*points)
    return pd.Series(values, index=pd.to_datetime(list(ts), unit="ms", utc=True).as_unit("ms"), name=name,
                     dtype=float)
