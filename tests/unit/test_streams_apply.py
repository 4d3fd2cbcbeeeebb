"""Applying DynamoDB Streams records to the cache: images, removals, order, races."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.cache.stream_order import KeyOrder
from daxd.drivers import run_plan_sync, step
from daxd.messages import Call, Response
from daxd.model.keys import TableSchema, canonical_key
from daxd.model.stream_records import MalformedRecord, Outcome, StreamRecord
from tests.unit.test_accelerator import DESCRIBE, KEY, TABLE, Clock, Upstream

STREAM = "arn:aws:dynamodb:ddblocal:000000000000:table/t/stream/1"


def record(sequence: int, event: str = "MODIFY", image: dict[str, Any] | None = None, *,
           keys: dict[str, Any] = KEY, created: float | None = None, stream: str = STREAM) -> StreamRecord:
    return StreamRecord(table=TABLE, stream=stream, event=event, keys=keys, sequence=sequence,
                        new_image=image, created=created)


def apply(acc: Accelerator, rec: StreamRecord, age: float | None = 0.5) -> Outcome:
    """Apply a record created ``age`` seconds ago (records from DynamoDB always carry their time)."""
    return acc.apply_stream_record(rec, age)


def item(value: str, **extra: Any) -> dict[str, Any]:
    return {**KEY, "v": {"S": value}, **extra}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def acc(clock: Clock) -> Accelerator:
    accelerator = Accelerator(CacheSettings(item_ttl=10, query_ttl=10, consistent_window=2), timer=clock)
    accelerator.schemas[TABLE] = TableSchema.from_description(orjson.loads(DESCRIBE)["Table"])
    return accelerator


def cached(acc: Accelerator, keys: dict[str, Any] = KEY) -> Any:
    entry = acc.items.get(TABLE, canonical_key(keys))
    if entry is None:
        return "miss"
    return None if entry.item is None else orjson.loads(entry.item)


def get(acc: Accelerator, up: Upstream, **request: Any) -> dict[str, Any]:
    return run_plan_sync(acc.plan("GetItem", {"TableName": TABLE, "Key": KEY, **request}), up).data


def test_insert_and_modify_put_the_new_image(acc: Accelerator) -> None:
    assert apply(acc, record(1, "INSERT", item("a"))) is Outcome.PUT
    assert cached(acc) == item("a")
    assert apply(acc, record(2, "MODIFY", item("b"))) is Outcome.PUT
    up = Upstream()
    assert get(acc, up)["Item"] == item("b")
    assert up.count("GetItem") == 0


def test_remove_is_a_negative_entry(acc: Accelerator) -> None:
    apply(acc, record(1, "INSERT", item("a")))
    assert apply(acc, record(2, "REMOVE")) is Outcome.NEGATIVE
    assert cached(acc) is None
    assert get(acc, Upstream()) == {}


def test_keys_only_and_old_image_records_evict(acc: Accelerator) -> None:
    apply(acc, record(1, "INSERT", item("a")))
    assert apply(acc, record(2, "MODIFY")) is Outcome.EVICTED
    assert cached(acc) == "miss"


def test_older_and_duplicate_records_are_ignored(acc: Accelerator) -> None:
    apply(acc, record(5, "MODIFY", item("new")))
    assert apply(acc, record(4, "MODIFY", item("old"))) is Outcome.STALE
    assert apply(acc, record(5, "MODIFY", item("new"))) is Outcome.STALE
    assert apply(acc, record(4, "REMOVE")) is Outcome.STALE
    assert cached(acc) == item("new")


def test_order_is_per_key(acc: Accelerator) -> None:
    other = {"pk": {"S": "b"}, "sk": {"N": "1"}}
    apply(acc, record(5, "MODIFY", item("x")))
    assert apply(acc, record(3, "INSERT", {**other, "v": {"S": "y"}}, keys=other)) is Outcome.PUT
    assert cached(acc, other) == {**other, "v": {"S": "y"}}


def test_a_new_stream_of_the_table_restarts_the_order(acc: Accelerator, clock: Clock) -> None:
    apply(acc, record(5, "MODIFY", item("x")))
    clock.now += 5  # the new stream's record was created after the last change to the key
    assert apply(acc, record(1, "MODIFY", item("y"), stream=STREAM + "b")) is Outcome.PUT
    assert cached(acc) == item("y")


def test_a_record_beats_the_fill_in_flight(acc: Accelerator) -> None:
    stale_read = acc.plan("GetItem", {"TableName": TABLE, "Key": KEY})
    call = step(stale_read)
    assert isinstance(call, Call) and call.operation == "GetItem"  # the miss is in flight ...
    apply(acc, record(7, "MODIFY", item("streamed")))  # ... when the record arrives
    done = step(stale_read, orjson.dumps({"Item": item("replica-lag")}))
    assert isinstance(done, Response)
    assert cached(acc) == item("streamed")


def test_a_record_wins_over_what_a_fill_stored_before_it(acc: Accelerator) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": item("stale")})
    get(acc, up)
    assert apply(acc, record(7, "MODIFY", item("fresh")), age=3.0) is Outcome.PUT
    assert get(acc, up)["Item"] == item("fresh")


def test_a_late_record_never_overwrites_a_newer_local_write(acc: Accelerator, clock: Clock) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run_plan_sync(acc.plan("PutItem", {"TableName": TABLE, "Item": item("local")}), up)
    clock.now += 0.5
    # The record of an earlier bypass write, created 2 s ago, arrives after our write was acknowledged.
    assert apply(acc, record(3, "MODIFY", item("older")), age=2.0) is Outcome.EVICTED
    assert cached(acc) == "miss"
    # The next record of the key follows one the stream applied with nothing in between: trusted.
    assert apply(acc, record(4, "MODIFY", item("local")), age=2.0) is Outcome.PUT
    assert cached(acc) == item("local")


def test_an_unknown_age_is_trusted_only_after_a_record_of_the_key(acc: Accelerator) -> None:
    assert apply(acc, record(1, "MODIFY", item("a")), age=None) is Outcome.EVICTED
    assert apply(acc, record(2, "MODIFY", item("b")), age=None) is Outcome.PUT


def test_a_key_written_after_the_last_record_is_evicted_not_overwritten(acc: Accelerator) -> None:
    apply(acc, record(1, "MODIFY", item("a")))
    up = Upstream()
    up.answer("DeleteItem", {})
    run_plan_sync(acc.plan("DeleteItem", {"TableName": TABLE, "Key": KEY}), up)
    assert apply(acc, record(2, "MODIFY", item("b"))) is Outcome.EVICTED


def test_records_invalidate_the_partitions_queries_and_the_scans(acc: Accelerator) -> None:
    up = Upstream()
    page = {"Items": [item("a")], "Count": 1, "ScannedCount": 1}
    up.answer("Query", page, page)
    up.answer("Scan", page, page)
    query = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    for _ in range(2):
        run_plan_sync(acc.plan("Query", {"TableName": TABLE, **query}), up)
        run_plan_sync(acc.plan("Scan", {"TableName": TABLE}), up)
    assert (up.count("Query"), up.count("Scan")) == (1, 1)
    apply(acc, record(1, "MODIFY", item("b")))
    run_plan_sync(acc.plan("Query", {"TableName": TABLE, **query}), up)
    run_plan_sync(acc.plan("Scan", {"TableName": TABLE}), up)
    assert (up.count("Query"), up.count("Scan")) == (2, 2)


def test_records_of_unknown_or_uncached_tables_are_skipped(clock: Clock) -> None:
    acc = Accelerator(CacheSettings(tables=frozenset({"other"})), timer=clock)
    assert apply(acc, record(1, "INSERT", item("a"))) is Outcome.SKIPPED
    assert Accelerator(timer=clock).apply_stream_record(record(1, "INSERT", item("a"))) is Outcome.SKIPPED


def test_a_record_is_parsed_from_getrecords_json() -> None:
    raw = {"eventName": "REMOVE", "userIdentity": {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},
           "dynamodb": {"Keys": KEY, "SequenceNumber": "000000000000000000042",
                        "ApproximateCreationDateTime": 1700000000.0}}
    parsed = StreamRecord.from_wire(TABLE, STREAM, raw)
    assert (parsed.sequence, parsed.removed, parsed.by_ttl, parsed.created) == (42, True, True, 1700000000.0)


@pytest.mark.parametrize("raw", [
    None, {}, {"eventName": "INSERT"}, {"eventName": "INSERT", "dynamodb": {"Keys": KEY}},
    {"eventName": "UPSERT", "dynamodb": {"Keys": KEY, "SequenceNumber": "1"}},
    {"eventName": "INSERT", "dynamodb": {"Keys": {}, "SequenceNumber": "1"}},
    {"eventName": "INSERT", "dynamodb": {"Keys": KEY, "SequenceNumber": "x1"}},
    {"eventName": "INSERT", "dynamodb": {"Keys": KEY, "SequenceNumber": "1", "NewImage": []}},
])
def test_malformed_records_are_refused(raw: Any) -> None:
    with pytest.raises(MalformedRecord):
        StreamRecord.from_wire(TABLE, STREAM, raw)


def test_key_order_is_bounded() -> None:
    from daxd.cache.stream_order import Applied

    order = KeyOrder(max_keys=2)
    for name in ("a", "b", "c"):
        order.remember(name, Applied(STREAM, 1, 1))
    assert len(order) == 2
    assert order.last("a", STREAM) is None
    assert order.last("c", STREAM) == Applied(STREAM, 1, 1)
    assert order.last("c", "other") is None


def test_distrust_drops_the_tables_entries_and_fills_in_flight_and_refills_consistently(
        acc: Accelerator, clock: Clock) -> None:
    up = Upstream()
    up.answer("GetItem", {"Item": item("before")})
    get(acc, up)
    in_flight = acc.plan("GetItem", {"TableName": TABLE, "Key": {**KEY, "sk": {"N": "2"}}})
    assert isinstance(step(in_flight), Call)
    assert acc.distrust(TABLE) == 1  # a reader of the table's stream was just positioned
    assert isinstance(step(in_flight, orjson.dumps({"Item": item("racing")})), Response)
    assert cached(acc) == "miss" and len(acc.store) == 0  # the racing fill was not stored either
    assert TABLE in acc.schemas  # unlike a flush, the table stays known and followed
    up.answer("GetItem", {"Item": item("after")})
    assert get(acc, up)["Item"] == item("after")
    assert up.last("GetItem").get("ConsistentRead") is True  # a lagging replica must not bring back "before"
    acc.items.evict(TABLE, canonical_key(KEY))
    clock.now += 3  # past the consistent window (2 s)
    up.answer("GetItem", {"Item": item("later")})
    get(acc, up)
    assert "ConsistentRead" not in up.last("GetItem")
