"""The boto3 surface of the accelerated client: validation, hooks, paginators, binary, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from prometheus_client import CollectorRegistry

import daxd
from tests.harness import client, create_table, lists_table
from tests.inprocess.conftest import canon, key


def test_hits_reject_unknown_and_missing_parameters_as_boto3_does(api: Any, ddb: Any, table: str) -> None:
    api.put_item(TableName=table, Item=key())
    api.get_item(TableName=table, Key=key())
    with pytest.raises(ParamValidationError) as ours:
        api.get_item(TableName=table, Key=key(), Bogus=1)
    with pytest.raises(ParamValidationError) as theirs:
        ddb.get_item(TableName=table, Key=key(), Bogus=1)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ParamValidationError, match="Missing required parameter"):
        api.get_item(Key=key())
    with pytest.raises(TypeError, match="only accepts keyword arguments"):
        api.get_item(table)


def test_bad_values_get_boto3s_validation_error(api: Any, table: str) -> None:
    with pytest.raises(ParamValidationError):
        api.put_item(TableName=table, Item={"pk": {"S": 1}, "sk": {"N": "1"}})
    with pytest.raises(ParamValidationError):
        api.get_item(TableName=table, Key={"pk": {"S": object()}, "sk": {"N": "1"}})


def test_returned_items_are_the_callers_to_change(api: Any, table: str) -> None:
    api.put_item(TableName=table, Item={**key(), "l": {"L": [{"S": "x"}]}})
    miss = api.get_item(TableName=table, Key=key("none"))
    miss["Item"] = {"poison": {"S": "!"}}
    for _ in range(2):
        got = api.get_item(TableName=table, Key=key())
        got["Item"]["l"]["L"].append({"S": "mutated"})
        got["Item"]["pk"] = {"S": "mutated"}
    assert api.get_item(TableName=table, Key=key())["Item"] == {**key(), "l": {"L": [{"S": "x"}]}}
    assert "Item" not in api.get_item(TableName=table, Key=key("none"))
    page = api.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    page["Items"].clear()
    again = api.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    assert again["Count"] == 1 and len(again["Items"]) == 1


def test_paginators_and_waiters_go_through_the_cache(api: Any, ddb: Any, table: str) -> None:
    for sk in range(5):
        api.put_item(TableName=table, Item=key("pg", sk))
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "pg"}},
             "Limit": 2}
    first = list(api.get_paginator("query").paginate(**query))
    ddb.put_item(TableName=table, Item=key("pg", 9))
    second = list(api.get_paginator("query").paginate(**query))
    assert [p["Items"] for p in first] == [p["Items"] for p in second]
    assert sum(p["Count"] for p in second) == 5
    assert api.daxd_stats()["query_hits"] == len(first)
    api.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 2})


def test_binary_values_round_trip_as_bytes(api: Any, ddb: Any, table: str) -> None:
    item = {**key("bin"), "b": {"B": b"\x00\xff"}, "bs": {"BS": [b"a", b"\x01"]}, "B": {"S": "named B"},
            "m": {"M": {"B": {"B": b"nested"}}}}
    api.put_item(TableName=table, Item=item)
    hit = api.get_item(TableName=table, Key=key("bin"))["Item"]
    assert hit["b"] == {"B": b"\x00\xff"} and set(hit["bs"]["BS"]) == {b"a", b"\x01"}
    assert hit["B"] == {"S": "named B"} and hit["m"] == {"M": {"B": {"B": b"nested"}}}
    direct = ddb.get_item(TableName=table, Key=key("bin"))["Item"]
    assert hit == direct | {"bs": hit["bs"]}
    api.put_item(TableName=table, Item={**key("str"), "b": {"B": "text"}})  # botocore: a str blob is UTF-8
    assert api.get_item(TableName=table, Key=key("str"))["Item"]["b"] == {"B": b"text"}
    binary_key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
    api.update_item(TableName=table, Key=binary_key, UpdateExpression="SET b = :b",
                    ExpressionAttributeValues={":b": {"B": b"\x02"}})
    assert api.get_item(TableName=table, Key=binary_key)["Item"]["b"] == {"B": b"\x02"}
    assert ddb.get_item(TableName=table, Key=binary_key)["Item"]["b"] == {"B": b"\x02"}


def test_metrics_use_the_nodes_names_in_the_given_registry(dynamodb_local: Any, table: str) -> None:
    registry = CollectorRegistry()
    api = daxd.accelerate(client(dynamodb_local.endpoint), registry=registry)
    api.get_item(TableName=table, Key=key())
    api.get_item(TableName=table, Key=key())
    assert registry.get_sample_value("daxd_item_cache_hits_total", {"table": table}) == 1
    assert registry.get_sample_value("daxd_item_cache_misses_total", {"table": table}) == 1
    assert registry.get_sample_value("daxd_estimated_db_size_bytes") == api.daxd_stats()["bytes"] > 0
    stats = api.daxd_stats()
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["entries"] == 1


def test_uncached_operations_and_attributes_are_boto3s(api: Any, table: str) -> None:
    assert lists_table(api, table)
    assert api.meta.service_model.service_name == "dynamodb"
    assert api.can_paginate("scan")
    assert "get_item" in dir(api)
    api.get_item(TableName=table, Key={"pk": {"S": "flush-me"}, "sk": {"N": "1"}})
    assert api.daxd_flush() >= 1  # at least the entry just cached
    assert api.daxd_flush() == 0  # nothing left


def test_settings_are_checked(dynamodb_local: Any) -> None:
    with pytest.raises(ValueError):
        daxd.accelerate(client(dynamodb_local.endpoint), item_ttl=-1)
    with pytest.raises(TypeError):
        daxd.accelerate(object())
    api = daxd.accelerate(client(dynamodb_local.endpoint), cache_size="1MiB")
    assert api.daxd_stats()["max_bytes"] == 1 << 20


def test_responses_equal_boto3s_field_for_field(api: Any, ddb: Any, table: str) -> None:
    item = {**key("eq"), "n": {"N": "1.50"}, "ss": {"SS": ["b", "a"]}, "nul": {"NULL": True}, "t": {"BOOL": False}}
    api.put_item(TableName=table, Item=item)
    for _ in range(2):
        assert canon(api.get_item(TableName=table, Key=key("eq"))) == canon(ddb.get_item(TableName=table, Key=key("eq")))


def test_per_table_policy_mapping(accelerate: Any, ddb: Any) -> None:
    """``tables=`` takes the ``[tables]`` sections of ``--config`` as a mapping: one table never cached."""
    never, cached = create_table(ddb), create_table(ddb)
    api = accelerate(tables={never: {"cache": False}, "unused*": {"query_cache": False, "item_ttl": 5}})
    item = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    for table in (never, cached):
        api.put_item(TableName=table, Item={**item, "v": {"S": "old"}})
        api.get_item(TableName=table, Key=item)
        ddb.put_item(TableName=table, Item={**item, "v": {"S": "new"}})  # around the cache
    assert api.get_item(TableName=never, Key=item)["Item"]["v"] == {"S": "new"}
    assert api.get_item(TableName=cached, Key=item)["Item"]["v"] == {"S": "old"}
    with pytest.raises(ValueError, match=r"\[tables.never\]: cache must be true or false"):
        daxd.accelerate(ddb, tables={"never": {"cache": "no"}})
