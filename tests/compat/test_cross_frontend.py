"""One cache behind both front ends: a write through DAX is what HTTP reads, and the reverse.

To prove the read is served by the shared cache (not merely by DynamoDB), the
item is changed behind daxd's back, straight in DynamoDB Local, after the
write: a read through the *other* front end still sees the cached image.
"""

from __future__ import annotations

from typing import Any

from tests.harness import DaxdNode


def test_write_via_dax_read_via_http(dax: Any, dax_node: DaxdNode, ddb: Any, tables: dict[str, str]) -> None:
    table, key = tables["range"], {"pk": {"S": "x-dax"}, "sk": {"N": "1"}}
    dax.put_item(TableName=table, Item={**key, "v": {"S": "via-dax"}})
    ddb.put_item(TableName=table, Item={**key, "v": {"S": "bypass"}})
    assert dax_node.client().get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "via-dax"}
    dax.delete_item(TableName=table, Key=key)
    assert "Item" not in dax_node.client().get_item(TableName=table, Key=key)


def test_write_via_http_read_via_dax(dax: Any, dax_node: DaxdNode, ddb: Any, tables: dict[str, str]) -> None:
    table, key = tables["range"], {"pk": {"S": "x-http"}, "sk": {"N": "1"}}
    http = dax_node.client()
    http.put_item(TableName=table, Item={**key, "v": {"S": "via-http"}, "n": {"N": "2.50"}})
    ddb.put_item(TableName=table, Item={**key, "v": {"S": "bypass"}})
    got = dax.get_item(TableName=table, Key=key)["Item"]
    assert got["v"] == {"S": "via-http"} and got["n"] == {"N": "2.5"}
    http.update_item(TableName=table, Key=key, UpdateExpression="SET v = :v",
                     ExpressionAttributeValues={":v": {"S": "updated"}})
    assert dax.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "updated"}


def test_query_cache_is_invalidated_across_front_ends(dax: Any, dax_node: DaxdNode, tables: dict[str, str]) -> None:
    table = tables["range"]
    query = {"TableName": table, "KeyConditionExpression": "pk = :p",
             "ExpressionAttributeValues": {":p": {"S": "x-q"}}}
    assert dax.query(**query)["Count"] == 0
    dax_node.client().put_item(TableName=table, Item={"pk": {"S": "x-q"}, "sk": {"N": "1"}})
    assert dax.query(**query)["Count"] == 1
