"""The node's admin answers made from its workers' (daxd/workers_merge.py), without servers."""

from __future__ import annotations

import orjson
from prometheus_client.parser import text_string_to_metric_families

from daxd.observability import LATENCY_BUCKETS, Metrics
from daxd.stats import Sample, latency, merge_samples, series
from daxd.workers_merge import DOWN, SERVING, STARTING, MetricsMerger, WorkerAnswer, merge_health, merge_ready


def worker_metrics(gets: int, *, up: float = 1.0, cache_bytes: int = 0) -> bytes:
    metrics = Metrics()
    for _ in range(gets):
        metrics.request("GetItem", 0.0003)
        metrics.item_hit("T")
    metrics.gauges["daxd_upstream_up"] = ("up", lambda: up)
    metrics.gauges["daxd_cache_capacity_bytes"] = ("capacity", lambda: cache_bytes)
    return metrics.render()


def values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_counters_and_histograms_are_summed_and_gauges_follow_their_rule() -> None:
    merged = values(MetricsMerger().merge([
        WorkerAnswer(0, 100, SERVING, 200, worker_metrics(3, up=1.0, cache_bytes=10)),
        WorkerAnswer(1, 101, SERVING, 200, worker_metrics(4, up=0.0, cache_bytes=5))]))
    assert merged[("daxd_total_request_count_total", (("operation", "GetItem"),))] == 7
    assert merged[("daxd_item_cache_hits_total", (("table", "T"),))] == 7
    assert merged[("daxd_request_latency_seconds_count", (("operation", "GetItem"),))] == 7
    assert merged[("daxd_request_latency_seconds_bucket", (("le", "0.0005"), ("operation", "GetItem")))] == 7
    assert merged[("daxd_upstream_up", ())] == 0.0  # min: one worker cannot reach DynamoDB
    assert merged[("daxd_cache_capacity_bytes", ())] == 15  # sum: the node's L1 capacity
    assert [value for (name, _), value in merged.items() if name == "daxd_build_info"] == [1.0]  # max, not 2
    assert not any(name.endswith("_created") for name, _ in merged)


def test_counters_never_go_back_when_a_worker_is_down_or_restarted() -> None:
    merger = MetricsMerger()
    key = ("daxd_total_request_count_total", (("operation", "GetItem"),))
    first = values(merger.merge([WorkerAnswer(0, 100, SERVING, 200, worker_metrics(5)),
                                 WorkerAnswer(1, 101, SERVING, 200, worker_metrics(2))]))
    assert first[key] == 7
    down = values(merger.merge([WorkerAnswer(0, None, DOWN), WorkerAnswer(1, 101, SERVING, 200, worker_metrics(3))]))
    assert down[key] == 8  # worker 0 counts with its last figures while it is away
    back = values(merger.merge([WorkerAnswer(0, 102, SERVING, 200, worker_metrics(1)),
                                WorkerAnswer(1, 101, SERVING, 200, worker_metrics(3))]))
    assert back[key] == 5 + 1 + 3  # the old process's 5 retired, the new one counts from 0
    garbage = values(merger.merge([WorkerAnswer(0, 102, SERVING, 200, b"not prometheus {"),
                                   WorkerAnswer(1, 101, SERVING, 200, worker_metrics(3))]))
    assert garbage[key] == 9


def test_health_and_readiness_report_every_worker() -> None:
    ok_health, ok_ready = b'{"status":"ok"}', b'{"ready":true,"reason":"ok"}'
    status, body = merge_health([WorkerAnswer(0, 1, SERVING, 200, ok_health), WorkerAnswer(1, None, DOWN)])
    assert status == 200 and [w["status"] for w in body["workers"]] == ["ok", "restarting"]
    status, body = merge_health([WorkerAnswer(0, 1, SERVING, error="TimeoutError"),
                                 WorkerAnswer(1, 2, SERVING, 200, ok_health)])
    assert status == 503 and "TimeoutError" in body["workers"][0]["status"]
    assert merge_health([WorkerAnswer(0, None, DOWN), WorkerAnswer(1, 2, STARTING)])[0] == 503

    status, body = merge_ready([WorkerAnswer(0, 1, SERVING, 200, ok_ready), WorkerAnswer(1, None, DOWN)])
    assert status == 200 and body["reason"] == "worker 1: restarting"
    degraded = orjson.dumps({"ready": True, "reason": "degraded: shared tier down: refused"})
    status, body = merge_ready([WorkerAnswer(0, 1, SERVING, 200, degraded), WorkerAnswer(1, 2, SERVING, 200, degraded)])
    assert status == 200 and body["reason"] == "degraded: shared tier down: refused"
    refusing = orjson.dumps({"ready": False, "reason": "upstream X is not answering"})
    status, body = merge_ready([WorkerAnswer(0, 1, SERVING, 200, ok_ready), WorkerAnswer(1, 2, SERVING, 503, refusing)])
    assert status == 503 and body["reason"] == "worker 1: upstream X is not answering"


def _sample(at: float, requests: float, fast: float) -> Sample:
    buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
    buckets[1] = fast
    return Sample(at=at, hits=requests, misses=0, requests=requests, errors=0, evicted_bytes=0, cache_bytes=100,
                  latency={"GetItem": tuple(buckets)})


def test_samples_of_workers_on_different_phases_merge_into_the_node_rates() -> None:
    a = [_sample(10.0 + k, 100.0 * k, 100.0 * k) for k in range(6)]  # 100 requests/s
    b = [_sample(10.4 + k, 50.0 * k, 50.0 * k) for k in range(6)]  # 50 requests/s, sampled 0.4 s later
    points = series(merge_samples([a, b], 1.0))
    assert points and all(abs(p["rps"] - 150) < 1e-6 for p in points[1:]), points
    assert points[-1]["cache_bytes"] == 200
    assert latency(merge_samples([a, b], 1.0))["GetItem"]["count"] > 0
    assert merge_samples([], 1.0) == []
