"""The cache's byte accounting tracks the memory it really holds (within 30%)."""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from daxd.accelerator import Accelerator, CacheSettings
from daxd.drivers import run_plan_sync


def item(i: int) -> dict[str, object]:
    return {"pk": {"S": f"user#{i:06d}"}, "sk": {"N": "0"}, "n": {"N": "12.5"}, "bio": {"S": "x" * 900},
            "tags": {"SS": ["a", "b"]}, "m": {"M": {"k": {"L": [{"N": "1"}, {"BOOL": True}]}}}}


def test_accounted_bytes_are_within_30_percent_of_traced_growth() -> None:
    count = 3000
    acc = Accelerator(CacheSettings(cache_size=1 << 30, item_ttl=0))
    bodies = [b'{"Item":' + orjson.dumps(item(i)) + b"}" for i in range(count)]
    requests = [{"TableName": "t", "Key": {"pk": {"S": f"user#{i:06d}"}, "sk": {"N": "0"}}} for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for request, body in zip(requests, bodies, strict=True):
            run_plan_sync(acc.plan("GetItem", request), lambda _call, body=body: body)  # type: ignore[misc]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(acc.store) == count
    assert 0.7 <= acc.store.bytes / grown <= 1.3, (acc.store.bytes, grown)
