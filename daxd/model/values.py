"""DynamoDB AttributeValues as DynamoDB's JSON wire format has them.

Numbers travel as strings and DynamoDB normalizes them on write (``"1.50"`` is
stored as ``"1.5"``, ``"1e3"`` as ``"1000"``). A cache that stores a PutItem's
item as sent would answer the next read differently from DynamoDB, so every
image and every key is normalized here first. The rules were read off
DynamoDB Local 3.3 (``tests/unit/test_model.py`` pins them): plain notation, no
exponent, no trailing zeros, no sign on zero.
"""

from __future__ import annotations

import decimal
from typing import Any

from daxd.model.errors import ValidationException

Item = dict[str, Any]

#: Wide enough for DynamoDB's 38 significant digits with room to spare, so
#: normalization never rounds.
_CONTEXT = decimal.Context(prec=60, Emax=999, Emin=-999)

SCALAR_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL"})
SET_TYPES = frozenset({"SS", "NS", "BS"})
ALL_TYPES = SCALAR_TYPES | SET_TYPES | {"M", "L"}


def is_plain_integer(text: str) -> bool:
    """True for a non-negative integer already spelled as DynamoDB stores it ("0", "42")."""
    return text.isascii() and text.isdigit() and (text[0] != "0" or text == "0") and len(text) <= 38


def normalize_number(text: str) -> str:
    """DynamoDB's canonical spelling of a number (``"-1.230e+2"`` -> ``"-123"``).

    Raises:
        ValidationException: the text is not a number, as DynamoDB says it.
    """
    if is_plain_integer(text):
        return text  # already canonical (the common case for keys): skip Decimal
    try:
        value = decimal.Decimal(text)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise ValidationException("A value provided cannot be converted into a number") from None
    if not value.is_finite() or text != text.strip() or not text.isascii():
        raise ValidationException("A value provided cannot be converted into a number")
    if value.is_zero():
        return "0"
    return format(_CONTEXT.normalize(value), "f")


def normalize_value(value: Any) -> Any:
    """A copy of one AttributeValue with every number normalized."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValidationException("Supplied AttributeValue is empty, must contain exactly one of the "
                                  "supported datatypes")
    ((kind, inner),) = value.items()
    if kind == "N":
        return {"N": normalize_number(inner)}
    if kind == "NS":
        return {"NS": [normalize_number(n) for n in inner]}
    if kind == "M":
        return {"M": normalize_item(inner)}
    if kind == "L":
        return {"L": [normalize_value(v) for v in inner]}
    if kind not in ALL_TYPES:
        raise ValidationException(f"Supplied AttributeValue has an unknown data type: {kind}")
    return value


def normalize_item(item: Any) -> Item:
    """A copy of an item (or key, or map) with every number normalized."""
    if not isinstance(item, dict):
        raise ValidationException("Item must be a map of attribute names to AttributeValues")
    return {name: normalize_value(value) for name, value in item.items()}
