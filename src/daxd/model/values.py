"""DynamoDB AttributeValues as DynamoDB's JSON wire format has them.

Numbers travel as strings and DynamoDB normalizes them on write (``"1.50"`` is
stored as ``"1.5"``, ``"1e3"`` as ``"1000"``). A cache that stores a PutItem's
item as sent would answer the next read differently from DynamoDB, so every
image and every key is normalized here first. The rules were read off
DynamoDB Local 3.3 (``tests/unit/test_model.py`` pins them): plain notation, no
exponent, no trailing zeros, no sign on zero.

Normalizing is also where a malformed value is refused, as DynamoDB refuses
it, in two steps (docs/errors.md):

- *Deserialization* (``SerializationException``): each member must have the
  JSON type DynamoDB's API model gives it: ``S``, ``N`` and ``B`` strings (``B``
  valid base64), ``BOOL`` and ``NULL`` booleans, sets arrays of strings, ``L``
  an array and ``M`` an object of AttributeValues. A JSON number is not a
  string: ``{"N": 3}`` is refused (DynamoDB Local accepts it; DynamoDB does
  not). A null member counts as absent and an unknown member is ignored, as
  DynamoDB's deserializer does; neither is kept.
- *Validation* (``ValidationException``, DynamoDB's messages): exactly one
  type, a number DynamoDB can store (38 digits, magnitude 1E-130 to 1E+126),
  ``NULL`` true, no null inside a list or a map.

What this module does not check (empty sets, duplicates, empty key strings,
key types) it leaves to DynamoDB: such a request is forwarded and DynamoDB
answers it; the cache never answers it by itself because no such item exists.
"""

from __future__ import annotations

import binascii
import decimal
from typing import Any

from daxd.model.errors import SerializationException, ValidationException

Item = dict[str, Any]

#: Wide enough for DynamoDB's 38 significant digits with room to spare, so
#: normalization never rounds a number DynamoDB accepts.
_CONTEXT = decimal.Context(prec=60, Emax=999, Emin=-999)
#: DynamoDB's number limits: 38 significant digits, 1E-130 <= |n| < 1E+126.
MAX_DIGITS = 38
MAX_EXPONENT = 125
MIN_EXPONENT = -130

SCALAR_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL"})
SET_TYPES = frozenset({"SS", "NS", "BS"})
ALL_TYPES = SCALAR_TYPES | SET_TYPES | {"M", "L"}

_NOT_A_NUMBER = "A value provided cannot be converted into a number"
_EMPTY = "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
_MANY = "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"


def json_token(value: Any) -> str:
    """The JSON token a value came from, named as DynamoDB's deserializer names it in its messages."""
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, (int, float)):
        return "NUMBER_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT" if isinstance(value, dict) else "VALUE_NULL"


def wrong_type(value: Any, expected: str) -> SerializationException:
    """The deserializer's refusal of a JSON value where the API model expects ``expected``."""
    if isinstance(value, dict):
        return SerializationException("Start of structure or map found where not expected.")
    if isinstance(value, list):
        return SerializationException("Start of list found where not expected")
    return SerializationException(f"{json_token(value)} cannot be converted to {expected}")


def is_plain_integer(text: str) -> bool:
    """True for a non-negative integer already spelled as DynamoDB stores it ("0", "42")."""
    return text.isascii() and text.isdigit() and (text[0] != "0" or text == "0") and len(text) <= MAX_DIGITS


def normalize_number(text: Any) -> str:
    """DynamoDB's canonical spelling of a number (``"-1.230e+2"`` -> ``"-123"``).

    Raises:
        SerializationException: ``text`` is not a JSON string.
        ValidationException: the text is not a number DynamoDB can store, as DynamoDB says it.
    """
    if not isinstance(text, str):
        raise wrong_type(text, "String")
    if is_plain_integer(text):
        return text  # already canonical (the common case for keys): skip Decimal
    try:
        value = decimal.Decimal(text)
    except (decimal.InvalidOperation, ValueError):
        raise ValidationException(_NOT_A_NUMBER) from None
    if not value.is_finite() or text != text.strip() or not text.isascii():
        raise ValidationException(_NOT_A_NUMBER)
    if value.is_zero():
        return "0"
    if value.adjusted() > MAX_EXPONENT:  # checked before any arithmetic: "1e999999" must not overflow us
        raise ValidationException("Number overflow. Attempting to store a number with magnitude "
                                  "larger than supported range")
    if value.adjusted() < MIN_EXPONENT:
        raise ValidationException("Number underflow. Attempting to store a number with magnitude "
                                  "smaller than supported range")
    normal = _CONTEXT.normalize(value)
    if len(normal.as_tuple().digits) > MAX_DIGITS:
        raise ValidationException(f"DynamoDB only supports precision up to {MAX_DIGITS} digits")
    return format(normal, "f")


def check_types(value: Any) -> None:
    """Refuse an AttributeValue whose members have the wrong JSON types (the deserializer's step).

    DynamoDB reads the whole request before it validates any of it, so a
    caller checks every value's types before validating one (:func:`normalize_item` does).

    Raises:
        SerializationException: see the module's docstring.
    """
    if not isinstance(value, dict):
        raise wrong_type(value, "AttributeValue")
    for kind, inner in value.items():
        if inner is None or kind not in ALL_TYPES:
            continue
        if kind in ("S", "N"):
            if not isinstance(inner, str):
                raise wrong_type(inner, "String")
        elif kind == "B":
            check_binary(inner)
        elif kind in ("BOOL", "NULL"):
            if not isinstance(inner, bool):
                raise wrong_type(inner, "Boolean")
        elif kind == "M":
            check_map_types(inner)
        elif not isinstance(inner, list):
            raise wrong_type(inner, "List")
        else:
            _check_elements(kind, inner)


def _check_elements(kind: str, elements: list[Any]) -> None:
    for element in elements:
        if element is None:
            continue  # null members are a validation matter (each type has its own message)
        if kind == "L":
            check_types(element)
        elif kind == "BS":
            check_binary(element)
        elif not isinstance(element, str):
            raise wrong_type(element, "String")


def check_map_types(item: Any, what: str = "Map") -> None:
    """:func:`check_types` for a map of AttributeValues (an item, a key, a map value)."""
    if not isinstance(item, dict):
        raise wrong_type(item, what)
    for value in item.values():
        if value is not None:
            check_types(value)


def normalize_value(value: Any) -> Any:
    """A copy of one AttributeValue with every number normalized (null and unknown members dropped).

    Raises:
        SerializationException: a member has the wrong JSON type (see the module's docstring).
        ValidationException: the value is empty, has several types, or holds a bad number.
    """
    check_types(value)
    return _normalize(value)


def validate_value(value: Any) -> None:
    """The validation step alone, for a value whose types were checked (:func:`check_types`).

    Raises:
        ValidationException: see :func:`normalize_value`.
    """
    _normalize(value)


def validate_map(item: Any) -> None:
    """:func:`validate_value` for a map of AttributeValues whose types were checked."""
    _normalize_map(item, "Map")


def _normalize(value: Any) -> Any:
    """:func:`normalize_value` for a value whose types were checked."""
    if not isinstance(value, dict):
        raise wrong_type(value, "AttributeValue")
    if len(value) == 1:  # the common case: one member
        ((kind, inner),) = value.items()
        if kind in ALL_TYPES and inner is not None:
            return {kind: _normalize_member(kind, inner)}
    present = [(k, _normalize_member(k, v)) for k, v in value.items() if k in ALL_TYPES and v is not None]
    if not present:
        raise ValidationException(_EMPTY)
    if len(present) > 1:
        raise ValidationException(_MANY)
    return dict(present)


def _normalize_member(kind: str, inner: Any) -> Any:
    """One type member's value, checked and normalized."""
    if kind == "S":
        if not isinstance(inner, str):
            raise wrong_type(inner, "String")
        return inner
    if kind == "N":
        return normalize_number(inner)
    if kind == "B":
        return check_binary(inner)
    if kind in ("BOOL", "NULL"):
        if not isinstance(inner, bool):
            raise wrong_type(inner, "Boolean")
        if kind == "NULL" and inner is not True:
            raise ValidationException("One or more parameter values were invalid: Null attribute value types "
                                      "must have the value of true")
        return inner
    if kind == "M":
        return _normalize_map(inner, "Map")
    if not isinstance(inner, list):
        raise wrong_type(inner, "List")
    if kind == "L":
        if any(v is None for v in inner):
            raise ValidationException("The supplied Item contains a null AttributeValue")
        return [_normalize(v) for v in inner]
    if kind == "NS":
        if any(n is None for n in inner):
            raise ValidationException(_NOT_A_NUMBER)  # as DynamoDB says it
        return [normalize_number(n) for n in inner]
    if any(v is None for v in inner):
        name = "string" if kind == "SS" else "binary"
        raise ValidationException(f"One or more parameter values were invalid: An {name} set may not have "
                                  f"a null {name} as a member")
    if kind == "SS":
        if not all(isinstance(s, str) for s in inner):
            raise wrong_type(next(s for s in inner if not isinstance(s, str)), "String")
        return inner
    return [check_binary(b) for b in inner]


def check_binary(text: Any) -> str:
    """A binary value: a string of valid, padded base64 (returned as sent)."""
    if not isinstance(text, str):
        raise wrong_type(text, "Blob")
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise SerializationException("Base64 encoded binary value is not valid") from None
    return text


def normalize_item(item: Any, what: str = "Item") -> Item:
    """A copy of an item (or key, or map) with every number normalized.

    Raises:
        SerializationException: ``item`` is not a JSON object, or a value is malformed (see above).
        ValidationException: an attribute is null, or a value is invalid.
    """
    check_map_types(item, what)
    return _normalize_map(item, what)


def _normalize_map(item: Any, what: str) -> Item:
    if not isinstance(item, dict):
        raise wrong_type(item, what)
    normal: Item = {}
    for name, value in item.items():
        if value is None:
            raise ValidationException(f"The supplied Item contains a null AttributeValue: {name} is null")
        normal[name] = _normalize(value)
    return normal


#: DynamoDB's largest item: 400 KB, counting attribute names and values (its documented hard limit).
ITEM_SIZE_MAX = 400 * 1024
_ITEM_TOO_LARGE = "Item size has exceeded the maximum allowed size"


def check_item_size(item: Any) -> None:
    """Refuse an item DynamoDB certainly refuses as too large, before anything copies or forwards it.

    Only a lower bound of the size is counted (attribute names, strings and
    binaries; numbers, booleans and per-element overheads only add), so no
    item DynamoDB would store is refused here. A client sending megabytes in
    one PutItem then costs one parse, not a normalized copy, a re-encoding,
    a signature and an upstream round trip.

    Raises:
        ValidationException: the item is over :data:`ITEM_SIZE_MAX`.
    """
    if isinstance(item, dict) and _map_floor(item) > ITEM_SIZE_MAX:
        raise ValidationException(_ITEM_TOO_LARGE)


def _map_floor(item: dict[Any, Any]) -> int:
    """Bytes an item (or an ``M`` value: names to AttributeValues) certainly takes."""
    return sum(_text_floor(name) + _value_floor(value) for name, value in item.items())


def _value_floor(value: Any) -> int:
    """Bytes one AttributeValue certainly takes (its type tag is not stored)."""
    if not isinstance(value, dict):
        return 0
    total = 0
    for kind, inner in value.items():
        if kind == "S" or kind == "SS":
            total += _text_floor(inner)
        elif kind == "B" or kind == "BS":
            total += _binary_floor(inner)
        elif kind == "M" and isinstance(inner, dict):
            total += _map_floor(inner)
        elif kind == "L" and isinstance(inner, list):
            total += sum(_value_floor(v) for v in inner)
    return total


def _text_floor(value: Any) -> int:
    """UTF-8 bytes of a string (or a list of them)."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        return sum(_text_floor(v) for v in value)
    return 0


def _binary_floor(value: Any) -> int:
    """Bytes a base64 value (or a list of them) decodes to, at least."""
    if isinstance(value, str):
        return max(len(value) * 3 // 4 - 2, 0)
    if isinstance(value, list):
        return sum(_binary_floor(v) for v in value)
    return 0
