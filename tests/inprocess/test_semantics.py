"""The node's caching contract, through ``daxd.accelerate(boto3 client)`` against DynamoDB Local.

"Cached" is proven by a bypass write (straight to DynamoDB Local) that a read
through the accelerated client does not see; "invalidated" by one that does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.harness import create_table
from tests.inprocess.conftest import key, strip


def test_item_ttl_expires_cached_entries(accelerate: Any, ddb: Any, table: str) -> None:
    api = accelerate(item_ttl=0.5)
    api.put_item(TableName=table, Item={**key(), "v": {"S": "one"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "one"}
    time.sleep(0.6)
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}


def test_a_miss_is_cached_and_read_your_writes(api: Any, ddb: Any, table: str) -> None:
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "first"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "first"}
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "first"}
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "mine"}
    assert api.daxd_stats()["item_hits"] == 2


def test_not_found_is_cached_until_written_through_the_cache(api: Any, ddb: Any, table: str) -> None:
    assert "Item" not in api.get_item(TableName=table, Key=key())
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert "Item" not in api.get_item(TableName=table, Key=key())
    api.delete_item(TableName=table, Key=key())
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert "Item" not in api.get_item(TableName=table, Key=key())  # the delete left a negative entry


def test_update_item_caches_the_new_image_and_answers_as_asked(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "n": {"N": "1"}})
    response = api.update_item(TableName=table, Key=key(), UpdateExpression="ADD n :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})
    assert "Attributes" not in response and response["ResponseMetadata"]["HTTPStatusCode"] == 200
    ddb.put_item(TableName=table, Item={**key(), "n": {"N": "100"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["n"] == {"N": "2"}
    new = api.update_item(TableName=table, Key=key(), UpdateExpression="SET s = :s", ReturnValues="ALL_NEW",
                          ExpressionAttributeValues={":s": {"S": "x"}})
    assert new["Attributes"] == api.get_item(TableName=table, Key=key())["Item"]


def test_failed_condition_raises_boto3s_error_and_evicts(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    with pytest.raises(api.exceptions.ConditionalCheckFailedException) as failed:
        api.put_item(TableName=table, Item=key(), ConditionExpression="attribute_not_exists(pk)")
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert failed.value.operation_name == "PutItem"
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}


def test_missing_table_raises_boto3s_resource_not_found(api: Any) -> None:
    with pytest.raises(api.exceptions.ResourceNotFoundException):
        api.get_item(TableName="no-such-table", Key=key())
    with pytest.raises(ClientError):
        api.put_item(TableName="no-such-table", Item=key())


def test_consistent_read_and_transact_get_pass_through(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key(), ConsistentRead=True)["Item"]["v"] == {"S": "bypass"}
    got = api.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key()}}])
    assert got["Responses"][0]["Item"]["v"] == {"S": "bypass"}


def test_query_is_cached_and_invalidated_by_a_write_to_its_partition(api: Any, ddb: Any, table: str) -> None:
    for sk in range(3):
        api.put_item(TableName=table, Item=key("p", sk))
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}
    assert api.query(**query)["Count"] == 3
    ddb.put_item(TableName=table, Item=key("p", 10))
    assert api.query(**query)["Count"] == 3
    api.put_item(TableName=table, Item=key("other", 1))
    assert api.query(**query)["Count"] == 3
    api.put_item(TableName=table, Item=key("p", 11))
    assert api.query(**query)["Count"] == 5
    assert strip(api.query(**query)) == strip(ddb.query(**query))


def test_scan_and_index_queries_are_invalidated_by_any_write(api: Any, ddb: Any) -> None:
    table = create_table(ddb, gsi=True)
    api.put_item(TableName=table, Item={**key("x"), "g": {"S": "G"}})
    by_g = {"TableName": table, "IndexName": "by-g", "KeyConditionExpression": "g = :g",
            "ExpressionAttributeValues": {":g": {"S": "G"}}}
    assert api.scan(TableName=table)["Count"] == 1 and api.query(**by_g)["Count"] == 1
    ddb.put_item(TableName=table, Item={**key("y"), "g": {"S": "G"}})
    assert api.scan(TableName=table)["Count"] == 1 and api.query(**by_g)["Count"] == 1
    api.put_item(TableName=table, Item={**key("z"), "g": {"S": "G"}})
    assert api.scan(TableName=table)["Count"] == 3 and api.query(**by_g)["Count"] == 3


def test_batch_get_mixes_hits_misses_and_not_found(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key("b", 0), "v": {"S": "cached"}})
    ddb.put_item(TableName=table, Item={**key("b", 1), "v": {"S": "direct"}})
    keys = [key("b", i) for i in range(3)]
    response = api.batch_get_item(RequestItems={table: {"Keys": keys}})
    assert sorted(i["v"]["S"] for i in response["Responses"][table]) == ["cached", "direct"]
    assert response["UnprocessedKeys"] == {}
    ddb.put_item(TableName=table, Item={**key("b", 2), "v": {"S": "late"}})
    again = api.batch_get_item(RequestItems={table: {"Keys": keys}})
    assert sorted(i["v"]["S"] for i in again["Responses"][table]) == ["cached", "direct"]


def test_batch_write_and_transactions_update_the_cache(api: Any, ddb: Any, table: str) -> None:
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
    with pytest.raises(api.exceptions.TransactionCanceledException) as cancelled:
        api.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": table, "Key": key("w", 3), "ConditionExpression": "attribute_not_exists(v)"}}])
    assert "CancellationReasons" in cancelled.value.response


def test_consumed_capacity_of_a_hit_is_zero(api: Any, table: str) -> None:
    api.put_item(TableName=table, Item=key())
    hit = api.get_item(TableName=table, Key=key(), ReturnConsumedCapacity="TOTAL")
    assert hit["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 0.0}


def test_only_the_chosen_tables_are_cached(accelerate: Any, ddb: Any, table: str) -> None:
    other = create_table(ddb)
    api = accelerate(tables=[table])
    for name in (table, other):
        api.put_item(TableName=name, Item={**key(), "v": {"S": "mine"}})
        ddb.put_item(TableName=name, Item={**key(), "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "mine"}
    assert api.get_item(TableName=other, Key=key())["Item"]["v"] == {"S": "bypass"}


def test_the_cache_is_bounded_by_bytes(accelerate: Any, table: str) -> None:
    api = accelerate(cache_size=4000)
    for sk in range(20):
        api.put_item(TableName=table, Item={**key("lru", sk), "v": {"S": "x" * 300}})
    stats = api.daxd_stats()
    assert stats["bytes"] <= 4000 and stats["evictions"] >= 10 and stats["evicted_bytes"] > 0
    assert api.get_item(TableName=table, Key=key("lru", 0))["Item"]["v"] == {"S": "x" * 300}


def test_control_plane_and_partiql_are_forwarded_and_flush(api: Any, ddb: Any, table: str) -> None:
    described = api.describe_table(TableName=table)
    assert described["Table"]["TableName"] == table
    assert hasattr(described["Table"]["CreationDateTime"], "year")  # boto3's datetime, untouched
    api.put_item(TableName=table, Item={**key(), "v": {"S": "mine"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    api.execute_statement(Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'zz', 'sk': 1}}")
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "bypass"}
