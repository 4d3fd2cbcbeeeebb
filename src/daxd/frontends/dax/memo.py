"""Memos of the DAX hot paths: decoded GetItem requests and encoded Query/Scan pages.

Both trade a little memory for CPU on cache hits, where decoding or encoding
costs several times the cache lookup itself (docs/architecture.md, "Measured costs"). Neither
holds cache policy: they remember pure functions of their keys and are only
consulted after the Accelerator decided what to answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daxd.accelerator import ItemRef
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.events import PlainGetItem
from daxd.frontends.dax.keys import non_key_names
from daxd.frontends.dax.operations import Operation
from daxd.model.keys import TableSchema


class DecodedGetItems:
    """Decoded plain GetItem operations by their argument bytes (:class:`PlainGetItem`).

    A client asks for the same keys with the same bytes again and again;
    decoding a getItem (key bytes, kwargs) and canonicalizing its key costs
    several times the cache lookup it leads to. Entries remember the table
    schema they were decoded with and are ignored once the table's schema is
    replaced (a flushed or recreated table). Bounded: cleared when full
    (re-decoding is cheap, only slower). Operations handed out are shared:
    nothing may change their request dict.
    """

    MAX_ENTRIES = 65_536

    def __init__(self, tables: dict[str, TableSchema]) -> None:
        self._tables = tables
        self._ops: dict[bytes, tuple[str, TableSchema, Operation, ItemRef | None]] = {}

    def get(self, event: PlainGetItem) -> tuple[Operation, ItemRef | None] | None:
        """The operation and, when the item cache answers it as a whole item, where (see :meth:`put`)."""
        found = self._ops.get(event.args)
        if found is None:
            return None
        table, schema, op, ref = found
        return (op, ref) if self._tables.get(table) is schema else None

    def put(self, event: PlainGetItem, op: Operation, ref: ItemRef | None) -> None:
        """Remember ``op`` with its :meth:`Accelerator.item_ref` (None: not a cached whole-item read);
        :meth:`Accelerator.cached_item_at` then answers it without the request dict."""
        table = op.request["TableName"]
        schema = self._tables.get(table)
        if schema is None:
            return
        if len(self._ops) >= self.MAX_ENTRIES:
            self._ops.clear()
        self._ops[event.args] = (table, schema, op, ref)


class EncodedPages:
    """DAX replies of cached Query/Scan pages, by the page's JSON body and the request's reply shape.

    A query hit hands back the same cached body bytes every time (their hash
    is computed once by Python), and the reply is a function of the body, the
    table's key schema, the projection and whether an index was used. The
    attribute-list ids embedded in a reply are re-checked on every use (the
    registry may have forgotten one; then the reply is rebuilt). Bounded by
    the bytes it holds (bodies and replies): cleared when over.
    """

    MAX_BYTES = 32 << 20

    def __init__(self, attr_lists: AttributeListTable) -> None:
        self.attr_lists = attr_lists
        self._replies: dict[tuple[Any, ...], tuple[bytes, tuple[tuple[tuple[str, ...], int], ...]]] = {}
        self._bytes = 0

    @staticmethod
    def _key(op: Operation, body: bytes) -> tuple[Any, ...]:
        table = op.request["TableName"]
        projection = op.context.projection
        return (body, table, op.context.schemas[table], op.context.indexed,
                None if projection is None else tuple(projection))

    def get(self, op: Operation, body: bytes) -> bytes | None:
        found = self._replies.get(self._key(op, body))
        if found is None:
            return None
        reply, lists = found
        id_for = self.attr_lists.id_for
        return reply if all(id_for(names) == list_id for names, list_id in lists) else None

    def put(self, op: Operation, body: bytes, data: Mapping[str, Any], reply: bytes) -> None:
        size = len(body) + len(reply)
        if size > self.MAX_BYTES // 16:
            return
        if self._bytes + size > self.MAX_BYTES:
            self._replies.clear()
            self._bytes = 0
        lists: tuple[tuple[tuple[str, ...], int], ...] = ()
        if op.context.projection is None:
            schema = op.context.schemas[op.request["TableName"]]
            names = {non_key_names(item, schema) for item in data.get("Items") or ()}
            lists = tuple((n, self.attr_lists.id_for(n)) for n in names)
        self._replies[self._key(op, body)] = (reply, lists)
        self._bytes += size
