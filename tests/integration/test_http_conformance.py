"""HTTP/1.1 as DynamoDB's clients expect it: keep-alive and close, 100-continue, chunked and compressed bodies.

Each case is checked on raw sockets (exact bytes) and, where a client library
can express it, with ``http.client``, ``urllib3`` and ``requests``.
"""

from __future__ import annotations

import gzip
import http.client
import zlib
from typing import Any

import orjson
import requests
import urllib3

from tests.harness import DaxdNode
from tests.integration.listener_tools import api_request, closed_by_peer, connect, read_response

HEADERS = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"}


def _get(table: str, pk: str = "a") -> dict[str, Any]:
    return {"TableName": table, "Key": {"pk": {"S": pk}, "sk": {"N": "1"}}}


def _put(ddb: Any, table: str, pk: str = "a") -> None:
    ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"N": "1"}, "v": {"S": "value"}})


def test_connection_close_is_honoured_on_raw_sockets(node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    with connect(node) as sock:
        buffer = bytearray()
        sock.sendall(api_request("GetItem", _get(table), extra=b"Connection: close\r\n"))
        response = read_response(sock, buffer)
        assert response.status == 200 and response.headers["connection"] == "close"
        assert "date" in response.headers
        assert closed_by_peer(sock, buffer)


def test_connection_close_twice_in_a_row_with_requests_urllib3_and_http_client(
        node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    body = orjson.dumps(_get(table))
    headers = {**HEADERS, "Connection": "close"}
    with requests.Session() as session:
        for _ in range(3):
            answer = session.post(node.endpoint, data=body, headers=headers, timeout=10)
            assert answer.status_code == 200 and answer.json()["Item"]["v"] == {"S": "value"}
    with urllib3.PoolManager() as pool:
        for _ in range(3):
            reply = pool.request("POST", node.endpoint, body=body, headers=headers, timeout=10)
            assert reply.status == 200 and orjson.loads(reply.data)["Item"]["v"] == {"S": "value"}
    conn = http.client.HTTPConnection("127.0.0.1", node.ports["http"], timeout=10)
    for _ in range(3):  # http.client reconnects by itself after a close
        conn.request("POST", "/", body=body, headers=headers)
        got = conn.getresponse()
        assert got.status == 200 and got.getheader("Connection") == "close" and got.read()
    conn.close()


def test_keep_alive_is_the_default_and_http_1_0_closes_unless_asked(node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    with connect(node) as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(api_request("GetItem", _get(table)))
            response = read_response(sock, buffer)
            assert response.status == 200 and "connection" not in response.headers
    with connect(node) as sock:
        buffer = bytearray()
        sock.sendall(api_request("GetItem", _get(table), version=b"HTTP/1.0"))
        assert read_response(sock, buffer).headers["connection"] == "close"
        assert closed_by_peer(sock, buffer)
    with connect(node) as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(api_request("GetItem", _get(table), version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
            assert read_response(sock, buffer).headers["connection"] == "keep-alive"


def test_expect_100_continue(node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    body = orjson.dumps(_get(table))
    with connect(node) as sock:
        buffer = bytearray()
        request = api_request("GetItem", body, extra=b"Expect: 100-continue\r\n")
        sock.sendall(request[:-len(body)])
        assert read_response(sock, buffer).status == 100
        sock.sendall(body)
        response = read_response(sock, buffer)
        assert response.status == 200 and orjson.loads(response.body)["Item"]["v"] == {"S": "value"}
    with connect(node) as sock:  # a body over the limit is refused before it is sent
        buffer = bytearray()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\n"
                     b"Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
        assert read_response(sock, buffer).status == 413


def test_chunked_request_bodies(node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    body = orjson.dumps(_get(table))
    with connect(node) as sock:
        buffer = bytearray()
        head = (b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
                b"Content-Type: application/x-amz-json-1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
        sock.sendall(head + chunks + b"0\r\n\r\n")
        response = read_response(sock, buffer)
        assert response.status == 200 and orjson.loads(response.body)["Item"]["v"] == {"S": "value"}
    answer = requests.post(node.endpoint, data=iter([body[:7], body[7:]]), headers=HEADERS, timeout=10)
    assert answer.status_code == 200 and answer.json()["Item"]["v"] == {"S": "value"}


def test_get_and_head_on_root_answer_as_dynamodb_does(node: DaxdNode) -> None:
    answer = requests.get(node.endpoint + "/", timeout=10)
    assert answer.status_code == 200 and answer.text == "healthy: dynamodb.us-east-1.amazonaws.com"
    assert "Date" in answer.headers
    head = requests.head(node.endpoint + "/", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(answer.content)
    with connect(node) as sock:  # HEAD's body is left out on the wire too: the next response follows at once
        buffer = bytearray()
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer, head=True).status == 200
        assert read_response(sock, buffer).body.startswith(b"healthy: ")


def test_compressed_request_bodies(node: DaxdNode, ddb: Any, table: str) -> None:
    _put(ddb, table)
    body = orjson.dumps(_get(table))
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                           ("deflate", zlib.compress(body)[2:-4])):  # raw deflate, as some clients send it
        answer = requests.post(node.endpoint, data=data, headers={**HEADERS, "Content-Encoding": encoding},
                               timeout=10)
        assert answer.status_code == 200 and answer.json()["Item"]["v"] == {"S": "value"}, (encoding, answer.text)
    truncated = requests.post(node.endpoint, data=gzip.compress(body)[:-9],
                              headers={**HEADERS, "Content-Encoding": "gzip"}, timeout=10)
    assert truncated.status_code == 400 and "gzip" in truncated.json()["message"]
    assert truncated.json()["__type"].endswith("SerializationException")
    empty = requests.post(node.endpoint, data=b"", headers={**HEADERS, "Content-Encoding": "gzip"}, timeout=10)
    assert empty.status_code == 400 and "__type" in empty.json()  # an empty body, as without the encoding
    unknown = requests.post(node.endpoint, data=b"xx", headers={**HEADERS, "Content-Encoding": "br"}, timeout=10)
    assert unknown.status_code == 415
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))  # ~17 KB that would inflate past the 16 MiB limit
    refused = requests.post(node.endpoint, data=bomb, headers={**HEADERS, "Content-Encoding": "gzip"}, timeout=10)
    assert refused.status_code == 413 and refused.json()["__type"].endswith("RequestEntityTooLarge")
    assert requests.post(node.endpoint, data=body, headers=HEADERS, timeout=10).status_code == 200
