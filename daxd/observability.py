"""Prometheus metrics under DAX's CloudWatch names, and logging set-up.

Each :class:`Metrics` owns its registry, so several nodes (tests) or an
in-process accelerator next to an application's own metrics never collide.
Counter children are looked up once per table and kept: ``labels()`` takes a
lock and a dict lookup that the hit path need not pay twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from daxd.cache.store import Store

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0)


class _StoreCollector(Collector):
    """Cache size and evicted bytes, read from the store when scraped."""

    def __init__(self) -> None:
        self.stores: list[Store[tuple[Any, ...], Any]] = []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily("daxd_estimated_db_size_bytes", "Bytes held by the item and query caches.",
                                value=sum(s.bytes for s in self.stores))
        yield GaugeMetricFamily("daxd_cached_entries", "Entries in the item and query caches.",
                                value=sum(len(s) for s in self.stores))
        yield CounterMetricFamily("daxd_evicted_size_bytes", "Bytes evicted to stay under --cache-size.",
                                  value=sum(s.evicted_bytes for s in self.stores))


class Metrics:
    """The node's metrics; DAX's names in Prometheus form, with a ``table`` label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._store_collector = _StoreCollector()
        r.register(self._store_collector)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ("table",)) -> Counter:
            return Counter(name, doc, labels, registry=r)

        self.item_hits = counter("daxd_item_cache_hits", "GetItem/BatchGetItem keys served from cache.")
        self.item_misses = counter("daxd_item_cache_misses", "GetItem/BatchGetItem keys fetched upstream.")
        self.query_hits = counter("daxd_query_cache_hits", "Query pages served from cache.")
        self.query_misses = counter("daxd_query_cache_misses", "Query pages fetched upstream.")
        self.scan_hits = counter("daxd_scan_cache_hits", "Scan pages served from cache.")
        self.scan_misses = counter("daxd_scan_cache_misses", "Scan pages fetched upstream.")
        self.total_requests = counter("daxd_total_request_count", "Requests received.", ("operation",))
        self.errors = counter("daxd_error_request_count", "Requests answered with a client error.",
                              ("operation",))
        self.faults = counter("daxd_fault_request_count", "Requests answered with a server error.",
                              ("operation",))
        self.throttled = counter("daxd_throttled_request_count", "Requests throttled by DynamoDB.",
                                 ("operation",))
        self.request_latency = Histogram("daxd_request_latency_seconds", "Time to answer a request.",
                                         ("operation",), registry=r, buckets=_LATENCY_BUCKETS)
        self.upstream_latency = Histogram("daxd_upstream_latency_seconds", "Time of one upstream call.",
                                          ("operation",), registry=r, buckets=_LATENCY_BUCKETS)
        self._children: dict[tuple[int, str], Any] = {}

    def watch_store(self, store: Store[tuple[Any, ...], Any]) -> None:
        self._store_collector.stores.append(store)

    def _child(self, metric: Any, label: str) -> Any:
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def item_hit(self, table: str) -> None:
        self._child(self.item_hits, table).inc()

    def item_miss(self, table: str) -> None:
        self._child(self.item_misses, table).inc()

    def query_hit(self, operation: str, table: str) -> None:
        self._child(self.query_hits if operation == "Query" else self.scan_hits, table).inc()

    def query_miss(self, operation: str, table: str) -> None:
        self._child(self.query_misses if operation == "Query" else self.scan_misses, table).inc()

    def request(self, operation: str, seconds: float, error: Any = None) -> None:
        """Count one answered request; ``error`` is the DaxdError it ended with, if any."""
        self._child(self.total_requests, operation).inc()
        self._child(self.request_latency, operation).observe(seconds)
        if error is not None:
            if getattr(error, "code", "") in ("ProvisionedThroughputExceededException", "ThrottlingException",
                                              "RequestLimitExceeded"):
                self._child(self.throttled, operation).inc()
            if getattr(error, "status", 500) >= 500:
                self._child(self.faults, operation).inc()
            else:
                self._child(self.errors, operation).inc()

    def upstream(self, operation: str, seconds: float) -> None:
        self._child(self.upstream_latency, operation).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 if absent): for tests and ``daxd_stats()``."""
        sample = self.registry.get_sample_value(name, labels)
        return 0.0 if sample is None else sample

    def render(self) -> bytes:
        return generate_latest(self.registry)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
