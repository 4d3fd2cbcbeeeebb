"""Key schemas, key bytes, compound keys and item value bytes (docs/protocol.md, "Keys and values").

Key bytes ``K`` are not self-describing: decoding them needs the table's key
schema (:class:`daxd.model.keys.KeySchema`, shared with the cache), which
the DAX front end learns from DescribeTable. Item value bytes ``V``
(attribute-list id + bare values) need the node's
:class:`~daxd.frontends.dax.attrs.AttributeListTable`.

Numbers in keys are canonicalised (§4.4: the clients send ``"1.5"`` and
``"1.50"`` as different bytes), so decoded keys compare equal exactly when
DynamoDB would consider them the same key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import cbor2

from daxd.frontends.dax import numbers
from daxd.frontends.dax.attrs import AttributeListTable, AttributeValue, Item, from_cbor, to_cbor
from daxd.frontends.dax.cbor import load, load_checked, read_uint, scan_complete
from daxd.model.errors import ProtocolError, ValidationException
from daxd.model.keys import KeySchema, TableSchema

__all__ = ["KeySchema", "TableSchema", "key_pairs", "key_schema_of"]

def key_pairs(schema: KeySchema) -> list[tuple[str, str]]:
    """(name, type) pairs, hash first: the ``defineKeySchema`` reply order."""
    out = [(schema.hash_key, schema.hash_type)]
    if schema.range_key is not None and schema.range_type is not None:
        out.append((schema.range_key, schema.range_type))
    return out


def key_schema_of(table: Mapping[str, Any]) -> KeySchema:
    """The key schema of a DescribeTable ``Table`` dict (``KeySchema`` + ``AttributeDefinitions``)."""
    return TableSchema.from_description(table).key


# ------------------------------------------------------------ key bytes

def _hash_value(kind: str, value: Any) -> str:
    """A hash key value decoded from CBOR, as DynamoDB JSON text."""
    if kind == "S" and isinstance(value, str):
        return value
    if kind == "B" and isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if kind == "N" and not isinstance(value, (str, bytes, bool)) and value is not None:
        return numbers.canonical(value)
    raise ValidationException(f"key value does not match the key schema type {kind}")


def _raw_value(kind: str, raw: bytes) -> str:
    """A key value carried as raw bytes (hash-only S/B keys, range keys)."""
    if kind == "S":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("key string is not valid UTF-8") from None
    if kind == "B":
        return base64.b64encode(raw).decode("ascii")
    return numbers.lex_decode(raw)


def decode_key(data: bytes, schema: KeySchema) -> Item:
    """DynamoDB JSON key for key bytes ``K`` (§4.4)."""
    if schema.range_key is None:
        value = _hash_value("N", load_checked(data)) if schema.hash_type == "N" else _raw_value(schema.hash_type, data)
        return {schema.hash_key: {schema.hash_type: value}}
    assert schema.range_type is not None
    end = scan_complete(data, 0)
    hash_value = _hash_value(schema.hash_type, load(data[:end]))
    range_value = _raw_value(schema.range_type, data[end:])
    return {schema.hash_key: {schema.hash_type: hash_value},
            schema.range_key: {schema.range_type: range_value}}


def _key_part(key: Mapping[str, AttributeValue], name: str, kind: str) -> Any:
    try:
        return key[name][kind]
    except (KeyError, TypeError):
        raise ValidationException(f"key attribute {name!r} of type {kind} is missing") from None


def encode_key(key: Mapping[str, AttributeValue], schema: KeySchema) -> bytes:
    """Key bytes ``K`` for an item or key dict (extra attributes are ignored)."""
    hash_value = _key_part(key, schema.hash_key, schema.hash_type)
    if schema.range_key is None:
        if schema.hash_type == "N":
            return cbor2.dumps(numbers.to_cbor(numbers.canonical_text(hash_value)))
        return _raw_bytes(schema.hash_type, hash_value)
    assert schema.range_type is not None
    head = cbor2.dumps(to_cbor({schema.hash_type: hash_value}))
    range_value = _key_part(key, schema.range_key, schema.range_type)
    if schema.range_type == "N":
        return head + numbers.lex_encode(range_value)
    return head + _raw_bytes(schema.range_type, range_value)


def _raw_bytes(kind: str, value: Any) -> bytes:
    if kind == "S":
        return str(value).encode("utf-8")
    encoded = to_cbor({"B": value})
    assert isinstance(encoded, bytes)
    return encoded


def decode_compound_key(data: bytes) -> Item:
    """An indexed ExclusiveStartKey (§4.6): a CBOR map name -> AV inside the bstr."""
    value = load_checked(data)
    if not isinstance(value, dict):
        raise ValidationException("compound key must be a map")
    out: Item = {}
    for name, element in value.items():
        if not isinstance(name, str):
            raise ValidationException("compound key names must be strings")
        out[name] = from_cbor(element)
    return out


def encode_compound_key(key: Mapping[str, AttributeValue]) -> bytes:
    """An indexed LastEvaluatedKey: an *indefinite* map (Go requires ``bf``, addendum D2)."""
    body = b"".join(cbor2.dumps(name) + cbor2.dumps(to_cbor(av)) for name, av in key.items())
    return b"\xbf" + body + b"\xff"


# ------------------------------------------------------------ item value bytes

def decode_values(data: bytes, attr_lists: AttributeListTable) -> Item:
    """Non-key attributes of an item from value bytes ``V`` (§4.5)."""
    list_id, pos = read_uint(data, 0)
    names = attr_lists.names_for(list_id)
    values: list[AttributeValue] = []
    while pos < len(data):
        end = scan_complete(data, pos)
        values.append(from_cbor(load(data[pos:end])))
        pos = end
    if len(values) != len(names):
        raise ValidationException(
            f"attribute list {list_id} has {len(names)} names but {len(values)} values were sent")
    return dict(zip(names, values, strict=True))


def non_key_names(item: Mapping[str, Any], schema: KeySchema) -> tuple[str, ...]:
    """The canonical attribute list of an item: sorted non-key names (as the clients build it)."""
    keys = schema.names
    return tuple(sorted(name for name in item if name not in keys))


def encode_values(item: Mapping[str, AttributeValue], schema: KeySchema,
                  attr_lists: AttributeListTable) -> bytes:
    """Value bytes ``V``: list id followed by the non-key values, no array header."""
    names = non_key_names(item, schema)
    values = [attr_lists.id_for(names)]
    values.extend(to_cbor(item[name]) for name in names)
    return strip_array_header(cbor2.dumps(values))


def strip_array_header(encoded: bytes) -> bytes:
    """Drop the definite array header cbor2 put in front of a list.

    One ``cbor2.dumps`` of a list is much cheaper than one call per element,
    and the DAX value encoding is exactly "the elements, no header".
    """
    count = encoded[0] & 0x1F
    return encoded[_HEADER_LENGTH.get(count, 1):]


_HEADER_LENGTH = {24: 2, 25: 3, 26: 5, 27: 9}
