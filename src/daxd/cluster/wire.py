"""The client side of daxd's own DAX method (``daxd status``), sans-IO: request bytes out, replies in.

``daxd status`` talks to a node's DAX port with the DAX framing (docs/protocol.md,
"Framing"): the five-item preamble, ``authorizeConnection`` signed like a DAX
client signs it ("Authentication") when the node uses ``--auth-keys``, then requests
``1, method-id, body`` for the methods of
:data:`daxd.frontends.dax.events.PEER_METHODS`. A reply is ``80`` and one
item, or the three items of a DAX error (§6.1). :class:`ReplyReader` frames
replies with the server's bounded CBOR scanner, so a node that answers
garbage costs a :class:`ProtocolError`, never an unbounded buffer.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from daxd import __version__
from daxd.frontends.dax import cbor
from daxd.frontends.dax.events import PEER_METHODS
from daxd.model.errors import ProtocolError
from daxd.upstream.sigv4 import ALGORITHM, DAX_HOSTS, EMPTY_SHA256, amz_date, signing_key

USER_AGENT = f"daxd-status/{__version__}"
AUTHORIZE_CONNECTION = 1489122155
#: Largest reply accepted (a status with many nodes and tables is a few KiB).
MAX_REPLY_SIZE = 4 * 1024 * 1024


def preamble(session_id: bytes) -> bytes:
    """The connection preamble (§1.1): magic, layering 0, session id, properties, mode 0."""
    return (b"\x67J7yne5G\x00" + cbor2.dumps(session_id) + cbor2.dumps({"UserAgent": USER_AGENT}) + b"\x00")


def request(method: str, body: Any) -> bytes:
    """One daxd method call (§1.2)."""
    return b"\x01" + cbor2.dumps(PEER_METHODS[method]) + cbor2.dumps(body)


def authorize(access_key: str, secret: str, region: str, now: datetime.datetime) -> bytes:
    """``authorizeConnection`` ("Authentication") signed as the DAX clients sign it; ``now`` is UTC."""
    stamp = amz_date(now)
    date = stamp[:8]
    canonical = f"POST\n/\n\nhost:{DAX_HOSTS[0]}\nx-amz-date:{stamp}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
    to_sign = (f"{ALGORITHM}\n{stamp}\n{date}/{region}/dax/aws4_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}").encode()
    signature = signing_key(secret, date, region, "dax").hexdigest(to_sign)
    return (b"\x01" + cbor2.dumps(AUTHORIZE_CONNECTION) + cbor2.dumps(access_key) + cbor2.dumps(signature)
            + cbor2.dumps(to_sign) + cbor2.dumps(None) + cbor2.dumps(USER_AGENT))


@dataclass(frozen=True, slots=True)
class Reply:
    """A node's answer: ``value`` on success, else the DAX error's ``codes`` and ``message``."""

    ok: bool
    value: Any = None
    codes: Sequence[int] = ()
    message: str = ""


class ReplyReader:
    """Frames replies out of the bytes a node sends. Single-owner; no I/O."""

    def __init__(self, max_size: int = MAX_REPLY_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self.max_size:
            raise ProtocolError(f"reply larger than {self.max_size} bytes")

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive.

        Raises:
            ProtocolError: the bytes are not a DAX reply.
        """
        try:
            first = cbor.scan(self._buf, 0, self.max_size)
            head = cbor.load(bytes(self._buf[:first]))
            if head == []:
                end = cbor.scan(self._buf, first, self.max_size)
                reply = Reply(True, cbor.load(bytes(self._buf[first:end])))
            else:
                middle = cbor.scan(self._buf, first, self.max_size)
                end = cbor.scan(self._buf, middle, self.max_size)
                reply = _error(head, cbor.load(bytes(self._buf[first:middle])))
        except cbor.Incomplete:
            return None
        del self._buf[:end]
        return reply


def _error(codes: Any, message: Any) -> Reply:
    if not isinstance(codes, list) or not all(isinstance(c, int) for c in codes):
        raise ProtocolError("reply is neither a success nor a DAX error")
    return Reply(False, codes=tuple(codes), message=str(message))
