"""The upstream misbehaving: throttling, 5xx, slowness, outages and lagging replicas.

DynamoDB Local never does any of that, so a fault-injecting proxy sits between
daxd and DynamoDB Local (tests/faultproxy.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DynamoDBLocal

KEY = {"pk": {"S": "k"}, "sk": {"N": "1"}}


@pytest.fixture
def proxy(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[ThreadedFaultProxy, str]]:
    faults = ThreadedFaultProxy(dynamodb_local.endpoint)
    port = faults.start()
    yield faults, f"http://127.0.0.1:{port}"
    faults.stop()


def error_code(info: Any) -> str:
    return str(info.value.response["Error"]["Code"])


def test_throttling_is_retried_by_the_node(proxy: tuple[ThreadedFaultProxy, str], start_node: Any, table: str) -> None:
    faults, url = proxy
    api = start_node("--upstream-max-attempts", "3", "--streams", "off", upstream=url).client()
    api.describe_table(TableName=table)
    api.put_item(TableName=table, Item=KEY)  # the node now knows the table's key schema
    faults.seen.clear()
    faults.fail_next = [(400, "ProvisionedThroughputExceededException"), (400, "ThrottlingException")]
    api.put_item(TableName=table, Item=KEY)  # succeeds on the third attempt
    assert faults.seen["DynamoDB_20120810.PutItem"] == 3


def test_persistent_5xx_reaches_the_client_as_dynamodb_would_say_it(
        proxy: tuple[ThreadedFaultProxy, str], start_node: Any, table: str) -> None:
    faults, url = proxy
    api = start_node("--upstream-max-attempts", "2", "--streams", "off", upstream=url).client()
    faults.fail_next = [(500, "InternalServerError")] * 2
    with pytest.raises(ClientError) as failed:
        api.get_item(TableName=table, Key=KEY)
    assert error_code(failed) == "InternalServerError"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_upstream_outage_hits_still_served_misses_fail_fast_then_recover(
        proxy: tuple[ThreadedFaultProxy, str], start_node: Any, table: str) -> None:
    faults, url = proxy
    api = start_node("--upstream-timeout", "0.3", "--upstream-max-attempts", "2", "--streams", "off", upstream=url).client()
    api.put_item(TableName=table, Item={**KEY, "v": {"S": "cached"}})
    faults.delay = 5.0  # the upstream stops answering in time
    assert api.get_item(TableName=table, Key=KEY)["Item"]["v"] == {"S": "cached"}
    started = time.monotonic()
    with pytest.raises(ClientError) as failed:
        api.get_item(TableName=table, Key={"pk": {"S": "miss"}, "sk": {"N": "1"}})
    assert time.monotonic() - started < 3.0
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    faults.delay = 0.0
    faults.drop_next = 1  # the first connection after the outage is dropped: retried
    assert "Item" not in api.get_item(TableName=table, Key={"pk": {"S": "miss"}, "sk": {"N": "2"}})


@pytest.mark.parametrize("window", ["5", "0"])
def test_read_your_writes_against_a_lagging_replica(
        proxy: tuple[ThreadedFaultProxy, str], start_node: Any, ddb: Any, table: str, window: str) -> None:
    faults, url = proxy
    api = start_node("--consistent-window", window, "--streams", "off", upstream=url).client()
    ddb.put_item(TableName=table, Item={**KEY, "v": {"S": "old"}})
    faults.stale_reads = True  # eventually consistent reads now lag behind at their first answer
    assert api.get_item(TableName=table, Key=KEY)["Item"]["v"] == {"S": "old"}
    api.update_item(TableName=table, Key=KEY, UpdateExpression="SET v = :v", ReturnValues="ALL_OLD",
                    ExpressionAttributeValues={":v": {"S": "new"}})  # ALL_OLD: the key is evicted, not re-imaged
    seen = api.get_item(TableName=table, Key=KEY)["Item"]["v"]
    if window == "0":
        assert seen == {"S": "old"}  # the replica does lag: without the window the stale value comes back
    else:
        assert seen == {"S": "new"}  # the refill used ConsistentRead
