"""Fuzzing the decoder: random and mutated streams may only ever produce events,
NEED_DATA or ProtocolError; converting decoded calls may only raise DaxdError or
NeedSchema; and the buffer never holds more than one frame limit plus one chunk.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from amazondax.DaxClient import DaxClient
from conftest import SCHEMAS, FakeNode, FakePool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_golden import AUTH, PREAMBLE, h

from daxd.frontends.dax import (
    NEED_DATA,
    AttributeListTable,
    ConnectionClosed,
    DaxConnection,
    MethodCall,
    NeedSchema,
    PlainGetItem,
    State,
    decode_plain_get_item,
    to_operation,
)
from daxd.model.errors import DaxdError, ProtocolError

LIMIT = 4096


def _client_stream() -> bytes:
    """Bytes the official client sends for a spread of requests."""
    node = FakeNode(SCHEMAS)
    node.handler = lambda op: {}
    pool = FakePool(node)
    client = DaxClient(pool)
    client.get_item(TableName="tbl2", Key={"pk": {"S": "p"}, "sk": {"N": "-1.5"}}, ProjectionExpression="a.b[1], c")
    client.put_item(TableName="tbl", Item={"id": {"S": "k"}, "m": {"M": {"x": {"NS": ["1", "2"]}}}, "b": {"B": b"1"}},
                    ConditionExpression="a BETWEEN :x AND :y", ExpressionAttributeValues={":x": {"N": "1"},
                                                                                          ":y": {"N": "9"}})
    client.update_item(TableName="num", Key={"n": {"N": "7"}}, UpdateExpression="SET a = list_append(a, :l)",
                       ExpressionAttributeValues={":l": {"L": [{"BOOL": True}]}})
    client.query(TableName="tbl2", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                 IndexName="g", ExclusiveStartKey={"pk": {"S": "p"}, "sk": {"N": "1"}})
    client.batch_write_item(RequestItems={"tbl": [{"PutRequest": {"Item": {"id": {"S": "z"}, "q": {"SS": ["s"]}}}}]})
    client.transact_write_items(TransactItems=[{"Delete": {"TableName": "tbl", "Key": {"id": {"S": "d"}}}}])
    return bytes(pool.sockets[0].sent)


CORPUS = [
    PREAMBLE + AUTH + h("01 1a1b2bcf02"),
    PREAMBLE + h("01 1a0fb0cc6a 43 74626c 42 6b31 bf 03 00 ff 01 3a495927bb 82 63 616765 64 6e616d65"),
    PREAMBLE + h("01 1a06ed585f a1 63 74626c 84 42 6b39 42 0ef4 42 6b38 f6 f6"),
    _client_stream(),
]


def drive(stream: bytes, chunks: list[int]) -> None:
    """Feed ``stream`` in chunks; allow only events, NEED_DATA and ProtocolError."""
    conn = DaxConnection(max_frame_size=LIMIT)
    lists = AttributeListTable()
    for name in ("q", "w", "m"):
        lists.id_for((name,))
    pos = 0
    try:
        for size in [*chunks, len(stream)]:
            chunk = stream[pos:pos + max(size, 1)]
            pos += len(chunk)
            conn.receive_data(chunk)
            _drain(conn, lists)
            assert conn.buffered <= LIMIT + len(chunk)
            if pos >= len(stream):
                break
        conn.receive_data(b"")
        _drain(conn, lists)
    except ProtocolError:
        assert conn.state is State.ERROR and conn.buffered == 0


def _drain(conn: DaxConnection, lists: AttributeListTable) -> None:
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, ConnectionClosed):
            return
        if isinstance(event, PlainGetItem):
            event = decode_plain_get_item(event)
        if isinstance(event, MethodCall):
            with contextlib.suppress(DaxdError, NeedSchema):
                to_operation(event, SCHEMAS, lists)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        i = rng.randrange(len(buf)) if buf else 0
        if kind == 0 and buf:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf = buf[:i]
        elif kind == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif kind == 3 and buf:
            buf[i] = rng.choice([0x5B, 0x5A, 0x7B, 0x9B, 0xBB, 0x9F, 0xBF, 0xFF, 0xDB, 0x1F, 0xC5])
        elif kind == 4 and buf:
            del buf[i:i + rng.randint(1, 4)]
        elif kind == 5 and buf:
            buf[i:i] = rng.choice([b"\xc4\x82\x1b" + b"\xff" * 8 + b"\x01", b"\x9f" * 70, b"\xc2\x58\xff" + b"1" * 4])
    return bytes(buf)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(CORPUS) - 1), st.randoms(use_true_random=False),
       st.lists(st.integers(1, 300), max_size=20))
def test_mutated_streams(index: int, rng: random.Random, chunks: list[int]) -> None:
    drive(mutate(rng, CORPUS[index]), chunks)


@settings(max_examples=200)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=10))
def test_random_bytes_after_preamble(data: bytes, chunks: list[int]) -> None:
    drive(PREAMBLE + data, chunks)
    drive(data, chunks)


def test_many_mutations_deterministic() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        stream = mutate(rng, rng.choice(CORPUS))
        drive(stream, [rng.randint(1, 200) for _ in range(rng.randint(0, 10))])


@pytest.mark.parametrize("header", ["5b 00000000 7fffffff", "5a 7fffffff", "9b 00ffffffffffffff",
                                    "bb 00ffffffffffffff", "7a 10000000"])
def test_oversized_length_refused_before_buffering(header: str) -> None:
    conn = DaxConnection(max_frame_size=LIMIT)
    conn.receive_data(PREAMBLE + h(f"01 1a0fb0cc6a {header}"))
    conn.next_event()
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_wrong_magic_and_eof_mid_frame() -> None:
    conn = DaxConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError):
        conn.next_event()
    conn = DaxConnection()
    conn.receive_data(PREAMBLE + h("01 1a0fb0cc6a 43 74"))
    conn.next_event()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_unknown_method_and_byte_at_a_time() -> None:
    conn = DaxConnection()
    conn.receive_data(PREAMBLE + h("01 1a 00000001"))
    conn.next_event()
    with pytest.raises(ProtocolError):
        conn.next_event()
    stream = CORPUS[3]
    conn, seen = DaxConnection(), []
    for byte in stream:
        conn.receive_data(bytes([byte]))
        while (event := conn.next_event()) is not NEED_DATA:
            seen.append(event)
    whole = DaxConnection()
    whole.receive_data(stream)
    assert seen == [e for e in iter(whole.next_event, NEED_DATA)]
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
