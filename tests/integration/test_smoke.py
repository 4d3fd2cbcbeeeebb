"""The walking skeleton: boto3 -> daxd -> DynamoDB Local, a hit served from memory."""

from __future__ import annotations

from typing import Any

from tests.harness import DaxdNode


def test_get_item_is_cached_and_bypass_write_stays_invisible(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    api.put_item(TableName=table, Item={**key, "v": {"S": "one"}})
    assert api.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "one"}
    ddb.put_item(TableName=table, Item={**key, "v": {"S": "bypass"}})  # straight to DynamoDB, behind daxd's back
    assert api.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "one"}  # served from the cache
    assert api.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["v"] == {"S": "bypass"}
