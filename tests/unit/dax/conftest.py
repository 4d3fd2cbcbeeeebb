"""An in-memory DAX node for the official Python client (amazondax 2.1.0).

The client's own ``Tube``/``DaxClient`` run over a fake socket whose other end
is our sans-IO codec: every request byte the client writes is decoded by
:class:`DaxConnection`, every reply byte it reads was produced by our encoders.
This is the strongest evidence that both directions match what the client
implements.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from amazondax.DaxClient import DaxClient
from amazondax.Tube import Tube, TubePool
from botocore.credentials import Credentials

from daxd.frontends.dax import (
    NEED_DATA,
    AttributeListTable,
    AuthorizeConnection,
    DaxConnection,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    Endpoint,
    Endpoints,
    KeySchema,
    MethodCall,
    Operation,
    PlainGetItem,
    Preamble,
    decode_plain_get_item,
    encode_attribute_list,
    encode_attribute_list_id,
    encode_endpoints,
    encode_error,
    encode_key_schema,
    encode_response,
    to_operation,
)
from daxd.model.errors import DaxdError, ResourceNotFoundException

Handler = Callable[[Operation], "Mapping[str, Any] | DaxdError"]

SCHEMAS = {
    "tbl": KeySchema("id", "S"),
    "num": KeySchema("n", "N"),
    "bin": KeySchema("b", "B"),
    "tbl2": KeySchema("pk", "S", "sk", "N"),
    "bs": KeySchema("h", "B", "r", "S"),
    "nb": KeySchema("h", "N", "r", "B"),
}


class FakeNode:
    """Our codec acting as a DAX node behind a fake socket."""

    def __init__(self, schemas: Mapping[str, KeySchema]) -> None:
        self.schemas = dict(schemas)
        self.lists = AttributeListTable()
        self.handler: Handler = lambda op: {}
        self.operations: list[Operation] = []
        self.events: list[Any] = []
        self.out = bytearray()
        self.conn = DaxConnection()

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            self.events.append(event)
            self.out += self._answer(event)

    def _answer(self, event: Any) -> bytes:
        if isinstance(event, (Preamble, AuthorizeConnection)):
            return b""
        if isinstance(event, Endpoints):
            return encode_endpoints([Endpoint(1, "localhost", "127.0.0.1", 8111, 1, "us-east-1a", 1)])
        if isinstance(event, DefineKeySchema):
            schema = self.schemas.get(event.table_name)
            if schema is None:
                return encode_error(ResourceNotFoundException("Requested resource not found"))
            return encode_key_schema(schema)
        if isinstance(event, DefineAttributeList):
            return encode_attribute_list(self.lists.names_for(event.attribute_list_id))
        if isinstance(event, DefineAttributeListId):
            return encode_attribute_list_id(self.lists.id_for(event.attribute_names))
        if isinstance(event, PlainGetItem):
            event = decode_plain_get_item(event)
        assert isinstance(event, MethodCall)
        op = to_operation(event, self.schemas, self.lists)
        self.operations.append(op)
        result = self.handler(op)
        if isinstance(result, DaxdError):
            return encode_error(result, operation=op, attr_lists=self.lists)
        return encode_response(op, result, self.lists)


class FakeSocket:
    """Just enough of a socket for ``amazondax.Tube``."""

    family = socket.AF_INET

    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data
        self.node.feed(bytes(data))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        chunk = bytes(self.node.out[:size])
        del self.node.out[:size]
        return chunk

    def close(self) -> None:
        pass


class FakePool(TubePool):  # type: ignore[misc]
    def __init__(self, node: FakeNode) -> None:
        super().__init__()
        self.node = node
        self.sockets: list[FakeSocket] = []

    def _alloc(self) -> Tube:
        sock = FakeSocket(self.node)
        self.sockets.append(sock)
        creds = Credentials("AKIDEXAMPLE", "secret")
        return Tube(sock, self._session_version, lambda: creds, "us-east-1")


@pytest.fixture
def node() -> FakeNode:
    return FakeNode(SCHEMAS)


@pytest.fixture
def client(node: FakeNode) -> Iterator[DaxClient]:
    dax = DaxClient(FakePool(node))
    yield dax
    dax.close()




# ------------------------------------------------------------ shape helpers

def to_json(av: Mapping[str, Any]) -> dict[str, Any]:
    """A boto-shaped AttributeValue (bytes for B) as DynamoDB JSON (base64)."""
    (kind, value), = av.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(value)).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes(v)).decode() for v in value]}
    if kind == "M":
        return {"M": {k: to_json(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [to_json(v) for v in value]}
    return {kind: value}


def item_json(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_json(v) for k, v in item.items()}


def to_boto(av: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON -> what the DAX client returns (bytes for B)."""
    (kind, value), = av.items()
    if kind == "B":
        return {"B": base64.b64decode(value)}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) for v in value]}
    if kind == "M":
        return {"M": {k: to_boto(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [to_boto(v) for v in value]}
    return {kind: value}


def item_boto(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_boto(v) for k, v in item.items()}


def normalize_sets(value: Any) -> Any:
    """Sets have no order in DynamoDB: compare them as sorted lists."""
    if isinstance(value, dict):
        return {k: (sorted(v, key=repr) if k in ("SS", "NS", "BS") else normalize_sets(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_sets(v) for v in value]
    return value
