"""Bad bytes on the DAX port: the offender gets an error or a closed socket, everyone else is served.

Each case opens its own raw connection; after every case a well-behaved
connection (opened before the bad ones, and kept open) must still answer.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import cbor2
import pytest

from tests.harness import DaxdNode, DynamoDBLocal
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items, request

AUTH = request(1489122155, "AKID", "0" * 64, b"AWS4-HMAC-SHA256\nx\ny\nz", None, "raw-test")
GET_ITEM = 263244906


@pytest.fixture(scope="module")
def dax_node(dynamodb_local: DynamoDBLocal) -> Iterator[DaxdNode]:
    node = DaxdNode(dynamodb_local.endpoint)
    yield node
    node.stop()


def _connect(node: DaxdNode) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.ports["dax"]), timeout=5)


def _closed_or_error(sock: socket.socket) -> str:
    """What the node did: ``closed`` (after an optional error reply) — never a hang."""
    sock.settimeout(5)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return "error+closed" if data else "closed"


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\xff" * 64, id="random-bytes"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-on-dax-port"),
    pytest.param(b"\x67J7yne5X\x00\x40\xa0\x00", id="wrong-magic"),
    pytest.param(PREAMBLE + b"\x01\x5b\xff\xff\xff\xff\xff\xff\xff\xff", id="oversized-length"),
    pytest.param(PREAMBLE + request(123456789), id="unknown-method-id"),
    pytest.param(PREAMBLE + b"\x02" + cbor2.dumps(GET_ITEM), id="unknown-service-id"),
    pytest.param(PREAMBLE + b"\x01\xdb" + b"\x00" * 8, id="unknown-tag"),
])
def test_garbage_gets_closed_and_others_are_served(dax_node: DaxdNode, garbage: bytes) -> None:
    with _connect(dax_node) as good:
        good.sendall(PREAMBLE + AUTH)
        with _connect(dax_node) as bad:
            bad.sendall(garbage)
            assert _closed_or_error(bad) in ("closed", "error+closed")
        good.sendall(endpoints_request())
        assert read_items(good, 2)[0] == []


def test_wrong_cbor_types_get_an_error_and_the_connection_survives(dax_node: DaxdNode) -> None:
    with _connect(dax_node) as sock:
        sock.sendall(PREAMBLE + AUTH + request(GET_ITEM, 42, b"key", None))  # table name must be a string
        codes, _message, detail = read_items(sock, 3)
        assert codes[0] == 4 and detail[1] == "ValidationException"
        sock.sendall(request(-1230579644, "not-an-array"))  # defineAttributeListId(text): unparseable
        assert _closed_or_error(sock) in ("closed", "error+closed")


def test_a_key_that_does_not_match_the_schema(dax_node: DaxdNode, ddb: object) -> None:
    from tests.harness import create_table
    table = create_table(ddb)  # pk S, sk N: the key must carry a LexDecimal range part
    with _connect(dax_node) as sock:
        sock.sendall(PREAMBLE + AUTH + request(GET_ITEM, table.encode(), b"\x19", None))
        codes, _message, detail = read_items(sock, 3)
        assert codes[0] == 4 and detail[1] == "ValidationException"
        sock.sendall(endpoints_request())
        assert read_items(sock, 2)[0] == []


def test_truncated_frame_then_disconnect_costs_nothing(dax_node: DaxdNode) -> None:
    for _ in range(20):
        with _connect(dax_node) as sock:
            sock.sendall(PREAMBLE + AUTH + request(GET_ITEM, b"t", b"k", None)[:-2])
    with _connect(dax_node) as sock:
        sock.sendall(PREAMBLE + AUTH + endpoints_request())
        assert read_items(sock, 2)[0] == []
    time.sleep(0.2)
    metrics = _metrics(dax_node)
    assert 'daxd_connections{listener="dax"} 0.0' in metrics or 'daxd_connections{listener="dax"} 1.0' in metrics


def _metrics(node: DaxdNode) -> str:
    import urllib.request
    with urllib.request.urlopen(f"{node.admin}/metrics", timeout=5) as response:
        return str(response.read().decode())
