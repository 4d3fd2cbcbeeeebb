"""Between boto3's Python shapes and the DynamoDB JSON the Accelerator speaks.

The two differ in one place only: boto3 takes and returns binary attribute
values (``B``, ``BS``: the only blob shapes in DynamoDB's input model) as
``bytes``, DynamoDB JSON carries them base64. So a request or response without
binary converts with ``orjson`` alone (about a microsecond), and only one that
holds binary pays for a walk guided by the botocore shape, which is exact:
a ``str`` in a blob position means its UTF-8 bytes, as botocore's serializer
has it, and an attribute merely *named* ``B`` is left alone.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import orjson

#: What any binary value looks like in orjson's compact output. A false
#: positive (a string containing these bytes) only costs the exact walk. A
#: regex, because it runs on every hit: it is 3x faster here than two ``in`` scans.
_BINARY = re.compile(rb'"BS?":')

Leaf = Callable[[Any], Any]


def has_binary(body: bytes) -> bool:
    return _BINARY.search(body) is not None


def request_json(params: dict[str, Any], shape: Any) -> bytes:
    """A boto3 request as DynamoDB JSON bytes.

    Raises:
        TypeError: a value JSON cannot hold (boto3's validation will judge it).
    """
    try:
        raw = orjson.dumps(params)
    except TypeError:  # bytes (or worse): only the exact walk can place them
        return orjson.dumps(walk(params, shape, _to_base64))
    return orjson.dumps(walk(params, shape, _to_base64)) if has_binary(raw) else raw


def request_params(body: bytes, shape: Any) -> dict[str, Any]:
    """DynamoDB JSON (a request the Accelerator made) as boto3 keyword arguments."""
    params: dict[str, Any] = orjson.loads(body)
    return decode(params, shape) if has_binary(body) else params


def response_json(response: dict[str, Any]) -> bytes:
    """A boto3 response as the DynamoDB JSON body DynamoDB sent (without ResponseMetadata)."""
    data = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    return orjson.dumps(data, default=_default)


def response_data(body: bytes, data: dict[str, Any], shape: Any) -> dict[str, Any]:
    """A response's fresh ``data`` in boto3's shape: binary values become bytes (in place)."""
    return decode(data, shape) if has_binary(body) else data


def walk(value: Any, shape: Any, leaf: Leaf) -> Any:
    """A copy of ``value`` with ``leaf`` applied at every blob of botocore ``shape``.

    A copy, because it serves the caller's own request values, which we must not change.
    """
    if shape is None:
        return value
    if shape.name == "AttributeValue":  # the bulk of any item: walked without shape lookups
        return _attribute(value, leaf)
    kind = shape.type_name
    if kind == "blob":
        return leaf(value)
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: walk(v, members.get(k), leaf) for k, v in value.items()}
    if kind == "list" and isinstance(value, list | tuple):
        return [walk(v, shape.member, leaf) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: walk(v, shape.value, leaf) for k, v in value.items()}
    return value


def decode(value: Any, shape: Any) -> Any:
    """``value`` (fresh from orjson, ours to change) with every blob of ``shape`` base64-decoded, in place.

    In place because this runs on hits of items holding binary: rebuilding
    every dict of a 1 KB item costs 4x more than patching the few blobs.
    """
    if shape is None:
        return value
    if shape.name == "AttributeValue":
        _decode_attribute(value)
        return value
    kind = shape.type_name
    if kind == "blob":
        return _from_base64(value)
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        for name, inner in value.items():
            value[name] = decode(inner, members.get(name))
    elif kind == "list" and isinstance(value, list):
        for index, inner in enumerate(value):
            value[index] = decode(inner, shape.member)
    elif kind == "map" and isinstance(value, dict):
        for name, inner in value.items():
            value[name] = decode(inner, shape.value)
    return value


def _decode_attribute(value: Any) -> None:
    if not isinstance(value, dict) or "S" in value or "N" in value:
        return
    if "B" in value:
        value["B"] = _from_base64(value["B"])
    elif "M" in value and isinstance(value["M"], dict):
        for inner in value["M"].values():
            _decode_attribute(inner)
    elif "L" in value and isinstance(value["L"], list):
        for inner in value["L"]:
            _decode_attribute(inner)
    elif "BS" in value and isinstance(value["BS"], list):
        value["BS"] = [_from_base64(v) for v in value["BS"]]


def _attribute(value: Any, leaf: Leaf) -> Any:
    """``walk`` specialised to DynamoDB's AttributeValue (one of S, N, B, SS, NS, BS, M, L, ...)."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": leaf(inner)}
    if kind == "BS" and isinstance(inner, list | tuple):
        return {"BS": [leaf(v) for v in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {k: _attribute(v, leaf) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list | tuple):
        return {"L": [_attribute(v, leaf) for v in inner]}
    return value


def _to_base64(value: Any) -> Any:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return value  # not a blob: left for boto3's validation to refuse


def _from_base64(value: Any) -> Any:
    return base64.b64decode(value) if isinstance(value, str) else value


def _default(value: Any) -> Any:
    """orjson's hook for what boto3 responses hold and JSON does not: bytes."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")
