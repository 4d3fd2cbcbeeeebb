"""A randomized run: every answer through the accelerated client equals plain boto3's.

All writes go through the accelerated client, so the cache is never stale and
every read must match DynamoDB Local's, field for field (sets compared as sets).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.inprocess.conftest import canon, key

OPERATIONS = 400


def _value(rng: random.Random) -> dict[str, Any]:
    return rng.choice([
        {"S": rng.choice(["x", "y", "long " * 20])},
        {"N": rng.choice(["1", "1.50", "-0", "1e3", "007", "2.5E-3"])},
        {"B": bytes([rng.randrange(256)]) * rng.randint(1, 4)},
        {"SS": ["a", "b"]}, {"NS": ["1", "2.0"]}, {"BOOL": rng.random() < 0.5}, {"NULL": True},
        {"M": {"in": {"S": "side"}, "n": {"N": "3"}}}, {"L": [{"S": "l"}, {"N": "4"}]},
    ])


def _request(rng: random.Random, table: str) -> tuple[str, dict[str, Any]]:
    k = key(rng.choice(["p0", "p1"]), rng.randrange(6))
    kind = rng.choice(["get", "get", "get", "project", "query", "batch_get", "scan",
                       "put", "update", "delete", "conditional", "batch_write"])
    if kind == "get":
        return "get_item", {"TableName": table, "Key": k}
    if kind == "project":
        return "get_item", {"TableName": table, "Key": k, "ProjectionExpression": "#v",
                            "ExpressionAttributeNames": {"#v": "v"}}
    if kind == "query":
        return "query", {"TableName": table, "KeyConditionExpression": "pk = :p AND sk >= :s",
                         "ExpressionAttributeValues": {":p": k["pk"], ":s": {"N": str(rng.randrange(3))}},
                         "Limit": rng.choice([2, 10])}
    if kind == "batch_get":
        keys = list({str(x): x for x in (key(rng.choice(["p0", "p1"]), rng.randrange(6)) for _ in range(3))}.values())
        return "batch_get_item", {"RequestItems": {table: {"Keys": keys}}}
    if kind == "scan":
        return "scan", {"TableName": table}
    if kind == "put":
        return "put_item", {"TableName": table, "Item": {**k, "v": _value(rng)}}
    if kind == "update":
        return "update_item", {"TableName": table, "Key": k, "UpdateExpression": "SET v = :v",
                               "ExpressionAttributeValues": {":v": _value(rng)},
                               "ReturnValues": rng.choice(["NONE", "ALL_NEW", "ALL_OLD", "UPDATED_NEW"])}
    if kind == "delete":
        return "delete_item", {"TableName": table, "Key": k}
    if kind == "conditional":
        return "put_item", {"TableName": table, "Item": {**k, "v": {"S": "cond"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}
    return "batch_write_item", {"RequestItems": {table: [{"PutRequest": {"Item": {**k, "v": _value(rng)}}}]}}


def _order(item: dict[str, Any]) -> str:
    return repr(sorted(item.items()))


def _outcome(client: Any, method: str, request: dict[str, Any]) -> Any:
    try:
        response = canon(getattr(client, method)(**request))
    except ClientError as exc:
        return ("error", exc.response["Error"]["Code"])
    if method == "batch_get_item":
        for items in response.get("Responses", {}).values():
            items.sort(key=_order)
    if method == "scan":
        response["Items"].sort(key=_order)
    return response


@pytest.mark.parametrize("seed", [1, 2])
def test_random_operations_answer_as_boto3_does(api: Any, ddb: Any, table: str, seed: int) -> None:
    rng = random.Random(seed)
    for step in range(OPERATIONS):
        method, request = _request(rng, table)
        ours = _outcome(api, method, request)
        if method.startswith(("get", "query", "batch_get", "scan")):
            theirs = _outcome(ddb, method, request)
            assert ours == theirs, f"step {step}: {method} {request}"
    assert api.daxd_stats()["hits"] > OPERATIONS // 10
