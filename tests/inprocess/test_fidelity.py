"""What a caller of an accelerated client or resource sees is what boto3 shows: events, validation,
errors and ResponseMetadata, hits included (each case against DynamoDB Local, next to plain boto3)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import daxd
from daxd.model.errors import DaxdError
from tests.harness import CLIENT_CONFIG, CREDENTIALS, client
from tests.inprocess.conftest import canon, key

CLIENT_EVENTS = ("provide-client-params", "before-parameter-build", "before-call", "after-call")


def record(events: Any, seen: list[str], operation: str = "*") -> None:
    """Log every client-level event of ``operation`` fired on ``events``."""
    for name in CLIENT_EVENTS:
        events.register(f"{name}.dynamodb.{operation}",
                        lambda event_name, **kwargs: seen.append(event_name))


def error_of(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a caller can tell of the exception ``call`` raises: class, code, message, operation."""
    try:
        call()
    except ClientError as exc:
        return type(exc), exc.response["Error"]["Code"], exc.response["Error"]["Message"], exc.operation_name
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("no error")


# -- 1. event hooks ----------------------------------------------------------

def test_hits_and_misses_fire_boto3s_client_events_in_boto3s_order(dynamodb_local: Any, table: str) -> None:
    plain = client(dynamodb_local.endpoint)
    api = daxd.accelerate(client(dynamodb_local.endpoint))
    expected: list[str] = []
    record(plain.meta.events, expected, "GetItem")
    seen: list[str] = []
    record(api.meta.events, seen, "GetItem")  # registered after accelerating: still heard
    plain.get_item(TableName=table, Key=key())
    assert expected == [f"{name}.dynamodb.GetItem" for name in CLIENT_EVENTS]
    api.get_item(TableName=table, Key=key())  # a miss
    assert seen == expected
    seen.clear()
    api.get_item(TableName=table, Key=key())  # a hit
    assert seen == expected
    assert api.daxd_stats()["item_hits"] == 1


def test_one_context_per_call_and_after_call_sees_the_answer(api: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "v": {"S": "x"}})
    answers: list[Any] = []
    api.meta.events.register("before-call.dynamodb.GetItem",
                             lambda context, **_: context.__setitem__("mark", "set in before-call"))
    api.meta.events.register("after-call.dynamodb.GetItem",
                             lambda context, parsed, http_response, **_: answers.append(
                                 (context.get("mark"), parsed["Item"]["v"], http_response.status_code)))
    for _ in range(2):  # a miss, then a hit
        api.get_item(TableName=table, Key=key())
    assert answers == [("set in before-call", {"S": "x"}, 200)] * 2


def test_a_before_call_hook_may_answer_a_hit_as_it_answers_boto3(api: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "v": {"S": "cached"}})
    api.get_item(TableName=table, Key=key())
    stub = {"Item": {"v": {"S": "from the hook"}}, "ResponseMetadata": {"HTTPStatusCode": 200}}

    class Http:
        status_code = 200

    api.meta.events.register("before-call.dynamodb.GetItem", lambda **_: (Http(), stub), unique_id="stub")
    assert api.get_item(TableName=table, Key=key())["Item"] == {"v": {"S": "from the hook"}}
    api.meta.events.unregister("before-call.dynamodb.GetItem", unique_id="stub")
    assert api.get_item(TableName=table, Key=key())["Item"]["v"] == {"S": "cached"}


def test_provide_client_params_may_replace_the_parameters(api: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key("real"), "v": {"S": "real"}})
    api.meta.events.register("provide-client-params.dynamodb.GetItem",
                             lambda params, **_: {**params, "Key": key("real")})
    for _ in range(2):
        assert api.get_item(TableName=table, Key=key("other"))["Item"]["v"] == {"S": "real"}


def resources(dynamodb_local: Any) -> tuple[Any, Any]:
    made = [boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint, config=CLIENT_CONFIG, **CREDENTIALS)
            for _ in range(2)]
    return made[0], daxd.accelerate(made[1])


def untyped(resource: Any) -> None:
    """What users do to keep boto3's resource from converting values: unregister its hooks."""
    events = resource.meta.client.meta.events
    events.unregister("before-parameter-build.dynamodb", unique_id="dynamodb-condition-expression")
    events.unregister("before-parameter-build.dynamodb", unique_id="dynamodb-attr-value-input")
    events.unregister("after-call.dynamodb", unique_id="dynamodb-attr-value-output")


def test_a_hook_disabling_the_resources_transformation_is_honoured(dynamodb_local: Any, table: str) -> None:
    plain, accelerated = resources(dynamodb_local)
    results = []
    for resource in (plain, accelerated):
        t = resource.Table(table)
        untyped(resource)  # after making the Table: its creation registers the hooks again
        t.put_item(Item={**key("typed", 1), "n": {"N": "7"}})
        t.put_item(Item={**key("typed", 2), "n": {"N": "8"}})
        results.append([
            canon(t.get_item(Key=key("typed", 1))),
            canon(t.get_item(Key=key("typed", 1))),
            t.scan(FilterExpression="n = :v", ExpressionAttributeValues={":v": {"N": "7"}})["Count"],
            t.scan(FilterExpression="n = :v", ExpressionAttributeValues={":v": {"N": "7"}})["Count"],
        ])
    assert results[0] == results[1]
    assert results[1][0]["Item"]["n"] == {"N": "7"} and results[1][2] == 1


def test_resource_hooks_registered_after_accelerating_fire_for_hits(dynamodb_local: Any, table: str) -> None:
    plain, accelerated = resources(dynamodb_local)
    logs: list[list[str]] = []
    for resource in (plain, accelerated):
        seen: list[str] = []
        record(resource.meta.client.meta.events, seen, "GetItem")
        t = resource.Table(table)
        t.put_item(Item={"pk": "h", "sk": 1})
        for _ in range(2):
            assert t.get_item(Key={"pk": "h", "sk": 1})["Item"] == {"pk": "h", "sk": 1}
        logs.append(seen)
    assert logs[0] == logs[1] and len(logs[1]) == 8
    assert accelerated.meta.client.daxd_stats()["item_hits"] == 2  # the put filled the cache


# -- 2. Config(parameter_validation=False) -----------------------------------

def test_parameter_validation_off_sends_the_request_as_boto3_does(dynamodb_local: Any, table: str) -> None:
    config = CLIENT_CONFIG.merge(Config(parameter_validation=False))
    plain, api = (boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint, config=config, **CREDENTIALS)
                  for _ in range(2))
    api = daxd.accelerate(api)
    bad = [
        lambda c: c.get_item(Key=key()),                                        # TableName missing
        lambda c: c.put_item(TableName=table, Item={"pk": {"S": "v"}, "sk": {"N": "1"}}, Bogus=1),
        lambda c: c.query(TableName=table, KeyConditionExpression="pk = :p"),   # :p undefined
    ]
    for call in bad:
        assert error_of(lambda c=call: c(api)) == error_of(lambda c=call: c(plain))
    assert canon(api.get_item(TableName=table, Key=key())) == canon(plain.get_item(TableName=table, Key=key()))


# -- 3. and 4. errors are boto3's, blamed on the caller's operation ----------

def fresh_pair(dynamodb_local: Any) -> tuple[Any, Any]:
    return client(dynamodb_local.endpoint), daxd.accelerate(client(dynamodb_local.endpoint))


@pytest.mark.parametrize("call", [
    lambda c, t: c.put_item(TableName=t, Item={"pk": {"S": "a"}}),
    lambda c, t: c.update_item(TableName=t, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
                               ExpressionAttributeValues={":v": {"S": "x"}}),
    lambda c, t: c.delete_item(TableName=t, Key={"pk": {"S": "a"}, "other": {"N": "1"}}),
    lambda c, t: c.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": {"sk": {"N": "1"}}}}]}),
    lambda c, t: c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": {"pk": {"S": "a"}}}}]),
], ids=["put", "update", "delete", "batch_write", "transact_write"])
def test_a_key_missing_on_a_fresh_wrapper_raises_boto3s_error(dynamodb_local: Any, table: str, call: Any) -> None:
    plain, api = fresh_pair(dynamodb_local)
    ours = error_of(lambda: call(api, table))
    assert ours == error_of(lambda: call(plain, table))
    assert not issubclass(ours[0], DaxdError)
    assert error_of(lambda: call(api, table)) == ours  # and again, with the schema known


@pytest.mark.parametrize("call", [
    lambda c: c.query(TableName="no-such-table", KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "a"}}),
    lambda c: c.scan(TableName="no-such-table"),
    lambda c: c.get_item(TableName="no-such-table", Key=key()),
    lambda c: c.put_item(TableName="no-such-table", Item=key()),
    lambda c: c.update_item(TableName="no-such-table", Key=key(), UpdateExpression="SET v = :v",
                            ExpressionAttributeValues={":v": {"S": "x"}}),
    lambda c: c.delete_item(TableName="no-such-table", Key=key()),
    lambda c: c.batch_get_item(RequestItems={"no-such-table": {"Keys": [key()]}}),
    lambda c: c.batch_write_item(RequestItems={"no-such-table": [{"PutRequest": {"Item": key()}}]}),
], ids=["query", "scan", "get", "put", "update", "delete", "batch_get", "batch_write"])
def test_a_missing_table_is_blamed_on_the_callers_operation(dynamodb_local: Any, call: Any) -> None:
    plain, api = fresh_pair(dynamodb_local)
    ours = error_of(lambda: call(api))
    assert ours == error_of(lambda: call(plain))
    assert ours[0] is plain.exceptions.ResourceNotFoundException or ours[1] != "ResourceNotFoundException"
    assert isinstance(ours[0], type) and ours[3] not in (None, "DescribeTable")


def test_an_error_carries_boto3s_response_dict(dynamodb_local: Any, table: str) -> None:
    plain, api = fresh_pair(dynamodb_local)
    for c in (plain, api):
        c.put_item(TableName=table, Item=key())
    errors = []
    for c in (plain, api):
        with pytest.raises(c.exceptions.ConditionalCheckFailedException) as failed:
            c.put_item(TableName=table, Item=key(), ConditionExpression="attribute_not_exists(pk)",
                       ReturnValuesOnConditionCheckFailure="ALL_OLD")
        errors.append(failed.value)
    ours, theirs = errors[1], errors[0]
    assert type(ours) is type(theirs) and str(ours) == str(theirs)
    assert ours.response.keys() == theirs.response.keys()
    assert canon(ours.response) == canon(theirs.response)
    assert ours.response["ResponseMetadata"].keys() == theirs.response["ResponseMetadata"].keys()


# -- 5. a hit's ResponseMetadata ---------------------------------------------

def test_a_hit_carries_a_response_metadata_of_boto3s_shape(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "v": {"S": "x"}})
    theirs = ddb.get_item(TableName=table, Key=key())["ResponseMetadata"]
    hits = [api.get_item(TableName=table, Key=key())["ResponseMetadata"] for _ in range(2)]
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    api.query(**query)
    hits.append(api.query(**query)["ResponseMetadata"])
    assert api.daxd_stats()["hits"] == 3
    for hit in hits:
        assert hit.keys() == theirs.keys()
        assert hit["HTTPStatusCode"] == 200 and hit["RetryAttempts"] == 0
        assert len(hit["RequestId"]) == 52 and hit["RequestId"].isalnum()
        headers = hit["HTTPHeaders"]
        assert {"content-type", "date", "content-length", "x-amzn-requestid", "x-amz-crc32"} <= headers.keys()
        assert headers["content-type"] == theirs["HTTPHeaders"]["content-type"]
        assert headers["x-amzn-requestid"] == hit["RequestId"]
        assert headers["date"].endswith(" GMT")
    assert hits[0]["RequestId"] != hits[1]["RequestId"]
    body = b'{"Item":{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"x"}}}'
    assert hits[0]["HTTPHeaders"]["content-length"] == str(len(body))
    assert hits[0]["HTTPHeaders"]["x-amz-crc32"] == str(zlib.crc32(body))


def test_a_resource_hit_answers_alike_with_and_without_other_hooks(resource: Any, table: str) -> None:
    """With only the resource's own hooks, a GetItem hit is typed by daxd directly; with any other
    hook, by the resource's hooks: the answers must not differ."""
    from decimal import Decimal

    from boto3.dynamodb.types import Binary
    t = resource.Table(table)
    item = {"pk": "fast", "sk": 1, "n": Decimal("1.5"), "b": Binary(b"\x00"), "ss": {"x", "y"},
            "m": {"l": [Decimal(1), "s", None, True]}}
    t.put_item(Item=item)
    events = resource.meta.client._daxd_events
    assert events.hooks("GetItem") == "resource"
    fast = t.get_item(Key={"pk": "fast", "sk": 1})
    resource.meta.client.meta.events.register("after-call.dynamodb.GetItem", lambda **_: None, unique_id="other")
    assert events.hooks("GetItem") == "other"
    hooked = t.get_item(Key={"pk": "fast", "sk": 1})
    assert fast["Item"] == hooked["Item"] == item
    assert fast["ResponseMetadata"].keys() == hooked["ResponseMetadata"].keys()
    assert resource.meta.client.daxd_stats()["item_hits"] == 2
