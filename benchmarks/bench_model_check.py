"""Micro-benchmark: what checking a request against DynamoDB's API model costs the cache's hit paths.

Every plan checks its request (``daxd.model.requests.check_request``) before any
cache policy reads it. This measures, in one process and alternating so both
see the same machine, a cached Query's plan and a cached GetItem answered by
plan (the path of a request with ReturnConsumedCapacity; the front ends'
GetItem fast path checks only a body it has not seen) with the check and with
it replaced by a no-op; and the check alone for a GetItem, a Query and a
20-attribute PutItem. CPU time, median of 7 runs.

Run: ``.venv/bin/python -m benchmarks.bench_model_check``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

import daxd.accelerator as accelerator_module
from daxd.accelerator import Accelerator
from daxd.drivers import run_plan_sync, step
from daxd.messages import Call
from daxd.model.requests import check_request

DESCRIBE = orjson.dumps({"Table": {
    "TableName": "bench", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}})
QUERY = {"TableName": "bench", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "u1"}}}
GET = {"TableName": "bench", "Key": {"pk": {"S": "u1"}}, "ReturnConsumedCapacity": "TOTAL"}
PUT = {"TableName": "bench", "Item": {"pk": {"S": "u1"}, **{f"a{i}": {"S": "x" * 20} for i in range(18)},
                                      "n": {"N": "1.5"}, "m": {"M": {"l": {"L": [{"N": "1"}, {"BOOL": True}]}}}}}


def upstream(call: Call) -> bytes:
    if call.operation == "DescribeTable":
        return DESCRIBE
    return b'{"Items":[],"Count":0}' if call.operation == "Query" else b'{"Item":{"pk":{"S":"u1"}}}'


def median_us(fn: Callable[[], object], number: int = 20000, repeats: int = 7) -> float:
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            fn()
        runs.append((time.process_time() - start) / number * 1e6)
    return statistics.median(runs)


def hit_plans() -> dict[str, tuple[float, float, float]]:
    """(with the check, without, with the body already checked) µs per hit plan."""
    acc = Accelerator()
    for operation, request in (("Query", QUERY), ("GetItem", GET)):
        run_plan_sync(acc.plan(operation, request), upstream)
    results: dict[str, tuple[float, float, float]] = {}
    for operation, request in (("Query", QUERY), ("GetItem", GET)):
        def plan(op: str = operation, req: dict[str, Any] = request) -> object:
            return step(acc.plan(op, req))
        timings: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):
            for checked in (True, False):
                accelerator_module.check_request = check_request if checked else (lambda op, req: None)
                timings[checked].append(median_us(plan, number=10000, repeats=3))
        accelerator_module.check_request = check_request
        raw = orjson.dumps(request)  # as the HTTP front passes it: a repeated body is not checked again

        def plan_raw(op: str = operation, req: dict[str, Any] = request, body: bytes = raw) -> object:
            return step(acc.plan(op, req, body))
        remembered = median_us(plan_raw, number=10000, repeats=3)
        results[operation] = (statistics.median(timings[True]), statistics.median(timings[False]), remembered)
    return results


def main() -> None:
    for operation, request in (("GetItem", GET), ("Query", QUERY), ("PutItem", PUT)):
        check_request(operation, request)
        print(f"check_request {operation:8s} {median_us(lambda o=operation, r=request: check_request(o, r)):7.2f} µs")
    for operation, (checked, unchecked, remembered) in hit_plans().items():
        print(f"{operation} hit plan: {checked:6.2f} µs with the check, {unchecked:6.2f} µs without "
              f"({checked / unchecked:.2f}x), {remembered:6.2f} µs for a body already checked "
              f"({remembered / unchecked:.2f}x)")


if __name__ == "__main__":
    main()
