"""Prometheus metrics under DAX's CloudWatch names, and logging set-up.

Why not prometheus_client's Counter and Histogram on the hot path: each
``inc()``/``observe()`` takes a lock and walks Python objects, several
microseconds per request in all. A cache hit costs a few microseconds, so
counts are kept here as plain numbers in dicts (the caller's event loop or lock
already serializes them) and turned into Prometheus metric families only when
``/metrics`` is scraped, by a collector registered in this object's registry.

Each :class:`Metrics` owns its registry, so several nodes (tests) or an
in-process accelerator next to an application's own metrics never collide.
"""

from __future__ import annotations

import bisect
import datetime
import logging
import platform
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from daxd import __version__
from daxd.cache.store import Store

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0)

#: name (without ``_total``) -> (help, label name)
COUNTERS: dict[str, tuple[str, str]] = {
    "daxd_item_cache_hits": ("GetItem/BatchGetItem keys served from cache.", "table"),
    "daxd_item_cache_misses": ("GetItem/BatchGetItem keys fetched upstream.", "table"),
    "daxd_query_cache_hits": ("Query pages served from cache.", "table"),
    "daxd_query_cache_misses": ("Query pages fetched upstream.", "table"),
    "daxd_scan_cache_hits": ("Scan pages served from cache.", "table"),
    "daxd_scan_cache_misses": ("Scan pages fetched upstream.", "table"),
    "daxd_shared_tier_hits": ("L1 misses answered from the shared tier (Valkey), by operation.", "operation"),
    "daxd_shared_tier_misses": ("L1 misses the shared tier did not have (read from DynamoDB), by operation.",
                                "operation"),
    "daxd_total_request_count": ("Requests answered.", "operation"),
    "daxd_error_request_count": ("Requests answered with a client error (4xx).", "operation"),
    "daxd_fault_request_count": ("Requests answered with a server error (5xx).", "operation"),
    "daxd_throttled_request_count": ("Requests throttled by DynamoDB.", "operation"),
    "daxd_access_denied": ("Requests refused by the access key's permissions (AccessDeniedException).", "key"),
}
HISTOGRAMS: dict[str, str] = {
    "daxd_request_latency_seconds": "Time to answer a request, by operation.",
    "daxd_upstream_latency_seconds": "Time of one upstream call, by operation.",
}


class Histogram:
    """A histogram kept as plain numbers; rendered by a collector when scraped."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        total = 0
        pairs: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            total += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return pairs


class Metrics:
    """The node's metrics; DAX's names in Prometheus form, with a ``table`` or ``operation`` label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.counts: dict[str, dict[str, float]] = {name: {} for name in COUNTERS}
        self.histograms: dict[str, dict[str, Histogram]] = {name: {} for name in HISTOGRAMS}
        self.stores: list[Store[Any, Any]] = []
        #: Gauges read when scraped: name -> (help, reader); a reader answering None omits the sample.
        #: A node adds ``daxd_cache_capacity_bytes``, ``daxd_upstream_up``, ``daxd_cluster_nodes``...
        self.gauges: dict[str, tuple[str, Callable[[], float | None]]] = {}
        self.registry.register(_Collector(self))
        self._item_hits = self.counts["daxd_item_cache_hits"]
        self._item_misses = self.counts["daxd_item_cache_misses"]

    def watch_store(self, store: Store[Any, Any]) -> None:
        self.stores.append(store)

    def _inc(self, name: str, label: str) -> None:
        counts = self.counts[name]
        counts[label] = counts.get(label, 0) + 1

    def _observe(self, name: str, label: str, seconds: float) -> None:
        series = self.histograms[name]
        histogram = series.get(label)
        if histogram is None:
            histogram = series[label] = Histogram()
        histogram.observe(seconds)

    def item_hit(self, table: str) -> None:
        self._item_hits[table] = self._item_hits.get(table, 0) + 1

    def item_miss(self, table: str) -> None:
        self._item_misses[table] = self._item_misses.get(table, 0) + 1

    def shared_tier_lookup(self, operation: str, found: bool) -> None:
        self._inc("daxd_shared_tier_hits" if found else "daxd_shared_tier_misses", operation)

    def query_hit(self, operation: str, table: str) -> None:
        self._inc("daxd_query_cache_hits" if operation == "Query" else "daxd_scan_cache_hits", table)

    def query_miss(self, operation: str, table: str) -> None:
        self._inc("daxd_query_cache_misses" if operation == "Query" else "daxd_scan_cache_misses", table)

    def request(self, operation: str, seconds: float, error: Any = None) -> None:
        """Count one answered request; ``error`` is the DaxdError it ended with, if any."""
        self._inc("daxd_total_request_count", operation)
        self._observe("daxd_request_latency_seconds", operation, seconds)
        if error is not None:
            if getattr(error, "throttling", False):
                self._inc("daxd_throttled_request_count", operation)
            fault = getattr(error, "status", 500) >= 500
            self._inc("daxd_fault_request_count" if fault else "daxd_error_request_count", operation)

    def access_denied(self, key: str) -> None:
        """One request refused by per-key permissions (the label set is bounded by the key file)."""
        self._inc("daxd_access_denied", key)

    def upstream(self, operation: str, seconds: float) -> None:
        self._observe("daxd_upstream_latency_seconds", operation, seconds)

    def total(self, name: str) -> float:
        """A counter summed over its labels (e.g. all tables' hits)."""
        return sum(self.counts[name].values())

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 if absent): for tests and ``daxd_stats()``."""
        sample = self.registry.get_sample_value(name, labels)
        return 0.0 if sample is None else sample

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    """Turns the plain counts into metric families when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, (documentation, label) in COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in list(m.counts[name].items()):
                family.add_metric([value], count)
            yield family
        for name, documentation in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, documentation, labels=["operation"])
            for operation, h in list(m.histograms[name].items()):
                histogram.add_metric([operation], h.cumulative(), h.sum)
            yield histogram
        yield GaugeMetricFamily("daxd_estimated_db_size_bytes", "Bytes held by the item and query caches.",
                                value=sum(s.bytes for s in m.stores))
        yield GaugeMetricFamily("daxd_cached_entries", "Entries in the item and query caches.",
                                value=sum(len(s) for s in m.stores))
        yield CounterMetricFamily("daxd_evicted_size_bytes", "Bytes evicted to stay under --cache-size.",
                                  value=sum(s.evicted_bytes for s in m.stores))
        for name, (help_text, read) in list(m.gauges.items()):
            reading = read()
            if reading is not None:
                yield GaugeMetricFamily(name, help_text, value=reading)
        info = GaugeMetricFamily("daxd_build_info", "daxd's version and the Python running it (always 1).",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr, as text lines or (``json``) one JSON object per line."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
    # Where the node listens is printed whatever the level (scripts and supervisors read it).
    logging.getLogger("daxd.startup").setLevel(logging.INFO)
