"""Projected items as DAX ordinal maps (docs/protocol.md, "Item encodings in replies").

A reply to a request with a ProjectionExpression carries, for each path i of
the expression, the AttributeValue found *at that path* under key i; the client
rebuilds the nesting. DynamoDB, however, returns the projected item already
nested, and compacts lists: projecting ``a[1], a[3]`` yields ``a: [a1, a3]``.
So to find the value of ``a[3]`` we map the requested index to its rank among
all indexes requested at that same list. If some requested indexes did not
exist, the ones that did are the smallest (a list has no holes), so rank still
points at the right element, and ranks past the end are simply absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daxd.frontends.dax.attrs import AttributeValue, to_cbor
from daxd.frontends.dax.sexpr import Path

_Prefix = tuple[str | int, ...]


def _index_ranks(paths: Sequence[Path]) -> dict[_Prefix, list[int]]:
    """For each list prefix, the sorted distinct indexes requested under it."""
    ranks: dict[_Prefix, set[int]] = {}
    for path in paths:
        for depth, element in enumerate(path):
            if isinstance(element, int):
                ranks.setdefault(path[:depth], set()).add(element)
    return {prefix: sorted(indexes) for prefix, indexes in ranks.items()}


def _lookup(item: Mapping[str, AttributeValue], path: Path,
            ranks: dict[_Prefix, list[int]]) -> AttributeValue | None:
    """The AttributeValue at ``path`` in a DynamoDB-projected item, if present."""
    first = path[0]
    assert isinstance(first, str)
    current = item.get(first)
    for depth in range(1, len(path)):
        if current is None:
            return None
        element = path[depth]
        if isinstance(element, int):
            elements = current.get("L")
            if elements is None:
                return None
            rank = ranks[path[:depth]].index(element)
            current = elements[rank] if rank < len(elements) else None
        else:
            members = current.get("M")
            current = None if members is None else members.get(element)
    return current


def project(item: Mapping[str, AttributeValue], paths: Sequence[Path]) -> dict[int, Any]:
    """The ordinal map ``{i: AV at paths[i]}`` (CBOR-ready), omitting absent paths."""
    ranks = _index_ranks(paths)
    out: dict[int, Any] = {}
    for ordinal, path in enumerate(paths):
        value = _lookup(item, path, ranks)
        if value is not None:
            out[ordinal] = to_cbor(value)
    return out
