"""Data-plane method calls -> DynamoDB-shaped operations (docs/protocol.md, "Methods").

This module holds the single-table converters and the helpers shared with
:mod:`.batch`; :mod:`.operations` is the entry point (``to_operation``).

Defaults are omitted rather than spelled out (``ReturnConsumedCapacity`` NONE,
``ConsistentRead`` false, ...): the Python client always sends ``3: 0`` and JS
omits it, and equal requests should give equal dicts whatever the client.
``Select`` ALL_ATTRIBUTES is the exception (see :func:`settle_select`): it is
not always the default, and whether ``15: 1`` was asked for depends on the
client family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daxd.frontends.dax.attrs import AttributeListTable, Item
from daxd.frontends.dax.keys import KeySchema, decode_compound_key, decode_key, decode_values
from daxd.frontends.dax.sexpr import Path, Renderer
from daxd.model.errors import ValidationException

OPERATION_NAMES = {
    "getItem": "GetItem", "putItem": "PutItem", "deleteItem": "DeleteItem",
    "updateItem": "UpdateItem", "query": "Query", "scan": "Scan",
    "batchGetItem": "BatchGetItem", "batchWriteItem": "BatchWriteItem",
    "transactGetItems": "TransactGetItems", "transactWriteItems": "TransactWriteItems",
}


class NeedSchema(Exception):
    """The key schemas of ``tables`` are needed before the call can be decoded."""

    def __init__(self, tables: tuple[str, ...]) -> None:
        super().__init__(", ".join(tables))
        self.tables = tables


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the reply encoder needs to know about the request (§3.5, §4.7).

    ``projection``: paths of a single-table ProjectionExpression, in ordinal
    order; ``projections``: the same per table (BatchGetItem) or per action
    index (TransactGetItems, keys are ``str(index)``).
    """

    schemas: Mapping[str, KeySchema]
    projection: list[Path] | None = None
    projections: Mapping[str, list[Path]] = field(default_factory=dict)
    indexed: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """A DynamoDB data-plane request in DynamoDB's JSON shape."""

    name: str
    request: dict[str, Any]
    context: RequestContext


# ------------------------------------------------------------ value checks

def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationException(f"{what} is not valid UTF-8") from None
    if isinstance(value, str):
        return value
    raise ValidationException(f"{what} must be a string")


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ValidationException(f"{what} must be a byte string")
    return value


def _array(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationException(f"{what} must be an array")
    return value


def _map(value: Any, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ValidationException(f"{what} must be a map")
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationException(f"{what} must be an unsigned integer")
    return value


def _enum(table: Mapping[int, str], what: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        name = table.get(_uint(value, what))
        if name is None:
            raise ValidationException(f"invalid {what} {value}")
        return name
    return convert


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ValidationException("boolean parameter must be true/false or 0/1")


# ------------------------------------------------------------ kwargs (§3.2)

@dataclass(slots=True)
class _Builder:
    """Accumulates one request dict and the reply context while kwargs are read."""

    schema: KeySchema
    request: dict[str, Any]
    renderer: Renderer = field(default_factory=Renderer)
    projection: list[Path] | None = None

    def finish(self) -> dict[str, Any]:
        if self.renderer.names:
            self.request["ExpressionAttributeNames"] = self.renderer.names
        if self.renderer.values:
            self.request["ExpressionAttributeValues"] = self.renderer.values
        return self.request


def _condition_blob(value: Any) -> bytes:
    blob = _bytes(value, "ConditionExpression")
    if blob[:1] != b"\x83":  # raw text only (Python sends it before the compiled form)
        raise ValidationException("ConditionExpression must be sent compiled")
    return blob


def _set_projection(b: _Builder, value: Any) -> None:
    text, paths = b.renderer.projection(_bytes(value, "ProjectionExpression"))
    b.request["ProjectionExpression"], b.projection = text, paths


def _set_start_key(b: _Builder, value: Any) -> None:
    blob = _bytes(value, "ExclusiveStartKey")
    indexed = "IndexName" in b.request
    b.request["ExclusiveStartKey"] = decode_compound_key(blob) if indexed else decode_key(blob, b.schema)


def _setter(name: str, convert: Callable[[Any], Any], default: Any = None) -> Callable[[_Builder, Any], None]:
    def apply(b: _Builder, value: Any) -> None:
        converted = convert(value)
        if converted != default or default is None:
            b.request[name] = converted
    return apply


def _expression(name: str, render: Callable[[Renderer, bytes], str],
                blob: Callable[[Any], bytes]) -> Callable[[_Builder, Any], None]:
    def apply(b: _Builder, value: Any) -> None:
        b.request[name] = render(b.renderer, blob(value))
    return apply


_CAPACITY = {0: "NONE", 1: "TOTAL", 2: "INDEXES"}
_METRICS = {0: "NONE", 1: "SIZE"}
_RETURN_VALUES = {1: "NONE", 2: "ALL_OLD", 3: "UPDATED_OLD", 4: "ALL_NEW", 5: "UPDATED_NEW"}
_SELECT = {1: "ALL_ATTRIBUTES", 2: "ALL_PROJECTED_ATTRIBUTES", 3: "COUNT", 4: "SPECIFIC_ATTRIBUTES"}

#: kwarg key -> how to apply it. Order matters: IndexName (11) before ExclusiveStartKey (9).
_KWARGS: dict[int, Callable[[_Builder, Any], None]] = {
    11: _setter("IndexName", lambda v: _text(v, "IndexName")),
    0: _set_projection,
    2: _setter("ConsistentRead", _flag, False),
    3: _setter("ReturnConsumedCapacity", _enum(_CAPACITY, "ReturnConsumedCapacity"), "NONE"),
    4: _expression("ConditionExpression", Renderer.condition, _condition_blob),
    6: _setter("ReturnItemCollectionMetrics", _enum(_METRICS, "ReturnItemCollectionMetrics"), "NONE"),
    7: _setter("ReturnValues", _enum(_RETURN_VALUES, "ReturnValues"), "NONE"),
    8: _expression("UpdateExpression", Renderer.update, lambda v: _bytes(v, "UpdateExpression")),
    9: _set_start_key,
    10: _expression("FilterExpression", Renderer.condition, lambda v: _bytes(v, "FilterExpression")),
    13: _setter("Limit", lambda v: _uint(v, "Limit")),
    14: _setter("ScanIndexForward", _flag, True),
    15: _setter("Select", _enum(_SELECT, "Select")),  # ALL_ATTRIBUTES: see settle_select
    16: _setter("Segment", lambda v: _uint(v, "Segment")),
    17: _setter("TotalSegments", lambda v: _uint(v, "TotalSegments")),
    19: _setter("ClientRequestToken", lambda v: _text(v, "ClientRequestToken")),
}
#: Python-only duplicates of what the compiled expressions already carry (§3.2).
_IGNORED = frozenset({1, 5, 12, 18})
_WRITE = frozenset({3, 4, 6, 7})
_ALLOWED: dict[str, frozenset[int]] = {
    "getItem": frozenset({0, 2, 3}),
    "putItem": _WRITE, "deleteItem": _WRITE, "updateItem": _WRITE | {8},
    "query": frozenset({0, 2, 3, 9, 10, 11, 13, 14, 15}),
    "scan": frozenset({0, 2, 3, 9, 10, 11, 13, 15, 16, 17}),
    "batchGetItem": frozenset({3}), "batchWriteItem": frozenset({3, 6}),
    "transactGetItems": frozenset({3}), "transactWriteItems": frozenset({3, 6, 19}),
}


#: User agents (connection preamble) of clients that send ``Select: 1`` when the caller left Select unset:
#: the Go v2 client writes ALL_ATTRIBUTES for an empty Select, with or without a projection or an index.
_SELECT_ONE_WHEN_UNSET = ("DaxGoV2Client",)


def select_one_means_unset(user_agent: str | None) -> bool:
    """Whether a connection's ``Select: 1`` stands for "unset" rather than an explicit ALL_ATTRIBUTES."""
    return user_agent is not None and user_agent.startswith(_SELECT_ONE_WHEN_UNSET)


def settle_select(request: dict[str, Any], *, one_means_unset: bool) -> None:
    """Drop a Query/Scan ``Select`` ALL_ATTRIBUTES where it cannot be what the caller asked for, or changes nothing.

    DynamoDB does not treat an explicit ALL_ATTRIBUTES as its default: on a
    local secondary index it fetches the attributes the index does not hold,
    and it refuses it with a ProjectionExpression or on an index that does not
    project every attribute. So it is kept, unless the connection's client
    sends it for "unset" (Go v2), or the request reads a table without a
    projection, where it is the default anyway (then equal reads share one
    query-cache entry whatever the client sent).
    """
    if request.get("Select") != "ALL_ATTRIBUTES":
        return
    plain = "IndexName" not in request and "ProjectionExpression" not in request
    if one_means_unset or plain:
        del request["Select"]


def _apply_kwargs(b: _Builder, method: str, kwargs: Any) -> None:
    if kwargs is None:
        return
    given = _map(kwargs, "keyword arguments")
    allowed = _ALLOWED[method]
    for key in given:
        if key not in allowed and key not in _IGNORED:
            raise ValidationException(f"parameter {key!r} is not valid for {method}")
    for key, apply in _KWARGS.items():
        if key in given:
            apply(b, given[key])


# ------------------------------------------------------------ per method

_Converted = tuple[dict[str, Any], RequestContext]
_Schemas = Mapping[str, KeySchema]
Converter = Callable[[tuple[Any, ...], _Schemas, AttributeListTable], _Converted]


def _single(method: str, args: tuple[Any, ...], schemas: _Schemas,
            request: dict[str, Any], key_condition: Any = None) -> _Converted:
    """Shared tail of the single-table methods: kwargs, expressions, context."""
    table = request["TableName"]
    b = _Builder(schemas[table], request)
    if key_condition is not None:
        request["KeyConditionExpression"] = b.renderer.condition(_bytes(key_condition, "KeyCondition"))
    _apply_kwargs(b, method, args[-1])
    context = RequestContext(schemas, projection=b.projection, indexed="IndexName" in request)
    return b.finish(), context


def _keyed(method: str) -> Converter:
    def convert(args: tuple[Any, ...], schemas: _Schemas, _lists: AttributeListTable) -> _Converted:
        table = _text(args[0], "table name")
        key = decode_key(_bytes(args[1], "key"), schemas[table])
        return _single(method, args, schemas, {"TableName": table, "Key": key})
    return convert


def _put_item(args: tuple[Any, ...], schemas: _Schemas, lists: AttributeListTable) -> _Converted:
    table = _text(args[0], "table name")
    item = _item(args[1], args[2], schemas[table], lists)
    return _single("putItem", args, schemas, {"TableName": table, "Item": item})


def _item(key: Any, values: Any, schema: KeySchema, lists: AttributeListTable) -> Item:
    item = decode_key(_bytes(key, "key"), schema)
    item.update(decode_values(_bytes(values, "item values"), lists))
    return item


def _query(args: tuple[Any, ...], schemas: _Schemas, _lists: AttributeListTable) -> _Converted:
    table = _text(args[0], "table name")
    return _single("query", args, schemas, {"TableName": table}, key_condition=args[1])


def _scan(args: tuple[Any, ...], schemas: _Schemas, _lists: AttributeListTable) -> _Converted:
    return _single("scan", args, schemas, {"TableName": _text(args[0], "table name")})


def _top_level(method: str, args: tuple[Any, ...], schemas: _Schemas,
               request: dict[str, Any]) -> dict[str, Any]:
    """Read the kwargs of a multi-table method into ``request`` (no expressions there)."""
    placeholder = next(iter(schemas.values()), KeySchema("-", "S"))  # kwargs here hold no keys
    _apply_kwargs(_Builder(placeholder, request), method, args[-1])
    return request


CONVERTERS: dict[str, Converter] = {
    "getItem": _keyed("getItem"),
    "putItem": _put_item,
    "deleteItem": _keyed("deleteItem"),
    "updateItem": _keyed("updateItem"),
    "query": _query,
    "scan": _scan,
}
