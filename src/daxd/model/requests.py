"""A request's JSON checked against DynamoDB's API model, as DynamoDB's deserializer checks it.

DynamoDB reads a request body into typed structures before it looks at any
value: a JSON number where the model says string, an array where it says
structure, invalid base64 for a blob are all refused with 400
``SerializationException``; null members count as absent and unknown members
are ignored. daxd answers hits without asking DynamoDB and reads keys, items
and expression values itself, so it must refuse the same bodies in the same
way, and never trip over one (no request body may reach a 500).

The model is botocore's (the same one every AWS SDK is generated from); a
checker per operation is compiled from it on first use. AttributeValues are
checked, and their numbers validated, by :mod:`daxd.model.values`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import botocore.model
import botocore.session

from daxd.model.values import check_binary, check_map_types, check_types, validate_map, validate_value, wrong_type

#: Checks one JSON value against a shape; raises SerializationException (or, for
#: AttributeValues, ValidationException) when DynamoDB would.
Checker = Callable[[Any], None]

_ATTRIBUTE_VALUE = "AttributeValue"


@functools.cache
def _service_model() -> botocore.model.ServiceModel:
    return botocore.session.get_session().get_service_model("dynamodb")


def check_request(operation: str, request: dict[str, Any]) -> None:
    """Refuse a request body DynamoDB's deserializer would refuse; unknown operations pass.

    Raises:
        SerializationException: a member has the wrong JSON type for DynamoDB's API model.
        ValidationException: an AttributeValue is invalid (see :func:`~daxd.model.values.normalize_value`).
    """
    if operation not in _operations():  # the name comes from the client: never a cache key unless known
        return
    checkers = _operation_checkers(operation)
    if checkers is not None:
        types, values = checkers
        types(request)  # the whole body is read before any of it is validated, as DynamoDB does
        values(request)


@functools.cache
def _operations() -> frozenset[str]:
    return frozenset(_service_model().operation_names)


@functools.cache
def _operation_checkers(operation: str) -> tuple[Checker, Checker] | None:
    """The operation's two passes: JSON types everywhere, then the AttributeValues' validity."""
    shape = _service_model().operation_model(operation).input_shape
    if shape is None:
        return None
    return (_compile(shape, {}, (check_types, check_map_types)),
            _compile(shape, {}, (validate_value, validate_map), scalars=False))


def _compile(shape: botocore.model.Shape, done: dict[str, Checker], values: tuple[Checker, Checker], *,
             scalars: bool = True) -> Checker:
    """The checker of a shape; ``values`` check an AttributeValue and a map of them. A shape is
    compiled once (AttributeValue is recursive); without ``scalars`` other leaves go unchecked."""
    if shape.name == _ATTRIBUTE_VALUE:
        return values[0]
    known = done.get(shape.name)
    if known is not None:
        return known
    if isinstance(shape, botocore.model.MapShape) and shape.value.name == _ATTRIBUTE_VALUE:
        return values[1]
    if isinstance(shape, botocore.model.StructureShape):
        members: dict[str, Checker] = {}
        checker = _structure(shape.name, members)
        done[shape.name] = checker
        compiled = {name: _compile(member, done, values, scalars=scalars) for name, member in shape.members.items()}
        members.update({name: c for name, c in compiled.items() if c is not _anything})  # nothing to check: skipped
        return checker
    if isinstance(shape, botocore.model.ListShape):
        element = _compile(shape.member, done, values, scalars=scalars)
        return _anything if element is _anything and not scalars else _list(element)
    if isinstance(shape, botocore.model.MapShape):
        element = _compile(shape.value, done, values, scalars=scalars)
        return _anything if element is _anything and not scalars else _map(element)
    return _SCALARS.get(shape.type_name, _anything) if scalars else _anything


def _structure(name: str, members: dict[str, Checker]) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise wrong_type(value, name)
        for key, inner in value.items():
            member = members.get(key)
            if member is not None and inner is not None:
                member(inner)
    return check


def _list(element: Checker) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, list):
            raise wrong_type(value, "List")
        for inner in value:
            if inner is not None:
                element(inner)
    return check


def _map(element: Checker) -> Checker:
    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise wrong_type(value, "Map")
        for inner in value.values():
            if inner is not None:
                element(inner)
    return check


def _string(value: Any) -> None:
    if not isinstance(value, str):
        raise wrong_type(value, "String")


def _boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise wrong_type(value, "Boolean")


def _number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(value, "Number")


def _timestamp(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise wrong_type(value, "Timestamp")


def _blob(value: Any) -> None:
    check_binary(value)


def _anything(value: Any) -> None:
    """A shape type the model may add later: not checked (DynamoDB will be)."""


_SCALARS: dict[str, Checker] = {
    "string": _string, "boolean": _boolean, "integer": _number, "long": _number, "double": _number,
    "float": _number, "timestamp": _timestamp, "blob": _blob,
}
