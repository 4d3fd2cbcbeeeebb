"""The HTTP and DAX listeners built in-process: real protocol, app/service, Accelerator and driver.

Only the two ends are fakes: a transport that keeps what is written to it, and
an upstream that answers from a dict. Everything between (httptools parsing,
:class:`HttpProtocol`'s ordering and flow control, :class:`DynamoDBApp`,
:class:`DaxProtocol`, :class:`DaxService`, the Accelerator and
:class:`AsyncDriver`) is the code a node runs, so a coverage tool sees it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from daxd.accelerator import Accelerator, CacheSettings
from daxd.drivers import AsyncDriver
from daxd.frontends.dax import AttributeListTable
from daxd.frontends.dax.server import DaxProtocol
from daxd.frontends.dax.service import DaxService
from daxd.frontends.http import DynamoDBApp
from daxd.frontends.httpserver import HttpProtocol
from daxd.frontends.listener import Limits, ListenerState
from daxd.model.errors import ResourceNotFoundException
from daxd.upstream.client import Sent

TABLE = {"TableName": "t", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}


class DictUpstream:
    """DynamoDB as a dict of items of one table ``t`` keyed by ``pk``; counts what it is asked."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {"a": {"pk": {"S": "a"}, "v": {"S": "one"}}}
        self.calls: list[str] = []

    async def call(self, operation: str, body: bytes) -> bytes:
        self.calls.append(operation)
        request = orjson.loads(body)
        if request.get("TableName") != "t":
            raise ResourceNotFoundException("Requested resource not found")
        if operation == "DescribeTable":
            return orjson.dumps({"Table": TABLE})
        if operation == "GetItem":
            item = self.items.get(request["Key"]["pk"]["S"])
            return orjson.dumps({"Item": item} if item else {})
        if operation == "PutItem":
            self.items[request["Item"]["pk"]["S"]] = request["Item"]
            return b"{}"
        raise AssertionError(f"unexpected {operation}")

    def send_now(self, operation: str, body: bytes) -> Sent | None:
        return None  # no idle connection: the driver's coroutine sends it

    async def finish(self, sent: Sent) -> bytes:
        raise AssertionError("send_now never starts a call")


class Transport(asyncio.Transport):
    """Keeps what is written; reports a full buffer when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8111)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


@pytest.fixture
def upstream() -> DictUpstream:
    return DictUpstream()


@pytest.fixture
def driver(upstream: DictUpstream) -> AsyncDriver:
    return AsyncDriver(Accelerator(CacheSettings(item_ttl=60, query_ttl=60)), upstream)


def http_request(operation: str, body: dict[str, Any], *, close: bool = False) -> bytes:
    data = orjson.dumps(body)
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.{operation}\r\n"
            f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(data)}\r\n")
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + data


def responses(raw: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split a stream of HTTP/1.1 responses with Content-Length bodies."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
        length = int(headers[b"content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def open_http(driver: AsyncDriver, limits: Limits | None = None) -> tuple[HttpProtocol, Transport]:
    app = DynamoDBApp(driver, driver.accelerator.metrics)
    protocol = HttpProtocol(app, ListenerState("http", limits or Limits()))
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_http_miss_then_hit_pipelined_in_order(driver: AsyncDriver, upstream: DictUpstream) -> None:
    protocol, transport = open_http(driver)
    get = {"TableName": "t", "Key": {"pk": {"S": "a"}}}
    protocol.data_received(http_request("GetItem", get) + http_request("GetItem", {**get, "Key": {"pk": {"S": "b"}}})
                           + http_request("GetItem", get))
    await settle()
    answers = responses(transport.take())
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [orjson.loads(body).get("Item") for _, _, body in answers] == [
        {"pk": {"S": "a"}, "v": {"S": "one"}}, None, {"pk": {"S": "a"}, "v": {"S": "one"}}]
    assert all(b"date" in headers for _, headers, _ in answers)
    assert upstream.calls.count("GetItem") == 2  # the third request was a hit
    protocol.connection_lost(None)


async def test_http_write_through_then_read_and_connection_close(driver: AsyncDriver, upstream: DictUpstream) -> None:
    protocol, transport = open_http(driver)
    get = {"TableName": "t", "Key": {"pk": {"S": "a"}}}
    protocol.data_received(http_request("GetItem", get))
    await settle()
    protocol.data_received(http_request("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}, "v": {"S": "two"}}})
                           + http_request("GetItem", get, close=True))
    await settle()
    answers = responses(transport.take())
    assert orjson.loads(answers[-1][2])["Item"]["v"] == {"S": "two"}
    assert answers[-1][1][b"connection"] == b"close"
    assert protocol.closing  # the transport is closed once the reply has had time to leave (linger)
    protocol.connection_lost(None)


async def test_http_bad_bodies_get_dynamodb_errors(driver: AsyncDriver) -> None:
    protocol, transport = open_http(driver)
    protocol.data_received(http_request("GetItem", {"TableName": "t", "Key": {"pk": {"N": 3}}}))
    body = b"{not json"
    protocol.data_received(b"POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await settle()
    answers = responses(transport.take())
    assert [status for status, _, _ in answers] == [400, 400]
    assert [orjson.loads(b)["__type"].rpartition("#")[2] for _, _, b in answers] == [
        "SerializationException", "SerializationException"]
    protocol.connection_lost(None)


async def test_http_stops_answering_while_the_peer_does_not_read(driver: AsyncDriver) -> None:
    protocol, transport = open_http(driver)
    get = http_request("GetItem", {"TableName": "t", "Key": {"pk": {"S": "a"}}})
    protocol.data_received(get)
    await settle()
    transport.take()
    protocol.pause_writing()  # what asyncio calls when the socket's buffer passes the high-water mark
    protocol.data_received(get * 3)
    await settle()
    assert transport.out == b"" and not transport.reading
    protocol.resume_writing()
    await settle()
    assert len(responses(transport.take())) == 3 and transport.reading
    protocol.connection_lost(None)


def dax_client_bytes() -> bytes:
    """What the official Python DAX client writes for a GetItem of ``a`` in ``t`` (over a fake node)."""
    from amazondax.DaxClient import DaxClient

    from daxd.model.keys import KeySchema
    from tests.unit.dax.conftest import FakeNode, FakePool

    node = FakeNode({"t": KeySchema("pk", "S")})
    node.handler = lambda op: {"Item": {"pk": {"S": "a"}}}
    pool = FakePool(node)
    client = DaxClient(pool)
    try:
        client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    finally:
        client.close()
    return b"".join(bytes(sock.sent) for sock in pool.sockets)


async def test_dax_protocol_answers_the_official_clients_bytes_and_caches(driver: AsyncDriver,
                                                                          upstream: DictUpstream) -> None:
    sent = dax_client_bytes()
    service = DaxService(driver, AttributeListTable(), availability_zone="us-east-1a")
    state = ListenerState("dax", Limits())
    first, second = DaxProtocol(service, state), DaxProtocol(service, state)
    for protocol in (first, second):
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(sent)
        await settle()
        reply = transport.take()
        assert b"\x63one" in reply  # the item's attribute value "one", CBOR-encoded in the GetItem reply
        assert not transport.closed
        protocol.connection_lost(None)
    assert upstream.calls.count("DescribeTable") == 1  # the key schema was learned once
    assert upstream.calls.count("GetItem") == 1  # the second connection's GetItem was a hit
    assert driver.accelerator.metrics.counts["daxd_total_request_count"]["GetItem"] == 2
