"""Raw DAX wire helpers for tests that talk to a node over a plain socket."""

from __future__ import annotations

import io
import socket
from typing import Any

import cbor2

#: A Python-client preamble: magic, layering 0, session id, user agent, mode 0 (protocol §1.1).
PREAMBLE = (b"\x67J7yne5G\x00" + cbor2.dumps(b"0123456789abcdef") + cbor2.dumps({"UserAgent": "raw-test"})
            + b"\x00")


def request(method_id: int, *args: Any) -> bytes:
    return b"\x01" + cbor2.dumps(method_id) + b"".join(cbor2.dumps(a) for a in args)


def endpoints_request() -> bytes:
    return request(455855874)


class _SocketReader(io.RawIOBase):
    """A file over a socket for cbor2.CBORDecoder (reads exactly what it asks for)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.sock.recv_into(buffer)


def read_items(sock: socket.socket, count: int) -> list[Any]:
    """Read ``count`` top-level CBOR items from the socket."""
    decoder = cbor2.CBORDecoder(io.BufferedReader(_SocketReader(sock), buffer_size=1))
    return [decoder.decode() for _ in range(count)]
