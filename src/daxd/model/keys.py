"""Key schemas and canonical key bytes.

A cache entry is found by the bytes of its key, so two spellings of one key
(``{"N": "1.0"}`` and ``{"N": "1"}``, attributes in another order) must give the
same bytes: numbers are normalized and attribute names sorted before encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from daxd.model.errors import ValidationException
from daxd.model.values import Item, is_plain_integer, normalize_item, normalize_value, wrong_type


@dataclass(frozen=True, slots=True)
class KeySchema:
    """The key attributes of a table or index, with their scalar types (S, N or B)."""

    hash_key: str
    hash_type: str = "S"
    range_key: str | None = None
    range_type: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)


@dataclass(frozen=True, slots=True)
class TableSchema:
    """What the cache needs to know of a table: its key and its indexes' keys."""

    name: str
    key: KeySchema
    indexes: Mapping[str, KeySchema] = field(default_factory=dict)
    stream_arn: str | None = None

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableSchema:
        """Build from DescribeTable's ``Table`` object."""
        types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", [])}
        indexes = {
            index["IndexName"]: _key_schema(index["KeySchema"], types)
            for group in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
            for index in table.get(group, [])
        }
        return cls(
            name=table["TableName"],
            key=_key_schema(table["KeySchema"], types),
            indexes=indexes,
            stream_arn=table.get("LatestStreamArn"),
        )


def _key_schema(elements: list[Mapping[str, str]], types: Mapping[str, str]) -> KeySchema:
    hash_key = next(e["AttributeName"] for e in elements if e["KeyType"] == "HASH")
    range_key = next((e["AttributeName"] for e in elements if e["KeyType"] == "RANGE"), None)
    return KeySchema(
        hash_key=hash_key,
        hash_type=types.get(hash_key, "S"),
        range_key=range_key,
        range_type=types.get(range_key, "S") if range_key else None,
    )


def compact(data: bytes) -> bytes:
    """An exact-size copy of ``data``.

    orjson's output keeps the capacity of its write buffer (4 KiB for a
    30-byte key, measured with tracemalloc), so bytes that are kept — cache
    keys and values — are copied to their true size first.
    """
    return memoryview(data).tobytes()


def canonical_key(key: Any) -> bytes:
    """The bytes that identify a key: numbers normalized, attribute names sorted.

    Raises:
        SerializationException: the key is not a JSON object, or a value is malformed.
        ValidationException: the key is missing or empty, or a value is invalid.
    """
    if not isinstance(key, dict):
        if key is None:
            raise ValidationException("The provided key element does not match the schema")
        raise wrong_type(key, "Key")
    if not key:
        raise ValidationException("The number of conditions on the keys is invalid")
    if not all(_is_canonical(value) for value in key.values()):
        key = normalize_item(key)
    return compact(orjson.dumps(key, option=orjson.OPT_SORT_KEYS))


def _is_canonical(value: Any) -> bool:
    """True for the common key values that normalizing would not change: strings and plain integers."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    text = value.get("S")
    if isinstance(text, str):
        return True
    text = value.get("N")
    return isinstance(text, str) and is_plain_integer(text)


def canonical_value(value: Any) -> bytes:
    """The bytes that identify one AttributeValue (a partition key value)."""
    return compact(orjson.dumps(normalize_value(value), option=orjson.OPT_SORT_KEYS))


def key_of(item: Item, schema: KeySchema) -> Item:
    """The key attributes of an item.

    Raises:
        ValidationException: a key attribute is missing, as DynamoDB would say.
    """
    try:
        return {name: item[name] for name in schema.names}
    except (KeyError, TypeError):
        raise ValidationException(
            "One or more parameter values were invalid: Missing the key "
            f"{schema.hash_key} in the item") from None


def check_key(key: Any, schema: KeySchema) -> None:
    """Refuse a key whose attributes or types are not the table's, as DynamoDB does (whatever the backend).

    Raises:
        ValidationException: ``Type mismatch for key ...`` for a wrong type; DynamoDB's schema
            message for missing or extra attributes.
    """
    if not isinstance(key, dict) or set(key) != set(schema.names):
        raise ValidationException("The provided key element does not match the schema")
    for name, expected in ((schema.hash_key, schema.hash_type), (schema.range_key, schema.range_type)):
        if name is None:
            continue
        value = key[name]
        actual = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
        if actual != expected:
            raise ValidationException(f"One or more parameter values were invalid: Type mismatch for key {name} "
                                      f"expected: {expected} actual: {actual}")


def partition_of(key: Item, schema: KeySchema) -> bytes:
    """The canonical bytes of an item's partition key value."""
    try:
        return canonical_value(key[schema.hash_key])
    except (KeyError, TypeError):
        raise ValidationException("The provided key element does not match the schema") from None
