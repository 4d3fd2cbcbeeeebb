"""The official Python DAX client (amazondax 2.1.0), unmodified, against daxd + DynamoDB Local.

Every data-plane method with its optional parameters, through the low-level
client and the boto3-style resource (``Key``/``Attr`` conditions), plus paging.
Results are compared with what DynamoDB Local itself holds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.harness import DaxdNode


def _key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


RICH = {"s": {"S": "text"}, "n": {"N": "1.50"}, "big": {"N": "123456789012345678901234567890"},
        "neg": {"N": "-0.001"}, "b": {"B": b"\x00\xff"}, "t": {"BOOL": True}, "z": {"NULL": True},
        "l": {"L": [{"S": "a"}, {"N": "2"}]}, "m": {"M": {"x": {"S": "y"}, "deep": {"M": {"k": {"N": "7"}}}}},
        "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"1", b"2"]}}


def test_put_get_round_trips_every_type(dax: Any, ddb: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={**_key("rich", 1), **RICH})
    direct = ddb.get_item(TableName=table, Key=_key("rich", 1), ConsistentRead=True)["Item"]
    for _ in range(2):  # miss, then hit
        got = dax.get_item(TableName=table, Key=_key("rich", 1))["Item"]
        assert _canon(got) == _canon(direct)
    assert got["n"] == {"N": "1.5"} and got["big"] == {"N": "123456789012345678901234567890"}


def _canon(item: dict[str, Any]) -> dict[str, Any]:
    """Sets are unordered: compare them sorted."""
    out = {}
    for name, value in item.items():
        ((kind, inner),) = value.items()
        out[name] = {kind: sorted(inner)} if kind in ("SS", "NS", "BS") else value
    return out


def test_get_item_options(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={**_key("opt", 1), "a": {"S": "1"}, "b": {"M": {"c": {"N": "2"}}}})
    assert dax.get_item(TableName=table, Key=_key("missing", 1)).get("Item") is None
    consistent = dax.get_item(TableName=table, Key=_key("opt", 1), ConsistentRead=True)
    assert consistent["Item"]["a"] == {"S": "1"}
    projected = dax.get_item(TableName=table, Key=_key("opt", 1), ProjectionExpression="#b.c, pk",
                             ExpressionAttributeNames={"#b": "b"})
    assert projected["Item"] == {"b": {"M": {"c": {"N": "2"}}}, "pk": {"S": "opt"}}
    with_capacity = dax.get_item(TableName=table, Key=_key("opt", 1), ReturnConsumedCapacity="TOTAL")
    assert with_capacity["ConsumedCapacity"]["TableName"] == table
    legacy = dax.get_item(TableName=table, Key=_key("opt", 1), AttributesToGet=["a"])
    assert legacy["Item"] == {"a": {"S": "1"}}


def test_hash_only_and_string_range_tables(dax: Any, tables: dict[str, str]) -> None:
    dax.put_item(TableName=tables["hash"], Item={"pk": {"S": "h"}, "v": {"N": "1"}})
    assert dax.get_item(TableName=tables["hash"], Key={"pk": {"S": "h"}})["Item"]["v"] == {"N": "1"}
    key = {"pk": {"S": "p"}, "sk": {"S": "é/ü"}}
    dax.put_item(TableName=tables["string_range"], Item={**key, "v": {"S": "x"}})
    assert dax.get_item(TableName=tables["string_range"], Key=key)["Item"] == {**key, "v": {"S": "x"}}


def test_put_item_options(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    assert "Attributes" not in dax.put_item(TableName=table, Item={**_key("put", 1), "v": {"N": "1"}},
                                            ReturnValues="ALL_OLD")
    old = dax.put_item(TableName=table, Item={**_key("put", 1), "v": {"N": "2"}}, ReturnValues="ALL_OLD",
                       ReturnConsumedCapacity="TOTAL", ReturnItemCollectionMetrics="SIZE")
    assert old["Attributes"] == {**_key("put", 1), "v": {"N": "1"}}
    assert old["ConsumedCapacity"]["TableName"] == table
    dax.put_item(TableName=table, Item={**_key("put", 1), "v": {"N": "3"}},
                 ConditionExpression="#v = :old", ExpressionAttributeNames={"#v": "v"},
                 ExpressionAttributeValues={":old": {"N": "2"}})
    assert dax.get_item(TableName=table, Key=_key("put", 1))["Item"]["v"] == {"N": "3"}


def test_update_item_every_action_and_return_values(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={**_key("upd", 1), "n": {"N": "1"}, "old": {"S": "x"},
                                        "s": {"SS": ["a", "b"]}, "l": {"L": [{"N": "1"}]}})
    result = dax.update_item(
        TableName=table, Key=_key("upd", 1),
        UpdateExpression="SET n = n + :one, l = list_append(l, :l), f = if_not_exists(f, :z) "
                         "REMOVE old ADD c :one DELETE s :a",
        ExpressionAttributeValues={":one": {"N": "1"}, ":l": {"L": [{"N": "2"}]}, ":z": {"S": "z"},
                                   ":a": {"SS": ["a"]}, ":ten": {"N": "10"}},
        ConditionExpression="attribute_exists(pk) AND size(l) < :ten",
        ReturnValues="ALL_NEW")
    assert result["Attributes"] == {**_key("upd", 1), "n": {"N": "2"}, "s": {"SS": ["b"]},
                                    "l": {"L": [{"N": "1"}, {"N": "2"}]}, "f": {"S": "z"}, "c": {"N": "1"}}
    updated = dax.update_item(TableName=table, Key=_key("upd", 1), UpdateExpression="SET n = :v",
                              ExpressionAttributeValues={":v": {"N": "10"}}, ReturnValues="UPDATED_OLD")
    assert updated["Attributes"] == {"n": {"N": "2"}}
    new = dax.update_item(TableName=table, Key=_key("upd", 1), UpdateExpression="SET n = :v",
                          ExpressionAttributeValues={":v": {"N": "11"}}, ReturnValues="UPDATED_NEW")
    assert new["Attributes"] == {"n": {"N": "11"}}
    assert dax.get_item(TableName=table, Key=_key("upd", 1))["Item"]["n"] == {"N": "11"}


def test_delete_item_options(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={**_key("del", 1), "v": {"S": "x"}})
    assert dax.get_item(TableName=table, Key=_key("del", 1))["Item"]["v"] == {"S": "x"}  # cached
    gone = dax.delete_item(TableName=table, Key=_key("del", 1), ReturnValues="ALL_OLD",
                           ConditionExpression="v = :x", ExpressionAttributeValues={":x": {"S": "x"}})
    assert gone["Attributes"]["v"] == {"S": "x"}
    assert "Item" not in dax.get_item(TableName=table, Key=_key("del", 1))


def test_query_paging_filters_indexes_and_select(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    for sk in range(7):
        dax.put_item(TableName=table, Item={**_key("q", sk), "g": {"S": "grp"}, "odd": {"BOOL": sk % 2 == 1}})
    pages, start = [], None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        page = dax.query(TableName=table, KeyConditionExpression="pk = :p AND sk >= :lo",
                         ExpressionAttributeValues={":p": {"S": "q"}, ":lo": {"N": "1"}}, Limit=2, **kwargs)
        pages.append([int(i["sk"]["N"]) for i in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert [sk for page in pages for sk in page] == [1, 2, 3, 4, 5, 6]
    backwards = dax.query(TableName=table, KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "q"}, ":t": {"BOOL": True}},
                          FilterExpression="odd = :t", ScanIndexForward=False, ConsistentRead=True)
    assert [int(i["sk"]["N"]) for i in backwards["Items"]] == [5, 3, 1] and backwards["ScannedCount"] == 7
    count = dax.query(TableName=table, KeyConditionExpression="pk = :p", Select="COUNT",
                      ExpressionAttributeValues={":p": {"S": "q"}}, ReturnConsumedCapacity="TOTAL")
    assert count["Count"] == 7 and "Items" not in count
    projected = dax.query(TableName=table, KeyConditionExpression="pk = :p", ProjectionExpression="sk",
                          ExpressionAttributeValues={":p": {"S": "q"}})
    assert projected["Items"][0] == {"sk": {"N": "0"}}
    start, seen = None, 0
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        indexed = dax.query(TableName=table, IndexName="by-g", KeyConditionExpression="g = :g",
                            ExpressionAttributeValues={":g": {"S": "grp"}}, Limit=3, **kwargs)
        seen += indexed["Count"]
        start = indexed.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == 7


def test_scan_paging_segments_and_filters(dax: Any, ddb: Any, tables: dict[str, str]) -> None:
    table = tables["hash"]
    for n in range(9):
        dax.put_item(TableName=table, Item={"pk": {"S": f"scan{n}"}, "n": {"N": str(n)}})
    total = ddb.scan(TableName=table, Select="COUNT")["Count"]
    seen, start = 0, None
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        page = dax.scan(TableName=table, Limit=4, **kwargs)
        seen += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == total
    segments = sum(dax.scan(TableName=table, Segment=s, TotalSegments=2, ConsistentRead=True)["Count"]
                   for s in range(2))
    assert segments == total
    filtered = dax.scan(TableName=table, FilterExpression="n BETWEEN :a AND :b AND begins_with(pk, :p)",
                        ExpressionAttributeValues={":a": {"N": "2"}, ":b": {"N": "4"}, ":p": {"S": "scan"}},
                        ProjectionExpression="n")
    assert sorted(int(i["n"]["N"]) for i in filtered["Items"]) == [2, 3, 4]


def test_batch_write_and_batch_get(dax: Any, tables: dict[str, str]) -> None:
    table, other = tables["range"], tables["hash"]
    dax.put_item(TableName=table, Item={**_key("bw", 99), "v": {"S": "doomed"}})
    written = dax.batch_write_item(RequestItems={
        table: [{"PutRequest": {"Item": {**_key("bw", n), "v": {"N": str(n)}}}} for n in range(5)]
        + [{"DeleteRequest": {"Key": _key("bw", 99)}}],
        other: [{"PutRequest": {"Item": {"pk": {"S": "bw"}, "v": {"S": "o"}}}}],
    }, ReturnConsumedCapacity="TOTAL", ReturnItemCollectionMetrics="SIZE")
    assert written["UnprocessedItems"] == {}
    got = dax.batch_get_item(RequestItems={
        table: {"Keys": [_key("bw", n) for n in (0, 3, 99)]},
        other: {"Keys": [{"pk": {"S": "bw"}}], "ProjectionExpression": "v", "ConsistentRead": True},
    }, ReturnConsumedCapacity="TOTAL")
    assert sorted(int(i["v"]["N"]) for i in got["Responses"][table]) == [0, 3]
    assert got["Responses"][other] == [{"v": {"S": "o"}}]
    assert got["UnprocessedKeys"] == {}


def test_transactions(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={**_key("tx", 1), "n": {"N": "1"}})
    dax.put_item(TableName=table, Item={**_key("tx", 3), "n": {"N": "3"}})
    dax.put_item(TableName=table, Item={**_key("tx", 4), "n": {"N": "4"}, "other": {"S": "x"}})
    dax.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {**_key("tx", 2), "n": {"N": "2"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": table, "Key": _key("tx", 1), "UpdateExpression": "SET n = n + :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Delete": {"TableName": table, "Key": _key("tx", 3)}},
        {"ConditionCheck": {"TableName": tables["hash"], "Key": {"pk": {"S": "absent"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}},
    ], ClientRequestToken="tok-1", ReturnConsumedCapacity="TOTAL")
    got = dax.transact_get_items(TransactItems=[
        {"Get": {"TableName": table, "Key": _key("tx", n)}} for n in (1, 2, 3)
    ] + [{"Get": {"TableName": table, "Key": _key("tx", 4), "ProjectionExpression": "n"}}])
    items = [r.get("Item") for r in got["Responses"]]
    assert items[0]["n"] == {"N": "2"} and items[1]["n"] == {"N": "2"} and items[2] is None
    assert items[3] == {"n": {"N": "4"}}
    assert dax.get_item(TableName=table, Key=_key("tx", 1))["Item"]["n"] == {"N": "2"}


def test_resource_interface_with_key_and_attr_conditions(dax_node: DaxdNode, open_dax: Any,
                                                         tables: dict[str, str]) -> None:
    resource = open_dax(dax_url(dax_node), resource=True)
    table = resource.Table(tables["range"])
    with table.batch_writer() as batch:
        for sk in range(5):
            batch.put_item(Item={"pk": "res", "sk": sk, "price": Decimal(f"{sk}.25"), "tags": {"a", "b"}})
    assert table.get_item(Key={"pk": "res", "sk": 2})["Item"]["price"] == Decimal("2.25")
    found = table.query(KeyConditionExpression=Key("pk").eq("res") & Key("sk").between(1, 3),
                        FilterExpression=Attr("price").gt(Decimal("1.5")))
    assert [int(i["sk"]) for i in found["Items"]] == [2, 3]
    table.update_item(Key={"pk": "res", "sk": 0}, UpdateExpression="SET price = :p",
                      ConditionExpression=Attr("price").exists(), ExpressionAttributeValues={":p": 7})
    assert table.get_item(Key={"pk": "res", "sk": 0})["Item"]["price"] == 7
    scanned = table.scan(FilterExpression=Attr("pk").eq("res") & Attr("tags").contains("a"))
    assert scanned["Count"] == 5
    with pytest.raises(ClientError) as failed:
        table.put_item(Item={"pk": "res", "sk": 0}, ConditionExpression=Attr("pk").not_exists())
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    table.delete_item(Key={"pk": "res", "sk": 4})
    assert "Item" not in table.get_item(Key={"pk": "res", "sk": 4})
