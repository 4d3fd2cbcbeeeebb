"""A seeded randomized differential: plain boto3 and ``daxd.accelerate()`` side by side.

Two worlds run the same sequence of calls, each on its own table of the
same schema in DynamoDB Local: one through plain boto3, one through the
accelerated client (or resource). Every data-plane call is in the mix:
reads with projections and conditions, writes with conditions and every
``ReturnValues``, batches, transactions, PartiQL, paginators, a waiter and
calls that fail (missing tables, bad keys, bad expressions, failed
conditions, parameter validation). Each step must give equal results, or
equal exceptions (class, code, message, operation name), and equal logs of
the client-level events that hooks registered on each world's emitter heard,
with what those hooks saw. ``ReturnConsumedCapacity`` is left out: what a hit
reports as consumed is decided elsewhere (the cache's capacity rule).

All writes of a world go through that world's client, so the accelerated
world's cache is never stale and must agree with plain boto3 exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

import daxd
from tests.harness import CLIENT_CONFIG, CREDENTIALS, client, create_table

CLIENT_STEPS = 100
RESOURCE_STEPS = 70
PARTITIONS = ("p0", "p1", "p2")
MISSING = "no-such-table"


class World:
    """One side of the differential: its client or resource, its table, what its hooks heard."""

    def __init__(self, api: Any, table: str, events: Any) -> None:
        self.api = api
        self.table = table
        self.heard: list[Any] = []
        events.register("provide-client-params.dynamodb", self._provide)
        events.register("before-parameter-build.dynamodb", self._build)
        events.register("before-call.dynamodb", self._before_call)
        events.register("after-call.dynamodb", self._after_call)

    def _provide(self, event_name: str, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["differential"] = "stored by provide-client-params"
        self.heard.append((event_name, sorted(params)))

    def _build(self, event_name: str, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.heard.append((event_name, sorted(params), context.get("differential")))

    def _before_call(self, event_name: str, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.heard.append((event_name, params["method"], context.get("differential")))
        context["before-call"] = True

    def _after_call(self, event_name: str, parsed: dict[str, Any], http_response: Any, context: dict[str, Any],
                    **_: Any) -> None:
        self.heard.append((event_name, http_response.status_code, sorted(parsed), context.get("before-call")))

    def outcome(self, step: Callable[[World], Any]) -> Any:
        """What the step gave: its result or its exception, table names replaced, sets and scans ordered."""
        self.heard.clear()
        try:
            result: Any = ("ok", canon(step(self), self.table))
        except ClientError as exc:
            result = ("error", type(exc).__name__, exc.response["Error"].get("Code"),
                      mask(exc.response["Error"].get("Message"), self.table), exc.operation_name,
                      canon(exc.response, self.table))
        except Exception as exc:  # ParamValidationError, TypeError ...: boto3's, unchanged
            result = ("raised", type(exc).__name__, mask(str(exc), self.table))
        return result, canon(self.heard, self.table)


def mask(text: Any, table: str) -> Any:
    return text.replace(table, "<table>") if isinstance(text, str) else text


def canon(value: Any, table: str) -> Any:
    """Comparable across worlds: no ResponseMetadata, table names masked, no order where none is promised."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "ResponseMetadata":
                continue
            if k in ("SS", "NS", "BS"):
                out[k] = sorted(v)
            elif k == "Responses" and isinstance(v, dict):  # BatchGetItem: no order promised
                out[k] = {mask(t, table): sorted((canon(i, table) for i in items), key=lambda i: repr(sorted(i.items())))
                          for t, items in v.items()}
            else:
                out[mask(k, table)] = canon(v, table)
        return out
    if isinstance(value, list | tuple):
        return [canon(v, table) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return mask(value, table)


def typed_key(rng: random.Random) -> dict[str, Any]:
    return {"pk": {"S": rng.choice(PARTITIONS)}, "sk": {"N": str(rng.randrange(5))}}


def typed_value(rng: random.Random) -> dict[str, Any]:
    return rng.choice([
        {"S": rng.choice(["x", "y", "long " * 10])},
        {"N": rng.choice(["1", "1.50", "-0", "1e3", "007", "2.5E-3"])},
        {"B": bytes([rng.randrange(256)]) * rng.randint(1, 3)},
        {"SS": ["a", "b"]}, {"NS": ["1", "2.0"]}, {"BS": [b"\x00", b"\x01"]}, {"BOOL": rng.random() < 0.5},
        {"NULL": True}, {"M": {"in": {"S": "side"}, "n": {"N": "3"}}}, {"L": [{"S": "l"}, {"N": "4"}]},
    ])


def client_step(rng: random.Random) -> Callable[[World], Any]:
    """One random client-API call (DynamoDB JSON), as a function of the world it runs in."""
    k, v = typed_key(rng), typed_value(rng)
    kind = rng.choice(["get"] * 12 + ["project", "legacy_get", "query", "batch_get"] * 3 + [
        "consistent", "query_filter", "query_paginate", "scan", "scan", "scan_paginate", "put", "put_old", "update",
        "update", "delete", "conditional", "batch_write", "transact_write", "transact_fail", "transact_get",
        "partiql_select", "error", "error"] + ["partiql_update"] * (rng.random() < 0.3))
    names = {"#v": "v"}
    if kind == "get":
        return lambda w: w.api.get_item(TableName=w.table, Key=k)
    if kind == "project":
        return lambda w: w.api.get_item(TableName=w.table, Key=k, ProjectionExpression="#v, sk",
                                        ExpressionAttributeNames=names)
    if kind == "legacy_get":
        return lambda w: w.api.get_item(TableName=w.table, Key=k, AttributesToGet=["v"])
    if kind == "consistent":
        return lambda w: w.api.get_item(TableName=w.table, Key=k, ConsistentRead=True)
    if kind == "query":
        op = rng.choice([">=", "<", "="])
        limit = rng.choice([None, 1, 3])
        extra = {"Limit": limit} if limit else {}
        bound, forward = {"N": str(rng.randrange(4))}, rng.random() < 0.5
        return lambda w: w.api.query(TableName=w.table, KeyConditionExpression=f"pk = :p AND sk {op} :s",
                                     ExpressionAttributeValues={":p": k["pk"], ":s": bound},
                                     ScanIndexForward=forward, **extra)
    if kind == "query_filter":
        return lambda w: w.api.query(TableName=w.table, KeyConditionExpression="pk = :p",
                                     FilterExpression="attribute_exists(#v)", ProjectionExpression="sk, #v",
                                     ExpressionAttributeNames=names, ExpressionAttributeValues={":p": k["pk"]})
    if kind == "query_paginate":
        size = rng.choice([1, 2])
        return lambda w: list(w.api.get_paginator("query").paginate(
            TableName=w.table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": k["pk"]},
            PaginationConfig={"PageSize": size}))
    if kind == "scan":
        return lambda w: w.api.scan(TableName=w.table, FilterExpression="sk < :s",
                                    ExpressionAttributeValues={":s": {"N": "3"}}, Select="COUNT")
    if kind == "scan_paginate":
        return lambda w: list(w.api.get_paginator("scan").paginate(TableName=w.table,
                                                                    PaginationConfig={"PageSize": 4}))
    if kind == "batch_get":
        keys = list({repr(x): x for x in (typed_key(rng) for _ in range(3))}.values())
        if rng.random() < 0.2:
            keys.append(keys[0])  # duplicates: DynamoDB refuses the batch
        projection = rng.random() < 0.3
        return lambda w: w.api.batch_get_item(RequestItems={w.table: {
            "Keys": keys, **({"ProjectionExpression": "pk, sk, #v", "ExpressionAttributeNames": names}
                             if projection else {})}})
    if kind == "put":
        return lambda w: w.api.put_item(TableName=w.table, Item={**k, "v": v})
    if kind == "put_old":
        return lambda w: w.api.put_item(TableName=w.table, Item={**k, "v": v, "n": {"N": "1"}}, ReturnValues="ALL_OLD")
    if kind == "update":
        returns = rng.choice(["NONE", "ALL_NEW", "ALL_OLD", "UPDATED_NEW", "UPDATED_OLD"])
        expression = rng.choice(["SET v = :v", "SET v = :v ADD n :one", "REMOVE v SET w = :v"])
        values = {":v": v, **({":one": {"N": "1"}} if ":one" in expression else {})}
        return lambda w: w.api.update_item(TableName=w.table, Key=k, UpdateExpression=expression,
                                           ExpressionAttributeValues=values, ReturnValues=returns)
    if kind == "delete":
        returns = rng.choice(["NONE", "ALL_OLD"])
        return lambda w: w.api.delete_item(TableName=w.table, Key=k, ReturnValues=returns)
    if kind == "conditional":
        return lambda w: w.api.put_item(TableName=w.table, Item={**k, "v": {"S": "cond"}},
                                        ConditionExpression="attribute_not_exists(pk)",
                                        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    if kind == "batch_write":
        other = typed_key(rng)
        requests = [{"PutRequest": {"Item": {**k, "v": v}}}]
        if other != k:
            requests.append({"DeleteRequest": {"Key": other}})
        return lambda w: w.api.batch_write_item(RequestItems={w.table: requests})
    if kind == "transact_write":
        other = typed_key(rng)
        items = [{"Update": {"Key": k, "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}]
        if other != k:
            items.append({"Delete": {"Key": other}})
        return lambda w: w.api.transact_write_items(
            TransactItems=[{kind_: {**action, "TableName": w.table}} for item in items for kind_, action in item.items()])
    if kind == "transact_fail":
        other = typed_key(rng)
        return lambda w: w.api.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": w.table, "Key": k, "ConditionExpression": "attribute_exists(nothing)"}},
            {"Put": {"TableName": w.table, "Item": {**other, "v": {"S": "never"}}}}])
    if kind == "transact_get":
        return lambda w: w.api.transact_get_items(TransactItems=[{"Get": {"TableName": w.table, "Key": k}}])
    if kind == "partiql_select":
        return lambda w: w.api.execute_statement(
            Statement=f"SELECT * FROM \"{w.table}\" WHERE pk = ? AND sk = ?", Parameters=[k["pk"], k["sk"]])
    if kind == "partiql_update":
        return lambda w: w.api.execute_statement(
            Statement=f"UPDATE \"{w.table}\" SET v = ? WHERE pk = ? AND sk = ?", Parameters=[v, k["pk"], k["sk"]])
    return rng.choice([
        lambda w: w.api.get_item(TableName=MISSING, Key=k),
        lambda w: w.api.query(TableName=MISSING, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": k["pk"]}),
        lambda w: w.api.put_item(TableName=w.table, Item={"pk": k["pk"]}),              # no sort key
        lambda w: w.api.get_item(TableName=w.table, Key={"pk": {"N": "1"}, "sk": k["sk"]}),  # wrong type
        lambda w: w.api.update_item(TableName=w.table, Key=k, UpdateExpression="SET = broken"),
        lambda w: w.api.query(TableName=w.table, KeyConditionExpression="sk = :s",
                              ExpressionAttributeValues={":s": k["sk"]}),                # no partition key
        lambda w: w.api.get_item(TableName=w.table, Key=k, Bogus=1),                     # ParamValidationError
        lambda w: w.api.scan(TableName=w.table, Limit=0),                                # ParamValidationError
        lambda w: w.api.batch_write_item(RequestItems={w.table: [{"PutRequest": {"Item": {**k, "v": v}}},
                                                                 {"DeleteRequest": {"Key": k}}]}),
        lambda w: w.api.get_waiter("table_not_exists").wait(TableName=w.table,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 1}),
    ])


def test_client_calls_answer_as_boto3_does(dynamodb_local: Any, ddb: Any) -> None:
    plain_client, fast_client = client(dynamodb_local.endpoint), daxd.accelerate(client(dynamodb_local.endpoint))
    worlds = [World(plain_client, create_table(ddb), plain_client.meta.events),
              World(fast_client, create_table(ddb), fast_client.meta.events)]
    for w in worlds:
        w.api.get_waiter("table_exists").wait(TableName=w.table, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    run(worlds, client_step, CLIENT_STEPS, seed=15)
    assert fast_client.daxd_stats()["hits"] > CLIENT_STEPS // 10


def run(worlds: list[World], make: Callable[[random.Random], Callable[[World], Any]], steps: int, seed: int) -> None:
    rng = random.Random(seed)
    for number in range(steps):
        state = rng.getstate()
        step = make(rng)
        theirs, ours = (w.outcome(step) for w in worlds)
        assert ours == theirs, f"seed {seed}, step {number}: {step_source(make, state)}"


def step_source(make: Callable[[random.Random], Any], state: Any) -> str:
    """The failing step's call, for the assertion message."""
    import inspect
    rng = random.Random()
    rng.setstate(state)
    try:
        return inspect.getsource(make(rng)).strip()
    except (OSError, TypeError):
        return "?"


# -- the resource API --------------------------------------------------------

def python_value(rng: random.Random) -> Any:
    return rng.choice([
        "x", Decimal("1.5"), Decimal("-0"), Decimal("1E+3"), Binary(b"\x00\x01"), {"a", "b"}, {Decimal(1), Decimal(2)},
        True, None, {"in": "side", "n": Decimal(3)}, ["l", Decimal(4)], b"raw bytes",
    ])


def resource_step(rng: random.Random) -> Callable[[World], Any]:
    """One random resource-API call (Python values), as a function of the world it runs in."""
    pk, sk = rng.choice(PARTITIONS), rng.randrange(5)
    k = {"pk": pk, "sk": sk}
    value = python_value(rng)
    kind = rng.choice(["get"] * 10 + ["query"] * 4 + ["batch_get"] * 2 + [
        "project", "query_index_order", "scan", "batch_get", "put", "update", "update", "delete", "conditional",
        "batch_writer", "client_put", "client_get", "transact", "paginate", "error", "error"])
    if kind == "get":
        return lambda w: w.api.Table(w.table).get_item(Key=k)
    if kind == "project":
        return lambda w: w.api.Table(w.table).get_item(Key=k, ProjectionExpression="#v",
                                                       ExpressionAttributeNames={"#v": "v"})
    if kind == "query":
        condition = Key("pk").eq(pk) & rng.choice([Key("sk").gte(1), Key("sk").between(1, 3), Key("sk").lt(4)])
        flt = rng.choice([None, Attr("v").exists(), Attr("n").gt(0), Attr("v").eq("x") | Attr("v").is_in(["y"])])
        extra = {"FilterExpression": flt} if flt is not None else {}
        return lambda w: w.api.Table(w.table).query(KeyConditionExpression=condition, **extra)
    if kind == "query_index_order":
        return lambda w: w.api.Table(w.table).query(KeyConditionExpression=Key("pk").eq(pk), ScanIndexForward=False,
                                                    Limit=2)
    if kind == "scan":
        return lambda w: w.api.Table(w.table).scan(FilterExpression=Attr("sk").lt(sk) & Attr("v").exists())
    if kind == "batch_get":
        keys = [{"pk": p, "sk": s} for p, s in {(rng.choice(PARTITIONS), rng.randrange(5)) for _ in range(3)}]
        return lambda w: w.api.batch_get_item(RequestItems={w.table: {"Keys": keys}})
    if kind == "put":
        return lambda w: w.api.Table(w.table).put_item(Item={**k, "v": value}, ReturnValues="ALL_OLD")
    if kind == "update":
        returns = rng.choice(["NONE", "ALL_NEW", "ALL_OLD", "UPDATED_NEW"])
        return lambda w: w.api.Table(w.table).update_item(
            Key=k, UpdateExpression="SET v = :v ADD n :one", ExpressionAttributeValues={":v": value, ":one": 1},
            ReturnValues=returns)
    if kind == "delete":
        return lambda w: w.api.Table(w.table).delete_item(Key=k, ReturnValues="ALL_OLD")
    if kind == "conditional":
        return lambda w: w.api.Table(w.table).put_item(Item={**k, "v": "cond"},
                                                       ConditionExpression=Attr("pk").not_exists())
    if kind == "batch_writer":
        others = [{"pk": rng.choice(PARTITIONS), "sk": rng.randrange(5)} for _ in range(2)]

        def write(w: World) -> None:
            with w.api.Table(w.table).batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
                batch.put_item(Item={**k, "v": value})
                batch.delete_item(Key=others[0])
                batch.put_item(Item={**others[1], "v": "batched"})
        return write
    if kind == "client_put":
        return lambda w: w.api.meta.client.put_item(TableName=w.table, Item={**k, "v": value})
    if kind == "client_get":
        return lambda w: w.api.meta.client.get_item(TableName=w.table, Key=k)
    if kind == "transact":
        return lambda w: w.api.meta.client.transact_write_items(TransactItems=[
            {"Update": {"TableName": w.table, "Key": k, "UpdateExpression": "SET t = :t",
                        "ExpressionAttributeValues": {":t": value}}}])
    if kind == "paginate":
        return lambda w: list(w.api.meta.client.get_paginator("query").paginate(
            TableName=w.table, KeyConditionExpression=Key("pk").eq(pk), PaginationConfig={"PageSize": 2}))
    return rng.choice([
        lambda w: w.api.Table(MISSING).get_item(Key=k),
        lambda w: w.api.Table(MISSING).query(KeyConditionExpression=Key("pk").eq(pk)),
        lambda w: w.api.Table(w.table).put_item(Item={"pk": pk}),
        lambda w: w.api.Table(w.table).get_item(Key={"pk": 1, "sk": sk}),
        lambda w: w.api.Table(w.table).update_item(Key=k, UpdateExpression="SET v = :v",
                                                   ConditionExpression=Attr("v").eq("never"),
                                                   ExpressionAttributeValues={":v": value}),
        lambda w: w.api.Table(w.table).put_item(Item={**k, "v": 1.5}),  # float: boto3's TypeError
    ])


def test_resource_calls_answer_as_boto3_does(dynamodb_local: Any, ddb: Any) -> None:
    resources = [boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint, config=CLIENT_CONFIG,
                                **CREDENTIALS) for _ in range(2)]
    resources[1] = daxd.accelerate(resources[1])
    worlds = [World(r, create_table(ddb), r.meta.client.meta.events) for r in resources]
    run(worlds, resource_step, RESOURCE_STEPS, seed=15)
    assert resources[1].meta.client.daxd_stats()["hits"] > RESOURCE_STEPS // 10
