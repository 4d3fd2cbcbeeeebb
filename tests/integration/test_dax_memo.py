"""The DAX hot-path memos never serve a stale answer (pure, no node needed)."""

from __future__ import annotations

import orjson

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.events import MethodCall
from daxd.frontends.dax.memo import DecodedGetItems, EncodedPages
from daxd.frontends.dax.operations import to_operation
from daxd.frontends.dax.requests import Operation, RequestContext
from daxd.frontends.dax.responses import encode_response
from daxd.model.keys import KeySchema, TableSchema

SCHEMA = KeySchema("pk", "S")


def test_decoded_get_items_are_dropped_when_the_schema_changes() -> None:
    tables = {"t": TableSchema("t", SCHEMA)}
    memo = DecodedGetItems(tables)
    call = MethodCall("getItem", (b"t", b"k", {3: 0}))
    op = to_operation(call, {"t": SCHEMA}, AttributeListTable())
    memo.put(call, op)
    assert memo.get(MethodCall("getItem", (b"t", b"k", {3: 0}))) is op
    tables["t"] = TableSchema("t", KeySchema("pk", "N"))  # table recreated with another key type
    assert memo.get(call) is None
    unhashable = MethodCall("getItem", (b"t", b"k", {0: [1]}))
    memo.put(unhashable, op)
    assert memo.get(unhashable) is None


def test_encoded_pages_are_rebuilt_when_an_attribute_list_was_forgotten() -> None:
    lists = AttributeListTable(max_entries=1)
    pages = EncodedPages(lists)
    op = Operation("Query", {"TableName": "t"}, RequestContext({"t": SCHEMA}))
    body = orjson.dumps({"Items": [{"pk": {"S": "a"}, "v": {"S": "x"}}], "Count": 1, "ScannedCount": 1})
    data = orjson.loads(body)
    reply = encode_response(op, data, lists)
    pages.put(op, body, data, reply)
    assert pages.get(op, body) == reply
    projected = Operation("Query", {"TableName": "t"}, RequestContext({"t": SCHEMA}, projection=[("v",)]))
    assert pages.get(projected, body) is None  # another reply shape
    lists.id_for(["other"])  # evicts ["v"]
    assert pages.get(op, body) is None
