"""The cached-GetItem hot path: reply bytes from an item encoded once.

Encoding a 1 KB item costs tens of microseconds in Python (one call per
AttributeValue; docs/architecture.md, "Measured costs"). A node that
wants 40k hits/s encodes each item when it enters the cache
(:func:`prepare_item`) and answers every hit with :func:`encode_get_item_hit`,
which only concatenates bytes.

The prepared bytes embed an attribute-list id. Ids are never reused, but the
registry may forget an idle one (see :class:`AttributeListTable`), so every hit
asks the registry for the id again (a dict lookup that also keeps the list
recently used) and re-encodes the id in the unlikely case it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cbor2

from daxd.frontends.dax.attrs import AttributeListTable, AttributeValue
from daxd.frontends.dax.cbor import read_uint
from daxd.frontends.dax.keys import KeySchema, encode_values, non_key_names
from daxd.frontends.dax.requests import Operation


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """An item's non-key values, encoded once: ``names`` and the bare value bytes."""

    names: tuple[str, ...]
    list_id: int
    values: bytes

    @property
    def size(self) -> int:
        """Bytes held, for cache accounting."""
        return len(self.values) + sum(len(n) for n in self.names)


def prepare_item(item: Mapping[str, AttributeValue], schema: KeySchema,
                 attr_lists: AttributeListTable) -> PreparedItem:
    """Encode an item's value bytes ``V`` once (at cache fill)."""
    encoded = encode_values(item, schema, attr_lists)
    list_id, start = read_uint(encoded, 0)
    return PreparedItem(non_key_names(item, schema), list_id, encoded[start:])


def _bstr_header(length: int) -> bytes:
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


#: The GetItem reply for a key that holds no item: an empty header and an empty map.
NOT_FOUND_REPLY = b"\x80\xa0"


def encode_get_item_hit(op: Operation, prepared: PreparedItem | None,
                        attr_lists: AttributeListTable) -> bytes:
    """GetItem reply for a cache hit (``None`` = cached miss, reply ``80 a0``).

    Only for GetItem without a ProjectionExpression and without consumed
    capacity; use :func:`encode_response` otherwise.
    """
    if prepared is None:
        return NOT_FOUND_REPLY
    list_id = attr_lists.id_for(prepared.names)
    head = cbor2.dumps(list_id) if list_id != prepared.list_id or list_id > 23 else bytes((list_id,))
    body = head + prepared.values
    return b"\x80\xa1\x00" + _bstr_header(len(body)) + body
