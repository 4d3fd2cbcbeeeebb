"""Bad input gets DynamoDB's error shape, and never hurts the node or other clients."""

from __future__ import annotations

import http.client
import re
import socket
from typing import Any

import orjson
import pytest

from tests.harness import DaxdNode
from tests.integration.listener_tools import metrics

TARGET = "DynamoDB_20120810."
SIGNED = "AWS4-HMAC-SHA256 Credential=daxdtest/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"


def post(node: DaxdNode, body: bytes, target: str | None = TARGET + "GetItem",
         content_type: str = "application/x-amz-json-1.0") -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", node.ports["http"], timeout=10)
    headers = {"Content-Type": content_type, "Authorization": SIGNED}
    if target is not None:
        headers["X-Amz-Target"] = target
    connection.request("POST", "/", body=body, headers=headers)
    response = connection.getresponse()
    status, payload = response.status, response.read()
    connection.close()
    return status, orjson.loads(payload)


def code(payload: dict[str, Any]) -> str:
    return str(payload["__type"]).rpartition("#")[2]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"string"'])
def test_malformed_json_is_a_serialization_exception(node: DaxdNode, body: bytes) -> None:
    status, payload = post(node, body)
    assert status == 400 and code(payload) == "SerializationException"


@pytest.mark.parametrize("target", [None, "", "GetItem", "DynamoDBStreams_20120810", "x.y.z"])
def test_missing_or_foreign_target_is_an_unknown_operation(node: DaxdNode, target: str | None) -> None:
    status, payload = post(node, b"{}", target=target)
    assert status == 400 and code(payload) == "UnknownOperationException"


def test_unknown_operation_is_forwarded_and_answered_by_dynamodb(node: DaxdNode) -> None:
    status, payload = post(node, b"{}", target=TARGET + "NoSuchOperation")
    assert status == 400 and "UnknownOperation" in code(payload)


def test_wrong_content_type_is_refused(node: DaxdNode) -> None:
    status, payload = post(node, b"{}", content_type="text/plain")
    assert status == 400 and code(payload) == "UnknownOperationException"


@pytest.mark.parametrize("key", [{"pk": {"Q": "x"}}, {"pk": {"S": "x", "N": "1"}}, {"pk": {"N": "abc"}}])
def test_invalid_attribute_values_are_validation_errors(node: DaxdNode, table: str, key: Any) -> None:
    status, payload = post(node, orjson.dumps({"TableName": table, "Key": key}))
    assert status == 400 and code(payload) == "ValidationException"


@pytest.mark.parametrize(("operation", "body"), [
    ("GetItem", {"Key": {"pk": {"S": "x"}, "sk": {"N": 3}}}),
    ("GetItem", {"Key": {"pk": "x"}}),
    ("GetItem", {"Key": []}),
    ("PutItem", {"Item": {"pk": {"S": "x"}, "sk": {"N": "1"}, "n": {"N": 3}}}),
    ("PutItem", {"Item": {"pk": {"S": "x"}, "sk": {"N": "1"}, "s": {"NS": {"a": "1"}}}}),
    ("DeleteItem", {"Key": {"pk": {"L": {}}, "sk": {"N": "1"}}}),
    ("Query", {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": 7}}}),
    ("GetItem", {"Key": {"pk": {"S": "x"}, "sk": {"N": "1"}}, "ConsistentRead": "yes"}),
])
def test_wrong_json_types_are_serialization_exceptions(node: DaxdNode, table: str, operation: str,
                                                       body: dict[str, Any]) -> None:
    """As DynamoDB refuses them (DynamoDB Local accepts some and fails with 500 on others)."""
    status, payload = post(node, orjson.dumps({"TableName": table, **body}), target=TARGET + operation)
    assert status == 400 and code(payload) == "SerializationException"


def test_missing_table_name_is_a_validation_error(node: DaxdNode) -> None:
    status, payload = post(node, b'{"Key": {"pk": {"S": "x"}}}')
    assert status == 400 and code(payload) == "ValidationException"


def test_oversized_body_is_refused_and_the_node_keeps_serving(node: DaxdNode, table: str) -> None:
    with socket.create_connection(("127.0.0.1", node.ports["http"]), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
                     b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 17000000\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"RequestEntityTooLarge" in answer
    assert node.client().describe_table(TableName=table)["Table"]["TableName"] == table


def test_garbage_bytes_get_a_400_and_do_not_hurt_other_clients(node: DaxdNode, table: str) -> None:
    api = node.client()
    api.put_item(TableName=table, Item={"pk": {"S": "safe"}, "sk": {"N": "1"}})
    for garbage in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"\r\n" * 10):
        with socket.create_connection(("127.0.0.1", node.ports["http"]), timeout=10) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(65536)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer  # an answer is a 400, or a close
    with socket.create_connection(("127.0.0.1", node.ports["http"]), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        sock.close()  # a client that disconnects mid-request costs nothing
    item = api.get_item(TableName=table, Key={"pk": {"S": "safe"}, "sk": {"N": "1"}})["Item"]
    assert item["pk"] == {"S": "safe"}
    assert node.process.poll() is None


def upstream_puts(node: DaxdNode) -> float:
    match = re.search(r'daxd_upstream_latency_seconds_count\{operation="PutItem"\} (\S+)', metrics(node))
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("size", [500 * 1024, 15 * 1024 * 1024])
def test_an_item_over_400_kb_gets_dynamodbs_answer_without_being_forwarded(
        node: DaxdNode, ddb: Any, table: str, size: int) -> None:
    body = orjson.dumps({"TableName": table, "Item": {"pk": {"S": "big"}, "sk": {"N": "1"}, "v": {"S": "x" * size}}})
    forwarded = upstream_puts(node)
    status, payload = post(node, body, target=TARGET + "PutItem")
    assert status == 400 and code(payload) == "ValidationException"
    assert upstream_puts(node) == forwarded  # refused by the node itself
    with pytest.raises(ddb.exceptions.ClientError) as direct:
        ddb.put_item(TableName=table, Item={"pk": {"S": "big"}, "sk": {"N": "1"}, "v": {"S": "x" * 500 * 1024}})
    assert direct.value.response["Error"]["Code"] == "ValidationException"
    assert payload["message"] == direct.value.response["Error"]["Message"]


def test_bodies_over_a_mebibyte_are_decoded_off_the_event_loop_with_the_same_answers(
        node: DaxdNode, ddb: Any, table: str) -> None:
    items = [{"pk": {"S": f"p{n}"}, "sk": {"N": "1"}, "v": {"S": str(n) * 380_000}} for n in range(4)]
    body = orjson.dumps({"TableName": table, "RequestItems": {table: [{"PutRequest": {"Item": i}} for i in items]}})
    assert len(body) > 1 << 20
    status, payload = post(node, body, target=TARGET + "BatchWriteItem")
    assert status == 200 and payload.get("UnprocessedItems") == {}, payload
    stored = ddb.get_item(TableName=table, Key={"pk": {"S": "p3"}, "sk": {"N": "1"}}, ConsistentRead=True)
    assert stored["Item"]["v"]["S"] == "3" * 380_000
    status, payload = post(node, b'{"TableName": "' + b"x" * (2 << 20) + b'", oops}', target=TARGET + "PutItem")
    assert status == 400 and code(payload) == "SerializationException"
    status, payload = post(node, b"[" + b"1," * (1 << 20) + b"1]", target=TARGET + "PutItem")
    assert status == 400 and code(payload) == "SerializationException"
    status, payload = post(node, orjson.dumps({"TableName": table, "Key": {"pk": {"S": "p3"}, "sk": {"N": "1"}},
                                               "ProjectionExpression": "pk", "x": "y" * (2 << 20)}))
    assert status == 200 and payload["Item"] == {"pk": {"S": "p3"}}  # a GetItem too (decoded, then planned)
