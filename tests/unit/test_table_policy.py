"""Per-table cache policy: parsing, matching, and what each setting changes in the Accelerator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.config import ConfigError, load
from daxd.drivers import run_plan_sync
from daxd.policy import TablePolicies, TablePolicy, parse_tables
from tests.unit.test_accelerator import Clock, Upstream

KEY = {"pk": {"S": "a"}, "sk": {"N": "1"}}
ITEM = {**KEY, "v": {"S": "x"}}
POLICIES = parse_tables({
    "Balances": {"cache": False},
    "Music": {"item_ttl": 3600, "query_ttl": 60},
    "Events*": {"query_cache": False},
    "Events-hot*": {"item_ttl": 5},
    "Forever": {"item_ttl": 0},
})


@pytest.fixture
def clock() -> Clock:
    return Clock()


def accelerator(clock: Clock, **settings: Any) -> Accelerator:
    return Accelerator(CacheSettings(item_ttl=10, query_ttl=10, policies=POLICIES, **settings), timer=clock)


def run(acc: Accelerator, upstream: Upstream, operation: str, table: str, **request: Any) -> dict[str, Any]:
    return run_plan_sync(acc.plan(operation, {"TableName": table, **request}), upstream).data


def test_matching_exact_then_longest_prefix_then_flags(clock: Clock) -> None:
    acc = accelerator(clock)
    assert acc.policy("Music").describe() == {"cache": True, "item_ttl": 3600.0, "query_ttl": 60.0,
                                              "query_cache": True, "rule": "Music"}
    assert acc.policy("Events-1").query_cache is False and acc.policy("Events-1").item_ttl == 10
    hot = acc.policy("Events-hot-1")
    assert (hot.rule, hot.item_ttl, hot.query_cache) == ("Events-hot*", 5, True)  # the longer prefix wins alone
    assert acc.policy("Balances").cache is False and acc.policy("Balances").query_cache is False
    assert acc.policy("Other").rule is None and acc.policy("Other").item_ttl == 10
    view = acc.policies_view()
    assert view["default"] == {"cache": True, "item_ttl": 10, "query_ttl": 10, "query_cache": True}
    assert view["rules"]["Balances"] == {"cache": False, "query_cache": True}
    assert set(view["tables"]) == {"Balances", "Forever", "Music"}


def test_query_ttl_zero_globally_can_be_turned_on_for_one_table(clock: Clock) -> None:
    acc = Accelerator(CacheSettings(query_ttl=0, policies=parse_tables({"Music": {"query_ttl": 30}})), timer=clock)
    assert acc.policy("Music").query_cache and not acc.policy("Other").query_cache


@pytest.mark.parametrize(("table", "expires_after"), [("Music", 3600), ("Events-hot-9", 5), ("Other", 10)])
def test_item_ttl_per_table(clock: Clock, table: str, expires_after: float) -> None:
    acc, upstream = accelerator(clock), Upstream()
    upstream.answer("GetItem", {"Item": ITEM}, {"Item": ITEM})
    for _ in range(2):
        run(acc, upstream, "GetItem", table, Key=KEY)
    assert upstream.count("GetItem") == 1
    clock.now += expires_after - 0.5
    run(acc, upstream, "GetItem", table, Key=KEY)
    assert upstream.count("GetItem") == 1
    clock.now += 1
    run(acc, upstream, "GetItem", table, Key=KEY)
    assert upstream.count("GetItem") == 2


def test_item_ttl_zero_keeps_items_until_evicted(clock: Clock) -> None:
    acc, upstream = accelerator(clock), Upstream()
    upstream.answer("GetItem", {"Item": ITEM})
    run(acc, upstream, "GetItem", "Forever", Key=KEY)
    clock.now += 10**7
    run(acc, upstream, "GetItem", "Forever", Key=KEY)
    assert upstream.count("GetItem") == 1


def test_a_never_cached_table_is_forwarded_and_stores_nothing(clock: Clock) -> None:
    acc, upstream = accelerator(clock), Upstream()
    upstream.answer("GetItem", {"Item": ITEM}, {"Item": {**ITEM, "v": {"S": "y"}}})
    upstream.answer("Query", {"Items": [], "Count": 0}, {"Items": [], "Count": 0})
    upstream.answer("PutItem", {})
    upstream.answer("BatchGetItem", {"Responses": {"Balances": [ITEM]}})
    assert run(acc, upstream, "GetItem", "Balances", Key=KEY)["Item"]["v"] == {"S": "x"}
    run(acc, upstream, "PutItem", "Balances", Item=ITEM)
    assert run(acc, upstream, "GetItem", "Balances", Key=KEY)["Item"]["v"] == {"S": "y"}  # a bypass write shows
    key_condition = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "a"}}}
    run(acc, upstream, "Query", "Balances", **key_condition)
    run(acc, upstream, "Query", "Balances", **key_condition)
    run_plan_sync(acc.plan("BatchGetItem", {"RequestItems": {"Balances": {"Keys": [KEY]}}}), upstream)
    assert (upstream.count("GetItem"), upstream.count("Query"), upstream.count("BatchGetItem")) == (2, 2, 1)
    assert len(acc.store) == 0 and upstream.count("DescribeTable") == 0
    assert acc.item_ref({"TableName": "Balances", "Key": KEY}) is None


def test_query_cache_off_for_one_table_only(clock: Clock) -> None:
    acc, upstream = accelerator(clock), Upstream()
    page = {"Items": [ITEM], "Count": 1, "ScannedCount": 1}
    upstream.answer("Scan", page, page, page)
    upstream.answer("GetItem", {"Item": ITEM})
    for _ in range(2):
        run(acc, upstream, "Scan", "Events-1")
    assert upstream.count("Scan") == 2
    run(acc, upstream, "GetItem", "Events-1", Key=KEY)
    run(acc, upstream, "GetItem", "Events-1", Key=KEY)
    assert upstream.count("GetItem") == 1  # its items are still cached
    for _ in range(2):
        run(acc, upstream, "Scan", "Other")
    assert upstream.count("Scan") == 3


def test_query_ttl_per_table(clock: Clock) -> None:
    acc, upstream = accelerator(clock), Upstream()
    page = {"Items": [], "Count": 0, "ScannedCount": 0}
    upstream.answer("Scan", page, page)
    run(acc, upstream, "Scan", "Music")
    clock.now += 59
    run(acc, upstream, "Scan", "Music")
    assert upstream.count("Scan") == 1
    clock.now += 2
    run(acc, upstream, "Scan", "Music")
    assert upstream.count("Scan") == 2


@pytest.mark.parametrize(("section", "fragment"), [
    ({"Bad*Name": {}}, "[tables.\"Bad*Name\"]: 'Bad*Name' is not a table name"),
    ({"T": {"cache": "no"}}, "[tables.T]: cache must be true or false"),
    ({"T": {"item_ttl": -1}}, "[tables.T]: item_ttl must be a number of seconds >= 0"),
    ({"T": {"query_ttl": True}}, "query_ttl must be a number"),
    ({"T": {"ttl": 3}}, "[tables.T]: unknown setting(s) ttl"),
    ({"T": 3}, "[tables.T]: must be a table"),
    ([], "[tables] must be a table"),
])
def test_bad_sections_are_refused_naming_the_table(section: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as bad:
        parse_tables(section)
    assert fragment in str(bad.value)


def test_the_config_file_carries_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "daxd.toml"
    path.write_text('item_ttl = 30\n[tables.Balances]\ncache = false\n[tables."Events*"]\nquery_cache = false\n')
    settings = load({}, {"DAXD_TABLES": "ignored"}, path)
    assert settings.item_ttl == 30
    assert settings.tables == TablePolicies({"Balances": TablePolicy(cache=False),
                                             "Events*": TablePolicy(query_cache=False)})
    path.write_text("[tables.Balances]\ncache = 0\n")
    with pytest.raises(ConfigError, match=r"tables.Balances\]: cache must be true or false"):
        load({}, {}, path)
    path.write_text('[permissions.K]\ntables = ["T"]\noperations = ["read"]\n')
    with pytest.raises(ConfigError, match="same file as the"):
        load({}, {}, path)


def test_describe_is_json(clock: Clock) -> None:
    view = orjson.loads(orjson.dumps(accelerator(clock).policies_view()))
    assert view["tables"]["Forever"]["item_ttl"] == 0
