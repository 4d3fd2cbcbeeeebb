"""Metrics: plain counts rendered in Prometheus text format under DAX's names."""

from __future__ import annotations

from daxd.model.errors import InternalServerError, ThrottlingException, ValidationException
from daxd.observability import Metrics


def test_counts_render_with_labels_and_histograms_are_cumulative() -> None:
    metrics = Metrics()
    metrics.item_hit("t")
    metrics.item_hit("t")
    metrics.item_miss("u")
    metrics.query_hit("Scan", "t")
    metrics.request("GetItem", 0.0002)
    metrics.request("GetItem", 0.003, ValidationException("bad"))
    metrics.request("PutItem", 0.01, ThrottlingException("slow down"))
    metrics.request("PutItem", 0.01, InternalServerError("oops"))
    text = metrics.render().decode()
    assert 'daxd_item_cache_hits_total{table="t"} 2.0' in text
    assert 'daxd_item_cache_misses_total{table="u"} 1.0' in text
    assert 'daxd_scan_cache_hits_total{table="t"} 1.0' in text
    assert 'daxd_error_request_count_total{operation="PutItem"} 1.0' in text  # throttling is a 4xx
    assert 'daxd_throttled_request_count_total{operation="PutItem"} 1.0' in text
    assert 'daxd_fault_request_count_total{operation="PutItem"} 1.0' in text
    assert 'daxd_request_latency_seconds_bucket{le="0.00025",operation="GetItem"} 1.0' in text
    assert 'daxd_request_latency_seconds_bucket{le="+Inf",operation="GetItem"} 2.0' in text
    assert 'daxd_request_latency_seconds_count{operation="GetItem"} 2.0' in text
    assert metrics.total("daxd_item_cache_hits") == 2
    assert metrics.value("daxd_total_request_count_total", operation="PutItem") == 2
