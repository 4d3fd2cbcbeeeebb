"""``streams=True``: writes made by other processes reach the in-process cache through DynamoDB Streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.harness import create_table
from tests.inprocess.conftest import key


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout}s")


def test_bypass_writes_reach_the_cache_through_the_stream(accelerate: Callable[..., Any], ddb: Any) -> None:
    table = create_table(ddb, stream=True)
    api = accelerate(streams=True)
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "mine"}  # cached; the tailer starts
    time.sleep(1.5)  # the tailer discovers the table and opens its shards at LATEST
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    eventually(lambda: api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"})
    ddb.delete_item(TableName=table, Key=key())
    eventually(lambda: "Item" not in api.get_item(TableName=table, Key=key()))
    assert api.daxd_stats()["misses"] <= 2  # the new values came from the stream, not from refills


def test_without_streams_the_bypass_write_stays_invisible(accelerate: Callable[..., Any], ddb: Any) -> None:
    table = create_table(ddb, stream=True)
    api = accelerate()
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    api.get_item(TableName=table, Key=key())
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    time.sleep(1.0)
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "mine"}
