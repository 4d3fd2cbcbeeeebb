"""DynamoDB results -> DAX reply bytes (docs/protocol.md, "Methods", "Item encodings in replies").

Every success reply is ``80`` followed by a method-specific number of items.
Items are built as plain Python structures and serialised with one
``cbor2.dumps`` per item (cbor2 emits definite containers, which Go requires).
Rules the clients impose and this module follows:

* numbers are ints or tag 4 (never floats), except capacity units and
  SizeEstimateRangeGB which must be int or float64 (Go, addendum C3);
* a missing item is never ``null`` in an item slot (Go panics): GetItem omits
  key 0, lists omit the entry;
* projection ordinals are always below the number of paths;
* an indexed LastEvaluatedKey is an indefinite map (Go, addendum D2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from daxd.frontends.dax.attrs import AttributeListTable, AttributeValue, to_cbor
from daxd.frontends.dax.keys import KeySchema, encode_compound_key, encode_key, encode_values, key_pairs
from daxd.frontends.dax.projection import project, projection_of
from daxd.frontends.dax.requests import Operation
from daxd.model.errors import ValidationException

SUCCESS = b"\x80"


# ------------------------------------------------------------ control methods

@dataclass(frozen=True, slots=True)
class Endpoint:
    """One node as advertised by ``endpoints`` (§3.3)."""

    node_id: int
    hostname: str
    address: str
    port: int
    role: int = 1
    availability_zone: str = ""
    leader_session_id: int = 0

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)  # raises ValueError for a non-IP
        if self.role not in (1, 2):
            raise ValueError("role must be 1 (leader) or 2 (replica)")


def encode_endpoints(nodes: Sequence[Endpoint]) -> bytes:
    """``endpoints`` reply: maps with keys 0-6 only (key 7 would break Python)."""
    return SUCCESS + cbor2.dumps([
        {0: n.node_id, 1: n.hostname, 2: ipaddress.ip_address(n.address).packed, 3: n.port,
         4: n.role, 5: n.availability_zone, 6: n.leader_session_id}
        for n in nodes])


def encode_key_schema(schema: KeySchema) -> bytes:
    """``defineKeySchema`` reply: name -> type, hash key first."""
    return SUCCESS + cbor2.dumps(dict(key_pairs(schema)))


def encode_attribute_list_id(list_id: int) -> bytes:
    """``defineAttributeListId`` reply."""
    return SUCCESS + cbor2.dumps(list_id)


def encode_attribute_list(names: Sequence[str]) -> bytes:
    """``defineAttributeList`` reply."""
    return SUCCESS + cbor2.dumps(list(names))


# ------------------------------------------------------------ shared pieces

def _units(value: Any) -> int | float:
    """Capacity numbers: int when integral, else float64 (never tag 4, Go C3)."""
    number = float(value)
    return int(number) if number.is_integer() else number


def capacity_record(capacity: Mapping[str, Any]) -> bytes:
    """The 5-field ConsumedCapacity record of normal and batch replies (§3.5.1)."""
    table = capacity.get("Table")
    parts = [capacity.get("TableName", ""), _units(capacity.get("CapacityUnits", 0)),
             None if table is None else _units(table.get("CapacityUnits", 0)),
             _index_units(capacity.get("GlobalSecondaryIndexes")),
             _index_units(capacity.get("LocalSecondaryIndexes"))]
    return b"".join(cbor2.dumps(part) for part in parts)


def _index_units(indexes: Mapping[str, Any] | None) -> dict[str, int | float] | None:
    if indexes is None:
        return None
    return {name: _units(value.get("CapacityUnits", 0)) for name, value in indexes.items()}


_CAPACITY_FIELDS = {"CapacityUnits": 1, "ReadCapacityUnits": 2, "WriteCapacityUnits": 3}


def _capacity_map(capacity: Mapping[str, Any]) -> dict[int, Any]:
    """Int-keyed capacity map of transact replies (§3.5.4; nested maps: keys 1-3 only)."""
    out: dict[int, Any] = {4: capacity["TableName"]} if "TableName" in capacity else {}
    out.update((code, _units(capacity[name])) for name, code in _CAPACITY_FIELDS.items() if name in capacity)
    if "Table" in capacity:
        out[5] = _capacity_map({k: v for k, v in capacity["Table"].items() if k in _CAPACITY_FIELDS})
    for name, code in (("GlobalSecondaryIndexes", 6), ("LocalSecondaryIndexes", 7)):
        if name in capacity:
            out[code] = {index: _capacity_map({k: v for k, v in value.items() if k in _CAPACITY_FIELDS})
                         for index, value in capacity[name].items()}
    return out


def _capacity_list(result: Mapping[str, Any]) -> list[Any]:
    capacity = result.get("ConsumedCapacity") or []
    return [capacity] if isinstance(capacity, Mapping) else list(capacity)


def collection_metrics(metrics: Mapping[str, Any] | None) -> bytes | None:
    """``AV(partition key) float float`` in a bstr, or None (§3.5.1)."""
    if not metrics:
        return None
    key = metrics.get("ItemCollectionKey") or {}
    low, high = [*(metrics.get("SizeEstimateRangeGB") or ()), 0.0, 0.0][:2]
    value = next(iter(key.values()), {"NULL": True})
    return cbor2.dumps(to_cbor(value)) + cbor2.dumps(float(low)) + cbor2.dumps(float(high))


# ------------------------------------------------------------ item shapes

def _scan_item(item: Mapping[str, AttributeValue], schema: KeySchema,
               lists: AttributeListTable) -> list[bytes]:
    """``[K, V]``: the shape query/scan and batch replies use (§4.7)."""
    return [encode_key(item, schema), encode_values(item, schema, lists)]


def _updated_attributes(attributes: Mapping[str, AttributeValue], lists: AttributeListTable) -> bytes:
    """UPDATED_OLD/UPDATED_NEW: list id + ``{ordinal: AV}`` (§3.5.1)."""
    names = sorted(attributes)
    return cbor2.dumps(lists.id_for(names)) + cbor2.dumps(
        {ordinal: to_cbor(attributes[name]) for ordinal, name in enumerate(names)})


# ------------------------------------------------------------ normal replies (§3.5.1)

def _normal(fields: dict[int, Any], op: Operation, result: Mapping[str, Any]) -> bytes:
    capacity = result.get("ConsumedCapacity")
    if capacity:
        fields[1] = capacity_record(capacity)
    return SUCCESS + cbor2.dumps(fields)


def _get_item(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    fields: dict[int, Any] = {}
    item = result.get("Item")
    if item is not None:
        paths = op.context.projection
        if paths is not None:
            fields[0] = project(item, paths)
        else:
            fields[0] = encode_values(item, op.context.schemas[op.request["TableName"]], lists)
    return _normal(fields, op, result)


def _write(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    fields: dict[int, Any] = {}
    attributes = result.get("Attributes")
    if attributes:
        if op.request.get("ReturnValues") in ("UPDATED_OLD", "UPDATED_NEW"):
            fields[2] = _updated_attributes(attributes, lists)
        else:
            fields[2] = encode_values(attributes, op.context.schemas[op.request["TableName"]], lists)
    metrics = collection_metrics(result.get("ItemCollectionMetrics"))
    if metrics is not None:
        fields[3] = metrics
    return _normal(fields, op, result)


def _query_scan(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    schema = op.context.schemas[op.request["TableName"]]
    fields: dict[int, Any] = {}
    items = result.get("Items")
    if items is not None:
        paths = op.context.projection
        if paths is not None:
            ordinals = projection_of(paths).ordinals
            fields[7] = [ordinals(i) for i in items]
        else:
            fields[7] = [_scan_item(i, schema, lists) for i in items]
    fields[8] = result.get("Count", len(items or ()))
    fields[10] = result.get("ScannedCount", fields[8])
    last = result.get("LastEvaluatedKey")
    if last:
        fields[9] = encode_compound_key(last) if op.context.indexed else encode_key(last, schema)
    return _normal(fields, op, result)


# ------------------------------------------------------------ batch and transactions

def _batch_get(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    responses: dict[str, list[Any]] = {}
    for table, items in (result.get("Responses") or {}).items():
        paths = op.context.projections.get(table)
        if paths is not None:
            ordinals = projection_of(paths).ordinals
            responses[table] = [ordinals(item) for item in items]
        else:
            schema = op.context.schemas[table]
            responses[table] = [part for item in items for part in _scan_item(item, schema, lists)]
    unprocessed = {table: [encode_key(k, op.context.schemas[table]) for k in spec.get("Keys", [])]
                   for table, spec in (result.get("UnprocessedKeys") or {}).items()}
    capacity = [capacity_record(c) for c in _capacity_list(result)]
    return SUCCESS + b"\x82" + cbor2.dumps(responses) + cbor2.dumps(unprocessed) + cbor2.dumps(capacity)


def _write_request(request: Mapping[str, Any], schema: KeySchema, lists: AttributeListTable) -> list[Any]:
    if "PutRequest" in request:
        return _scan_item(request["PutRequest"]["Item"], schema, lists)
    return [encode_key(request["DeleteRequest"]["Key"], schema), None]


def _metrics_by_table(result: Mapping[str, Any]) -> dict[str, list[bytes | None]]:
    return {table: [collection_metrics(m) for m in entries]
            for table, entries in (result.get("ItemCollectionMetrics") or {}).items()}


def _batch_write(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    unprocessed = {table: [part for request in requests
                           for part in _write_request(request, op.context.schemas[table], lists)]
                   for table, requests in (result.get("UnprocessedItems") or {}).items()}
    capacity = [capacity_record(c) for c in _capacity_list(result)]
    return SUCCESS + cbor2.dumps(unprocessed) + cbor2.dumps(capacity) + cbor2.dumps(_metrics_by_table(result))


def _transact_get(op: Operation, result: Mapping[str, Any], lists: AttributeListTable) -> bytes:
    actions = op.request["TransactItems"]
    responses = result.get("Responses") or [{}] * len(actions)
    if len(responses) != len(actions):
        raise ValidationException("TransactGetItems result does not match the request")
    items: list[Any] = []
    for index, (action, response) in enumerate(zip(actions, responses, strict=True)):
        item = (response or {}).get("Item")
        paths = op.context.projections.get(str(index))
        if item is None:
            items.append(None)
        elif paths is not None:
            items.append(project(item, paths))
        else:
            items.append(encode_values(item, op.context.schemas[action["Get"]["TableName"]], lists))
    capacity = [_capacity_map(c) for c in _capacity_list(result)]
    return SUCCESS + cbor2.dumps([items, capacity])


def _transact_write(op: Operation, result: Mapping[str, Any], _lists: AttributeListTable) -> bytes:
    capacity = [_capacity_map(c) for c in _capacity_list(result)]
    return SUCCESS + cbor2.dumps([[], capacity, _metrics_by_table(result)])


_ENCODERS: dict[str, Callable[[Operation, Mapping[str, Any], AttributeListTable], bytes]] = {
    "GetItem": _get_item,
    "PutItem": _write, "DeleteItem": _write, "UpdateItem": _write,
    "Query": _query_scan, "Scan": _query_scan,
    "BatchGetItem": _batch_get, "BatchWriteItem": _batch_write,
    "TransactGetItems": _transact_get, "TransactWriteItems": _transact_write,
}


def encode_response(op: Operation, result: Mapping[str, Any], attr_lists: AttributeListTable) -> bytes:
    """The DAX success reply for a DynamoDB ``result`` of ``op``.

    Args:
        op: the operation the result answers (its context carries key schemas,
            projection paths and whether an index was used).
        result: DynamoDB's JSON response, as a dict.
        attr_lists: the node's attribute-list registry (new lists get ids here).
    """
    return _ENCODERS[op.name](op, result, attr_lists)
