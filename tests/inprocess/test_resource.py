"""``daxd.accelerate(boto3.resource("dynamodb"))``: Table objects, Python types, Key/Attr conditions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary

from tests.harness import CLIENT_CONFIG, CREDENTIALS
from tests.inprocess.conftest import key


def test_table_reads_are_cached_and_writes_go_through(resource: Any, ddb: Any, table: str) -> None:
    t = resource.Table(table)
    t.put_item(Item={"pk": "a", "sk": 1, "n": Decimal("1.5"), "b": Binary(b"\x00"), "s": {"x", "y"}})
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "bypass"}})
    got = t.get_item(Key={"pk": "a", "sk": 1})["Item"]
    assert got == {"pk": "a", "sk": Decimal(1), "n": Decimal("1.5"), "b": Binary(b"\x00"), "s": {"x", "y"}}
    t.update_item(Key={"pk": "a", "sk": 1}, UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": "mine"})
    assert t.get_item(Key={"pk": "a", "sk": 1})["Item"]["v"] == "mine"
    assert resource.meta.client.daxd_stats()["item_hits"] == 2


def test_key_and_attr_conditions(resource: Any, ddb: Any, table: str) -> None:
    t = resource.Table(table)
    for sk in range(4):
        t.put_item(Item={"pk": "q", "sk": sk, "even": sk % 2 == 0})
    query = {"KeyConditionExpression": Key("pk").eq("q") & Key("sk").gte(1), "FilterExpression": Attr("even").eq(True)}
    assert [i["sk"] for i in t.query(**query)["Items"]] == [2]
    ddb.put_item(TableName=table, Item={"pk": {"S": "q"}, "sk": {"N": "6"}, "even": {"BOOL": True}})
    assert [i["sk"] for i in t.query(**query)["Items"]] == [2]  # cached
    t.put_item(Item={"pk": "q", "sk": 8, "even": True})
    assert [i["sk"] for i in t.query(**query)["Items"]] == [2, 6, 8]  # invalidated by a write to "q"
    assert t.scan(FilterExpression=Attr("sk").lt(2))["Count"] == 2


def test_batch_writer_and_meta_client_go_through_the_cache(resource: Any, ddb: Any, table: str) -> None:
    t = resource.Table(table)
    with t.batch_writer() as writer:
        for sk in range(3):
            writer.put_item(Item={"pk": "bw", "sk": sk, "v": "batched"})
    for sk in range(3):
        ddb.put_item(TableName=table, Item={**key("bw", sk), "v": {"S": "bypass"}})
    assert {t.get_item(Key={"pk": "bw", "sk": sk})["Item"]["v"] for sk in range(3)} == {"batched"}
    client = resource.meta.client
    client.put_item(TableName=table, Item={"pk": "mc", "sk": 1, "v": "python types"})  # like boto3's resource client
    ddb.put_item(TableName=table, Item={**key("mc"), "v": {"S": "bypass"}})
    assert t.get_item(Key={"pk": "mc", "sk": 1})["Item"]["v"] == "python types"


def test_the_original_resource_keeps_working(dynamodb_local: Any, table: str) -> None:
    import daxd
    plain = boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint, config=CLIENT_CONFIG, **CREDENTIALS)
    accelerated = daxd.accelerate(plain)
    accelerated.Table(table).put_item(Item={"pk": "o", "sk": 1, "v": "x"})
    assert plain.Table(table).get_item(Key={"pk": "o", "sk": 1})["Item"]["v"] == "x"
    assert plain.meta.client is not accelerated.meta.client


def test_mutating_a_resource_response_leaves_the_cache_alone(resource: Any, table: str) -> None:
    t = resource.Table(table)
    t.put_item(Item={"pk": "m", "sk": 1, "l": ["x"]})
    for _ in range(2):
        t.get_item(Key={"pk": "m", "sk": 1})["Item"]["l"].append("y")
    assert t.get_item(Key={"pk": "m", "sk": 1})["Item"]["l"] == ["x"]
