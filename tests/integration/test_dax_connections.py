"""DAX connections: many at once, pipelining in order, idle and count limits, one log line per offender."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import cbor2

from tests.harness import DaxdNode, create_table
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items, request

AUTH = request(1489122155, "AKID", "0" * 64, b"AWS4-HMAC-SHA256\nx\ny\nz", None, "raw-test")
GET_ITEM, DEFINE_KEY_SCHEMA = 263244906, -742646399


def _connect(node: DaxdNode) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.ports["dax"]), timeout=10)


def _value_of(reply: Any) -> Any:
    """The single non-key value of a getItem reply ``{0: h'<list id><value>'}``."""
    encoded = reply[0]
    return cbor2.loads(encoded[1:])  # list ids below 24 take one byte


def test_pipelined_requests_are_answered_in_order(node: DaxdNode, ddb: Any) -> None:
    table = create_table(ddb, range_key=None)
    for n in range(10):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"p{n}"}, "v": {"S": f"v{n}"}})
    gets = [request(GET_ITEM, table.encode(), f"p{n}".encode(), None) for n in range(10)]
    with _connect(node) as sock:
        # misses (upstream) and hits (cache) interleaved, all sent before reading anything
        sock.sendall(PREAMBLE + AUTH + request(DEFINE_KEY_SCHEMA, table.encode()) + b"".join(gets[:5])
                     + endpoints_request() + b"".join(gets) + b"".join(gets[5:]))
        assert read_items(sock, 2) == [[], {"pk": "S"}]
        values = [_value_of(read_items(sock, 2)[1]) for _ in range(5)]
        assert read_items(sock, 2)[0] == []
        values += [_value_of(read_items(sock, 2)[1]) for _ in range(15)]
    assert values == [f"v{n}" for n in range(5)] + [f"v{n}" for n in range(10)] + [f"v{n}" for n in range(5, 10)]


def test_many_clients_at_once(node: DaxdNode, ddb: Any) -> None:
    table = create_table(ddb, range_key=None)
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "v": {"S": "shared"}})
    results: list[Any] = []
    errors: list[BaseException] = []

    def one_client() -> None:
        try:
            with _connect(node) as sock:
                sock.sendall(PREAMBLE + AUTH)
                for _ in range(5):
                    sock.sendall(request(GET_ITEM, table.encode(), b"k", None))
                    results.append(_value_of(read_items(sock, 2)[1]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and results == ["shared"] * 320


def test_idle_connections_are_closed(start_node: Any) -> None:
    node = start_node("--dax-idle-timeout", "0.3")
    with _connect(node) as sock:
        sock.sendall(PREAMBLE + AUTH + endpoints_request())
        read_items(sock, 2)
        time.sleep(0.8)
        assert sock.recv(1) == b""


def test_connections_past_the_limit_are_closed(start_node: Any) -> None:
    node = start_node("--dax-max-connections", "2")
    first, second = _connect(node), _connect(node)
    try:
        for sock in (first, second):
            sock.sendall(PREAMBLE + AUTH + endpoints_request())
            read_items(sock, 2)
        with _connect(node) as third:  # told why (a retryable server error), then closed
            _codes, message, detail = read_items(third, 3)
            assert detail[1] == "ServiceUnavailable" and "Too many connections" in message
            assert third.recv(1) == b""
        first.close()
        time.sleep(0.1)
        with _connect(node) as fourth:
            fourth.sendall(PREAMBLE + AUTH + endpoints_request())
            assert read_items(fourth, 2)[0] == []
    finally:
        first.close()
        second.close()


def test_a_bad_connection_logs_exactly_one_line(start_node: Any) -> None:
    node = start_node()
    with _connect(node) as bad:
        bad.sendall(PREAMBLE + b"\x01\x1a\x07\x5b\xcd\x15 and more garbage")
        assert bad.recv(65536) != b"" or True
    with _connect(node) as good:
        good.sendall(PREAMBLE + AUTH + endpoints_request())
        read_items(good, 2)
    node.stop()
    lines = [line for line in "".join(node.output).splitlines() if "protocol error" in line]
    assert len(lines) == 1 and "unknown DAX method id" in lines[0]


def test_attribute_lists_are_bounded_and_measured(start_node: Any) -> None:
    import urllib.request
    node = start_node("--attribute-lists-max", "2")
    define_id, define_list = -1230579644, 670678385
    with _connect(node) as sock:
        sock.sendall(PREAMBLE + AUTH + b"".join(request(define_id, [f"a{n}"]) for n in range(3)))
        ids = [read_items(sock, 2)[1] for _ in range(3)]
        assert len(set(ids)) == 3
        sock.sendall(request(define_list, ids[2]) + request(define_list, ids[0]))
        assert read_items(sock, 2) == [[], ["a2"]]
        codes, message, _detail = read_items(sock, 3)  # the oldest list was forgotten
        assert codes[-1] == 46 and f"Unknown attribute list id {ids[0]}" in message
        sock.sendall(request(define_id, ["a0"]))  # asked again: a new id, never the old one
        assert read_items(sock, 2)[1] not in ids
    with urllib.request.urlopen(f"{node.admin}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert "daxd_attribute_lists 2.0" in metrics and "daxd_attribute_lists_max 2.0" in metrics
