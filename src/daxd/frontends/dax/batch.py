"""Batch and transaction calls -> DynamoDB-shaped requests (docs/protocol.md, "Methods").

These four methods carry several tables and per-entry expressions. DynamoDB's
JSON scopes ExpressionAttributeNames/Values per table (BatchGetItem) or per
action (transactions), so each of those gets its own :class:`Renderer`.
"""

from __future__ import annotations

from typing import Any

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.keys import decode_key
from daxd.frontends.dax.requests import (
    CONVERTERS,
    Converter,
    RequestContext,
    _array,
    _Builder,
    _bytes,
    _Converted,
    _flag,
    _item,
    _map,
    _Schemas,
    _text,
    _top_level,
    _uint,
)
from daxd.frontends.dax.sexpr import Path
from daxd.model.errors import ValidationException


def _batch_get(args: tuple[Any, ...], schemas: _Schemas, _lists: AttributeListTable) -> _Converted:
    items: dict[str, Any] = {}
    projections: dict[str, list[Path]] = {}
    for raw_table, spec in _map(args[0], "RequestItems").items():
        table = _text(raw_table, "table name")
        entry = _array(spec, "BatchGetItem table entry")
        if len(entry) != 3:
            raise ValidationException("BatchGetItem table entry must have 3 elements")
        consistent, projection, keys = entry
        schema = schemas[table]
        b = _Builder(schema, {"Keys": [decode_key(_bytes(k, "key"), schema) for k in _array(keys, "keys")]})
        if _flag(consistent):
            b.request["ConsistentRead"] = True
        if projection is not None:
            text, paths = b.renderer.projection(_bytes(projection, "ProjectionExpression"))
            b.request["ProjectionExpression"], projections[table] = text, paths
        items[table] = b.finish()
    request = _top_level("batchGetItem", args, schemas, {"RequestItems": items})
    return request, RequestContext(schemas, projections=projections)


def _batch_write(args: tuple[Any, ...], schemas: _Schemas, lists: AttributeListTable) -> _Converted:
    items: dict[str, list[dict[str, Any]]] = {}
    for raw_table, flat in _map(args[0], "RequestItems").items():
        table = _text(raw_table, "table name")
        pairs = _array(flat, "BatchWriteItem table entry")
        if len(pairs) % 2:
            raise ValidationException("BatchWriteItem entries must be key/value pairs")
        schema = schemas[table]
        writes: list[dict[str, Any]] = []
        for key, values in zip(pairs[::2], pairs[1::2], strict=True):
            if values is None:
                writes.append({"DeleteRequest": {"Key": decode_key(_bytes(key, "key"), schema)}})
            else:
                writes.append({"PutRequest": {"Item": _item(key, values, schema, lists)}})
        items[table] = writes
    request = _top_level("batchWriteItem", args, schemas, {"RequestItems": items})
    return request, RequestContext(schemas)


def _same_length(*arrays: list[Any]) -> int:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValidationException("transaction arrays must have equal lengths")
    return lengths.pop()


def _transact_get(args: tuple[Any, ...], schemas: _Schemas, _lists: AttributeListTable) -> _Converted:
    tables, keys = _array(args[0], "table names"), _array(args[1], "keys")
    projections_in = [None] * len(tables) if args[2] is None else _array(args[2], "projections")
    _same_length(tables, keys, projections_in)
    actions: list[dict[str, Any]] = []
    projections: dict[str, list[Path]] = {}
    for index, (raw_table, key, projection) in enumerate(zip(tables, keys, projections_in, strict=True)):
        table = _text(raw_table, "table name")
        b = _Builder(schemas[table], {"TableName": table,
                                      "Key": decode_key(_bytes(key, "key"), schemas[table])})
        if projection is not None:
            text, paths = b.renderer.projection(_bytes(projection, "ProjectionExpression"))
            b.request["ProjectionExpression"], projections[str(index)] = text, paths
        actions.append({"Get": b.finish()})
    request = _top_level("transactGetItems", args, schemas, {"TransactItems": actions})
    return request, RequestContext(schemas, projections=projections)


_ACTIONS = {2: "Put", 7: "Delete", 9: "Update", 12: "ConditionCheck"}


def _write_action(op: Any, table: str, key: Any, values: Any, on_failure: Any, condition: Any,
                  update: Any, schemas: _Schemas, lists: AttributeListTable) -> dict[str, Any]:
    """One TransactItems entry from the i-th element of each positional array."""
    kind = _ACTIONS.get(_uint(op, "transaction operation"))
    if kind is None:
        raise ValidationException(f"unsupported transaction operation {op}")
    schema = schemas[table]
    b = _Builder(schema, {"TableName": table})
    if kind == "Put":
        if values is None:
            raise ValidationException("a Put action needs item values")
        b.request["Item"] = _item(key, values, schema, lists)
    else:
        b.request["Key"] = decode_key(_bytes(key, "key"), schema)
    if update is not None:
        if kind != "Update":
            raise ValidationException(f"{kind} cannot carry an UpdateExpression")
        b.request["UpdateExpression"] = b.renderer.update(_bytes(update, "UpdateExpression"))
    elif kind == "Update":
        raise ValidationException("an Update action needs an UpdateExpression")
    if condition is not None:
        b.request["ConditionExpression"] = b.renderer.condition(_bytes(condition, "ConditionExpression"))
    elif kind == "ConditionCheck":
        raise ValidationException("a ConditionCheck action needs a ConditionExpression")
    if on_failure is not None and _uint(on_failure, "ReturnValuesOnConditionCheckFailure") == 2:
        b.request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {kind: b.finish()}


def _optional_array(value: Any, length: int, what: str) -> list[Any]:
    return [None] * length if value is None else _array(value, what)


def _transact_write(args: tuple[Any, ...], schemas: _Schemas, lists: AttributeListTable) -> _Converted:
    ops, tables, keys = _array(args[0], "operations"), _array(args[1], "table names"), _array(args[2], "keys")
    count = _same_length(ops, tables, keys)
    values, _return_values, on_failure, conditions, updates = (
        _optional_array(arg, count, "transaction array") for arg in args[3:8])
    _same_length(ops, values, on_failure, conditions, updates)
    actions = [
        _write_action(op, _text(table, "table name"), key, value, failure, condition, update, schemas, lists)
        for op, table, key, value, failure, condition, update
        in zip(ops, tables, keys, values, on_failure, conditions, updates, strict=True)
    ]
    request = _top_level("transactWriteItems", args, schemas, {"TransactItems": actions})
    return request, RequestContext(schemas)


BATCH_CONVERTERS: dict[str, Converter] = {
    "batchGetItem": _batch_get,
    "batchWriteItem": _batch_write,
    "transactGetItems": _transact_get,
    "transactWriteItems": _transact_write,
}
ALL_CONVERTERS: dict[str, Converter] = {**CONVERTERS, **BATCH_CONVERTERS}
