"""Every method, both directions, against the official Python client's own code.

Requests: the client encodes, our codec decodes; we check the DynamoDB-shaped
operation. Replies: our encoder writes, the client decodes; we check it returns
what boto3 would return for the same DynamoDB result.
"""

from __future__ import annotations

from typing import Any

import pytest
from amazondax.DaxClient import DaxClient
from amazondax.DaxError import DaxServiceError
from conftest import FakeNode, item_boto, item_json, normalize_sets

from daxd.model.errors import (
    ConditionalCheckFailedException,
    InternalServerError,
    ProvisionedThroughputExceededException,
    ResourceNotFoundException,
    ThrottlingException,
    TransactionCanceledException,
    ValidationException,
)

ITEM = {
    "id": {"S": "k1"}, "age": {"N": "30"}, "name": {"S": "alice"}, "pi": {"N": "3.14"},
    "big": {"N": "123456789012345678901234567890"}, "neg": {"N": "-0.000001"},
    "b": {"B": "AAEC"}, "ok": {"BOOL": True}, "nil": {"NULL": True},
    "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AA==", "AQ=="]},
    "m": {"M": {"x": {"L": [{"N": "1"}, {"S": "y"}, {"M": {}}, {"L": []}]}}},
}
CC = {"TableName": "tbl", "CapacityUnits": 0.5}


def test_get_item_plain(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {"Item": ITEM}
    result = client.get_item(TableName="tbl", Key={"id": {"S": "k1"}})
    assert node.operations[-1].name == "GetItem"
    assert node.operations[-1].request == {"TableName": "tbl", "Key": {"id": {"S": "k1"}}}
    assert normalize_sets(result["Item"]) == normalize_sets(item_boto(ITEM))


def test_get_item_miss_and_options(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {"ConsumedCapacity": {"TableName": "tbl", "CapacityUnits": 1.0}}
    result = client.get_item(TableName="tbl", Key={"id": {"S": "k1"}}, ConsistentRead=True,
                             ReturnConsumedCapacity="TOTAL")
    assert node.operations[-1].request == {
        "TableName": "tbl", "Key": {"id": {"S": "k1"}}, "ConsistentRead": True,
        "ReturnConsumedCapacity": "TOTAL"}
    assert "Item" not in result
    assert result["ConsumedCapacity"] == {"TableName": "tbl", "CapacityUnits": 1}


def test_get_item_projection(client: DaxClient, node: FakeNode) -> None:
    projected = {"age": {"N": "30"}, "m": {"M": {"x": {"L": [{"S": "y"}]}}}}
    node.handler = lambda op: {"Item": projected}
    result = client.get_item(TableName="tbl", Key={"id": {"S": "k1"}},
                             ProjectionExpression="#a, m.x[1], missing",
                             ExpressionAttributeNames={"#a": "age"})
    request = node.operations[-1].request
    assert request["ProjectionExpression"] == "#n0, #n1.#n2[1], #n3"
    assert request["ExpressionAttributeNames"] == {"#n0": "age", "#n1": "m", "#n2": "x", "#n3": "missing"}
    assert result["Item"] == projected


@pytest.mark.parametrize(("table", "key"), [
    ("num", {"n": {"N": "1.50"}}), ("num", {"n": {"N": "-7"}}), ("bin", {"b": {"B": b"\x00\xff"}}),
    ("tbl2", {"pk": {"S": "p"}, "sk": {"N": "100"}}), ("tbl2", {"pk": {"S": "p"}, "sk": {"N": "-0.05"}}),
    ("bs", {"h": {"B": b"\x01"}, "r": {"S": "ü"}}), ("nb", {"h": {"N": "1e3"}, "r": {"B": b"\x00"}}),
])
def test_key_types(client: DaxClient, node: FakeNode, table: str, key: dict[str, Any]) -> None:
    node.handler = lambda op: {"Item": {**op.request["Key"], "v": {"S": "x"}}}
    result = client.get_item(TableName=table, Key=key)
    decoded = node.operations[-1].request["Key"]
    expected = {name: ({"N": str(_canonical(av["N"]))} if "N" in av else av)
                for name, av in item_json(key).items()}
    assert decoded == expected
    assert result["Item"]["v"] == {"S": "x"}


def _canonical(text: str) -> str:
    from decimal import Decimal
    value = Decimal(text).normalize()
    return format(value, "f")


def test_put_item_with_condition_and_return_values(client: DaxClient, node: FakeNode) -> None:
    old = {"id": {"S": "k1"}, "age": {"N": "29"}}
    node.handler = lambda op: {"Attributes": old, "ConsumedCapacity": CC}
    result = client.put_item(
        TableName="tbl", Item=item_boto(ITEM), ConditionExpression="attribute_not_exists(id) OR age < :a",
        ExpressionAttributeValues={":a": {"N": "31"}}, ReturnValues="ALL_OLD",
        ReturnConsumedCapacity="TOTAL", ReturnItemCollectionMetrics="SIZE")
    request = node.operations[-1].request
    assert normalize_sets(request["Item"]) == normalize_sets(ITEM)
    assert request["ConditionExpression"] == "attribute_not_exists(#n0) OR #n1 < :v0"
    assert request["ExpressionAttributeNames"] == {"#n0": "id", "#n1": "age"}
    assert request["ExpressionAttributeValues"] == {":v0": {"N": "31"}}
    assert (request["ReturnValues"], request["ReturnConsumedCapacity"],
            request["ReturnItemCollectionMetrics"]) == ("ALL_OLD", "TOTAL", "SIZE")
    assert result["Attributes"] == old
    assert result["ConsumedCapacity"] == {"TableName": "tbl", "CapacityUnits": 0.5}


def test_put_item_key_only_and_metrics(client: DaxClient, node: FakeNode) -> None:
    metrics = {"ItemCollectionKey": {"pk": {"S": "p"}}, "SizeEstimateRangeGB": [0.0, 1.0]}
    node.handler = lambda op: {"ItemCollectionMetrics": metrics}
    result = client.put_item(TableName="tbl2", Item={"pk": {"S": "p"}, "sk": {"N": "1"}},
                             ReturnItemCollectionMetrics="SIZE")
    assert node.operations[-1].request["Item"] == {"pk": {"S": "p"}, "sk": {"N": "1"}}
    assert result["ItemCollectionMetrics"] == metrics


def test_delete_item(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {"Attributes": ITEM}
    result = client.delete_item(TableName="tbl", Key={"id": {"S": "k1"}}, ReturnValues="ALL_OLD",
                                ConditionExpression="contains(#s, :v)",
                                ExpressionAttributeNames={"#s": "ss"},
                                ExpressionAttributeValues={":v": {"S": "a"}})
    assert node.operations[-1].request == {
        "TableName": "tbl", "Key": {"id": {"S": "k1"}}, "ReturnValues": "ALL_OLD",
        "ConditionExpression": "contains(#n0, :v0)", "ExpressionAttributeNames": {"#n0": "ss"},
        "ExpressionAttributeValues": {":v0": {"S": "a"}}}
    assert normalize_sets(result["Attributes"]) == normalize_sets(item_boto(ITEM))


@pytest.mark.parametrize("return_values", ["UPDATED_NEW", "UPDATED_OLD", "ALL_NEW"])
def test_update_item(client: DaxClient, node: FakeNode, return_values: str) -> None:
    attributes = {"a": {"N": "6"}, "l": {"L": [{"N": "1"}]}}
    if return_values == "ALL_NEW":
        attributes = {**attributes, "id": {"S": "k1"}}
    node.handler = lambda op: {"Attributes": attributes}
    result = client.update_item(
        TableName="tbl", Key={"id": {"S": "k1"}}, ReturnValues=return_values,
        UpdateExpression="SET a = a + :one, l = list_append(l, :l) REMOVE old ADD s :ss DELETE t :ss",
        ConditionExpression="attribute_exists(id)",
        ExpressionAttributeValues={":one": {"N": "1"}, ":l": {"L": [{"N": "1"}]}, ":ss": {"SS": ["q"]}})
    request = node.operations[-1].request
    assert request["UpdateExpression"] == (
        "SET #n1 = #n1 + :v0, #n2 = list_append(#n2, :v1) REMOVE #n3 ADD #n4 :v2 DELETE #n5 :v2")
    assert request["ConditionExpression"] == "attribute_exists(#n0)"
    assert request["ExpressionAttributeValues"] == {
        ":v0": {"N": "1"}, ":v1": {"L": [{"N": "1"}]}, ":v2": {"SS": ["q"]}}
    assert result["Attributes"] == attributes


def test_query_plain(client: DaxClient, node: FakeNode) -> None:
    items = [{"pk": {"S": "p"}, "sk": {"N": "0.5"}, "v": {"S": "v0"}},
             {"pk": {"S": "p"}, "sk": {"N": "20"}, "v": {"S": "v1"}, "w": {"NS": ["1"]}}]
    node.handler = lambda op: {"Items": items, "Count": 2, "ScannedCount": 3,
                               "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"N": "20"}},
                               "ConsumedCapacity": {"TableName": "tbl2", "CapacityUnits": 0.5}}
    result = client.query(
        TableName="tbl2", KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
        FilterExpression="NOT begins_with(v, :x) AND size(v) > :n",
        ExpressionAttributeValues={":p": {"S": "p"}, ":lo": {"N": "0"}, ":hi": {"N": "100"},
                                   ":x": {"S": "z"}, ":n": {"N": "1"}},
        Limit=2, ConsistentRead=True, ScanIndexForward=False, Select="ALL_ATTRIBUTES",
        ExclusiveStartKey={"pk": {"S": "p"}, "sk": {"N": "0.25"}}, ReturnConsumedCapacity="TOTAL")
    request = node.operations[-1].request
    assert request["KeyConditionExpression"] == "#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2"
    assert request["FilterExpression"] == "NOT begins_with(#n2, :v3) AND size(#n2) > :v4"
    assert (request["Limit"], request["ConsistentRead"], request["ScanIndexForward"]) == (2, True, False)
    assert "Select" not in request  # ALL_ATTRIBUTES is the default (addendum H2)
    assert request["ExclusiveStartKey"] == {"pk": {"S": "p"}, "sk": {"N": "0.25"}}
    assert normalize_sets(result["Items"]) == normalize_sets(items)
    assert (result["Count"], result["ScannedCount"]) == (2, 3)
    assert result["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "20"}}


def test_query_index_projection(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {"Items": [{"v": {"S": "v0"}, "sk": {"N": "1"}}], "Count": 1, "ScannedCount": 1,
                               "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"N": "1"}, "g": {"S": "x"}}}
    result = client.query(TableName="tbl2", IndexName="gsi", KeyConditionExpression="g = :g",
                          ExpressionAttributeValues={":g": {"S": "x"}}, ProjectionExpression="v, sk",
                          ExclusiveStartKey={"pk": {"S": "p"}, "sk": {"N": "0"}, "g": {"S": "x"}},
                          Select="SPECIFIC_ATTRIBUTES")
    request = node.operations[-1].request
    assert request["IndexName"] == "gsi"
    assert request["ExclusiveStartKey"] == {"pk": {"S": "p"}, "sk": {"N": "0"}, "g": {"S": "x"}}
    assert request["Select"] == "SPECIFIC_ATTRIBUTES"
    assert request["ProjectionExpression"] == "#n1, #n2"
    assert result["Items"] == [{"v": {"S": "v0"}, "sk": {"N": "1"}}]
    assert result["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "1"}, "g": {"S": "x"}}


def test_scan(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {"Count": 7, "ScannedCount": 9}
    result = client.scan(TableName="tbl", Segment=1, TotalSegments=4, Select="COUNT", Limit=10,
                         FilterExpression="a IN (:x, :y) AND attribute_type(a, :t)",
                         ExpressionAttributeValues={":x": {"N": "1"}, ":y": {"N": "2"}, ":t": {"S": "N"}},
                         ConsistentRead=False, ExclusiveStartKey={"id": {"S": "k5"}})
    request = node.operations[-1].request
    assert request == {
        "TableName": "tbl", "Segment": 1, "TotalSegments": 4, "Select": "COUNT", "Limit": 10,
        "FilterExpression": "#n0 IN (:v0, :v1) AND attribute_type(#n0, :v2)",
        "ExclusiveStartKey": {"id": {"S": "k5"}}, "ExpressionAttributeNames": {"#n0": "a"},
        "ExpressionAttributeValues": {":v0": {"N": "1"}, ":v1": {"N": "2"}, ":v2": {"S": "N"}}}
    assert (result["Count"], result["ScannedCount"]) == (7, 9)
    assert "Items" not in result


def test_batch_get(client: DaxClient, node: FakeNode) -> None:
    found = {"pk": {"S": "a"}, "sk": {"N": "0"}, "v": {"S": "v0"}}
    node.handler = lambda op: {
        "Responses": {"tbl2": [found], "tbl": [{"y": {"S": "1"}}]},
        "UnprocessedKeys": {"tbl2": {"Keys": [{"pk": {"S": "b"}, "sk": {"N": "2.5"}}]}},
        "ConsumedCapacity": [{"TableName": "tbl2", "CapacityUnits": 1.0}]}
    result = client.batch_get_item(RequestItems={
        "tbl2": {"Keys": [{"pk": {"S": "a"}, "sk": {"N": "0"}}, {"pk": {"S": "b"}, "sk": {"N": "2.5"}}]},
        "tbl": {"Keys": [{"id": {"S": "k1"}}], "ConsistentRead": True, "ProjectionExpression": "y"}},
        ReturnConsumedCapacity="TOTAL")
    request = node.operations[-1].request
    assert request == {"RequestItems": {
        "tbl2": {"Keys": [{"pk": {"S": "a"}, "sk": {"N": "0"}}, {"pk": {"S": "b"}, "sk": {"N": "2.5"}}]},
        "tbl": {"Keys": [{"id": {"S": "k1"}}], "ConsistentRead": True, "ProjectionExpression": "#n0",
                "ExpressionAttributeNames": {"#n0": "y"}}}, "ReturnConsumedCapacity": "TOTAL"}
    assert result["Responses"] == {"tbl2": [found], "tbl": [{"y": {"S": "1"}}]}
    assert result["UnprocessedKeys"]["tbl2"]["Keys"] == [{"pk": {"S": "b"}, "sk": {"N": "2.5"}}]
    assert {c["TableName"] for c in result["ConsumedCapacity"]} == {"tbl", "tbl2"}


def test_batch_write(client: DaxClient, node: FakeNode) -> None:
    put = {"id": {"S": "k9"}, "q": {"BOOL": False}}
    node.handler = lambda op: {
        "UnprocessedItems": {"tbl": [{"PutRequest": {"Item": put}}, {"DeleteRequest": {"Key": {"id": {"S": "k8"}}}}]},
        "ItemCollectionMetrics": {"tbl2": [{"ItemCollectionKey": {"pk": {"S": "p"}},
                                            "SizeEstimateRangeGB": [0.5, 1.0]}]}}
    result = client.batch_write_item(RequestItems={
        "tbl": [{"PutRequest": {"Item": put}}, {"DeleteRequest": {"Key": {"id": {"S": "k8"}}}}],
        "tbl2": [{"DeleteRequest": {"Key": {"pk": {"S": "p"}, "sk": {"N": "1"}}}}]},
        ReturnItemCollectionMetrics="SIZE")
    assert node.operations[-1].request == {"RequestItems": {
        "tbl": [{"PutRequest": {"Item": put}}, {"DeleteRequest": {"Key": {"id": {"S": "k8"}}}}],
        "tbl2": [{"DeleteRequest": {"Key": {"pk": {"S": "p"}, "sk": {"N": "1"}}}}]},
        "ReturnItemCollectionMetrics": "SIZE"}
    # Python 2.1.0 drops the key of unprocessed puts (Assemblers.batchWriteItem decodes
    # K and throws it away); JS and Go keep it. Our bytes carry it.
    assert result["UnprocessedItems"]["tbl"] == [{"PutRequest": {"Item": {"q": {"BOOL": False}}}},
                                                 {"DeleteRequest": {"Key": {"id": {"S": "k8"}}}}]
    assert result["ItemCollectionMetrics"]["tbl2"][0]["SizeEstimateRangeGB"] == [0.5, 1.0]


def test_transact_get(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {
        "Responses": [{"Item": {"id": {"S": "k9"}, "q": {"BOOL": False}}}, {}, {"Item": {"x": {"S": "y"}}}],
        "ConsumedCapacity": [{"TableName": "tbl", "CapacityUnits": 6.0, "ReadCapacityUnits": 6.0,
                              "Table": {"CapacityUnits": 6.0}}]}
    result = client.transact_get_items(TransactItems=[
        {"Get": {"TableName": "tbl", "Key": {"id": {"S": "k9"}}}},
        {"Get": {"TableName": "tbl", "Key": {"id": {"S": "nope"}}}},
        {"Get": {"TableName": "tbl", "Key": {"id": {"S": "k1"}}, "ProjectionExpression": "#x",
                 "ExpressionAttributeNames": {"#x": "x"}}}], ReturnConsumedCapacity="TOTAL")
    request = node.operations[-1].request
    assert request["TransactItems"][2] == {"Get": {
        "TableName": "tbl", "Key": {"id": {"S": "k1"}}, "ProjectionExpression": "#n0",
        "ExpressionAttributeNames": {"#n0": "x"}}}
    assert result["Responses"] == [{"Item": {"id": {"S": "k9"}, "q": {"BOOL": False}}}, {},
                                   {"Item": {"x": {"S": "y"}}}]
    assert result["ConsumedCapacity"][0]["Table"] == {"CapacityUnits": 6}


def test_transact_write(client: DaxClient, node: FakeNode) -> None:
    node.handler = lambda op: {}
    result = client.transact_write_items(TransactItems=[
        {"Put": {"TableName": "tbl", "Item": {"id": {"S": "k10"}, "w": {"N": "1"}},
                 "ConditionExpression": "attribute_not_exists(id)"}},
        {"Update": {"TableName": "tbl", "Key": {"id": {"S": "k9"}}, "UpdateExpression": "SET a = :z",
                    "ExpressionAttributeValues": {":z": {"N": "0"}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        {"Delete": {"TableName": "tbl", "Key": {"id": {"S": "k8"}}}},
        {"ConditionCheck": {"TableName": "tbl2", "Key": {"pk": {"S": "p"}, "sk": {"N": "1"}},
                            "ConditionExpression": "attribute_exists(pk)"}}],
        ClientRequestToken="tok-1", ReturnConsumedCapacity="TOTAL")
    request = node.operations[-1].request
    assert request == {"TransactItems": [
        {"Put": {"TableName": "tbl", "Item": {"id": {"S": "k10"}, "w": {"N": "1"}},
                 "ConditionExpression": "attribute_not_exists(#n0)", "ExpressionAttributeNames": {"#n0": "id"}}},
        {"Update": {"TableName": "tbl", "Key": {"id": {"S": "k9"}}, "UpdateExpression": "SET #n0 = :v0",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    "ExpressionAttributeNames": {"#n0": "a"}, "ExpressionAttributeValues": {":v0": {"N": "0"}}}},
        {"Delete": {"TableName": "tbl", "Key": {"id": {"S": "k8"}}}},
        {"ConditionCheck": {"TableName": "tbl2", "Key": {"pk": {"S": "p"}, "sk": {"N": "1"}},
                            "ConditionExpression": "attribute_exists(#n0)",
                            "ExpressionAttributeNames": {"#n0": "pk"}}}],
        "ClientRequestToken": "tok-1", "ReturnConsumedCapacity": "TOTAL"}
    assert result == {}


def test_endpoints(client: DaxClient) -> None:
    endpoints = client.endpoints()
    assert endpoints[0]["address"] == "127.0.0.1"
    assert (endpoints[0]["port"], endpoints[0]["role"], endpoints[0]["az"]) == (8111, 1, "us-east-1a")


# ------------------------------------------------------------ errors

@pytest.mark.parametrize(("error", "code"), [
    (ConditionalCheckFailedException("The conditional request failed"), "ConditionalCheckFailedException"),
    (ValidationException("bad"), "ValidationException"),
    (ResourceNotFoundException("gone"), "ResourceNotFoundException"),
    (ProvisionedThroughputExceededException("slow down"), "ProvisionedThroughputExceededException"),
    (ThrottlingException("slow down"), "ThrottlingException"),
    (InternalServerError("oops"), "InternalServerErrorException"),
])
def test_errors_map_to_client_codes(client: DaxClient, node: FakeNode, error: Exception, code: str) -> None:
    node.handler = lambda op: error  # type: ignore[assignment,return-value]
    with pytest.raises(DaxServiceError) as info:
        client.get_item(TableName="tbl", Key={"id": {"S": "k1"}})
    assert info.value.code == code
    assert info.value.response["Error"]["Message"] == str(error)


def test_transaction_canceled_reasons(client: DaxClient, node: FakeNode) -> None:
    body = (b'{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",'
            b'"message":"Transaction cancelled [ConditionalCheckFailed, None]",'
            b'"CancellationReasons":[{"Code":"ConditionalCheckFailed","Message":"The conditional request failed",'
            b'"Item":{"id":{"S":"k1"},"a":{"N":"1"}}},{"Code":"None"}]}')
    node.handler = lambda op: TransactionCanceledException("Transaction cancelled", raw=body)
    with pytest.raises(DaxServiceError) as info:
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": "tbl", "Item": {"id": {"S": "k1"}}, "ConditionExpression": "attribute_not_exists(id)",
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Delete": {"TableName": "tbl", "Key": {"id": {"S": "k2"}}}}])
    assert info.value.code == "TransactionCanceledException"
    reasons = info.value.cancellation_reasons
    assert reasons[0:2] == ["ConditionalCheckFailed", "The conditional request failed"]
    assert isinstance(reasons[2], bytes) and reasons[3:] == ["None", None, None]


def test_unknown_table_in_define_key_schema(client: DaxClient) -> None:
    with pytest.raises(DaxServiceError) as info:
        client.get_item(TableName="nope", Key={"id": {"S": "k1"}})
    assert info.value.code == "ResourceNotFoundException"
