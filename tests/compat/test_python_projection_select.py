"""Projections into lists and an explicit ``Select``, through the official Python DAX client.

Each read is made twice, through daxd's DAX port and with boto3 straight to
DynamoDB Local, and the answers must be the same: DynamoDB compacts projected
lists (an element appears only when a requested path under it exists), and an
explicit ``Select=ALL_ATTRIBUTES`` is not the same request as no ``Select``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.compat.differential import order
from tests.harness import DaxdNode, unique_table


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _xs(*values: int) -> dict[str, Any]:
    return {"L": [{"M": {"x": _n(v)}} for v in values]}


ITEMS = [
    {"pk": {"S": "b"}, "l": _xs(1, 2, 3)},
    {"pk": {"S": "two"}, "l": _xs(1, 2)},
    {"pk": {"S": "mixed"}, "l": {"L": [{"S": "s"}, {"M": {"y": _n(1)}}, {"L": [_n(5), _n(6)]}, {"M": {"x": _n(4)}}]},
     "m": {"M": {"a": {"L": [{"M": {"x": _n(7)}}, {"M": {"y": _n(8)}}]}, "b": {"S": "mb"}}}},
    {"pk": {"S": "nested"}, "l": {"L": [{"L": [_n(1)]}, {"L": [_n(2), {"M": {"x": _n(3)}}]}]}},
]
PROJECTIONS = [
    "l[0].y, l[1].x, l[2]",
    "l[0].y, l[1].x",
    "l[1].x, l[2].x, l[3].x, l[0].x",
    "l[0], l[3].x, l[2][1]",
    "l[1].y, l[3].x, m.a[1].x, m.a[0].x, m.b",
    "l[0][1], l[1][1].x, l[1][0]",
    "l[5], l[4].x",
    "pk, l[2]",
]
CONFLICTS = ["l[0].x, l[0][0]", "l[0], l[0].x", "l[1].x, l[1]", "m.a, m.a[0].x"]


@pytest.fixture(scope="module")
def projected(ddb: Any) -> str:
    table = unique_table("proj")
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for item in ITEMS:
        ddb.put_item(TableName=table, Item=item)
    return table


def _answer(call: Callable[[], Any]) -> Any:
    try:
        response = call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    response.pop("ResponseMetadata", None)
    return response


def _by_pk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=order)


def _reads(client: Any, table: str, projection: str) -> dict[str, Any]:
    """Every read operation with ``projection``, answers normalized for comparison (pk always projected)."""
    keys = [{"pk": item["pk"]} for item in ITEMS]
    with_pk = f"pk, {projection}" if not projection.startswith("pk") else projection
    answers: dict[str, Any] = {}
    for index, key in enumerate(keys):
        for attempt in ("miss", "hit"):
            answers[f"get {index} {attempt}"] = _answer(lambda key=key: client.get_item(
                TableName=table, Key=key, ProjectionExpression=projection))
        answers[f"query {index}"] = _answer(lambda key=key: client.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": key["pk"]},
            ProjectionExpression=projection))
    scan = _answer(lambda: client.scan(TableName=table, ProjectionExpression=with_pk))
    if isinstance(scan, dict):
        scan["Items"] = _by_pk(scan["Items"])
    answers["scan"] = scan
    batch = _answer(lambda: client.batch_get_item(
        RequestItems={table: {"Keys": keys, "ProjectionExpression": with_pk}}))
    if isinstance(batch, dict):
        batch["Responses"][table] = _by_pk(batch["Responses"][table])
    answers["batch"] = batch
    answers["transact"] = _answer(lambda: client.transact_get_items(TransactItems=[
        {"Get": {"TableName": table, "Key": key, "ProjectionExpression": projection}} for key in keys]))
    return answers


@pytest.mark.parametrize("projection", PROJECTIONS + CONFLICTS)
def test_projections_into_lists_answer_as_dynamodb(dax: Any, ddb: Any, projected: str, projection: str) -> None:
    ours, theirs = _reads(dax, projected, projection), _reads(ddb, projected, projection)
    for read, answer in theirs.items():
        assert ours[read] == answer, read
    if projection in CONFLICTS:
        assert set(ours.values()) == {"ValidationException"}


def test_two_paths_into_one_list_the_issue_example(dax: Any, projected: str) -> None:
    got = dax.get_item(TableName=projected, Key={"pk": {"S": "b"}}, ProjectionExpression="l[0].y, l[1].x, l[2]")
    assert got["Item"] == {"l": _xs(2, 3)}
    two = dax.get_item(TableName=projected, Key={"pk": {"S": "two"}}, ProjectionExpression="l[0].y, l[1].x")
    assert two["Item"] == {"l": _xs(2)}


@pytest.fixture(scope="module")
def indexed(ddb: Any) -> str:
    """pk/sk strings, a KEYS_ONLY local index on ``ls`` and a KEYS_ONLY global index on ``g``."""
    table = unique_table("select")
    key = [{"AttributeName": "pk", "KeyType": "HASH"}]
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[*key, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "ls", "g")],
        LocalSecondaryIndexes=[{"IndexName": "lsi", "KeySchema": [*key, {"AttributeName": "ls", "KeyType": "RANGE"}],
                                "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}])
    for sk in ("1", "2"):
        ddb.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": sk}, "ls": {"S": f"l{sk}"},
                                            "g": {"S": "g"}, "v": {"S": f"value {sk}"}})
    return table


_P = {":p": {"S": "p"}}
SELECTS = {
    "lsi all": {"IndexName": "lsi", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P,
                "Select": "ALL_ATTRIBUTES"},
    "lsi default": {"IndexName": "lsi", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P},
    "lsi projected": {"IndexName": "lsi", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P,
                      "Select": "ALL_PROJECTED_ATTRIBUTES"},
    "gsi all": {"IndexName": "gsi", "KeyConditionExpression": "g = :g",
                "ExpressionAttributeValues": {":g": {"S": "g"}}, "Select": "ALL_ATTRIBUTES"},
    "table all with projection": {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P,
                                  "Select": "ALL_ATTRIBUTES", "ProjectionExpression": "v"},
    "table all": {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P, "Select": "ALL_ATTRIBUTES"},
    "table specific": {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": _P,
                       "Select": "SPECIFIC_ATTRIBUTES", "ProjectionExpression": "v"},
}


@pytest.mark.parametrize("name", SELECTS)
def test_explicit_select_answers_as_dynamodb(dax: Any, ddb: Any, indexed: str, name: str) -> None:
    request = {"TableName": indexed, **SELECTS[name]}
    theirs = _answer(lambda: ddb.query(**request))
    for _ in range(2):  # miss, then hit
        assert _answer(lambda: dax.query(**request)) == theirs
    scan = {k: v for k, v in request.items() if k not in ("KeyConditionExpression", "ExpressionAttributeValues")}
    theirs_scan = _answer(lambda: ddb.scan(**scan))
    if isinstance(theirs_scan, dict):
        theirs_scan["Items"] = _by_pk(theirs_scan["Items"])
    ours_scan = _answer(lambda: dax.scan(**scan))
    if isinstance(ours_scan, dict):
        ours_scan["Items"] = _by_pk(ours_scan["Items"])
    assert ours_scan == theirs_scan


def test_explicit_select_outcomes(dax: Any, indexed: str) -> None:
    every = dax.query(TableName=indexed, **SELECTS["lsi all"])["Items"]
    assert {item["v"]["S"] for item in every} == {"value 1", "value 2"}
    keys_only = dax.query(TableName=indexed, **SELECTS["lsi default"])["Items"]
    assert all("v" not in item for item in keys_only)
    for name in ("gsi all", "table all with projection"):
        with pytest.raises(ClientError) as failed:
            dax.query(TableName=indexed, **SELECTS[name])
        assert failed.value.response["Error"]["Code"] == "ValidationException"


def test_a_client_that_sends_select_for_unset_keeps_dynamodbs_default(dax_node: DaxdNode, open_dax: Any,
                                                                      indexed: str) -> None:
    """A Go v2 connection (told by its user agent) writes ``Select: 1`` when its caller left Select unset."""
    go_v2 = open_dax(dax_url(dax_node), config=Config(user_agent="DaxGoV2Client-1.0.3"))
    keys_only = go_v2.query(TableName=indexed, **SELECTS["lsi all"])["Items"]
    assert keys_only and all("v" not in item for item in keys_only)
    projected = go_v2.query(TableName=indexed, **SELECTS["table all with projection"])["Items"]
    assert {item["v"]["S"] for item in projected} == {"value 1", "value 2"}
