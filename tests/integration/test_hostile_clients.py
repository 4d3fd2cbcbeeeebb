"""Hostile and careless clients against a real node: memory stays bounded, limits refuse, others are served.

Scaled down from the issue's figures to stay fast (benchmarks/bench_hostile.py
runs the full-size scenario). RSS is read from /proc; loops are bounded in
count and time; a well-behaved client keeps being served meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.harness import DaxdNode, create_table, wait_until
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items, request
from tests.integration.listener_tools import (
    api_request,
    closed_by_peer,
    connect,
    metrics,
    read_response,
    refused,
    rss_bytes,
)

AUTH = request(1489122155, "AKID", "0" * 64, b"AWS4-HMAC-SHA256\nx\ny\nz", None, "raw-test")
GET_ITEM, DEFINE_KEY_SCHEMA = 263244906, -742646399
BIG = "x" * 50_000
MiB = 1 << 20


def _flood(sock: socket.socket, frame: bytes, budget: int) -> int:
    """Send ``frame`` repeatedly without reading until the node stops reading or ``budget`` bytes went out."""
    sock.setblocking(False)
    sent = 0
    data = frame * max(1, 16384 // len(frame))
    deadline = time.monotonic() + 5
    while sent < budget and time.monotonic() < deadline:
        try:
            sent += sock.send(data)
        except BlockingIOError:
            time.sleep(0.01)  # the node stopped reading (or the kernel buffers are full): try a little longer
    return sent


def _big_table(ddb: Any) -> str:
    table = create_table(ddb, range_key=None)
    ddb.put_item(TableName=table, Item={"pk": {"S": "big"}, "v": {"S": BIG}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "small"}, "v": {"S": "s"}})
    return table


def _pipeliners_leave_memory_bounded(node: DaxdNode, connect_one: Callable[[], socket.socket], frame: bytes,
                                     served: Callable[[], bool]) -> None:
    before = rss_bytes(node.process.pid)
    socks = [connect_one() for _ in range(20)]
    try:
        for sock in socks:  # each would be sent ~100 MB of replies if its requests were all answered
            _flood(sock, frame, 2 * MiB)
        assert served()  # an ordinary client is still answered while the pipeliners sit there
        grown = rss_bytes(node.process.pid) - before
        print(f"RSS grew {grown / MiB:.1f} MiB with 20 non-reading pipeliners")
        assert grown < 160 * MiB  # the bound: ~ (reply buffer + one read + pipeline) per connection
    finally:
        for sock in socks:
            sock.close()


def test_http_pipeliners_that_never_read(node: DaxdNode, ddb: Any) -> None:
    table = _big_table(ddb)
    api = node.client()
    api.get_item(TableName=table, Key={"pk": {"S": "big"}})
    frame = api_request("GetItem", {"TableName": table, "Key": {"pk": {"S": "big"}}})

    def served() -> bool:
        return all(api.get_item(TableName=table, Key={"pk": {"S": "small"}})["Item"]["v"] == {"S": "s"}
                   for _ in range(20))
    _pipeliners_leave_memory_bounded(node, lambda: connect(node), frame, served)


def test_dax_pipeliners_that_never_read(node: DaxdNode, ddb: Any) -> None:
    table = _big_table(ddb)

    def dax_connection() -> socket.socket:
        sock = connect(node, "dax")
        sock.sendall(PREAMBLE + AUTH + request(DEFINE_KEY_SCHEMA, table.encode()))
        assert read_items(sock, 2) == [[], {"pk": "S"}]
        return sock

    probe = dax_connection()
    frame = request(GET_ITEM, table.encode(), b"big", None)
    probe.sendall(frame)
    read_items(probe, 2)  # cached now

    def served() -> bool:
        for _ in range(20):
            probe.sendall(request(GET_ITEM, table.encode(), b"small", None))
            if len(read_items(probe, 2)) != 2:
                return False
        return True
    try:
        _pipeliners_leave_memory_bounded(node, dax_connection, frame, served)
    finally:
        probe.close()


def test_slowloris_headers_time_out_with_408_and_are_counted(start_node: Any) -> None:
    node = start_node("--header-timeout", "0.5", "--body-timeout", "0.5")
    socks = [connect(node) for _ in range(100)]
    body_sock = connect(node)
    try:
        for sock in socks:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-")  # and never the rest
        body_sock.sendall(api_request("GetItem", b"{}")[:-1])  # the body's last byte never comes
        for sock in socks:
            response = read_response(sock, bytearray())
            assert response.status == 408 and orjson.loads(response.body)["__type"].endswith("RequestTimeoutException")
            assert closed_by_peer(sock)
        assert read_response(body_sock, bytearray()).status == 408
        assert node.client().list_tables()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        for sock in [*socks, body_sock]:
            sock.close()
    assert refused(node, "http", "header_timeout") == 100
    assert refused(node, "http", "body_timeout") == 1


def test_idle_connections_are_held_cheaply_then_closed(start_node: Any) -> None:
    node = start_node("--http-idle-timeout", "2", "--dax-idle-timeout", "2")
    before = rss_bytes(node.process.pid)
    socks = [connect(node, port) for port in ("http", "dax") for _ in range(400)]
    try:
        wait_until(lambda: 'daxd_connections{listener="http"} 400.0' in metrics(node), 10, "idle connections")
        grown = rss_bytes(node.process.pid) - before
        print(f"RSS grew {grown / MiB:.1f} MiB for 800 idle connections")
        assert grown < 64 * MiB
        assert node.client().list_tables()["ResponseMetadata"]["HTTPStatusCode"] == 200
        wait_until(lambda: refused(node, "dax", "idle_timeout") == 400, 20, "idle DAX connections to close")
        wait_until(lambda: refused(node, "http", "idle_timeout") >= 400, 20, "idle HTTP connections to close")
        assert all(closed_by_peer(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def test_each_http_limit_refuses_with_a_dynamodb_error_and_is_counted(start_node: Any) -> None:
    node = start_node("--max-header-count", "20", "--max-header-size", "2KiB", "--max-request-size", "64KiB",
                      "--http-max-connections", "3")
    cases = [
        (b"POST / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(30)) + b"\r\n", 431, "header_count"),
        (b"POST / HTTP/1.1\r\nX-Big: " + b"v" * 4000 + b"\r\n\r\n", 431, "header_size"),
        (b"POST / HTTP/1.1\r\nX-Endless: " + b"v" * 40000, 431, "header_size"),
        (api_request("PutItem", b"{" + b" " * 70000 + b"}"), 413, "body_size"),
    ]
    for data, status, reason in cases:
        with connect(node) as sock:
            sock.sendall(data)
            response = read_response(sock, bytearray())
            assert response.status == status and orjson.loads(response.body)["__type"], reason
            assert response.headers["connection"] == "close"
            assert closed_by_peer(sock)
    assert refused(node, "http", "header_count") == 1
    assert refused(node, "http", "header_size") == 2
    assert refused(node, "http", "body_size") == 1
    held = [connect(node) for _ in range(3)]
    try:
        wait_until(lambda: 'daxd_connections{listener="http"} 3.0' in metrics(node), 10, "three connections")
        with connect(node) as fourth:
            response = read_response(fourth, bytearray())
            assert response.status == 503 and b"ServiceUnavailable" in response.body
            assert closed_by_peer(fourth)
    finally:
        for sock in held:
            sock.close()
    assert refused(node, "http", "max_connections") == 1
    wait_until(lambda: node.client().list_tables() is not None, 10, "the node to serve again")


def test_several_clients_sending_15_mib_bodies_at_once(node: DaxdNode, table: str) -> None:
    before = rss_bytes(node.process.pid)
    peak = [before]
    item = {"TableName": table, "Item": {"pk": {"S": "huge"}, "sk": {"N": "1"}, "v": {"S": "y" * (15 * MiB)}}}
    body = orjson.dumps(item)
    statuses: list[int] = []

    def send() -> None:
        with connect(node) as sock:
            sock.settimeout(60)
            sock.sendall(api_request("PutItem", body))
            statuses.append(read_response(sock, bytearray()).status)

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak.append(rss_bytes(node.process.pid))
        time.sleep(0.05)
    print(f"RSS peak {max(peak) / MiB:.0f} MiB (from {before / MiB:.0f}) with 5 x 15 MiB bodies; {statuses}")
    assert len(statuses) == 5 and all(400 <= status < 500 for status in statuses)  # an item over 400 KB
    assert max(peak) - before < 400 * MiB


def test_drain_answers_open_keep_alive_connections_with_connection_close(start_node: Any, dynamodb_local: Any,
                                                                          ) -> None:
    from tests.faultproxy import ThreadedFaultProxy

    faults = ThreadedFaultProxy(dynamodb_local.endpoint)
    node = start_node("--streams", "off", upstream=f"http://127.0.0.1:{faults.start()}")
    try:
        table = create_table(node.client(), range_key=None)
        faults.delay = 1.0
        with connect(node) as sock:
            buffer = bytearray()
            sock.sendall(api_request("GetItem", {"TableName": table, "Key": {"pk": {"S": "slow"}}}))
            wait_until(lambda: faults.seen["DynamoDB_20120810.GetItem"] > 0, 10, "the slow request upstream")
            node.process.send_signal(15)
            time.sleep(0.2)  # the drain has begun: this request arrives on an open keep-alive connection
            sock.sendall(api_request("ListTables", {}))
            response = read_response(sock, buffer)
            assert response.status == 200 and response.headers["connection"] == "close"
            assert closed_by_peer(sock, buffer)
        assert node.process.wait(15) == 0
    finally:
        faults.stop()


def test_dax_frame_over_the_limit_is_told_then_closed(start_node: Any) -> None:
    node = start_node("--max-request-size", "64KiB")
    with connect(node, "dax") as sock:
        sock.sendall(PREAMBLE + AUTH + endpoints_request())
        read_items(sock, 2)
        sock.sendall(request(GET_ITEM, b"t", b"k" * 100_000, None))
        _codes, message, detail = read_items(sock, 3)
        assert detail[1] == "RequestEntityTooLarge" and "exceeds the limit" in message
        assert closed_by_peer(sock)
    assert refused(node, "dax", "frame_size") == 1


@pytest.mark.parametrize("port", ["http", "dax"])
def test_a_small_clients_latency_beside_a_flooding_neighbour(node: DaxdNode, ddb: Any, port: str) -> None:
    """Measured and printed; asserted only against a very generous bound (the box is shared)."""
    table = _big_table(ddb)
    api = node.client()
    api.get_item(TableName=table, Key={"pk": {"S": "small"}})
    stop = threading.Event()
    if port == "http":
        frame = api_request("GetItem", {"TableName": table, "Key": {"pk": {"S": "big"}}}) * 32
    else:
        frame = request(GET_ITEM, table.encode(), b"big", None) * 32

    def flood() -> None:  # pipelines 32 requests at a time and reads the answers, as fast as it can
        with connect(node, port) as sock:
            if port == "dax":
                sock.sendall(PREAMBLE + AUTH + request(DEFINE_KEY_SCHEMA, table.encode()))
                read_items(sock, 2)
            sock.settimeout(10)
            while not stop.is_set():
                sock.sendall(frame)
                want = 32 * 50_000
                while want > 0:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        return
                    want -= len(chunk)

    neighbour = threading.Thread(target=flood)
    neighbour.start()
    latencies = []
    try:
        time.sleep(0.3)
        for _ in range(100):
            started = time.perf_counter()
            api.get_item(TableName=table, Key={"pk": {"S": "small"}})
            latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        neighbour.join(15)
    latencies.sort()
    print(f"{port}: small client p50 {latencies[50] * 1e3:.1f} ms, p99 {latencies[98] * 1e3:.1f} ms "
          "beside a flooding neighbour")
    assert latencies[98] < 5.0
