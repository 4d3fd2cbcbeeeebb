"""``daxd_stats()``: the node's cache metrics, summed over tables, as plain numbers."""

from __future__ import annotations

from typing import Any

from daxd.inprocess.driver import ThreadedDriver


def _total(counter: Any) -> int:
    """A labelled prometheus Counter summed over its labels."""
    return int(sum(sample.value for metric in counter.collect() for sample in metric.samples
                   if sample.name.endswith("_total")))


def stats(driver: ThreadedDriver) -> dict[str, int]:
    metrics = driver.accelerator.metrics
    counts = {
        "item_hits": _total(metrics.item_hits), "item_misses": _total(metrics.item_misses),
        "query_hits": _total(metrics.query_hits), "query_misses": _total(metrics.query_misses),
        "scan_hits": _total(metrics.scan_hits), "scan_misses": _total(metrics.scan_misses),
    }
    counts["hits"] = counts["item_hits"] + counts["query_hits"] + counts["scan_hits"]
    counts["misses"] = counts["item_misses"] + counts["query_misses"] + counts["scan_misses"]
    with driver.lock:
        store = driver.accelerator.store
        counts.update(evictions=driver.evictions, evicted_bytes=store.evicted_bytes, bytes=store.bytes,
                      entries=len(store), max_bytes=store.max_bytes)
    return counts
