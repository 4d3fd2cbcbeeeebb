"""``daxd_stats()``: the node's cache metrics, summed over tables, as plain numbers."""

from __future__ import annotations

from daxd.inprocess.driver import ThreadedDriver


def stats(driver: ThreadedDriver) -> dict[str, int]:
    metrics = driver.accelerator.metrics
    counts = {f"{kind}_{outcome}": int(metrics.total(f"daxd_{kind}_cache_{outcome}"))
              for kind in ("item", "query", "scan") for outcome in ("hits", "misses")}
    counts["hits"] = counts["item_hits"] + counts["query_hits"] + counts["scan_hits"]
    counts["misses"] = counts["item_misses"] + counts["query_misses"] + counts["scan_misses"]
    with driver.lock:
        store = driver.accelerator.store
        counts.update(evictions=driver.evictions, evicted_bytes=store.evicted_bytes, bytes=store.bytes,
                      entries=len(store), max_bytes=store.max_bytes)
    return counts
