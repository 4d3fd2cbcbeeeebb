"""Malformed data-plane bodies through a real node: never a 5xx, and DynamoDB's answer where DynamoDB Local gives one.

Every body is sent twice, to the node and straight to DynamoDB Local. The
node must answer each below 500. Where the node did not refuse the body as
malformed JSON types (``SerializationException``), its status and error code
must be DynamoDB Local's. Where it did, DynamoDB Local is known to differ from
DynamoDB: it converts JSON numbers and booleans to strings (``{"N": 3}`` is
accepted) and fails with 500 on many wrong containers; DynamoDB itself
refuses both with ``SerializationException`` (docs/errors.md).
"""

from __future__ import annotations

import http.client
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.harness import DaxdNode, DynamoDBLocal, create_table
from tests.shapes import requests

SIGNED = ("AWS4-HMAC-SHA256 Credential=daxdtest/20260101/us-east-1/dynamodb/aws4_request, "
          "SignedHeaders=host, Signature=00")
TABLE = "bad_shapes"


def post(port: int, operation: str, body: Any) -> tuple[int, str]:
    """(status, error code or "") of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("POST", "/", body=orjson.dumps(body), headers={
            "Content-Type": "application/x-amz-json-1.0", "Authorization": SIGNED,
            "X-Amz-Target": f"DynamoDB_20120810.{operation}"})
        response = connection.getresponse()
        status, payload = response.status, response.read()
    finally:
        connection.close()
    if status == 200:
        return status, ""
    return status, str(orjson.loads(payload).get("__type", "")).rpartition("#")[2]


READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")
WRITES = ("PutItem", "DeleteItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems")


@pytest.fixture(scope="module")
def shapes_table(ddb: Any) -> str:
    return create_table(ddb, TABLE)


@pytest.mark.parametrize("operations", [READS, WRITES], ids=["reads", "writes"])
def test_no_body_reaches_a_5xx_and_validation_matches_dynamodb(node: DaxdNode, dynamodb_local: DynamoDBLocal,
                                                                shapes_table: str, operations: tuple[str, ...]) -> None:
    direct_port = int(dynamodb_local.endpoint.rpartition(":")[2])
    compared: list[str] = []

    @settings(max_examples=50, deadline=None, database=None, derandomize=True,  # the same sample every run
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
              phases=[Phase.generate])
    @given(request=requests(shapes_table, operations))
    def check(request: tuple[str, Any]) -> None:
        operation, body = request
        status, code = post(node.ports["http"], operation, body)
        assert status < 500, (operation, body, status, code)
        if code == "SerializationException":
            assert status == 400
            return
        expected = post(direct_port, operation, body)
        assert (status, code) == expected, (operation, body)
        compared.append(code)

    check()
    assert len(compared) >= 10  # the comparison ran on a real sample (a fixed one: derandomized)
    assert "ValidationException" in compared
