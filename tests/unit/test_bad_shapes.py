"""No request body of any shape makes the model or the cache policy fail with anything but a DaxdError.

Every data-plane operation's plan is driven to its end against a scripted
DynamoDB that answers as DynamoDB would for a well formed request; a body
the model refuses must be refused with a client error (4xx), never a crash.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from daxd.accelerator import Accelerator, CacheSettings
from daxd.drivers import run_plan_sync
from daxd.messages import Call
from daxd.model.errors import DaxdError, SerializationException, ValidationException
from daxd.model.keys import canonical_key
from daxd.model.requests import check_request
from daxd.model.values import normalize_item, normalize_value
from tests.shapes import DATA_PLANE, garbage, requests, valid_values, values

TABLE = "tbl"
DESCRIBE = orjson.dumps({"Table": {
    "TableName": TABLE,
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "N"}],
}})
#: What DynamoDB answers a well formed request of each operation with (empty results).
ANSWERS = {
    "DescribeTable": DESCRIBE, "GetItem": b"{}", "PutItem": b"{}", "DeleteItem": b"{}",
    "UpdateItem": b'{"Attributes":{"pk":{"S":"a"},"sk":{"N":"1"}}}', "Query": b'{"Items":[],"Count":0}',
    "Scan": b'{"Items":[],"Count":0}', "BatchGetItem": b'{"Responses":{},"UnprocessedKeys":{}}',
    "BatchWriteItem": b'{"UnprocessedItems":{}}', "TransactWriteItems": b"{}", "TransactGetItems": b'{"Responses":[]}',
}
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])


def dynamodb(call: Call) -> bytes:
    return ANSWERS[call.operation]


def outcome(operation: str, body: Any) -> DaxdError | None:
    """Drive one request through a fresh Accelerator; the client error it ended with, if any."""
    acc = Accelerator(CacheSettings())
    try:
        if operation == "GetItem":
            acc.item_ref(body)  # the front ends' hit path reads requests first
        run_plan_sync(acc.plan(operation, body, None), dynamodb)
        if operation == "GetItem":
            acc.cached_item(body)
    except DaxdError as error:
        assert 400 <= error.status < 500, error
        return error
    return None


@settings(EXAMPLES, max_examples=300)
@given(request=requests(TABLE))
def test_any_body_ends_in_an_answer_or_a_client_error(request: tuple[str, Any]) -> None:
    outcome(*request)


@EXAMPLES
@given(value=values.filter(lambda v: v is not None))  # a null member is absent, not a value
def test_any_attribute_value_is_normalized_or_refused_alike_everywhere(value: Any) -> None:
    """Alone, inside an item, or inside a request: the same value gets the same answer (a client error or none)."""
    def refusal(check: Any) -> type[DaxdError] | None:
        try:
            check()
        except (SerializationException, ValidationException) as error:
            return type(error)
        return None

    alone = refusal(lambda: normalize_value(value))
    assert refusal(lambda: normalize_item({"a": value})) is alone
    assert refusal(lambda: check_request("PutItem", {"TableName": TABLE, "Item": {"a": value}})) is alone
    if alone is SerializationException:
        assert refusal(lambda: canonical_key({"pk": value})) is SerializationException


@EXAMPLES
@given(value=valid_values)
def test_well_formed_values_are_never_refused_and_normalize_idempotently(value: Any) -> None:
    once = normalize_value(value)
    assert normalize_value(once) == once
    check_request("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": value}})


@EXAMPLES
@given(body=st.dictionaries(st.sampled_from(["TableName", "Key", "Item", "RequestItems", "TransactItems",
                                             "ExpressionAttributeValues", "ConsistentRead"]), garbage))
def test_any_json_as_a_whole_request_is_a_client_error_or_an_answer(body: dict[str, Any]) -> None:
    for operation in DATA_PLANE:
        outcome(operation, body)


@pytest.mark.parametrize(("value", "error"), [
    ({"N": 3}, SerializationException), ({"N": True}, SerializationException), ({"S": 5}, SerializationException),
    ({"L": {}}, SerializationException), ({"M": []}, SerializationException), ({"B": "!"}, SerializationException),
    ({"NS": "1"}, SerializationException), ({"SS": [1]}, SerializationException), ({"BOOL": "true"}, SerializationException),
    ({"L": None}, ValidationException), ({"NS": None}, ValidationException), ({}, ValidationException),
    ({"S": "a", "N": "1"}, ValidationException), ({"NULL": False}, ValidationException),
    ({"L": [None]}, ValidationException), ({"M": {"a": None}}, ValidationException), ({"N": "1e126"}, ValidationException),
    ({"N": "1e-131"}, ValidationException), ({"N": "1" * 39}, ValidationException), ({"NS": [None]}, ValidationException),
])
def test_each_wrong_shape_gets_dynamodbs_error_class(value: Any, error: type[DaxdError]) -> None:
    with pytest.raises(error):
        normalize_item({"x": value})


def test_null_members_are_absent_and_unknown_members_ignored_then_dropped() -> None:
    assert normalize_value({"S": "x", "N": None, "Q": 1}) == {"S": "x"}
    assert normalize_item({"m": {"M": {"n": {"N": "1.0", "L": None}}}}) == {"m": {"M": {"n": {"N": "1"}}}}


def test_unknown_operation_names_pass_and_are_not_remembered() -> None:
    """The operation name comes from the client: a cache keyed by it would grow without bound."""
    from daxd.model import requests as module

    module.check_request("GetItem", {"TableName": TABLE})
    before = module._operation_checkers.cache_info().currsize
    for index in range(50):
        module.check_request(f"NoSuchOperation{index}", {"Key": []})
    assert module._operation_checkers.cache_info().currsize == before
