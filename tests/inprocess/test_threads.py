"""One accelerated client shared by threads, as boto3 clients are."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import daxd
from tests.harness import client
from tests.inprocess.conftest import canon, key

THREADS = 8


def test_concurrent_misses_for_one_key_cost_one_upstream_call(dynamodb_local: Any, ddb: Any, table: str) -> None:
    raw = client(dynamodb_local.endpoint)
    calls: list[str] = []

    def slow_get(**_: Any) -> None:  # keeps the first miss in flight while the others arrive
        calls.append("GetItem")
        time.sleep(0.3)

    raw.meta.events.register("before-send.dynamodb.GetItem", slow_get)
    api = daxd.accelerate(raw)
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "x"}})
    barrier = threading.Barrier(THREADS)

    def read(_: int) -> Any:
        barrier.wait()
        return api.get_item(TableName=table, Key=key())["Item"]

    with ThreadPoolExecutor(THREADS) as pool:
        items = list(pool.map(read, range(THREADS)))
    assert calls == ["GetItem"]
    assert all(item == items[0] for item in items)
    items[0]["v"] = {"S": "changed"}
    assert items[1]["v"] == {"S": "x"}  # each caller has its own copy


def test_concurrent_upstream_errors_reach_every_waiter(dynamodb_local: Any) -> None:
    raw = client(dynamodb_local.endpoint)
    raw.meta.events.register("before-send.dynamodb.GetItem", lambda **_: time.sleep(0.2))
    api = daxd.accelerate(raw)
    barrier = threading.Barrier(4)

    def read(_: int) -> str:
        barrier.wait()
        try:
            api.get_item(TableName="missing-table", Key=key())
        except api.exceptions.ResourceNotFoundException as exc:
            return str(exc.response["Error"]["Code"])
        return "no error"

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(read, range(4))) == ["ResourceNotFoundException"] * 4


def test_mixed_reads_and_writes_from_eight_threads_end_coherent(api: Any, ddb: Any, table: str) -> None:
    keys = [key(f"p{i % 3}", i) for i in range(12)]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(60):
                k = rng.choice(keys)
                action = rng.random()
                if action < 0.5:
                    api.get_item(TableName=table, Key=k)
                elif action < 0.6:
                    api.query(TableName=table, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": k["pk"]})
                elif action < 0.8:
                    api.put_item(TableName=table, Item={**k, "v": {"N": str(seed * 1000 + n)}})
                elif action < 0.9:
                    api.update_item(TableName=table, Key=k, UpdateExpression="ADD c :one",
                                    ExpressionAttributeValues={":one": {"N": "1"}})
                else:
                    api.delete_item(TableName=table, Key=k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for k in keys:  # every write went through the cache: it must agree with DynamoDB
        cached = api.get_item(TableName=table, Key=k)
        assert canon(cached) == canon(ddb.get_item(TableName=table, Key=k, ConsistentRead=True))
    for partition in ("p0", "p1", "p2"):
        query = {"TableName": table, "KeyConditionExpression": "pk = :p",
                 "ExpressionAttributeValues": {":p": {"S": partition}}}
        assert canon(api.query(**query)) == canon(ddb.query(**query, ConsistentRead=True))
