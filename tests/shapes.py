"""Hypothesis strategies: DynamoDB JSON request bodies, well formed and of every wrong shape.

Used by the model's property test (tests/unit/test_bad_shapes.py) and by the
differential test against DynamoDB Local (tests/integration/test_malformed_bodies.py).
Bodies target a table ``TABLE`` keyed ``pk`` (S) and ``sk`` (N); each place an
AttributeValue or a container goes may instead hold a value of the wrong JSON
type, a null, an empty or multi-typed AttributeValue, a bad number, or nested
garbage.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

TYPE_TAGS = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"]
DATA_PLANE = ["GetItem", "PutItem", "DeleteItem", "UpdateItem", "BatchGetItem", "BatchWriteItem", "Query",
              "Scan", "TransactWriteItems", "TransactGetItems"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
#: Any JSON at all, nested a little (with type tags as likely keys).
garbage: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from([*TYPE_TAGS, "x", "", "Q"]), inner, max_size=3),
    max_leaves=4)

numbers = st.one_of(st.integers(-10**12, 10**12).map(str), st.sampled_from(
    ["1.50", "1e3", "-0", "007", ".5", "1E-5", "9.9999999999999999999999999999999999999E+125", "1e-130"]))
bad_numbers = st.sampled_from(["", "abc", " 1", "1e", "NaN", "Infinity", "0x10", "1_0", "1e126", "1e-131",
                               "1e999999", "123456789012345678901234567890123456789"])
binaries = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())


def _scalar_av() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda s: {"S": s}, st.text(min_size=1, max_size=6)),
        st.builds(lambda n: {"N": n}, numbers),
        st.builds(lambda b: {"B": b}, binaries),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(min_size=1, max_size=4), min_size=1, max_size=3)),
        st.builds(lambda s: {"NS": [str(n) for n in sorted(s)]}, st.sets(st.integers(0, 99), min_size=1, max_size=3)),
    )


valid_values: st.SearchStrategy[Any] = st.recursive(
    _scalar_av(),
    lambda inner: st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3))
    | st.builds(lambda m: {"M": m}, st.dictionaries(st.text(min_size=1, max_size=4), inner, max_size=3)),
    max_leaves=5)

wrong_values: st.SearchStrategy[Any] = st.one_of(
    garbage,
    st.builds(lambda tag, inner: {tag: inner}, st.sampled_from(TYPE_TAGS), garbage),  # a tag with wrong content
    st.builds(lambda n: {"N": n}, bad_numbers),
    st.builds(lambda tag: {tag: []}, st.sampled_from(["SS", "NS", "BS"])),
    st.builds(lambda a, b: {**a, **b}, _scalar_av(), _scalar_av()),  # several types (or one, if the same)
    st.builds(lambda v: {"L": [v]}, garbage),
    st.builds(lambda v: {"M": {"a": v}}, garbage),
    st.just({}),
)

#: An AttributeValue: usually well formed, often not.
values = st.one_of(valid_values, wrong_values)
#: A key of the test table, or garbage in its place.
key_values = st.one_of(st.builds(lambda s: {"S": s}, st.text(min_size=1, max_size=6)), wrong_values)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``'s value, or garbage in its place (a wrong container, a null, a scalar)."""
    return st.one_of(strategy, strategy, strategy, garbage)


def keys(table: str) -> st.SearchStrategy[Any]:
    return maybe(st.fixed_dictionaries({"pk": key_values, "sk": st.one_of(
        st.builds(lambda n: {"N": n}, numbers), wrong_values)}))


def items(table: str) -> st.SearchStrategy[Any]:
    return maybe(st.builds(lambda key, extra: {**key, **extra} if isinstance(key, dict) else key,
                           keys(table), st.dictionaries(st.sampled_from(["x", "y"]), values, max_size=2)))


def expression_values(*names: str) -> st.SearchStrategy[Any]:
    return maybe(st.fixed_dictionaries({name: values for name in names}))


#: Top-level members that may ride along with any request, right or wrong.
_extras = st.dictionaries(
    st.sampled_from(["ConsistentRead", "ReturnConsumedCapacity", "ExpressionAttributeNames", "Limit",
                     "ProjectionExpression", "ReturnValues", "Select"]),
    st.one_of(garbage, st.sampled_from([True, False, "TOTAL", "NONE", "ALL_OLD", {"#x": "x"}])),
    max_size=2)


@st.composite
def requests(draw: st.DrawFn, table: str, operations: tuple[str, ...] = tuple(DATA_PLANE)) -> tuple[str, Any]:
    """(operation, body) of one of ``operations`` (a composite: its repr stays short)."""
    operation = draw(st.sampled_from(operations))
    return operation, draw(bodies(operation, table))


def bodies(operation: str, table: str) -> st.SearchStrategy[dict[str, Any]]:
    """Request bodies of one data-plane operation against ``table``."""
    t = st.just(table)
    shapes: dict[str, st.SearchStrategy[Any]] = {
        "GetItem": st.fixed_dictionaries({"TableName": t, "Key": keys(table)}),
        "DeleteItem": st.fixed_dictionaries({"TableName": t, "Key": keys(table)}),
        "PutItem": st.fixed_dictionaries({"TableName": t, "Item": items(table)}),
        "UpdateItem": st.fixed_dictionaries({"TableName": t, "Key": keys(table), "UpdateExpression": st.just("SET x = :v"),
                                             "ExpressionAttributeValues": expression_values(":v")}),
        "Query": st.fixed_dictionaries({"TableName": t, "KeyConditionExpression": st.just("pk = :p"),
                                        "ExpressionAttributeValues": expression_values(":p")}),
        "Scan": st.fixed_dictionaries({"TableName": t, "FilterExpression": st.just("x = :v"),
                                       "ExpressionAttributeValues": expression_values(":v")}),
        "BatchGetItem": st.fixed_dictionaries({"RequestItems": maybe(st.fixed_dictionaries(
            {table: maybe(st.fixed_dictionaries({"Keys": maybe(st.lists(keys(table), min_size=1, max_size=2,
                                                                        unique_by=repr))}))}))}),
        "BatchWriteItem": st.fixed_dictionaries({"RequestItems": maybe(st.fixed_dictionaries({table: maybe(st.lists(
            maybe(st.one_of(st.fixed_dictionaries({"PutRequest": maybe(st.fixed_dictionaries({"Item": items(table)}))}),
                            st.fixed_dictionaries({"DeleteRequest": maybe(st.fixed_dictionaries({"Key": keys(table)}))}))),
            min_size=1, max_size=2))}))}),
        "TransactWriteItems": st.fixed_dictionaries({"TransactItems": maybe(st.lists(maybe(st.one_of(
            st.fixed_dictionaries({"Put": maybe(st.fixed_dictionaries({"TableName": t, "Item": items(table)}))}),
            st.fixed_dictionaries({"Delete": maybe(st.fixed_dictionaries({"TableName": t, "Key": keys(table)}))}),
            st.fixed_dictionaries({"ConditionCheck": st.fixed_dictionaries({
                "TableName": t, "Key": keys(table), "ConditionExpression": st.just("attribute_exists(pk)")})}))),
            min_size=1, max_size=2))}),
        "TransactGetItems": st.fixed_dictionaries({"TransactItems": maybe(st.lists(
            st.fixed_dictionaries({"Get": maybe(st.fixed_dictionaries({"TableName": t, "Key": keys(table)}))}),
            min_size=1, max_size=2))}),
    }
    return st.builds(lambda body, extra: {**body, **extra}, shapes[operation], _extras)
