"""Compiled DAX expressions (CBOR S-expressions; docs/protocol.md, "Expressions") -> DynamoDB text.

The clients parse every expression themselves and send a tree in which names
are inlined and ``:values`` are indexes into a value array carried in the same
blob. To forward such a request to DynamoDB we print the tree back to
expression text. Every name becomes a generated ``#nK`` placeholder (real names
may be reserved words or contain dots) and every value a ``:vK`` placeholder.
One :class:`Renderer` serves a whole request so placeholders stay unique across
its expressions (each blob restarts its value indexes at 0, §5.1).

Parentheses: the tree carries precedence. We parenthesise a child only where
DynamoDB's grammar (OR < AND < NOT < predicates) needs it, plus the left
operand of a same-operator chain, so the text re-parses to the identical tree
(the clients parse ``a AND b AND c`` right-nested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cbor2 import CBORTag

from daxd.frontends.dax.attrs import AttributeValue, from_cbor
from daxd.frontends.dax.cbor import TAG_PATH_ORDINAL, load_checked
from daxd.model.errors import ValidationException

#: A document path: attribute/map-key names (str) and list indexes (int).
Path = tuple[str | int, ...]

_COMPARISONS = {0: "=", 1: "<>", 2: "<", 3: ">=", 4: ">", 5: "<="}
_FUNCTIONS = {11: "attribute_exists", 12: "attribute_not_exists", 13: "attribute_type",
              14: "begins_with", 15: "contains", 16: "size", 23: "if_not_exists",
              24: "list_append"}
_PREC_OR, _PREC_AND, _PREC_NOT, _PREC_ATOM = 1, 2, 3, 4
_SECTIONS = {19: "SET", 22: "REMOVE", 20: "ADD", 21: "DELETE"}


def _invalid(message: str) -> ValidationException:
    return ValidationException(f"Invalid compiled expression: {message}")


def _node(value: Any) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)) or not value or not isinstance(value[0], int) \
            or isinstance(value[0], bool):
        raise _invalid("expected a node [code, ...]")
    return value


def _arity(node: Sequence[Any], count: int) -> None:
    if len(node) != count + 1:
        raise _invalid(f"function {node[0]} takes {count} arguments")


class Renderer:
    """Prints compiled expressions of one request with shared placeholders."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValue] = {}
        self._name_ids: dict[str, str] = {}
        self._blob_values: Sequence[Any] = ()
        self._blob_ids: dict[int, str] = {}

    # ---------------------------------------------------------- public API

    def condition(self, blob: bytes) -> str:
        """ConditionExpression / FilterExpression / KeyConditionExpression text."""
        node = self._open(blob, 3)
        return self._cond(node)[0]

    def update(self, blob: bytes) -> str:
        """UpdateExpression text, actions grouped into SET/REMOVE/ADD/DELETE sections."""
        actions = self._open(blob, 3)
        if not isinstance(actions, (list, tuple)) or not actions:
            raise _invalid("update must be a non-empty action list")
        sections: dict[int, list[str]] = {code: [] for code in _SECTIONS}
        for action in actions:
            code, text = self._action(_node(action))
            sections[code].append(text)
        return " ".join(f"{_SECTIONS[code]} {', '.join(texts)}"
                        for code, texts in sections.items() if texts)

    def projection(self, blob: bytes) -> tuple[str, list[Path]]:
        """ProjectionExpression text and the parsed paths (for reply ordinals, §4.7)."""
        paths = self._open(blob, 2)
        if not isinstance(paths, (list, tuple)) or not paths:
            raise _invalid("projection must be a non-empty path list")
        parsed = [self._path_elements(_node(p)) for p in paths]
        return ", ".join(self._path_text(p) for p in parsed), parsed

    # ---------------------------------------------------------- envelope

    def _open(self, blob: bytes, size: int) -> Any:
        envelope = load_checked(blob)
        if not isinstance(envelope, (list, tuple)) or len(envelope) != size or envelope[0] != 1:
            raise _invalid(f"envelope must be [1, ...] of {size} items")
        values = envelope[2] if size == 3 else ()
        if not isinstance(values, (list, tuple)):
            raise _invalid("value array must be an array")
        self._blob_values, self._blob_ids = values, {}
        return envelope[1]

    # ---------------------------------------------------------- conditions

    def _cond(self, value: Any) -> tuple[str, int]:
        node = _node(value)
        handler = _COND_HANDLERS.get(node[0])
        if handler is None:
            raise _invalid(f"code {node[0]} is not a condition")
        return handler(self, node)

    def _wrap(self, value: Any, minimum: int) -> str:
        text, prec = self._cond(value)
        return f"({text})" if prec < minimum else text

    def _comparison(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 2)
        return f"{self._operand(node[1])} {_COMPARISONS[node[0]]} {self._operand(node[2])}", _PREC_ATOM

    def _logical(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 2)
        prec, word = (_PREC_AND, "AND") if node[0] == 6 else (_PREC_OR, "OR")
        return f"{self._wrap(node[1], prec + 1)} {word} {self._wrap(node[2], prec)}", prec

    def _not(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 1)
        return f"NOT {self._wrap(node[1], _PREC_NOT)}", _PREC_NOT

    def _between(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 3)
        low, high = self._operand(node[2]), self._operand(node[3])
        return f"{self._operand(node[1])} BETWEEN {low} AND {high}", _PREC_ATOM

    def _in(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 2)
        candidates = node[2]
        if not isinstance(candidates, (list, tuple)) or not candidates:
            raise _invalid("IN needs a non-empty candidate list")
        listed = ", ".join(self._operand(c) for c in candidates)
        return f"{self._operand(node[1])} IN ({listed})", _PREC_ATOM

    def _predicate(self, node: Sequence[Any]) -> tuple[str, int]:
        _arity(node, 1 if node[0] in (11, 12) else 2)
        first = self._path(node[1]) if node[0] in (11, 12, 13) else self._operand(node[1])
        args = [first] + [self._operand(arg) for arg in node[2:]]
        return f"{_FUNCTIONS[node[0]]}({', '.join(args)})", _PREC_ATOM

    # ---------------------------------------------------------- operands

    def _operand(self, value: Any) -> str:
        node = _node(value)
        handler = _OPERAND_HANDLERS.get(node[0])
        if handler is None:
            raise _invalid(f"code {node[0]} is not an operand")
        return handler(self, node)

    def _variable(self, node: Sequence[Any]) -> str:
        _arity(node, 1)
        index = node[1]
        if not isinstance(index, int) or isinstance(index, bool) \
                or not 0 <= index < len(self._blob_values):
            raise _invalid(f"value index {index!r} out of range")
        placeholder = self._blob_ids.get(index)
        if placeholder is None:
            placeholder = f":v{len(self.values)}"
            self.values[placeholder] = from_cbor(self._blob_values[index])
            self._blob_ids[index] = placeholder
        return placeholder

    def _size(self, node: Sequence[Any]) -> str:
        _arity(node, 1)
        return f"size({self._path(node[1])})"

    def _function(self, node: Sequence[Any]) -> str:
        _arity(node, 2)
        first = self._path(node[1]) if node[0] == 23 else self._operand(node[1])
        return f"{_FUNCTIONS[node[0]]}({first}, {self._operand(node[2])})"

    def _arithmetic(self, node: Sequence[Any]) -> str:
        _arity(node, 2)
        sign = "+" if node[0] == 25 else "-"
        return f"{self._operand(node[1])} {sign} {self._operand(node[2])}"

    # ---------------------------------------------------------- paths

    def _path(self, value: Any) -> str:
        return self._path_text(self._path_elements(_node(value)))

    def _path_node(self, node: Sequence[Any]) -> str:
        return self._path_text(self._path_elements(node))

    @staticmethod
    def _path_elements(node: Sequence[Any]) -> Path:
        if node[0] != 18 or len(node) < 2 or not isinstance(node[1], str):
            raise _invalid("a document path must start with a name")
        elements: list[str | int] = []
        for element in node[1:]:
            if isinstance(element, str):
                elements.append(element)
            elif isinstance(element, CBORTag) and element.tag == TAG_PATH_ORDINAL \
                    and isinstance(element.value, int) and element.value >= 0:
                elements.append(element.value)
            else:
                raise _invalid("path elements must be names or list indexes")
        return tuple(elements)

    def _path_text(self, path: Path) -> str:
        parts: list[str] = []
        for element in path:
            if isinstance(element, int):
                parts.append(f"[{element}]")
            else:
                parts.append(("." if parts else "") + self._name(element))
        return "".join(parts)

    def _name(self, name: str) -> str:
        placeholder = self._name_ids.get(name)
        if placeholder is None:
            placeholder = f"#n{len(self._name_ids)}"
            self._name_ids[name] = placeholder
            self.names[placeholder] = name
        return placeholder

    # ---------------------------------------------------------- updates

    def _action(self, node: Sequence[Any]) -> tuple[int, str]:
        code = node[0]
        if code == 22:
            _arity(node, 1)
            return code, self._path(node[1])
        if code not in (19, 20, 21):
            raise _invalid(f"code {code} is not an update action")
        _arity(node, 2)
        separator = " = " if code == 19 else " "
        return code, f"{self._path(node[1])}{separator}{self._operand(node[2])}"


_CondHandler = Callable[[Renderer, Sequence[Any]], tuple[str, int]]
_COND_HANDLERS: dict[int, _CondHandler] = {
    **{code: Renderer._comparison for code in _COMPARISONS},
    6: Renderer._logical, 7: Renderer._logical, 8: Renderer._not,
    9: Renderer._between, 10: Renderer._in,
    **{code: Renderer._predicate for code in (11, 12, 13, 14, 15)},
}
_OperandHandler = Callable[[Renderer, Sequence[Any]], str]
_OPERAND_HANDLERS: dict[int, _OperandHandler] = {
    16: Renderer._size, 17: Renderer._variable, 18: Renderer._path_node,
    23: Renderer._function, 24: Renderer._function,
    25: Renderer._arithmetic, 26: Renderer._arithmetic,
}
