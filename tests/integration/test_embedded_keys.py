"""Keys of the wrong type are refused as DynamoDB refuses them, whatever the backend.

The embedded backend answers a GetItem whose key has the wrong type with 200 and no item; DynamoDB
answers ValidationException. daxd knows the key schema of every table it has created or described,
and checks keys against it where it locates them.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.harness import create_table


def _refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    return str(caught.value.response["Error"]["Message"])


def test_wrong_key_types_are_validation_errors_on_the_embedded_backend(start_node: Any) -> None:
    node = start_node(upstream="embedded")
    ddb = node.client()
    table = create_table(ddb, range_key="sk", range_type="N")
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})

    message = _refused(ddb.get_item, TableName=table, Key={"pk": {"N": "1"}, "sk": {"N": "1"}})
    assert "Type mismatch for key pk expected: S actual: N" in message
    message = _refused(ddb.get_item, TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "1"}})
    assert "Type mismatch for key sk expected: N actual: S" in message
    _refused(ddb.get_item, TableName=table, Key={"pk": {"S": "a"}})
    _refused(ddb.put_item, TableName=table, Item={"pk": {"B": b"a"}, "sk": {"N": "1"}})
    _refused(ddb.delete_item, TableName=table, Key={"pk": {"S": "a"}, "sk": {"B": b"1"}})
    # After a flush the schema is forgotten; the next write describes the table and checks again.
    request = urllib.request.Request(node.admin + "/cache/flush", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    _refused(ddb.update_item, TableName=table, Key={"pk": {"N": "2"}, "sk": {"N": "1"}},
             UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "x"}})
    # The right types still work, hits and misses alike.
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]["pk"] == {"S": "a"}
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]["sk"] == {"N": "1"}
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"N": "1"}})
