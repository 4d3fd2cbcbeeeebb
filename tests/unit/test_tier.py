"""The shared tier's pure parts: key names and answers, the write wrapper, and worker write stamps."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.cache import stamps
from daxd.cache.generations import Generations
from daxd.cache.item_cache import ItemCache
from daxd.cache.stamps import Stamps
from daxd.cache.store import Store
from daxd.config import ConfigError, load
from daxd.drivers import run_plan_sync
from daxd.messages import Call
from daxd.model.errors import ConditionalCheckFailedException
from daxd.tier.client import TlsFiles, primaries_of
from daxd.tier.shared import (
    DOWN,
    TABLE_DISTRUST,
    SharedTier,
    TierCall,
    decode_lookup,
    decode_page,
    encode_lookup,
    item_keys,
    page_key,
    parse_invalidation,
    query_generation,
    table_entry_patterns,
)

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
    key = b'{"pk":{"S":"a}b"}}'
    item = parse_invalidation(item_keys("Music", key)[1])
    assert item is not None and (item.table, item.key, item.queries) == ("Music", key, False)
    part = parse_invalidation(query_generation("Music", b'{"S":"p}1"}')[0])
    assert part is not None and (part.table, part.partition, part.queries) == ("Music", b'{"S":"p}1"}', True)
    assert parse_invalidation(query_generation("Music", None)[0]) is None  # not tracked: partitions say it all
    table = parse_invalidation(TABLE_DISTRUST + b"Music")                  # a stream reader distrusted it
    assert table is not None and (table.table, table.partition, table.queries) == ("Music", None, True)
    assert parse_invalidation(item_keys("Music", key)[0]) is None
    assert parse_invalidation(b"dx:g:no-tag") is None
    assert parse_invalidation(b"other") is None


def slot_tag(name: bytes) -> bytes:
    """The part of a key Valkey cluster hashes: between the first { and the first } after it."""
    start = name.index(b"{")
    return name[start + 1:name.index(b"}", start)]


def test_keys_one_script_or_mget_touches_share_a_hash_tag() -> None:
    key = b'{"pk":{"S":"x"},"sk":{"N":"1"}}'
    assert len({slot_tag(name) for name in item_keys("T", key)}) == 1
    other = item_keys("T", b'{"pk":{"S":"x"},"sk":{"N":"2"}}')
    assert slot_tag(other[0]) != slot_tag(item_keys("T", key)[0])  # one partition still spreads over shards
    for partition in (b'{"S":"x"}', None):
        generation, marker = query_generation("T", partition)
        page = page_key("T", partition, b'Query{"TableName":"T"}')
        assert len({slot_tag(generation), slot_tag(marker), slot_tag(page)}) == 1
    assert page_key("T", None, b"Scan{}") != page_key("T", None, b"Scan{ }")


def test_table_entry_patterns_match_every_item_and_page_of_the_table_and_nothing_else() -> None:
    names = [item_keys("T", b'{"pk":{"S":"x"}}')[0], page_key("T", b'{"S":"x"}', b"Query{}"), page_key("T", None, b"Scan{}")]
    others = [item_keys("T2", b'{"pk":{"S":"x"}}')[0], page_key("T2", None, b"Scan{}"), item_keys("T", b"k")[1],
              query_generation("T", b'{"S":"x"}')[0]]
    patterns = table_entry_patterns("T")
    assert all(any(fnmatch.fnmatchcase(n.decode("latin-1"), p.decode("latin-1")) for p in patterns) for n in names)
    assert not any(fnmatch.fnmatchcase(n.decode("latin-1"), p.decode("latin-1")) for p in patterns for n in others)


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
    ((names, (mode, value, ttl, window)),), bumps, _ = commit.args
    assert names == item_keys("T", b'{"pk":{"S":"a"}}')
    assert bumps == (query_generation("T", b'{"S":"a"}'), query_generation("T", None))
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
    assert calls[-1].args[0][0][1][0] == b"e"  # type: ignore[attr-defined]
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


QUERY = {"TableName": "T", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
PAGE = b'{"Items":[{"pk":{"S":"a"}}],"Count":1,"ScannedCount":1}'


def test_a_query_page_is_served_from_the_tier_only_under_its_current_generation() -> None:
    acc, _ = _tiered()
    seen: list[Call] = []
    answers = {"DescribeTable": SCHEMA, "tier.get": encode_lookup(b"7|" + PAGE, b"7", None)}

    def perform(call: Call) -> bytes:
        seen.append(call)
        return answers[call.operation]

    assert run_plan_sync(acc.plan("Query", QUERY), perform).body == PAGE
    assert seen[-1].args[1] == query_generation("T", b'{"S":"a"}')[0]  # type: ignore[attr-defined]
    assert acc.metrics.counts["daxd_shared_tier_hits"] == {"Query": 1}
    assert run_plan_sync(acc.plan("Query", QUERY), perform).body == PAGE
    assert [c.operation for c in seen].count("tier.get") == 1  # the second was an L1 hit
    stale = decode_page(encode_lookup(b"7|" + PAGE, b"8", b"1"))  # a write bumped it since the page was filled
    assert (stale.found, stale.generation, stale.recent) == (False, b"8", True)


def test_a_query_page_fill_is_guarded_and_refused_fills_stay_out_of_l1() -> None:
    acc, _ = _tiered()
    seen: list[Call] = []
    answers = {"DescribeTable": SCHEMA, "tier.get": encode_lookup(None, b"3", b"1"), "Query": PAGE, "Scan": PAGE,
               "tier.page_fill": b"0"}

    def perform(call: Call) -> bytes:
        seen.append(call)
        return answers[call.operation]

    run_plan_sync(acc.plan("Query", QUERY), perform)
    query = next(c for c in seen if c.operation == "Query")
    assert orjson.loads(query.body)["ConsistentRead"] is True  # the partition was written recently somewhere
    fill = seen[-1]
    assert fill.operation == "tier.page_fill"
    (page, generation), (token, value, ttl) = fill.args  # type: ignore[attr-defined]
    request = b"Query" + orjson.dumps(QUERY, option=orjson.OPT_SORT_KEYS)
    assert (page, generation) == (page_key("T", b'{"S":"a"}', request), query_generation("T", b'{"S":"a"}')[0])
    assert (token, value, ttl) == (b"3", b"3|" + PAGE, "300000")
    run_plan_sync(acc.plan("Scan", {"TableName": "T"}), perform)
    assert seen[-1].args[0][0].startswith(b"dx:qs:{T}")  # type: ignore[attr-defined]  # a Scan depends on the table
    run_plan_sync(acc.plan("Query", QUERY), perform)
    assert [c.operation for c in seen].count("Query") == 2  # the refused fill was not kept in L1


def test_while_the_tier_is_down_l1_caches_under_the_degraded_ttl_only() -> None:
    now = [0.0]
    acc = Accelerator(CacheSettings(), timer=lambda: now[0])
    tier = SharedTier(item_ttl=300, consistent_window=5, degraded_ttl=1.0)
    acc.tier = tier
    acc.on_write = tier.outbox.extend
    acc.shared_tier_lost(True)
    upstream = {"GetItem": b'{"Item":{"pk":{"S":"a"}}}', "DescribeTable": SCHEMA, "Query": PAGE}
    sent: list[str] = []

    def perform(call: Call) -> bytes:
        sent.append(call.operation)
        return DOWN if isinstance(call, TierCall) else upstream[call.operation]

    request = {"TableName": "T", "Key": {"pk": {"S": "a"}}}
    for _ in range(2):
        run_plan_sync(acc.plan("GetItem", request), perform)
        run_plan_sync(acc.plan("Query", QUERY), perform)
    assert (sent.count("GetItem"), sent.count("Query")) == (1, 1)  # cached in L1 meanwhile
    now[0] = 1.5
    run_plan_sync(acc.plan("GetItem", request), perform)
    run_plan_sync(acc.plan("Query", QUERY), perform)
    assert (sent.count("GetItem"), sent.count("Query")) == (2, 2)  # but not past the degraded TTL
    acc.shared_tier_lost(False)  # back: L1 dropped, normal TTLs again
    assert len(acc.store) == 0 and acc.items.ttl_cap is None


def test_the_primaries_to_track_are_read_from_cluster_nodes() -> None:
    listing = """\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
c3 :7003@17003 master - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave b2 0 1 2 connected
e5 127.0.0.1:7005@17005 master,fail - 0 1 5 disconnected
f6 127.0.0.1:7006@17006,host6 master - 0 1 6 connected
"""
    assert primaries_of(listing, "seed") == [("127.0.0.1", 7001), ("127.0.0.1", 7002), ("seed", 7003)]


def test_tls_options_follow_the_flags() -> None:
    assert TlsFiles().options() == {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    assert TlsFiles("ca.pem", "c.pem", "k.pem").options() == {
        "ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": "ca.pem",
        "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem"}


@pytest.mark.parametrize(("flags", "message"), [
    ({"valkey": "redis://v:6379", "valkey_ca": "ca.pem"}, "--valkey-ca: only for a TLS Valkey"),
    ({"valkey": "rediss://v:6379", "valkey_cert": "c.pem"}, "give both"),
    ({"valkey_cluster": True}, "--valkey-cluster: give --valkey redis://"),
    ({"valkey": "unix:///tmp/v.sock", "valkey_cluster": True}, "--valkey-cluster: give --valkey"),
    ({"degraded_ttl": 0.0}, "--degraded-ttl: 0.0 is not between 0 (excluded) and 60"),
])
def test_shared_tier_settings_are_checked(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(flags, {}, None)


def test_shared_tier_settings_from_the_environment() -> None:
    settings = load({}, {"DAXD_VALKEY": "rediss://v:6379", "DAXD_VALKEY_CLUSTER": "true",
                         "DAXD_VALKEY_CA": "ca.pem", "DAXD_DEGRADED_TTL": "0.25"}, None)
    assert (settings.valkey_cluster, settings.valkey_ca, settings.degraded_ttl) == (True, "ca.pem", 0.25)
    with pytest.raises(ConfigError, match="DAXD_VALKEY_CLUSTER: 'maybe' is not true or false"):
        load({}, {"DAXD_VALKEY": "redis://v:6379", "DAXD_VALKEY_CLUSTER": "maybe"}, None)
