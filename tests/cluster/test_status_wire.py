"""The wire of ``daxd status``: replies framed byte by byte, signatures; the node's answers."""

from __future__ import annotations

import datetime
from typing import Any

import cbor2
import pytest

from daxd.accelerator import Accelerator
from daxd.cluster.node import Cluster
from daxd.cluster.wire import ReplyReader, authorize
from daxd.frontends.dax.codec import DaxConnection
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import AuthorizeConnection, PeerMessage
from daxd.model.errors import ProtocolError, ValidationException
from daxd.upstream.sigv4 import verify_dax_authorization

NOW = datetime.datetime(2026, 11, 26, 14, 6, 44, tzinfo=datetime.UTC)


def test_replies_are_framed_one_byte_at_a_time() -> None:
    stream = b"\x80" + cbor2.dumps({"id": 1}) + encode_error(ValidationException("bad")) + b"\x80" + cbor2.dumps(3)
    reader, replies = ReplyReader(), []
    for byte in stream:
        reader.feed(bytes([byte]))
        while (reply := reader.next_reply()) is not None:
            replies.append(reply)
    assert [r.ok for r in replies] == [True, False, True]
    assert replies[0].value == {"id": 1} and replies[2].value == 3
    assert "bad" in replies[1].message


@pytest.mark.parametrize("garbage", [b"\xff\xff", b"\x1f", b"\x01\x00\x00", b"\x7f\x00"])
def test_garbage_replies_are_protocol_errors(garbage: bytes) -> None:
    reader = ReplyReader()
    reader.feed(garbage)
    with pytest.raises(ProtocolError):
        reader.next_reply()


def test_peer_authorization_verifies_like_a_dax_client() -> None:
    conn = DaxConnection()
    conn.receive_data(b"\x67J7yne5G\x00" + cbor2.dumps(b"s") + cbor2.dumps({}) + b"\x00"
                      + authorize("AKID", "secret", "us-east-1", NOW))
    conn.next_event()
    event = conn.next_event()
    assert isinstance(event, AuthorizeConnection)
    assert verify_dax_authorization(event.access_key_id, event.signature, event.string_to_sign,
                                    {"AKID": "secret"}, NOW) == "AKID"


@pytest.mark.parametrize("body", [None, [], 3, "view"])
def test_a_status_request_that_is_not_a_map_gets_an_error_not_a_crash(body: Any) -> None:
    reply = Cluster("n1", "127.0.0.1:1", Accelerator()).handle(PeerMessage("daxd.ping", body))
    assert isinstance(reply, bytes) and reply[:1] != b"\x80"


def test_a_node_of_one_answers_status_with_itself() -> None:
    reply = Cluster("n1", "127.0.0.1:1", Accelerator()).handle(PeerMessage("daxd.ping", {"view": True}))
    assert isinstance(reply, bytes) and reply[:1] == b"\x80"
    view = cbor2.loads(reply[1:])
    assert view["node"] == "n1" and [n["health"] for n in view["nodes"]] == ["self"]
