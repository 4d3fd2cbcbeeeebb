"""The DAX hot-path memos never serve a stale answer (pure, no node needed)."""

from __future__ import annotations

import orjson

from daxd.accelerator import Accelerator, CacheSettings
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.codec import decode_plain_get_item
from daxd.frontends.dax.events import MethodCall, PlainGetItem
from daxd.frontends.dax.memo import DecodedGetItems, EncodedPages
from daxd.frontends.dax.operations import to_operation
from daxd.frontends.dax.requests import Operation, RequestContext
from daxd.frontends.dax.responses import encode_response
from daxd.model.keys import KeySchema, TableSchema, canonical_key

SCHEMA = KeySchema("pk", "S")


def _plain(table: bytes, key: bytes, kwargs: bytes = b"\xbf\x03\x00\xff") -> PlainGetItem:
    return PlainGetItem(bytes([0x40 + len(table)]) + table + bytes([0x40 + len(key)]) + key + kwargs)


def test_plain_get_item_bytes_decode_like_the_general_path() -> None:
    assert decode_plain_get_item(_plain(b"t", b"k")) == MethodCall("getItem", (b"t", b"k", {3: 0}))
    assert decode_plain_get_item(_plain(b"t", b"k", b"\xbf\xff")) == MethodCall("getItem", (b"t", b"k", {}))
    assert decode_plain_get_item(_plain(b"t", b"k", b"\xf6")) == MethodCall("getItem", (b"t", b"k", None))


def test_decoded_get_items_are_dropped_when_the_schema_changes() -> None:
    tables = {"t": TableSchema("t", SCHEMA)}
    memo = DecodedGetItems(tables)
    event = _plain(b"t", b"k")
    op = to_operation(decode_plain_get_item(event), {"t": SCHEMA}, AttributeListTable())
    memo.put(event, op, Accelerator().item_ref(op.request))
    assert memo.get(_plain(b"t", b"k")) == (op, ("t", canonical_key({"pk": {"S": "k"}}), ""))
    assert memo.get(_plain(b"t", b"other")) is None
    tables["t"] = TableSchema("t", KeySchema("pk", "N"))  # table recreated with another key type
    assert memo.get(event) is None


def test_decoded_get_items_give_no_ref_for_reads_the_item_cache_cannot_answer_alone() -> None:
    tables = {"t": TableSchema("t", SCHEMA)}
    memo = DecodedGetItems(tables)
    event = _plain(b"t", b"k")
    key = {"pk": {"S": "k"}}
    for extra in ({"ConsistentRead": True}, {"ReturnConsumedCapacity": "TOTAL"}):
        op = Operation("GetItem", {"TableName": "t", "Key": key, **extra}, RequestContext({"t": SCHEMA}))
        memo.put(event, op, Accelerator().item_ref(op.request))
        assert memo.get(event) == (op, None)
    only_other = Accelerator(CacheSettings(tables=frozenset({"other"})))
    assert only_other.item_ref({"TableName": "t", "Key": key}) is None  # a table the node does not cache


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
