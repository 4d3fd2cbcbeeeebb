"""ConsumedCapacity reports the caller's read, not daxd's, against DynamoDB Local.

Right after a write through daxd, a miss on the written key is read with
ConsistentRead (read-your-writes); the caller asked for an eventually
consistent read and must be told what DynamoDB charges for that one, the same
figure DynamoDB reports when the same request is sent to it directly. A hit
reports zero units in DynamoDB's shape, BatchGetItem included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from amazondax import AmazonDaxClient

from tests.harness import DaxdNode, DynamoDBLocal, create_table

WINDOW = "600"  # every read in this module falls inside the consistent window of its write


@pytest.fixture(scope="module")
def window_node(dynamodb_local: DynamoDBLocal) -> Iterator[DaxdNode]:
    node = DaxdNode(dynamodb_local.endpoint, "--consistent-window", WINDOW)
    yield node
    node.stop()


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


def write_then_evict(api: Any, table: str, pk: str) -> None:
    """A write through daxd that leaves the key uncached (its image is unknown to daxd) but recently written."""
    api.put_item(TableName=table, Item={**key(pk), "v": {"S": "x" * 200}})
    api.update_item(TableName=table, Key=key(pk), UpdateExpression="SET w = :w",
                    ExpressionAttributeValues={":w": {"N": "1"}}, ReturnValues="UPDATED_NEW")


@pytest.mark.parametrize("mode", ["TOTAL", "INDEXES"])
def test_a_get_item_miss_after_a_write_reports_the_eventually_consistent_figure(
        window_node: DaxdNode, ddb: Any, mode: str) -> None:
    table = create_table(ddb)
    api = window_node.client()
    write_then_evict(api, table, "g")
    request = {"TableName": table, "Key": key("g"), "ReturnConsumedCapacity": mode}
    through = api.get_item(**request)
    direct = ddb.get_item(**request)
    assert through["Item"] == direct["Item"]
    assert through["ConsumedCapacity"] == direct["ConsumedCapacity"]
    assert direct["ConsumedCapacity"]["CapacityUnits"] == 0.5  # what an eventually consistent read costs
    strong = api.get_item(**request, ConsistentRead=True)  # the caller's own strong read is not halved
    assert strong["ConsumedCapacity"] == ddb.get_item(**request, ConsistentRead=True)["ConsumedCapacity"]
    hit = api.get_item(**request)
    zero = {"TableName": table, "CapacityUnits": 0.0, **({"Table": {"CapacityUnits": 0.0}} if mode == "INDEXES" else {})}
    assert hit["ConsumedCapacity"] == zero


def test_a_query_miss_after_a_write_reports_the_eventually_consistent_figure(window_node: DaxdNode, ddb: Any) -> None:
    table = create_table(ddb)
    api = window_node.client()
    write_then_evict(api, table, "q")
    request = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "q"}},
               "ReturnConsumedCapacity": "INDEXES"}
    through = api.query(**request)
    direct = ddb.query(**request)
    assert through["Items"] == direct["Items"]
    assert through["ConsumedCapacity"] == direct["ConsumedCapacity"]
    assert api.query(**request)["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 0.0,
                                                          "Table": {"CapacityUnits": 0.0}}


def test_batch_get_item_reports_capacity_per_table_from_cache_or_not(window_node: DaxdNode, ddb: Any) -> None:
    table, other = create_table(ddb), create_table(ddb)
    api = window_node.client()
    write_then_evict(api, table, "b")
    request = {"RequestItems": {table: {"Keys": [key("b")]}}, "ReturnConsumedCapacity": "TOTAL"}
    through = api.batch_get_item(**request)
    direct = ddb.batch_get_item(**request)
    assert through["Responses"] == direct["Responses"]
    assert through["ConsumedCapacity"] == direct["ConsumedCapacity"] == [{"TableName": table, "CapacityUnits": 0.5}]

    api.put_item(TableName=other, Item=key("o"))
    both = {"RequestItems": {table: {"Keys": [key("b")]}, other: {"Keys": [key("o")]}}, "ReturnConsumedCapacity": "TOTAL"}
    from_cache = api.batch_get_item(**both)  # both keys are cached now: DynamoDB is not asked
    assert sorted(from_cache["ConsumedCapacity"], key=lambda c: c["TableName"]) == sorted(
        [{"TableName": table, "CapacityUnits": 0.0}, {"TableName": other, "CapacityUnits": 0.0}],
        key=lambda c: c["TableName"])
    shaped = ddb.batch_get_item(**both)["ConsumedCapacity"]  # DynamoDB's shape: one entry per table
    assert sorted(c["TableName"] for c in shaped) == sorted(c["TableName"] for c in from_cache["ConsumedCapacity"])
    indexes = api.batch_get_item(**{**both, "ReturnConsumedCapacity": "INDEXES"})["ConsumedCapacity"]
    assert {"TableName": other, "CapacityUnits": 0.0, "Table": {"CapacityUnits": 0.0}} in indexes


def test_over_dax_a_miss_after_a_write_reports_the_eventually_consistent_figure(window_node: DaxdNode,
                                                                                 ddb: Any) -> None:
    table = create_table(ddb)
    write_then_evict(window_node.client(), table, "d")
    dax = AmazonDaxClient(endpoint_url=f"dax://127.0.0.1:{window_node.ports['dax']}",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-east-1")
    try:
        got = dax.get_item(TableName=table, Key=key("d"), ReturnConsumedCapacity="TOTAL")
    finally:
        dax.close()
    direct = ddb.get_item(TableName=table, Key=key("d"), ReturnConsumedCapacity="TOTAL")
    assert got["ConsumedCapacity"]["CapacityUnits"] == direct["ConsumedCapacity"]["CapacityUnits"] == 0.5
    assert got["ConsumedCapacity"]["TableName"] == table
