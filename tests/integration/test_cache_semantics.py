"""The caching contract (docs/consistency.md) through boto3 -> daxd -> DynamoDB Local.

"Cached" is proven by a bypass write (straight to DynamoDB Local) that a read
through daxd does not see; "invalidated" by a read through daxd that does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.harness import DaxdNode, create_table, lists_table


def key(pk: str = "a", sk: int = 1) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def test_item_ttl_expires_cached_entries(start_node: Any, ddb: Any, table: str) -> None:
    node = start_node("--item-ttl", "0.5")
    api = node.client()
    api.put_item(TableName=table, Item={**key(), "v": {"S": "one"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "one"}
    time.sleep(0.6)
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}


def test_not_found_is_cached_until_written_through_daxd(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    assert "Item" not in api.get_item(TableName=table, Key=key())
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert "Item" not in api.get_item(TableName=table, Key=key())  # negative entry
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "mine"}


def test_reads_through_daxd_equal_dynamodb_for_normalized_numbers(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    item = {**key(sk=7), "n": {"N": "1.50"}, "e": {"N": "2.5E-3"}, "z": {"N": "-0"}, "ns": {"NS": ["1e3", "007"]}}
    api.put_item(TableName=table, Item=item)
    cached = api.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "7.0"}})["Item"]
    direct = ddb.get_item(TableName=table, Key=key(sk=7), ConsistentRead=True)["Item"]
    assert {k: v for k, v in cached.items() if k != "ns"} == {k: v for k, v in direct.items() if k != "ns"}
    assert set(cached["ns"]["NS"]) == set(direct["ns"]["NS"]) == {"1000", "7"}


def test_update_item_caches_the_new_image_and_answers_as_asked(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={**key(), "n": {"N": "1"}})
    response = api.update_item(TableName=table, Key=key(), UpdateExpression="ADD n :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})
    assert "Attributes" not in response
    ddb.put_item(TableName=table, Item={**key(), "n": {"N": "100"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["n"] == {"N": "2"}  # the cached ALL_NEW image
    old = api.update_item(TableName=table, Key=key(), UpdateExpression="SET s = :s", ReturnValues="UPDATED_OLD",
                          ExpressionAttributeValues={":s": {"S": "x"}})
    assert old.get("Attributes", {}) == {}
    assert api.get_item(TableName=table, Key=key())["Item"] == ddb.get_item(TableName=table, Key=key())["Item"]


def test_delete_leaves_a_negative_entry(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item=key())
    api.delete_item(TableName=table, Key=key())
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert "Item" not in api.get_item(TableName=table, Key=key())


def test_failed_condition_evicts_the_item(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    with pytest.raises(ClientError) as failed:
        api.put_item(TableName=table, Item=key(), ConditionExpression="attribute_not_exists(pk)")
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}


def test_projection_entries_go_when_the_key_is_written(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={**key(), "a": {"S": "1"}, "b": {"S": "1"}})
    projected = api.get_item(TableName=table, Key=key(), ProjectionExpression="#a", ExpressionAttributeNames={"#a": "a"})
    assert projected["Item"] == {"a": {"S": "1"}}
    api.put_item(TableName=table, Item={**key(), "a": {"S": "2"}})
    again = api.get_item(TableName=table, Key=key(), ProjectionExpression="#a", ExpressionAttributeNames={"#a": "a"})
    assert again["Item"] == {"a": {"S": "2"}}


def test_consistent_read_is_never_served_from_cache(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key(), ConsistentRead=True)["Item"]["v"] == {"S": "bypass"}


def test_query_is_cached_and_invalidated_by_a_write_to_its_partition(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    for sk in range(3):
        api.put_item(TableName=table, Item=key("p", sk))
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}
    assert api.query(**query)["Count"] == 3
    ddb.put_item(TableName=table, Item=key("p", 10))
    assert api.query(**query)["Count"] == 3  # cached: the bypass write is not seen
    api.put_item(TableName=table, Item=key("other", 1))
    assert api.query(**query)["Count"] == 3  # another partition: still cached
    api.put_item(TableName=table, Item=key("p", 11))
    assert api.query(**query)["Count"] == 5  # its partition: invalidated
    cached, direct = api.query(**query), ddb.query(**query)
    assert {k: v for k, v in cached.items() if k != "ResponseMetadata"} == {
        k: v for k, v in direct.items() if k != "ResponseMetadata"}


def test_paged_query_and_scan_pages_are_cached_separately(node: DaxdNode, table: str) -> None:
    api = node.client()
    for sk in range(5):
        api.put_item(TableName=table, Item=key("pg", sk))
    paginator = api.get_paginator("query")
    pages = list(paginator.paginate(TableName=table, KeyConditionExpression="pk = :p",
                                    ExpressionAttributeValues={":p": {"S": "pg"}}, Limit=2))
    again = list(paginator.paginate(TableName=table, KeyConditionExpression="pk = :p",
                                    ExpressionAttributeValues={":p": {"S": "pg"}}, Limit=2))
    assert [p["Items"] for p in pages] == [p["Items"] for p in again]
    assert sum(p["Count"] for p in pages) == 5


def test_scan_and_index_queries_are_invalidated_by_any_write(node: DaxdNode, ddb: Any) -> None:
    table = create_table(ddb, gsi=True)
    api = node.client()
    api.put_item(TableName=table, Item={**key("x"), "g": {"S": "G"}})
    by_g = {"TableName": table, "IndexName": "by-g", "KeyConditionExpression": "g = :g",
            "ExpressionAttributeValues": {":g": {"S": "G"}}}
    assert api.scan(TableName=table)["Count"] == 1 and api.query(**by_g)["Count"] == 1
    ddb.put_item(TableName=table, Item={**key("y"), "g": {"S": "G"}})
    assert api.scan(TableName=table)["Count"] == 1 and api.query(**by_g)["Count"] == 1
    api.put_item(TableName=table, Item={**key("z"), "g": {"S": "G"}})
    assert api.scan(TableName=table)["Count"] == 3 and api.query(**by_g)["Count"] == 3


def test_batch_get_mixes_hits_misses_and_not_found(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={**key("b", 0), "v": {"S": "cached"}})
    ddb.put_item(TableName=table, Item={**key("b", 1), "v": {"S": "direct"}})
    keys = [key("b", i) for i in range(3)]
    response = api.batch_get_item(RequestItems={table: {"Keys": keys}})
    values = sorted(item["v"]["S"] for item in response["Responses"][table])
    assert values == ["cached", "direct"] and response["UnprocessedKeys"] == {}
    ddb.put_item(TableName=table, Item={**key("b", 2), "v": {"S": "late"}})
    again = api.batch_get_item(RequestItems={table: {"Keys": keys}})
    assert sorted(i["v"]["S"] for i in again["Responses"][table]) == ["cached", "direct"]  # key 2: negative entry


def test_batch_write_and_transactions_update_the_cache(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    api.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {**key("w", 1), "v": {"N": "1.0"}}}},
                                                {"PutRequest": {"Item": key("w", 2)}}]})
    api.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key("w", 2)}}]})
    ddb.put_item(TableName=table, Item={**key("w", 1), "v": {"N": "99"}})
    ddb.put_item(TableName=table, Item={**key("w", 2), "v": {"N": "99"}})
    assert api.get_item(TableName=table, Key=key("w", 1))["Item"]["v"] == {"N": "1"}
    assert "Item" not in api.get_item(TableName=table, Key=key("w", 2))
    api.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {**key("w", 3), "v": {"S": "t"}}}},
        {"Delete": {"TableName": table, "Key": key("w", 1)}}])
    assert api.get_item(TableName=table, Key=key("w", 3))["Item"]["v"] == {"S": "t"}
    assert "Item" not in api.get_item(TableName=table, Key=key("w", 1))
    with pytest.raises(ClientError) as cancelled:
        api.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": table, "Key": key("w", 3), "ConditionExpression": "attribute_not_exists(v)"}}])
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "CancellationReasons" in cancelled.value.response


def test_consumed_capacity_of_a_hit_is_zero(node: DaxdNode, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item=key())
    hit = api.get_item(TableName=table, Key=key(), ReturnConsumedCapacity="TOTAL")
    assert hit["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 0.0}


def test_control_plane_and_partiql_are_forwarded_and_flush(node: DaxdNode, ddb: Any, table: str) -> None:
    api = node.client()
    assert api.describe_table(TableName=table)["Table"]["TableName"] == table
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    api.execute_statement(Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'zz', 'sk': 1}}")
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}  # flushed
    api.delete_table(TableName=table)
    with pytest.raises(ClientError) as gone:
        api.get_item(TableName=table, Key=key())
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_read_only_control_plane_refuses_mutations(start_node: Any, ddb: Any, table: str) -> None:
    api = start_node("--control-plane", "read-only").client()
    with pytest.raises(ClientError) as refused:
        api.delete_table(TableName=table)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert lists_table(api, table)
