"""The shared tier's pure parts: key names and answers, the write wrapper, and worker write stamps."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.cache import stamps
from daxd.cache.generations import Generations
from daxd.cache.item_cache import ItemCache
from daxd.cache.stamps import Stamps
from daxd.cache.store import Store
from daxd.drivers import run_plan_sync
from daxd.messages import Call
from daxd.model.errors import ConditionalCheckFailedException
from daxd.tier.shared import DOWN, SharedTier, TierCall, decode_lookup, encode_lookup, parse_invalidation

SCHEMA = orjson.dumps({"Table": {"TableName": "T", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}})


def test_lookup_answers_round_trip() -> None:
    assert decode_lookup(encode_lookup(b'1{"pk":{"S":"a"}}', b"7", None)).item == b'{"pk":{"S":"a"}}'
    negative = decode_lookup(encode_lookup(b"0", b"3", b"1"))
    assert (negative.found, negative.item, negative.generation, negative.recent) == (True, None, b"3", True)
    absent = decode_lookup(encode_lookup(None, None, None))
    assert (absent.found, absent.generation, absent.down) == (False, b"", False)
    assert decode_lookup(DOWN).down


def test_pushed_names_map_to_what_they_invalidate() -> None:
    item = parse_invalidation(b"dx:g:Music\x00" + b"key\x00bytes")
    assert item is not None and (item.table, item.key, item.queries) == ("Music", b"key\x00bytes", False)
    part = parse_invalidation(b"dx:q:p:Music\x00p1")
    assert part is not None and (part.table, part.partition, part.queries) == ("Music", b"p1", True)
    table = parse_invalidation(b"dx:q:t:Music")
    assert table is not None and (table.partition, table.queries) == (None, True)
    assert parse_invalidation(b"dx:i:Music\x00k") is None
    assert parse_invalidation(b"other") is None


def _tiered() -> tuple[Accelerator, SharedTier]:
    acc = Accelerator(CacheSettings())
    tier = SharedTier(item_ttl=300, consistent_window=5)
    acc.tier = tier
    acc.on_write = tier.outbox.extend
    return acc, tier


def test_a_write_commits_its_changes_to_the_tier_before_it_answers() -> None:
    acc, _ = _tiered()
    calls: list[Call] = []

    def perform(call: Call) -> bytes:
        calls.append(call)
        return SCHEMA if call.operation == "DescribeTable" else b"{}" if call.operation == "PutItem" else b"1"

    run_plan_sync(acc.plan("PutItem", {"TableName": "T", "Item": {"pk": {"S": "a"}, "n": {"N": "1.50"}}}), perform)
    assert [c.operation for c in calls] == ["DescribeTable", "PutItem", "tier.commit"]
    commit = calls[-1]
    assert isinstance(commit, TierCall)
    ((names, (mode, value, ttl, window)),) = commit.args
    assert names[0].startswith(b"dx:i:T\x00") and names[1].startswith(b"dx:g:T\x00")
    assert names[3].startswith(b"dx:q:p:T\x00")
    assert (mode, orjson.loads(value[1:]), ttl, window) == (b"s", {"pk": {"S": "a"}, "n": {"N": "1.5"}}, "300000", "5000")


def test_a_failed_write_still_evicts_in_the_tier_then_fails() -> None:
    acc, tier = _tiered()
    calls: list[Call] = []

    def perform(call: Call) -> bytes:
        calls.append(call)
        if call.operation == "PutItem":
            raise ConditionalCheckFailedException("The conditional request failed")
        return SCHEMA if call.operation == "DescribeTable" else b"1"

    with pytest.raises(ConditionalCheckFailedException):
        run_plan_sync(acc.plan("PutItem", {"TableName": "T", "Item": {"pk": {"S": "a"}}}), perform)
    assert calls[-1].operation == "tier.commit"
    assert calls[-1].args[0][1][0] == b"e"  # type: ignore[attr-defined]
    assert tier.outbox == []


def test_an_l1_miss_is_served_from_the_tier_and_fills_l1() -> None:
    acc, _ = _tiered()
    answers = {"tier.get": encode_lookup(b'1{"pk":{"S":"a"},"v":{"S":"x"}}', b"4", None)}
    seen: list[str] = []

    def perform(call: Call) -> bytes:
        seen.append(call.operation)
        return answers[call.operation]

    request = {"TableName": "T", "Key": {"pk": {"S": "a"}}}
    assert orjson.loads(run_plan_sync(acc.plan("GetItem", request), perform).body)["Item"]["v"] == {"S": "x"}
    assert orjson.loads(run_plan_sync(acc.plan("GetItem", request), perform).body)["Item"]["v"] == {"S": "x"}
    assert seen == ["tier.get"]  # the second read was an L1 hit


def test_a_miss_whose_tier_fill_was_refused_is_not_cached_in_l1() -> None:
    acc, _ = _tiered()
    answers = {"tier.get": encode_lookup(None, b"4", b"1"), "GetItem": b'{"Item":{"pk":{"S":"a"}}}', "tier.fill": b"0"}
    sent: list[Call] = []

    def perform(call: Call) -> bytes:
        sent.append(call)
        return answers[call.operation]

    request = {"TableName": "T", "Key": {"pk": {"S": "a"}}}
    run_plan_sync(acc.plan("GetItem", request), perform)
    assert orjson.loads(sent[1].body)["ConsistentRead"] is True  # written recently through some node
    assert sent[2].args[1][0] == b"4"  # type: ignore[attr-defined]  # the fill is guarded by the generation read
    run_plan_sync(acc.plan("GetItem", request), perform)
    assert [c.operation for c in sent].count("tier.get") == 2  # nothing was cached


def test_a_push_evicts_without_stamping_and_a_write_stamps(tmp_path: Path) -> None:
    path = str(tmp_path / "stamps")
    stamps.create(path, slots=64)
    mine, other = Stamps(path, 0), Stamps(path, 1)
    items = ItemCache(Store(1 << 20), ttl=0, flushes=Generations(), timer=lambda: 0.0)
    items.stamps = mine
    items.fill("T", b"k", "", b'{"a":1}', items.token("T", b"k"))
    assert items.get("T", b"k") is not None
    items.evict("T", b"other-key", share=False)
    before = mine.read("T", b"k")
    items.fill("T", b"k", "", b'{"a":1}', items.token("T", b"k"))
    other.bump("T", b"k")  # another worker wrote the key
    assert mine.read("T", b"k") != before
    assert items.get("T", b"k") is None
    token = items.token("T", b"k")
    other.bump("T", b"k")  # a write between a miss's read and its fill
    assert not items.fill("T", b"k", "", b'{"a":0}', token)


def test_stamps_never_repeat_for_one_worker(tmp_path: Path) -> None:
    path = str(tmp_path / "stamps")
    stamps.create(path, slots=4)
    table = Stamps(path, 3)
    seen = set()
    for _ in range(1000):
        table.bump("T", b"k")
        value = table.read("T", b"k")
        assert value not in seen and value & 0xFF == 3
        seen.add(value)
