"""Memory per cached 1 KB item, and how well the cache's byte accounting tracks it.

    .venv/bin/python -m benchmarks.bench_memory [--items 100000]

Fills a real Accelerator (the node's cache engine) with GetItem misses
answered by scripted DynamoDB responses, then compares the process's RSS
growth with the bytes the cache accounts for. The issue's bound: ≤ 3 KB of
RSS per item whose DynamoDB JSON is 1 KB, and accounted bytes within 30% of
the measured growth.
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import orjson

from benchmarks.common import make_item
from daxd.accelerator import Accelerator, CacheSettings
from daxd.drivers import run_plan_sync
from daxd.messages import Call


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    count = parser.parse_args().items
    acc = Accelerator(CacheSettings(cache_size=8 << 30, item_ttl=0))
    item_json = orjson.dumps(make_item("user#000000"))
    bodies = [b'{"Item":' + orjson.dumps(make_item(f"user#{i:06d}")) + b"}" for i in range(count)]
    requests = [{"TableName": "PerfTab", "Key": {"pk": {"S": f"user#{i:06d}"}, "sk": {"N": "0"}}} for i in range(count)]
    gc.collect()
    before = rss()
    for request, body in zip(requests, bodies, strict=True):
        run_plan_sync(acc.plan("GetItem", request), lambda _call, body=body: body)  # type: ignore[misc]
    del bodies
    gc.collect()
    grown = rss() - before
    assert len(acc.store) == count
    hit = run_plan_sync(acc.plan("GetItem", requests[0]), lambda call: b"")  # must be a hit: no call
    assert hit.data["Item"]["pk"] == {"S": "user#000000"}
    print(f"items: {count:,}; item DynamoDB JSON: {len(item_json)} B")
    print(f"RSS growth: {grown / count:,.0f} B/item (target ≤ 3,072)")
    print(f"accounted:  {acc.store.bytes / count:,.0f} B/item; accounted/measured = {acc.store.bytes / grown:.2f} "
          f"(target 0.70-1.30)")
    _ = Call  # the plan's only upstream type, imported for readers


if __name__ == "__main__":
    main()
