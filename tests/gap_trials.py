"""The four steps of issue 9, run as many concurrent trials on fresh tables.

Each trial: create a table with a stream and put ``v = 1`` straight into
DynamoDB; read it through every daxd node given (now cached there); ``delay``
seconds later put ``v = 2`` straight into DynamoDB; read through every node
every ``poll`` seconds (100 ms by default) until all of them answer ``v = 2``. The result is the seconds from
the bypass write's acknowledgement to the last node's first ``v = 2``, or None
if some node still answered ``v = 1`` after ``give_up`` seconds.

Used by the one-node and three-node integration tests and by
``benchmarks/bench_streams.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from tests.harness import CLIENT_CONFIG, CREDENTIALS, create_table

KEY = {"pk": {"S": "k"}}


def pooled(endpoint: str, size: int) -> Any:
    """A boto3 client shared by ``size`` threads (clients are thread-safe; creating them is not)."""
    config = CLIENT_CONFIG.merge(Config(max_pool_connections=size))
    return boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)


def _value(api: Any, table: str) -> str | None:
    item = api.get_item(TableName=table, Key=KEY).get("Item")
    return None if item is None else str(item["v"]["N"])


def trial(ddb: Any, nodes: Sequence[Any], table: str, delay: float, give_up: float,
          poll: float = 0.1) -> float | None:
    ddb.put_item(TableName=table, Item={**KEY, "v": {"N": "1"}})
    for api in nodes:
        assert _value(api, table) == "1"  # the table's first read through this node: now cached
    time.sleep(delay)
    ddb.put_item(TableName=table, Item={**KEY, "v": {"N": "2"}})
    written = time.monotonic()
    pending = list(nodes)
    while pending:
        pending = [api for api in pending if _value(api, table) != "2"]
        elapsed = time.monotonic() - written
        if pending and elapsed > give_up:
            return None
        if pending:
            time.sleep(poll)
    return time.monotonic() - written


def run_trials(ddb_endpoint: str, node_endpoints: Sequence[str], delays: Sequence[float],
               give_up: float, poll: float = 0.1) -> list[float | None]:
    """One trial per delay, all at once, each on its own fresh table; their results in order."""
    size = len(delays) + 2
    ddb = pooled(ddb_endpoint, size)
    nodes = [pooled(endpoint, size) for endpoint in node_endpoints]
    tables = [create_table(ddb, range_key=None, stream=True) for _ in delays]
    try:
        with ThreadPoolExecutor(len(delays)) as pool:
            return list(pool.map(lambda args: trial(ddb, nodes, *args, give_up, poll), zip(tables, delays, strict=True)))
    finally:
        for table in tables:
            ddb.delete_table(TableName=table)


def spread(count: int, longest: float) -> list[float]:
    """``count`` delays evenly from 0 to ``longest`` seconds."""
    return [longest * i / (count - 1) for i in range(count)]
