"""Every error class reaches the Python DAX client as the exception it raises against AWS DAX.

Throttling and internal errors come from a fault-injecting proxy between daxd
and DynamoDB Local (DynamoDB Local never throttles).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DaxdNode, DynamoDBLocal


def _code(failed: Any) -> str:
    return str(failed.value.response["Error"]["Code"])


def test_conditional_check_failed(dax: Any, tables: dict[str, str]) -> None:
    item = {"pk": {"S": "ccf"}, "sk": {"N": "1"}}
    dax.put_item(TableName=tables["range"], Item=item)
    with pytest.raises(ClientError) as failed:
        dax.put_item(TableName=tables["range"], Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert _code(failed) == "ConditionalCheckFailedException"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_transaction_canceled_carries_reasons(dax: Any, tables: dict[str, str]) -> None:
    table = tables["range"]
    dax.put_item(TableName=table, Item={"pk": {"S": "txc"}, "sk": {"N": "1"}, "v": {"S": "old"}})
    with pytest.raises(ClientError) as failed:
        dax.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "txc"}, "sk": {"N": "2"}}}},
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "txc"}, "sk": {"N": "1"}},
                                "ConditionExpression": "attribute_not_exists(pk)",
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        ])
    assert _code(failed) == "TransactionCanceledException"
    reasons = failed.value.cancellation_reasons  # type: ignore[attr-defined]
    assert reasons[0::3] == ["None", "ConditionalCheckFailed"]
    assert reasons[5] is not None  # the old item's value bytes (ALL_OLD)
    assert "Item" not in dax.get_item(TableName=table, Key={"pk": {"S": "txc"}, "sk": {"N": "2"}})


def test_validation_exception_from_dynamodb(dax: Any, tables: dict[str, str]) -> None:
    with pytest.raises(ClientError) as failed:
        dax.update_item(TableName=tables["range"], Key={"pk": {"S": "v"}, "sk": {"N": "1"}},
                        UpdateExpression="SET pk = :v", ExpressionAttributeValues={":v": {"S": "x"}})
    assert _code(failed) == "ValidationException"


def test_resource_not_found(dax: Any) -> None:
    with pytest.raises(ClientError) as failed:
        dax.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}})
    assert _code(failed) == "ResourceNotFoundException"


@pytest.fixture
def faulty_node(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[ThreadedFaultProxy, DaxdNode]]:
    faults = ThreadedFaultProxy(dynamodb_local.endpoint)
    port = faults.start()
    node = DaxdNode(f"http://127.0.0.1:{port}", "--upstream-max-attempts", "1", "--streams", "off")
    yield faults, node
    node.stop()
    faults.stop()


@pytest.mark.parametrize(("status", "upstream_code", "client_codes"), [
    (400, "ThrottlingException", {"ThrottlingException"}),
    (400, "ProvisionedThroughputExceededException", {"ProvisionedThroughputExceededException"}),
    (500, "InternalServerError", {"InternalServerError", "InternalServerErrorException"}),
])
def test_upstream_faults_reach_the_client(faulty_node: tuple[ThreadedFaultProxy, DaxdNode], open_dax: Any,
                                          tables: dict[str, str], status: int, upstream_code: str,
                                          client_codes: set[str]) -> None:
    faults, node = faulty_node
    dax = open_dax(dax_url(node))
    key = {"pk": {"S": "fault"}, "sk": {"N": "1"}}
    dax.put_item(TableName=tables["range"], Item=key)  # schema known, item cached
    faults.fail_next = [(status, upstream_code)] * 3  # the client makes up to 3 attempts
    with pytest.raises(ClientError) as failed:
        dax.put_item(TableName=tables["range"], Item=key)
    assert _code(failed) in client_codes
    faults.fail_next = []
    assert dax.get_item(TableName=tables["range"], Key=key)["Item"] == key
