"""An in-memory DAX node for the official Python client (amazondax 2.1.0).

The client's own ``Tube``/``DaxClient`` run over a fake socket whose other end
is the node's real DAX code: our sans-IO codec (:class:`DaxConnection`) and
:class:`DaxService`, the dispatch every DAX listener uses. Only the driver is
scripted: where a node would run the operation through its Accelerator and
DynamoDB, :class:`ScriptedDriver` records it and answers with the test's
handler. Every request byte the client writes is decoded by our code, every
reply byte it reads was produced by our encoders: the strongest evidence that
both directions match what the client implements.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from amazondax.DaxClient import DaxClient
from amazondax.Tube import Tube, TubePool
from botocore.credentials import Credentials

from daxd.accelerator import Accelerator
from daxd.frontends.dax import NEED_DATA, AttributeListTable, DaxConnection, KeySchema
from daxd.frontends.dax.service import DaxService
from daxd.messages import Response
from daxd.model.errors import DaxdError, ResourceNotFoundException
from daxd.model.keys import TableSchema


@dataclass(frozen=True)
class Seen:
    """An operation as the service handed it to its driver."""

    name: str
    request: dict[str, Any]


Handler = Callable[[Seen], "Mapping[str, Any] | DaxdError"]

SCHEMAS = {
    "tbl": KeySchema("id", "S"),
    "num": KeySchema("n", "N"),
    "bin": KeySchema("b", "B"),
    "tbl2": KeySchema("pk", "S", "sk", "N"),
    "bs": KeySchema("h", "B", "r", "S"),
    "nb": KeySchema("h", "N", "r", "B"),
}


class ScriptedDriver:
    """The driver side of :class:`DaxService`: records each operation and answers it with ``handler``.

    Its Accelerator is real but never filled (no answer passes through it), so
    the service's cache lookups all miss and every operation reaches here.
    """

    def __init__(self, schemas: Mapping[str, KeySchema]) -> None:
        self.accelerator = Accelerator()
        self.accelerator.schemas.update({name: TableSchema(name, key) for name, key in schemas.items()})
        self.handler: Handler = lambda op: {}
        self.operations: list[Seen] = []

    def begin(self, operation: str, request: dict[str, Any], raw: bytes | None = None) -> Response:
        seen = Seen(operation, request)
        self.operations.append(seen)
        result = self.handler(seen)
        if isinstance(result, DaxdError):
            raise result
        return Response(data=dict(result))

    async def table_schema(self, table: str) -> TableSchema:
        raise ResourceNotFoundException("Requested resource not found")  # the schemas given are all there are


class FakeNode:
    """A DAX node behind a fake socket: our codec and :class:`DaxService`, with a scripted driver."""

    def __init__(self, schemas: Mapping[str, KeySchema]) -> None:
        self.driver = ScriptedDriver(schemas)
        self.service = DaxService(self.driver, AttributeListTable(), hostname="localhost",  # type: ignore[arg-type]
                                  availability_zone="us-east-1a")
        self.session = self.service.session(("127.0.0.1", 8111), "127.0.0.1:50000")
        self.lists = self.service.attr_lists
        self.out = bytearray()
        self.conn = DaxConnection()

    @property
    def handler(self) -> Handler:
        return self.driver.handler

    @handler.setter
    def handler(self, handler: Handler) -> None:
        self.driver.handler = handler

    @property
    def operations(self) -> list[Seen]:
        return self.driver.operations

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            reply = self.service.handle(self.session, event)
            if reply is not None and not isinstance(reply, bytes):
                reply = asyncio.run(_awaited(reply))  # a schema lookup: rare
            self.out += reply or b""


async def _awaited(reply: Any) -> bytes:
    result: bytes = await reply
    return result


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
