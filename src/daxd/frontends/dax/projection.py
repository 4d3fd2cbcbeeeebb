"""Projected items as DAX ordinal maps (docs/protocol.md, "Item encodings in replies").

A reply to a request with a ProjectionExpression carries, for each path i of
the expression, the AttributeValue found *at that path* under key i; the client
rebuilds the nesting, putting the elements it gets for one list in index order
and closing the gaps. DynamoDB, however, returns the projected item already
nested, with its lists compacted the same way: an element appears when at least
one requested path under it exists in the item. Projecting ``l[0].y, l[1].x,
l[2]`` from ``l: [{x: 1}, {x: 2}, {x: 3}]`` yields ``l: [{x: 2}, {x: 3}]``
(element 0 has no ``y``), so the position of an element in the projected list
is not the rank of its index among the requested ones.

To map each projected element back to the index it came from we match the
projected list against the requested indexes in order: an element belongs to
the first remaining index whose requested sub-paths can have produced exactly
that element (every map key it holds is requested there, recursively, and a
whole-element path accepts anything). Taking the first fit is safe: if any
order-preserving assignment exists (DynamoDB's own is one), the greedy one
exists too, and every assignment that reproduces each element exactly rebuilds
the same list on the client.

Overlapping or conflicting paths (``l[0]`` with ``l[0].x``, ``l[0].x`` with
``l[0][0]``) never get here: DynamoDB refuses them with a ValidationException.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from daxd.frontends.dax.attrs import AttributeValue, to_cbor
from daxd.frontends.dax.sexpr import Path


@dataclass(slots=True)
class _Node:
    """One step of the requested paths: the ordinals ending here and the steps below."""

    ordinals: list[int] = field(default_factory=list)
    names: dict[str, _Node] = field(default_factory=dict)
    indexes: dict[int, _Node] = field(default_factory=dict)

    def child(self, element: str | int) -> _Node:
        if isinstance(element, int):
            return self.indexes.setdefault(element, _Node())
        return self.names.setdefault(element, _Node())

    def accepts(self, value: AttributeValue) -> bool:
        """Whether projecting some element by the paths below this node can give exactly ``value``."""
        if self.ordinals:
            return True
        members = value.get("M")
        if members is not None and self.names:
            return bool(members) and all(
                name in self.names and self.names[name].accepts(member) for name, member in members.items())
        elements = value.get("L")
        if elements is not None and self.indexes:
            return bool(elements) and _assign(elements, self.indexes) is not None
        return False


def _assign(elements: Sequence[AttributeValue],
            indexes: Mapping[int, _Node]) -> list[_Node] | None:
    """The requested index (its node) each projected element came from, in order; None if none fits."""
    candidates = sorted(indexes.items())
    position = 0
    assigned: list[_Node] = []
    for element in elements:
        while position < len(candidates) and not candidates[position][1].accepts(element):
            position += 1
        if position == len(candidates):
            return None
        assigned.append(candidates[position][1])
        position += 1
    return assigned


def _collect(value: AttributeValue, node: _Node, out: dict[int, Any]) -> None:
    """Put the value at every requested path below ``node`` into ``out`` by ordinal."""
    if node.ordinals:
        encoded = to_cbor(value)
        for ordinal in node.ordinals:
            out[ordinal] = encoded
        return
    members = value.get("M")
    if members is not None:
        for name, child in node.names.items():
            member = members.get(name)
            if member is not None:
                _collect(member, child, out)
        return
    elements = value.get("L")
    if elements is not None and node.indexes:
        # A projected list that fits no assignment cannot come from DynamoDB; it is left out.
        assigned = _assign(elements, node.indexes) or []
        for element, child in zip(elements, assigned, strict=False):
            _collect(element, child, out)


class Projection:
    """The paths of one ProjectionExpression, ready to map many projected items to ordinal maps."""

    __slots__ = ("_root",)

    def __init__(self, paths: Sequence[Path]) -> None:
        self._root = _Node()
        for ordinal, path in enumerate(paths):
            node = self._root
            for element in path:
                node = node.child(element)
            node.ordinals.append(ordinal)

    def ordinals(self, item: Mapping[str, AttributeValue]) -> dict[int, Any]:
        """The ordinal map ``{i: AV at paths[i]}`` (CBOR-ready) of a DynamoDB-projected item."""
        out: dict[int, Any] = {}
        for name, child in self._root.names.items():
            value = item.get(name)
            if value is not None:
                _collect(value, child, out)
        return out


@lru_cache(maxsize=1024)
def _prepared(paths: tuple[Path, ...]) -> Projection:
    return Projection(paths)


def projection_of(paths: Sequence[Path]) -> Projection:
    """The :class:`Projection` of ``paths``, built once for a repeated expression (never changed after)."""
    return _prepared(tuple(paths))


def project(item: Mapping[str, AttributeValue], paths: Sequence[Path]) -> dict[int, Any]:
    """The ordinal map ``{i: AV at paths[i]}`` (CBOR-ready), omitting absent paths."""
    return projection_of(paths).ordinals(item)
