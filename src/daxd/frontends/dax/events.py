"""Events a DAX connection produces, and the method table (docs/protocol.md, "Framing", "Methods").

Events are small frozen dataclasses named as nouns (h11 ``_events.py``). The
control methods become their own events; the ten data-plane methods come out
as a raw :class:`MethodCall`, which :func:`daxd.frontends.dax.requests.to_operation`
turns into a DynamoDB-shaped operation once the table key schemas are known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """A DAX method: wire id, name, and how many argument items follow the id."""

    method_id: int
    name: str
    arg_count: int


#: Every method the clients send. Unknown ids make the stream unparseable (§2.4).
METHODS: dict[int, MethodInfo] = {m.method_id: m for m in (
    MethodInfo(1489122155, "authorizeConnection", 5),
    MethodInfo(455855874, "endpoints", 0),
    MethodInfo(-742646399, "defineKeySchema", 1),
    MethodInfo(670678385, "defineAttributeList", 1),
    MethodInfo(-1230579644, "defineAttributeListId", 1),
    MethodInfo(263244906, "getItem", 3),
    MethodInfo(-2106490455, "putItem", 4),
    MethodInfo(1013539361, "deleteItem", 3),
    MethodInfo(1425579023, "updateItem", 3),
    MethodInfo(-931250863, "query", 3),
    MethodInfo(-1875390620, "scan", 2),
    MethodInfo(-697851100, "batchGetItem", 2),
    MethodInfo(116217951, "batchWriteItem", 2),
    MethodInfo(1866287579, "transactGetItems", 4),
    MethodInfo(-1160037738, "transactWriteItems", 9),
)}
METHOD_IDS: dict[str, int] = {m.name: m.method_id for m in METHODS.values()}


class Event:
    """Base class of everything :meth:`DaxConnection.next_event` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Preamble(Event):
    """The five-item connection preamble (§1.1). No reply is sent."""

    session_id: bytes | str | None
    user_agent: str | None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthorizeConnection(Event):
    """SigV4 credentials for the connection (§1.3). Never answered.

    ``string_to_sign`` is kept as the exact received bytes: the signature is an
    HMAC over them.
    """

    access_key_id: str
    signature: str
    string_to_sign: bytes
    session_token: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Endpoints(Event):
    """``endpoints``: discovery and health checks; answer with :func:`encode_endpoints`."""


@dataclass(frozen=True, slots=True)
class DefineKeySchema(Event):
    """``defineKeySchema``: answer with :func:`encode_key_schema` (hash key first)."""

    table_name: str


@dataclass(frozen=True, slots=True)
class DefineAttributeList(Event):
    """``defineAttributeList``: id -> names, answer with :func:`encode_attribute_list`."""

    attribute_list_id: int


@dataclass(frozen=True, slots=True)
class DefineAttributeListId(Event):
    """``defineAttributeListId``: names -> id, answer with :func:`encode_attribute_list_id`."""

    attribute_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MethodCall(Event):
    """A data-plane request as decoded CBOR arguments, before key schemas are applied."""

    method: str
    args: tuple[Any, ...]

    def __post_init__(self) -> None:
        info = METHODS.get(METHOD_IDS.get(self.method, 0))
        if info is None or info.arg_count != len(self.args):
            raise ValueError(f"bad method call {self.method} with {len(self.args)} arguments")


class PlainGetItem(Event):
    """A ``getItem`` with default options, kept as its argument bytes (table, key, kwargs).

    The hot path: a client asks for the same keys with the same bytes again
    and again, so the service looks the bytes up in a memo of decoded
    operations and decodes them (:func:`daxd.frontends.dax.codec.decode_plain_get_item`)
    only when the memo has not seen them. A plain class, not a dataclass: it is
    built once per request.
    """

    __slots__ = ("args",)

    def __init__(self, args: bytes) -> None:
        self.args = args

    def __repr__(self) -> str:
        return f"PlainGetItem({self.args!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlainGetItem) and other.args == self.args

    def __hash__(self) -> int:
        return hash(self.args)


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed the connection cleanly between requests."""


class _NeedData:
    """Sentinel type: more bytes are needed before another event exists."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
