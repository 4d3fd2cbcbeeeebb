"""Just enough of DynamoDB's expression language for cache policy.

The query cache needs one fact from a Query: which partition key value it
pins, so a write to that partition can invalidate it. A key condition is
``<hash> = <value> [AND <range condition>]``, possibly parenthesized, so finding
the one ``=`` whose side names the hash key is enough. Anything we cannot read
yields None and the caller treats the query as table-wide (safe, only coarser).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"\s*(#[A-Za-z0-9_]+|:[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_.]*|<=|>=|<>|[=<>(),])")


def tokenize(expression: str) -> list[str]:
    """Split an expression into names, placeholders, words and operators."""
    tokens: list[str] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:
            if expression[pos:].strip():
                return []
            break
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def partition_value(expression: str, names: Mapping[str, str] | None,
                    values: Mapping[str, Any] | None, hash_key: str) -> Any | None:
    """The AttributeValue a key condition expression pins the hash key to, or None."""
    names = names or {}
    values = values or {}
    tokens = [t for t in tokenize(expression) if t not in "()"]
    for i in range(1, len(tokens) - 1):
        if tokens[i] != "=":
            continue
        left, right = tokens[i - 1], tokens[i + 1]
        for name, value in ((left, right), (right, left)):
            if names.get(name, name) == hash_key and value.startswith(":"):
                return values.get(value)
    return None


def legacy_partition_value(conditions: Mapping[str, Any] | None, hash_key: str) -> Any | None:
    """The same for the legacy ``KeyConditions`` parameter."""
    condition = (conditions or {}).get(hash_key)
    if isinstance(condition, dict) and condition.get("ComparisonOperator") == "EQ":
        values = condition.get("AttributeValueList") or []
        return values[0] if len(values) == 1 else None
    return None
