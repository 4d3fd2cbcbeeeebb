"""The cache policy, stepped by hand through its sans-IO plans.

Each upstream call a plan makes is answered here with the bytes DynamoDB
would send, so races (a write landing while a miss is in flight) can be
staged exactly.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.drivers import run_plan_sync, step
from daxd.messages import Call, Response
from daxd.model.errors import (
    ConditionalCheckFailedException,
    DaxdError,
    ResourceNotFoundException,
    ValidationException,
)

TABLE = "t"
DESCRIBE = orjson.dumps({"Table": {
    "TableName": TABLE,
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
}})
KEY = {"pk": {"S": "a"}, "sk": {"N": "1"}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Scripted DynamoDB: answers by operation; records every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: dict[str, list[Any]] = {}

    def answer(self, operation: str, *replies: Any) -> None:
        self.answers.setdefault(operation, []).extend(replies)

    def __call__(self, call: Call) -> bytes:
        self.calls.append(call)
        if call.operation == "DescribeTable":
            return DESCRIBE
        reply = self.answers[call.operation].pop(0)
        if isinstance(reply, DaxdError):
            raise reply
        return reply if isinstance(reply, bytes) else orjson.dumps(reply)

    def last(self, operation: str) -> Any:
        return orjson.loads([c for c in self.calls if c.operation == operation][-1].body)

    def count(self, operation: str) -> int:
        return sum(1 for c in self.calls if c.operation == operation)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def acc(clock: Clock) -> Accelerator:
    return Accelerator(CacheSettings(item_ttl=10, query_ttl=10, consistent_window=2), timer=clock)


def run(acc: Accelerator, upstream: Upstream, operation: str, **request: Any) -> dict[str, Any]:
    return run_plan_sync(acc.plan(operation, {"TableName": TABLE, **request}), upstream).data


def test_miss_then_hit_then_expiry(acc: Accelerator, clock: Clock) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "1"}}}, {"Item": {**KEY, "v": {"S": "2"}}})
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "1"}
    assert run(acc, up, "GetItem", Key={"sk": {"N": "1.0"}, "pk": {"S": "a"}})["Item"]["v"] == {"S": "1"}
    assert up.count("GetItem") == 1
    clock.now += 10.1
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "2"}
    assert up.count("GetItem") == 2


def test_not_found_is_cached_as_a_negative_entry(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {})
    assert "Item" not in run(acc, up, "GetItem", Key=KEY)
    assert run(acc, up, "GetItem", Key=KEY) == {}
    assert up.count("GetItem") == 1


def test_fill_after_invalidate_never_stores_the_pre_write_value(acc: Accelerator) -> None:
    up = Upstream()
    stale_read = acc.plan("GetItem", {"TableName": TABLE, "Key": KEY})
    call = step(stale_read)
    assert isinstance(call, Call) and call.operation == "GetItem"  # the miss is in flight ...
    up.answer("PutItem", {})
    run(acc, up, "PutItem", Item={**KEY, "v": {"S": "new"}})  # ... while a write is acknowledged
    done = step(stale_read, orjson.dumps({"Item": {**KEY, "v": {"S": "old"}}}))
    assert isinstance(done, Response)  # the caller of the old read gets its (old) answer ...
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "new"}  # ... the cache keeps the write's image


def test_a_deferred_fill_lands_after_the_answer_and_still_yields_to_a_write(acc: Accelerator) -> None:
    """With ``fill_later`` (the node's async driver) a miss answers before it caches; the fill keeps its token."""
    later: list[Any] = []
    acc.fill_later = later.append
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "1"}}}, {"Item": {**KEY, "v": {"S": "old"}}})
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "1"}
    assert acc.cached_item({"TableName": TABLE, "Key": KEY}) is None  # answered, not yet cached
    later.pop()()
    hit = acc.cached_item({"TableName": TABLE, "Key": KEY})
    assert hit is not None and orjson.loads(hit.item or b"null")["v"] == {"S": "1"}

    acc.flush(TABLE)
    run(acc, up, "GetItem", Key=KEY)  # the old value is read ...
    up.answer("PutItem", {})
    run(acc, up, "PutItem", Item={**KEY, "v": {"S": "new"}})  # ... a write lands before its fill runs ...
    for fill in later:
        fill()
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "new"}  # ... and the write's image stays


def test_recently_written_keys_are_refilled_with_consistent_read(acc: Accelerator, clock: Clock) -> None:
    up = Upstream()
    up.answer("UpdateItem", {"Attributes": {**KEY, "v": {"S": "x"}}})
    run(acc, up, "UpdateItem", Key=KEY, UpdateExpression="SET v = :v", ReturnValues="ALL_OLD",
        ExpressionAttributeValues={":v": {"S": "x"}})  # ALL_OLD: the key is evicted, not cached
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "x"}}}, {"Item": {**KEY, "v": {"S": "x"}}})
    run(acc, up, "GetItem", Key=KEY)
    assert orjson.loads(up.calls[-1].body)["ConsistentRead"] is True
    clock.now += 10.5  # past the window and the TTL
    run(acc, up, "GetItem", Key=KEY)
    assert "ConsistentRead" not in orjson.loads(up.calls[-1].body)


def test_put_item_caches_the_normalized_image(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run(acc, up, "PutItem", Item={**KEY, "n": {"N": "1.50"}, "ns": {"NS": ["1e3"]}})
    assert run(acc, up, "GetItem", Key=KEY)["Item"] == {**KEY, "n": {"N": "1.5"}, "ns": {"NS": ["1000"]}}
    assert up.count("GetItem") == 0


def test_update_item_asks_all_new_and_answers_what_was_asked(acc: Accelerator) -> None:
    up = Upstream()
    image = {**KEY, "v": {"N": "2"}}
    up.answer("UpdateItem", {"Attributes": image})
    response = run(acc, up, "UpdateItem", Key=KEY, UpdateExpression="ADD v :one",
                   ExpressionAttributeValues={":one": {"N": "1"}})
    assert response == {}  # the caller asked NONE (the default)
    assert orjson.loads(up.calls[-1].body)["ReturnValues"] == "ALL_NEW"
    assert run(acc, up, "GetItem", Key=KEY)["Item"] == image


def test_failed_conditional_write_evicts_the_key(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "cached"}}}, {"Item": {**KEY, "v": {"S": "now"}}})
    run(acc, up, "GetItem", Key=KEY)
    up.answer("PutItem", ConditionalCheckFailedException("The conditional request failed"))
    with pytest.raises(ConditionalCheckFailedException):
        run(acc, up, "PutItem", Item=KEY, ConditionExpression="attribute_not_exists(pk)")
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "now"}


def test_query_invalidated_by_writes_to_its_partition_only(acc: Accelerator) -> None:
    up = Upstream()
    query = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    up.answer("Query", {"Items": [], "Count": 0, "ScannedCount": 0})
    run(acc, up, "Query", **query)
    up.answer("PutItem", {}, {})
    run(acc, up, "PutItem", Item={"pk": {"S": "other"}, "sk": {"N": "1"}})
    run(acc, up, "Query", **query)
    assert up.count("Query") == 1  # another partition's write leaves it cached
    run(acc, up, "PutItem", Item={"pk": {"S": "a"}, "sk": {"N": "9"}})
    up.answer("Query", {"Items": [{"pk": {"S": "a"}, "sk": {"N": "9"}}], "Count": 1, "ScannedCount": 1})
    assert run(acc, up, "Query", **query)["Count"] == 1
    assert up.count("Query") == 2


def test_scan_invalidated_by_any_write_to_the_table(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("Scan", {"Items": [], "Count": 0, "ScannedCount": 0}, {"Items": [], "Count": 0, "ScannedCount": 0})
    run(acc, up, "Scan")
    run(acc, up, "Scan")
    assert up.count("Scan") == 1
    up.answer("DeleteItem", {})
    run(acc, up, "DeleteItem", Key=KEY)
    run(acc, up, "Scan")
    assert up.count("Scan") == 2


def test_batch_get_fetches_only_misses_and_never_caches_unprocessed_keys(acc: Accelerator) -> None:
    up = Upstream()
    keys = [{"pk": {"S": str(i)}, "sk": {"N": "1"}} for i in range(4)]
    up.answer("GetItem", {"Item": {**keys[0], "v": {"S": "0"}}})
    run(acc, up, "GetItem", Key=keys[0])
    up.answer("BatchGetItem", {"Responses": {TABLE: [{**keys[1], "v": {"S": "1"}}]},
                               "UnprocessedKeys": {TABLE: {"Keys": [keys[3]]}}})
    response = run_plan_sync(acc.plan("BatchGetItem", {"RequestItems": {TABLE: {"Keys": keys}}}), up).data
    sent = up.last("BatchGetItem")["RequestItems"][TABLE]["Keys"]
    assert sent == keys[1:]  # the cached key was not asked for again
    assert sorted(i["v"]["S"] for i in response["Responses"][TABLE]) == ["0", "1"]
    assert response["UnprocessedKeys"] == {TABLE: {"Keys": [keys[3]]}}
    up.answer("BatchGetItem", {"Responses": {TABLE: [{**keys[3], "v": {"S": "3"}}]}, "UnprocessedKeys": {}})
    again = run_plan_sync(acc.plan("BatchGetItem", {"RequestItems": {TABLE: {"Keys": keys}}}), up).data
    assert up.last("BatchGetItem")["RequestItems"][TABLE]["Keys"] == [keys[3]]  # key 2 is a negative hit
    assert sorted(i["v"]["S"] for i in again["Responses"][TABLE]) == ["0", "1", "3"]


def test_batch_get_naming_a_key_twice_is_left_to_dynamodb(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "cached"}}})
    run(acc, up, "GetItem", Key=KEY)
    up.answer("BatchGetItem", ValidationException("Provided list of item keys contains duplicates"))
    twice = {"RequestItems": {TABLE: {"Keys": [KEY, {"sk": {"N": "1.0"}, "pk": {"S": "a"}}]}}}
    with pytest.raises(ValidationException, match="duplicates"):
        run_plan_sync(acc.plan("BatchGetItem", twice), up)
    assert up.last("BatchGetItem") == twice  # sent as asked, though every key is cached


def test_transaction_cancelled_evicts_every_key_it_named(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "cached"}}}, {"Item": {**KEY, "v": {"S": "fresh"}}})
    run(acc, up, "GetItem", Key=KEY)
    up.answer("TransactWriteItems", DaxdError("cancelled", code="TransactionCanceledException", status=400))
    with pytest.raises(DaxdError):
        run_plan_sync(acc.plan("TransactWriteItems", {"TransactItems": [
            {"ConditionCheck": {"TableName": TABLE, "Key": KEY, "ConditionExpression": "attribute_exists(v)"}}]}), up)
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "fresh"}


def test_a_table_deleted_elsewhere_is_flushed(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run(acc, up, "PutItem", Item=KEY)
    assert len(acc.store) == 1
    up.answer("Query", ResourceNotFoundException("Requested resource not found"))
    with pytest.raises(ResourceNotFoundException):
        run(acc, up, "Query", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    assert len(acc.store) == 0


def test_consumed_capacity_on_a_hit_is_zero(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": KEY, "ConsumedCapacity": {"TableName": TABLE, "CapacityUnits": 0.5}})
    run(acc, up, "GetItem", Key=KEY, ReturnConsumedCapacity="TOTAL")
    hit = run(acc, up, "GetItem", Key=KEY, ReturnConsumedCapacity="TOTAL")
    assert hit == {"Item": KEY, "ConsumedCapacity": {"TableName": TABLE, "CapacityUnits": 0.0}}


def test_one_cacheability_rule_capacity_requests_are_hits_answered_by_the_plan(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": KEY})
    run(acc, up, "GetItem", Key=KEY)
    asking = {"TableName": TABLE, "Key": KEY, "ReturnConsumedCapacity": "INDEXES"}
    assert acc.answers_from_cache(TABLE, asking) and not acc.answers_from_cache(TABLE, {"ConsistentRead": True})
    assert acc.item_ref(asking) is None  # the bare entry is not the answer: the plan adds the capacity
    hit = run(acc, up, "GetItem", Key=KEY, ReturnConsumedCapacity="INDEXES")
    assert hit["ConsumedCapacity"] == {"TableName": TABLE, "CapacityUnits": 0.0, "Table": {"CapacityUnits": 0.0}}
    assert up.count("GetItem") == 1


def test_a_read_made_consistent_for_read_your_writes_reports_the_callers_capacity(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("UpdateItem", {"Attributes": {"w": {"N": "1"}}})
    run(acc, up, "UpdateItem", Key=KEY, UpdateExpression="SET w = :w", ExpressionAttributeValues={":w": {"N": "1"}},
        ReturnValues="UPDATED_NEW")  # evicts the key: the next read is a miss inside the window
    strong = {"TableName": TABLE, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
    up.answer("GetItem", {"Item": KEY, "ConsumedCapacity": strong})
    got = run(acc, up, "GetItem", Key=KEY, ReturnConsumedCapacity="INDEXES")
    assert up.last("GetItem")["ConsistentRead"] is True
    assert got["ConsumedCapacity"] == {"TableName": TABLE, "CapacityUnits": 0.5, "Table": {"CapacityUnits": 0.5}}
    up.answer("BatchGetItem", {"Responses": {TABLE: []}, "ConsumedCapacity": [{"TableName": TABLE, "CapacityUnits": 1.0}]})
    acc.items.evict(TABLE, acc.item_ref({"TableName": TABLE, "Key": KEY})[1])  # type: ignore[index]
    batch = run_plan_sync(acc.plan("BatchGetItem", {"RequestItems": {TABLE: {"Keys": [KEY]}},
                                                    "ReturnConsumedCapacity": "TOTAL"}), up).data
    assert up.last("BatchGetItem")["RequestItems"][TABLE]["ConsistentRead"] is True
    assert batch["ConsumedCapacity"] == [{"TableName": TABLE, "CapacityUnits": 0.5}]


def test_a_batch_get_answered_wholly_from_cache_reports_zero_per_table(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run(acc, up, "PutItem", Item=KEY)
    for mode, entry in (("TOTAL", {"TableName": TABLE, "CapacityUnits": 0.0}),
                        ("INDEXES", {"TableName": TABLE, "CapacityUnits": 0.0, "Table": {"CapacityUnits": 0.0}}),
                        ("NONE", None)):
        got = run_plan_sync(acc.plan("BatchGetItem", {"RequestItems": {TABLE: {"Keys": [KEY]}},
                                                      "ReturnConsumedCapacity": mode}), up).data
        assert got["Responses"] == {TABLE: [KEY]}
        assert got.get("ConsumedCapacity") == (None if entry is None else [entry])
    assert up.count("BatchGetItem") == 0


def test_cached_item_is_the_hit_path_for_front_ends_with_their_own_encoding(acc: Accelerator) -> None:
    up = Upstream()
    request = {"TableName": TABLE, "Key": KEY}
    assert acc.cached_item(request) is None  # a miss: the front end runs the plan
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "x"}}})
    run(acc, up, "GetItem", Key=KEY)
    entry = acc.cached_item(request)
    assert entry is not None and orjson.loads(entry.item or b"null") == {**KEY, "v": {"S": "x"}}
    assert acc.cached_item({**request, "ConsistentRead": True}) is None
    assert acc.metrics.value("daxd_item_cache_hits_total", table=TABLE) == 1.0


def test_two_writes_acknowledged_out_of_order_leave_no_image(acc: Accelerator) -> None:
    first = acc.plan("PutItem", {"TableName": TABLE, "Item": {**KEY, "v": {"S": "first"}}})
    second = acc.plan("PutItem", {"TableName": TABLE, "Item": {**KEY, "v": {"S": "second"}}})
    for plan in (first, second):
        call = step(plan)
        if isinstance(call, Call) and call.operation == "DescribeTable":
            call = step(plan, DESCRIBE)
        assert isinstance(call, Call) and call.operation == "PutItem"  # both writes are in flight
    assert isinstance(step(second, b"{}"), Response)  # DynamoDB applied first, then second,
    assert isinstance(step(first, b"{}"), Response)  # but the acknowledgements arrive the other way round
    up = Upstream()
    up.answer("GetItem", {"Item": {**KEY, "v": {"S": "second"}}})
    assert run(acc, up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "second"}  # not the "first" image
    assert up.count("GetItem") == 1


def test_a_query_is_never_answered_by_a_cached_scan(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("Scan", {"Items": [], "Count": 0, "ScannedCount": 0})
    run(acc, up, "Scan")
    up.answer("Query", ValidationException("Either the KeyConditions or KeyConditionExpression parameter must be specified"))
    with pytest.raises(ValidationException):
        run(acc, up, "Query")


def test_a_request_body_is_checked_once_and_a_bad_one_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import daxd.accelerator as module
    from daxd.model.requests import check_request

    seen: list[str] = []

    def counting(operation: str, request: dict[str, Any]) -> None:
        seen.append(operation)
        check_request(operation, request)

    monkeypatch.setattr(module, "check_request", counting)
    acc = Accelerator()
    good = {"TableName": "t", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    bad = {"TableName": "t", "Key": {"pk": {"N": 3}}}
    for _ in range(3):
        acc.plan("Query", good, orjson.dumps(good))
        with pytest.raises(DaxdError):
            acc.plan("GetItem", bad, orjson.dumps(bad))
    assert seen == ["Query", "GetItem", "GetItem", "GetItem"]
