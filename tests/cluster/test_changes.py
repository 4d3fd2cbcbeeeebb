"""The Accelerator's on_write hook: what each write tells the peers, and a peer applying it."""

from __future__ import annotations

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.cluster.changes import Change, apply_changes
from daxd.model.errors import ConditionalCheckFailedException
from tests.unit.test_accelerator import KEY, TABLE, Clock, Upstream, run


@pytest.fixture
def told() -> list[Change]:
    return []


@pytest.fixture
def writer(told: list[Change]) -> Accelerator:
    acc = Accelerator(CacheSettings(consistent_window=2), timer=Clock())
    acc.on_write = told.extend
    return acc


def test_each_write_tells_its_image_or_its_eviction(writer: Accelerator, told: list[Change]) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run(writer, up, "PutItem", Item={**KEY, "v": {"S": "1"}})
    assert told[-1].image is not None and orjson.loads(told[-1].image)["v"] == {"S": "1"}
    up.answer("UpdateItem", {"Attributes": {**KEY, "v": {"S": "2"}}}, {"Attributes": {"v": {"S": "2"}}})
    run(writer, up, "UpdateItem", Key=KEY, UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "2"}})
    assert told[-1].image is not None and not told[-1].evicted
    run(writer, up, "UpdateItem", Key=KEY, UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "2"}}, ReturnValues="ALL_OLD")
    assert told[-1].evicted
    up.answer("DeleteItem", {})
    run(writer, up, "DeleteItem", Key=KEY)
    assert told[-1].image is None and not told[-1].evicted
    up.answer("PutItem", ConditionalCheckFailedException("no"))
    with pytest.raises(ConditionalCheckFailedException):
        run(writer, up, "PutItem", Item=KEY, ConditionExpression="attribute_not_exists(pk)")
    assert told[-1].evicted and told[-1].partition is not None
    assert {c.table for c in told} == {TABLE}


def test_a_peer_applying_the_changes_serves_the_writers_image(writer: Accelerator, told: list[Change]) -> None:
    up = Upstream()
    up.answer("PutItem", {})
    run(writer, up, "PutItem", Item={**KEY, "v": {"S": "new"}})
    clock = Clock()
    peer = Accelerator(CacheSettings(consistent_window=2), timer=clock)
    peer_up = Upstream()
    peer_up.answer("GetItem", {"Item": {**KEY, "v": {"S": "old"}}})
    assert run(peer, peer_up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "old"}
    clock.now += 10
    apply_changes(peer, told, quiet=2)
    assert run(peer, peer_up, "GetItem", Key=KEY)["Item"]["v"] == {"S": "new"}  # a hit: no upstream call
    assert peer_up.count("GetItem") == 1
