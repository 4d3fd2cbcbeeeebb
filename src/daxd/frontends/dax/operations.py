"""Entry point from a decoded data-plane call to a DynamoDB operation.

A :class:`~daxd.frontends.dax.events.MethodCall` holds raw CBOR arguments; key
bytes in it cannot be read without the table's key schema. :func:`to_operation`
takes the schemas the caller knows and raises :class:`NeedSchema` listing *all*
tables it is missing, so the server can DescribeTable them upstream (in
parallel) and call it again: the call is immutable, so retrying is free.
"""

from __future__ import annotations

from collections.abc import Mapping

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.batch import ALL_CONVERTERS
from daxd.frontends.dax.events import MethodCall
from daxd.frontends.dax.keys import KeySchema
from daxd.frontends.dax.requests import (
    OPERATION_NAMES,
    NeedSchema,
    Operation,
    RequestContext,
    _array,
    _map,
    _text,
    settle_select,
)

__all__ = ["NeedSchema", "Operation", "RequestContext", "required_tables", "to_operation"]


def required_tables(call: MethodCall) -> tuple[str, ...]:
    """Tables whose key schema decoding ``call`` needs, in first-use order.

    Raises:
        ValidationException: the table names themselves are malformed.
    """
    args = call.args
    if call.method in ("batchGetItem", "batchWriteItem"):
        items = _map(args[0], "RequestItems")
        return tuple(_text(t, "table name") for t in items)
    if call.method in ("transactGetItems", "transactWriteItems"):
        names = _array(args[0 if call.method == "transactGetItems" else 1], "table names")
        return tuple(dict.fromkeys(_text(t, "table name") for t in names))
    return (_text(args[0], "table name"),)


def to_operation(call: MethodCall, schemas: Mapping[str, KeySchema],
                 attr_lists: AttributeListTable, *, select_one_means_unset: bool = False) -> Operation:
    """Convert a data-plane call to a DynamoDB operation.

    Args:
        call: the decoded method call.
        schemas: key schemas known to the node, by table name.
        attr_lists: the node's attribute-list registry (to read item value bytes).
        select_one_means_unset: the connection's client sends ``Select: 1`` when
            its caller left Select unset (:func:`select_one_means_unset`).

    Raises:
        NeedSchema: some tables' key schemas are not in ``schemas``.
        ValidationException: the call is well-formed CBOR but not a valid request.
    """
    tables = required_tables(call)
    missing = tuple(t for t in tables if t not in schemas)
    if missing:
        raise NeedSchema(missing)
    used = {t: schemas[t] for t in tables}
    request, context = ALL_CONVERTERS[call.method](call.args, used, attr_lists)
    if call.method in ("query", "scan"):
        settle_select(request, one_means_unset=select_one_means_unset)
    return Operation(OPERATION_NAMES[call.method], request, context)
