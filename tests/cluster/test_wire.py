"""Peer wire: requests, replies framed byte by byte, signatures, bad peers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections import deque
from typing import Any

import cbor2
import pytest

from daxd.accelerator import Accelerator
from daxd.cluster.changes import Change, apply_change
from daxd.cluster.membership import Address, Membership
from daxd.cluster.node import Cluster
from daxd.cluster.peers import PeerConnection, PeerLink, take_batch
from daxd.cluster.wire import ReplyReader, authorize
from daxd.frontends.dax.codec import DaxConnection
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import AuthorizeConnection, PeerMessage
from daxd.model.errors import ProtocolError, ValidationException
from daxd.upstream.sigv4 import verify_dax_authorization
from tests.harness import free_port

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


def _cluster() -> Cluster:
    membership = Membership(Address("127.0.0.1", 1), "127.0.0.1", "n1", {Address("127.0.0.1", 2): "127.0.0.1"},
                            timer=lambda: 0.0)
    return Cluster(membership, Accelerator(), credentials=None, region="us-east-1")


@pytest.mark.parametrize("body", [None, [], {"items": 3}, {"items": [1]}, {"items": [{"t": 1, "k": b"k"}]},
                                  {"items": [{"table": "t", "stream": "s", "record": {"eventName": "X"}}]}])
def test_a_peer_that_sends_garbage_gets_an_error_not_a_crash(body: Any) -> None:
    cluster = _cluster()
    for method in ("daxd.invalidate", "daxd.records"):
        reply = cluster.handle(PeerMessage(method, body))
        assert isinstance(reply, bytes) and reply[:1] != b"\x80"


def test_a_peer_image_is_stored_unless_the_key_changed_recently() -> None:
    clock = [0.0]
    acc = Accelerator(timer=lambda: clock[0])
    clock[0] = 100.0
    apply_change(acc, Change("t", b"k", b"p", b'{"v":1}'), quiet=5.0)
    assert acc.items.get("t", b"k") is not None
    clock[0] = 101.0
    assert apply_change(acc, Change("t", b"k", b"p", b'{"v":0}'), quiet=5.0) == "evicted"
    assert acc.items.get("t", b"k") is None
    assert acc.items.changed_since("t", b"k", 100.5)  # the next miss refills with ConsistentRead


def test_changes_round_trip_and_batches_keep_order() -> None:
    change = Change("t", b"k", None, None)
    assert Change.from_wire(cbor2.loads(cbor2.dumps(change.to_wire()))) == change
    evicted = Change("t", b"k", b"p", evicted=True)
    assert Change.from_wire(evicted.to_wire()) == evicted
    outbox: deque[tuple[str, Any]] = deque([("a", 1), ("a", 2), ("b", 3), ("a", 4)])
    assert take_batch(outbox, 10) == ("a", [1, 2])
    assert take_batch(outbox, 10) == ("b", [3])


async def test_a_push_to_an_unreachable_peer_never_raises_and_asks_for_a_flush() -> None:
    failures: list[str] = []
    link = PeerLink(PeerConnection(Address("127.0.0.1", free_port()), timeout=0.5), on_failure=failures.append,
                    max_outbox=3)
    link.push("daxd.invalidate", [1, 2, 3, 4])  # overflow: dropped at once
    assert failures == ["outbox overflow"] and link.needs_flush and not link.outbox
    link.push("daxd.invalidate", [1])
    worker = asyncio.ensure_future(link.run())
    for _ in range(100):
        if len(failures) > 1:
            break
        await asyncio.sleep(0.01)
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    assert len(failures) == 2 and link.needs_flush and not link.outbox


def test_a_peers_distrust_drops_the_tables_entries_here() -> None:
    cluster = _cluster()
    acc = cluster.accelerator
    acc.items.fill("t", b"k", "", b'{"v":1}', acc.items.token("t", b"k"))
    acc.items.fill("u", b"k", "", b'{"v":1}', acc.items.token("u", b"k"))
    reply = cluster.handle(PeerMessage("daxd.records", {"items": [{"table": "t", "stream": "s", "distrust": True}]}))
    assert not isinstance(reply, bytes) and asyncio.run(_await(reply))[:1] == b"\x80"  # answered once applied
    assert acc.items.get("t", b"k") is None and acc.items.get("u", b"k") is not None
    bad = cluster.handle(PeerMessage("daxd.records", {"items": [{"table": 3, "distrust": True}]}))
    assert isinstance(bad, bytes) and bad[:1] != b"\x80"


async def _await(reply: Any) -> bytes:
    result: bytes = await reply
    return result
