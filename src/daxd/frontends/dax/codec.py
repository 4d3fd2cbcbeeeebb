"""Sans-IO server side of a DAX connection: bytes in, events out (h11 style).

Usage::

    conn = DaxConnection()
    conn.receive_data(chunk)          # b"" signals EOF
    while (event := conn.next_event()) is not NEED_DATA:
        ...                           # Preamble, AuthorizeConnection, Endpoints, ...

Theory of operation: the client stream is the 5-item preamble followed by
requests ``1, method-id, <N args>`` with N fixed per method (§1.2, §3.1). A
request is only decoded once all of its items are buffered; until then
``next_event`` returns :data:`NEED_DATA`. An incomplete request may never grow
beyond ``max_frame_size`` bytes (a declared length that would break the limit
is refused as soon as its header arrives), so the buffer is bounded by the
frame limit plus whatever the caller fed since the last ``NEED_DATA``. Any
malformed input raises :class:`ProtocolError` and the connection is then dead:
the server answers nothing further and closes (§2.4).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from daxd.frontends.dax import cbor
from daxd.frontends.dax.events import (
    METHODS,
    NEED_DATA,
    AuthorizeConnection,
    ConnectionClosed,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    Endpoints,
    Event,
    MethodCall,
    PlainGetItem,
    Preamble,
    _NeedData,
)
from daxd.model.errors import ProtocolError

#: Default frame limit. DynamoDB's largest request bodies are 16 MB
#: (BatchWriteItem); DAX's compact encoding is smaller than the JSON.
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
MAGIC = "J7yne5G"
_MAGIC_HEADER = 0x67
_PREAMBLE_ITEMS = 5


class State(enum.Enum):
    """Where the connection is in its life."""

    PREAMBLE = "preamble"
    REQUESTS = "requests"
    CLOSED = "closed"
    ERROR = "error"


class DaxConnection:
    """One client connection's decoder. Single-owner; holds no I/O."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1024:
            raise ValueError("max_frame_size must be at least 1024 bytes")
        self.max_frame_size = max_frame_size
        self.state = State.PREAMBLE
        self._buf = bytearray()
        self._eof = False
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed its side."""
        if self._eof:
            if data:
                raise ProtocolError("data received after EOF")
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            ProtocolError: the bytes are malformed, too large, or truncated by EOF.
        """
        if self.state is State.ERROR:
            raise ProtocolError("connection already failed")
        if self.state is State.CLOSED:
            return ConnectionClosed()
        try:
            return self._next()
        except ProtocolError:
            self.state = State.ERROR
            self._buf.clear()
            raise

    def _next(self) -> Event | _NeedData:
        if not self._buf:
            if self._eof:
                self.state = State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        if self._eof and len(self._buf) < self._need:
            raise ProtocolError("connection closed in the middle of a request")
        if len(self._buf) < self._need:
            return NEED_DATA
        if self.state is State.PREAMBLE:
            return self._framed(self._scan_preamble, _decode_preamble)
        fast = _split_get_item(self._buf)
        if fast is not None:
            end, call = fast
            del self._buf[:end]
            self._need = 0
            return call
        return self._framed(self._scan_request, _decode_request)

    def _framed(self, scanner: Callable[[], tuple[int, list[int]]],
                decoder: Callable[[bytes, list[int]], Event]) -> Event | _NeedData:
        """Run a scanner; on success decode and consume the frame."""
        try:
            end, bounds = scanner()
        except cbor.Incomplete as more:
            if self._eof:
                raise ProtocolError("connection closed in the middle of a request") from None
            if more.needed > self.max_frame_size:  # an indefinite container that keeps growing
                raise cbor.FrameTooLarge(f"request exceeds the frame limit of {self.max_frame_size} bytes") from None
            self._need = more.needed
            return NEED_DATA
        frame = bytes(self._buf[:end])
        del self._buf[:end]
        self._need = 0
        event = decoder(frame, bounds)
        if isinstance(event, Preamble):
            self.state = State.REQUESTS
        return event

    def _scan_preamble(self) -> tuple[int, list[int]]:
        if self._buf[0] != _MAGIC_HEADER:
            raise ProtocolError("not a DAX connection (bad magic)")
        return self._scan_items(0, _PREAMBLE_ITEMS)

    def _scan_request(self) -> tuple[int, list[int]]:
        end, bounds = self._scan_items(0, 2)
        service, method_id = _small_int(self._buf, bounds[0], bounds[1]), \
            _small_int(self._buf, bounds[1], bounds[2])
        if service != 1:
            raise ProtocolError(f"unknown DAX service id {service!r}")
        info = METHODS.get(method_id) if method_id is not None else None
        if info is None:
            raise ProtocolError(f"unknown DAX method id {method_id!r}")
        end, more = self._scan_items(end, info.arg_count)
        return end, bounds[:2] + more

    def _scan_items(self, pos: int, count: int) -> tuple[int, list[int]]:
        """Scan ``count`` items from ``pos``; returns the end and all boundaries."""
        bounds = [pos]
        for _ in range(count):
            pos = cbor.scan(self._buf, pos, self.max_frame_size)
            bounds.append(pos)
        return pos, bounds


#: getItem's envelope: service 1, method id 263244906 (§3.1).
_GET_ITEM_PREFIX = b"\x01\x1a\x0f\xb0\xcc\x6a"
#: The kwargs the clients send with a plain GetItem: Python ``{3: 0}``, JS and Go ``{}``, or null.
#: The decoded values are shared, read-only objects.
_PLAIN_KWARGS: dict[bytes, dict[int, int] | None] = {b"\xbf\x03\x00\xff": {3: 0}, b"\xbf\xff": {}, b"\xf6": None}


def _short_bstr_end(buf: bytes | bytearray, pos: int) -> int:
    """The end of a complete byte string shorter than 256 bytes at ``pos``, or -1."""
    if pos >= len(buf):
        return -1
    head = buf[pos]
    if 0x40 <= head < 0x58:
        end = pos + 1 + head - 0x40
    elif head == 0x58 and pos + 1 < len(buf):
        end = pos + 2 + buf[pos + 1]
    else:
        return -1
    return end if end <= len(buf) else -1


def _split_get_item(buf: bytearray) -> tuple[int, PlainGetItem] | None:
    """A complete plain getItem at the start of ``buf``, framed without the general scanner.

    Cached GetItems are the hot path (the general scanner and cbor2 calls
    cost more than the cache lookup itself), so the arguments stay bytes
    here. Anything unusual (long strings, other kwargs, an incomplete frame)
    returns None and takes the general path, which validates everything.
    """
    if not buf.startswith(_GET_ITEM_PREFIX):
        return None
    start = len(_GET_ITEM_PREFIX)
    pos = _short_bstr_end(buf, start)
    if pos < 0:
        return None
    pos = _short_bstr_end(buf, pos)
    if pos < 0:
        return None
    for raw in _PLAIN_KWARGS:
        if buf.startswith(raw, pos):
            end = pos + len(raw)
            return end, PlainGetItem(bytes(buf[start:end]))
    return None


def decode_plain_get_item(event: PlainGetItem) -> MethodCall:
    """The :class:`MethodCall` of a :class:`PlainGetItem` (its bytes were framed by :func:`_split_get_item`)."""
    args = event.args
    table_end = _short_bstr_end(args, 0)
    key_end = _short_bstr_end(args, table_end)
    table_start = 2 if args[0] == 0x58 else 1
    key_start = table_end + (2 if args[table_end] == 0x58 else 1)
    return MethodCall("getItem", (args[table_start:table_end], args[key_start:key_end], _PLAIN_KWARGS[args[key_end:]]))


def _small_int(buf: bytearray, start: int, end: int) -> int | None:
    """Decode an integer item occupying ``buf[start:end]`` (None if not an int)."""
    major = buf[start] >> 5
    if major > 1:
        return None
    value = cbor.load(bytes(buf[start:end]))
    return value if isinstance(value, int) else None


def _load_items(frame: bytes, bounds: list[int], first: int) -> list[Any]:
    """Decode items ``first..`` of a frame in one cbor2 call (array header + items)."""
    count = len(bounds) - 1 - first
    body = frame[bounds[first]:bounds[-1]]
    header = bytes([0x80 + count]) if count < 24 else bytes([0x98, count])
    items = cbor.load(header + body)
    assert isinstance(items, list)
    return items


def _decode_preamble(frame: bytes, bounds: list[int]) -> Event:
    magic, _layering, session, properties, _mode = _load_items(frame, bounds, 0)
    if magic != MAGIC:
        raise ProtocolError("not a DAX connection (bad magic)")
    if session is not None and not isinstance(session, (bytes, str)):
        raise ProtocolError("session id must be bytes, text or null")
    if not isinstance(properties, dict):
        raise ProtocolError("client properties must be a map")
    agent = properties.get("UserAgent")
    return Preamble(session, agent if isinstance(agent, str) else None, properties)


def _decode_request(frame: bytes, bounds: list[int]) -> Event:
    method_id = cbor.load(frame[bounds[1]:bounds[2]])
    info = METHODS[method_id]
    args = _load_items(frame, bounds, 2)
    builder = _CONTROL_BUILDERS.get(info.name)
    if builder is not None:
        return builder(args)
    return MethodCall(info.name, tuple(args))


def _text(value: Any, what: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise ProtocolError(f"{what} must be a string")
    return value


def _authorize(args: list[Any]) -> Event:
    key, signature, to_sign, token, agent = args
    if not isinstance(to_sign, (bytes, str)):
        raise ProtocolError("string to sign must be bytes")
    return AuthorizeConnection(
        _text(key, "access key id"), _text(signature, "signature"),
        to_sign if isinstance(to_sign, bytes) else to_sign.encode("utf-8"),
        _text(token, "session token", True), _text(agent, "user agent", True))


def _define_attribute_list(args: list[Any]) -> Event:
    list_id = args[0]
    if not isinstance(list_id, int) or isinstance(list_id, bool) or list_id < 0:
        raise ProtocolError("attribute list id must be an unsigned integer")
    return DefineAttributeList(list_id)


def _define_attribute_list_id(args: list[Any]) -> Event:
    names = args[0]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProtocolError("attribute names must be an array of text strings")
    return DefineAttributeListId(tuple(names))


_CONTROL_BUILDERS: dict[str, Callable[[list[Any]], Event]] = {
    "authorizeConnection": _authorize,
    "endpoints": lambda _args: Endpoints(),
    "defineKeySchema": lambda args: DefineKeySchema(_text(args[0], "table name")),
    "defineAttributeList": _define_attribute_list,
    "defineAttributeListId": _define_attribute_list_id,
}
