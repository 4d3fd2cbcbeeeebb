"""AttributeValues between DynamoDB JSON and DAX CBOR, and the attribute-list table.

An AttributeValue in DAX is one CBOR item whose type implies the DynamoDB type
(docs/protocol.md, "Keys and values"). Decoding produces DynamoDB JSON exactly as DynamoDB's
wire format has it: numbers as canonical strings, binaries as base64 text.
Encoding produces plain Python structures for ``cbor2.dumps`` (no per-call
reflection: one type switch through a dict of small functions).

:class:`AttributeListTable` is the node's registry behind ``defineAttributeList``
and ``defineAttributeListId`` (§3.3, §4.5).
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from cbor2 import CBORTag

from daxd.frontends.dax import numbers
from daxd.frontends.dax.cbor import TAG_BINARY_SET, TAG_NUMBER_SET, TAG_STRING_SET
from daxd.model.errors import ValidationException

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


# ------------------------------------------------------------ CBOR -> JSON

def from_cbor(value: Any) -> AttributeValue:
    """The DynamoDB JSON AttributeValue for one decoded CBOR item.

    Raises:
        ValidationException: the item has no DynamoDB meaning (undefined, a map
            with non-string keys, an unknown tag, a malformed set).
    """
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, Decimal, float)):
        return {"N": numbers.canonical(value)}
    if isinstance(value, bytes):
        return {"B": base64.b64encode(value).decode("ascii")}
    if value is None:
        return {"NULL": True}
    if isinstance(value, (list, tuple)):
        return {"L": [from_cbor(element) for element in value]}
    if isinstance(value, dict):
        return {"M": _map_from_cbor(value)}
    if isinstance(value, CBORTag):
        return _set_from_cbor(value)
    raise ValidationException(f"unsupported attribute value type {type(value).__name__}")


def _map_from_cbor(value: dict[Any, Any]) -> Item:
    out: Item = {}
    for name, element in value.items():
        if not isinstance(name, str):
            raise ValidationException("map attribute names must be strings")
        out[name] = from_cbor(element)
    return out


def _set_from_cbor(tag: CBORTag) -> AttributeValue:
    members = tag.value
    if not isinstance(members, (list, tuple)):
        raise ValidationException("a set must be an array")
    if tag.tag == TAG_STRING_SET and all(isinstance(m, str) for m in members):
        return {"SS": list(members)}
    if tag.tag == TAG_NUMBER_SET:
        return {"NS": [numbers.canonical(m) for m in members]}
    if tag.tag == TAG_BINARY_SET and all(isinstance(m, bytes) for m in members):
        return {"BS": [base64.b64encode(m).decode("ascii") for m in members]}
    raise ValidationException(f"malformed set (tag {tag.tag})")


# ------------------------------------------------------------ JSON -> CBOR

def _b64(text: Any) -> bytes:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValidationException("invalid base64 in a binary attribute value") from None


def _enc_m(value: Item) -> dict[str, Any]:
    return {name: to_cbor(element) for name, element in value.items()}


def _enc_null(_value: Any) -> None:
    return None


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "S": str,
    "N": numbers.to_cbor,
    "B": _b64,
    "BOOL": bool,
    "NULL": _enc_null,
    "L": lambda value: [to_cbor(element) for element in value],
    "M": _enc_m,
    "SS": lambda value: CBORTag(TAG_STRING_SET, list(value)),
    "NS": lambda value: CBORTag(TAG_NUMBER_SET, [numbers.to_cbor(n) for n in value]),
    "BS": lambda value: CBORTag(TAG_BINARY_SET, [_b64(b) for b in value]),
}


def to_cbor(av: AttributeValue) -> Any:
    """The ``cbor2.dumps``-ready form of one DynamoDB JSON AttributeValue.

    Strings are tested first without a table lookup: this runs once per
    attribute of every item a reply carries.
    """
    try:
        (kind, value), = av.items()
    except (ValueError, AttributeError):
        raise ValidationException("an attribute value must have exactly one type") from None
    if kind == "S":
        return value
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        raise ValidationException(f"unknown attribute value type {kind!r}")
    return encoder(value)


# ------------------------------------------------------------ attribute lists

AttributeNames = tuple[str, ...]


class UnknownAttributeList(ValidationException):
    """An attribute-list id this node never issued (or has evicted)."""


class AttributeListTable:
    """Bounded registry: attribute-name list <-> id (§3.3, §4.5).

    Ids are issued from a counter starting at 2 and are **never reused**: the
    clients cache id -> names and names -> id without expiry (Python 1000
    entries, JS 250), so handing an old id a new meaning would silently corrupt
    items. Id 1 is always the empty list.

    Past ``max_entries`` the least recently used list is forgotten. A client
    that still caches a forgotten id and sends it in a write gets
    :class:`UnknownAttributeList` (a ValidationException) for that request; a
    client asking ``defineAttributeList`` for it gets the same error. Because
    every use (encode or decode) refreshes an entry, only lists nobody used
    while ``max_entries`` other lists were used can be forgotten, so with the
    default (100 000, 100x the Python client's own cache) this is a
    pathological case, not a steady state. Reading never fails: the node
    re-registers any list it needs to encode a reply under a fresh id.

    Single-owner: not thread-safe (one event loop owns it).
    """

    EMPTY_ID = 1
    DEFAULT_MAX_ENTRIES = 100_000

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._by_names: OrderedDict[AttributeNames, int] = OrderedDict()
        self._by_id: dict[int, AttributeNames] = {}
        self._next_id = 2

    def __len__(self) -> int:
        return len(self._by_id)

    def id_for(self, names: Sequence[str]) -> int:
        """The id of a name list, registering it if new (``defineAttributeListId``)."""
        key = tuple(names)
        if not key:
            return self.EMPTY_ID
        list_id = self._by_names.get(key)
        if list_id is not None:
            self._by_names.move_to_end(key)
            return list_id
        list_id = self._next_id
        self._next_id += 1
        self._by_names[key] = list_id
        self._by_id[list_id] = key
        self._evict()
        return list_id

    def names_for(self, list_id: int) -> AttributeNames:
        """The names of an id (``defineAttributeList``).

        Raises:
            UnknownAttributeList: the id was never issued or has been evicted.
        """
        if list_id == self.EMPTY_ID:
            return ()
        names = self._by_id.get(list_id)
        if names is None:
            raise UnknownAttributeList(f"Unknown attribute list id {list_id}")
        self._by_names.move_to_end(names)
        return names

    def _evict(self) -> None:
        while len(self._by_names) > self.max_entries:
            _names, list_id = self._by_names.popitem(last=False)
            del self._by_id[list_id]
