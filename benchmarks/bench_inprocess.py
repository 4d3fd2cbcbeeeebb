"""In-process accelerator vs plain boto3, same run, against DynamoDB Local.

Run: ``.venv/bin/python -m benchmarks.bench_inprocess``. Starts its own DynamoDB
Local, loads a ~1 KB item and a 10-item partition, and prints a Markdown table
of p50/p99 (µs, median of 5 runs of 300 calls) for: client GetItem, client
Query of 10 items, resource ``Table.get_item``, each plain and accelerated
(cache hits), with the plain/accelerated ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

import daxd
from benchmarks.common import DynamoDBLocal, client, create_table, latency, make_item, warm_up
from tests.harness import CLIENT_CONFIG, CREDENTIALS


def load(direct: Any, table: str) -> None:
    direct.put_item(TableName=table, Item=make_item("user#1"))
    for sk in range(10):
        direct.put_item(TableName=table, Item=make_item("q10", sk))


def cases(endpoint: str, table: str) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    plain = client(endpoint)
    fast = daxd.accelerate(client(endpoint))
    plain_resource = boto3.resource("dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG, **CREDENTIALS)
    fast_table = daxd.accelerate(boto3.resource("dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG,
                                                **CREDENTIALS)).Table(table)
    plain_table = plain_resource.Table(table)
    key = {"pk": {"S": "user#1"}, "sk": {"N": "0"}}
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "q10"}}}
    python_key = {"pk": "user#1", "sk": 0}
    return [
        ("client GetItem (1 KB)", lambda: plain.get_item(TableName=table, Key=key),
         lambda: fast.get_item(TableName=table, Key=key)),
        ("client Query (10 x 1 KB)", lambda: plain.query(**query), lambda: fast.query(**query)),
        ("resource Table.get_item (1 KB)", lambda: plain_table.get_item(Key=python_key),
         lambda: fast_table.get_item(Key=python_key)),
    ]


def main() -> None:
    ddl = DynamoDBLocal()
    try:
        direct = client(ddl.endpoint)
        table = create_table(direct)
        load(direct, table)
        warm_up(ddl.port, table)
        print("| path | plain boto3 p50 / p99 (µs) | accelerated hit p50 / p99 (µs) | p50 ratio |")
        print("|---|---|---|---|")
        for name, plain_call, fast_call in cases(ddl.endpoint, table):
            plain_p50, plain_p99 = latency(plain_call)
            fast_p50, fast_p99 = latency(fast_call, calls=3000, warmup=500)
            print(f"| {name} | {plain_p50:.0f} / {plain_p99:.0f} | {fast_p50:.1f} / {fast_p99:.1f} "
                  f"| {plain_p50 / fast_p50:.0f}x |")
    finally:
        ddl.stop()


if __name__ == "__main__":
    main()
